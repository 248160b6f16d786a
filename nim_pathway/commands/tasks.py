"""Task commands: complete, reassign, record why work is late. One transaction each."""

from __future__ import annotations

from typing import Any

from models import engine as eng
from models.errors import Invalid
from models.refs import TaskRef
from nim_pathway.commands.base import DELAY_CAUSES, CommandBase, Result, run_engine
from nim_pathway.policy import Target, practitioner
from notifications.outbox import queue_handoffs
from store import mapping
from store.tables import Practitioner


class TaskCommands(CommandBase):
    def complete_task(self, task_ref: TaskRef, actor: str, outcome: dict[str, Any],
                      via: str | None = None) -> Result:
        """Record an outcome. `via` names the UI attempt (flow run and form) it came from, so a
        replayed flow does not audit the same refusal twice."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, task_ref.case, lock=True)
            task = mapping.find_task(session, case, task_ref.key)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "complete-task", spec,
                           Target(case.ref, task.role, task.assignee_id,
                                  doing=f"complete {task_ref}", via=via))
            effects = run_engine(eng.complete_task, spec, state, task.key, outcome, actor,
                                 self.ctx.today())
            self.commit_state(session, case, spec, state, effects, actor)
        return Result(case.ref, f"completed {task_ref}", effects)

    def reassign(self, task_ref: TaskRef, to: str, actor: str, note: str) -> Result:
        with self.ctx.write() as session:
            case = mapping.find_case(session, task_ref.case, lock=True)
            task = mapping.find_task(session, case, task_ref.key)
            spec = self.ctx.spec(session, case.pathway_id)
            target = practitioner(session, to)
            if task.state not in (eng.OPEN, eng.BLOCKED):
                raise Invalid(f"task {task_ref} is {task.state}; only open work moves")
            if target.role != task.role:
                raise Invalid(f"{to} is {target.role}; task {task_ref} needs a {task.role}")
            self.authorize(session, actor, "reassign", spec,
                           Target(case.ref, task.role, task.assignee_id,
                                  doing=f"reassign {task_ref}"))
            before = session.get(Practitioner, task.assignee_id) if task.assignee_id else None
            task.assignee_id, task.handover_note, task.updated_at = target.id, note, self.ctx.now()
            session.add(task)
            effect = eng.Effect("task-reassigned", task.key, {
                "from": before.handle if before else None, "to": target.handle,
                "note_length": len(note)})
            self.audit(session, actor, effect.kind, case.ref, {"task": task.key, **effect.detail})
            session.flush()
            queue_handoffs(session, self.notify(), case.id, case.ref, [effect], actor, set(spec.gate_of_task),
                           self.ctx.today(), self.ctx.now())
        return Result(case.ref, f"reassigned {task_ref} to {to}", [effect])

    def record_delay_cause(self, task_ref: TaskRef, category: str, note: str,
                           actor: str) -> Result:
        """Say why a task is late: court or family events, or team capacity."""
        if category not in DELAY_CAUSES:
            raise Invalid(f"cause must be one of {', '.join(DELAY_CAUSES)}")
        with self.ctx.write() as session:
            case = mapping.find_case(session, task_ref.case, lock=True)
            task = mapping.find_task(session, case, task_ref.key)
            spec = self.ctx.spec(session, case.pathway_id)
            self.authorize(session, actor, "record-delay-cause", spec,
                           Target(case.ref, task.role, task.assignee_id,
                                  doing=f"record the cause of a delay on {task_ref}"))
            task.delay_cause = category
            session.add(task)
            self.audit(session, actor, "delay-cause", case.ref,
                       {"task": task.key, "cause": category, "note_length": len(note)})
        return Result(case.ref, f"{task_ref}: delay cause {category}")
