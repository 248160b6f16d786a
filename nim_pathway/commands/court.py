"""Court commands: the court's timetable (extensions, directions to file), the final order,
and the end of the child being looked after. Hearing dates move with `CaseCommands.move_date`.
One transaction each."""

from __future__ import annotations

from datetime import date

from models import engine as eng
from models.errors import Invalid
from models.pathway import PathwaySpec
from nim_pathway.commands.base import CommandBase, Result, run_engine
from nim_pathway.policy import Target
from store import mapping

TIMETABLE = "record-court-timetable"  # the policy's action for timetable events


class CourtCommands(CommandBase):
    def extend_timetable(self, ref: str, granted_on: date, weeks: int, reason: str,
                         actor: str, child: str | None = None) -> Result:
        """The court extended its timetable (one extension: up to 8 weeks, with a reason); with
        `child`, the timetable of that child's own application."""
        return self._engine_event(ref, actor, TIMETABLE, f"extend the timetable by {weeks} weeks",
                                  eng.extend_timetable, granted_on, weeks, reason,
                                  self.ctx.today(), child)

    def record_interim_order(self, ref: str, made_on: date, kind: str, court: str, actor: str,
                             child: str | None = None) -> Result:
        """An interim order for a child (s38): it meets no clock; an interim care order keeps
        the child looked after, or makes them looked after again."""
        return self._engine_event(ref, actor, TIMETABLE, f"record an interim order ({kind})",
                                  eng.record_interim_order, made_on, kind, court,
                                  self.ctx.today(), child)

    def record_final_order(self, ref: str, made_on: date, kind: str,
                           follows_recommendation: bool, actor: str,
                           child: str | None = None) -> Result:
        """The final order: it disposes of the proceedings and meets the 26-week clock (per
        child where a sibling group's orders differ)."""
        if not follows_recommendation:
            return self._engine_event(ref, actor, TIMETABLE, f"record the final order ({kind})",
                                      eng.record_final_order, made_on, kind, False,
                                      self.ctx.today(), child)
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, TIMETABLE, spec,
                           Target(ref, doing=f"record the final order ({kind})"))
            if not _recommendation_recorded(spec, state, child):
                whose = f" for {child}" if child else ""
                raise Invalid(f"{ref} has no recommendation recorded{whose}, so the final order "
                              "cannot follow one: record the order without "
                              "--follows-recommendation, or record the recommendation first")
            effects = run_engine(eng.record_final_order, spec, state, made_on, kind, True,
                                 self.ctx.today(), child)
            self.commit_state(session, case, spec, state, effects, actor)
        return Result(ref, f"{ref}: record the final order ({kind})", effects)

    def add_direction(self, ref: str, document: str, role: str | None, by: date,
                      actor: str, child: str | None = None) -> Result:
        """A court direction to file a document by a date: it binds the pathway's task that
        produces the document (`court.produced_by`), else it is a task for the named role;
        with `child`, only that child's work (and the family's)."""
        return self._engine_event(ref, actor, TIMETABLE,
                                  f"record a direction to file {document} by {by}",
                                  eng.add_direction, document, role, by, self.ctx.today(),
                                  child)

    def cease_looked_after(self, ref: str, on: date, reason: str, actor: str,
                           child: str | None = None) -> Result:
        """The child is no longer looked after: statutory reviews and visits stop."""
        if not reason.strip():
            raise Invalid("say why the child is no longer looked after (--reason), e.g. "
                          "'returned home, care order discharged'")
        if on > self.ctx.today():
            raise Invalid(f"{on} is in the future")
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "record-looked-after-status", spec,
                           Target(ref, doing="record that the child is no longer looked after"))
            effects = run_engine(eng.cease_looked_after, spec, state, on, reason, child)
            self.commit_state(session, case, spec, state, effects, actor)
        return Result(ref, f"{ref}: no longer looked after from {on}", effects)


def _recommendation_recorded(spec: PathwaySpec, state: eng.CaseState, child: str | None) -> bool:
    """Whether the case (or `child`) has the recommendation the pathway's `reporting:` names:
    its gate's decision recorded, or its sign-off task done."""
    task_id = spec.reporting.recommendation
    if task_id is None:
        return False
    gate = spec.gate_of_task.get(task_id)
    if gate is not None:
        if child is None:
            if any(k.partition("@")[0] == gate.decision for k in state.decisions):
                return True
        elif eng.child_anchor(gate.decision, child) in state.decisions:
            return True
    return any(t.spec_id == task_id and t.state == eng.DONE
               and (child is None or t.child in (None, child)) for t in state.tasks.values())
