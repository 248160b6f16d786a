"""What every command group shares: its context, the access check, the engine call, one
engine event in one transaction, and the one write path from engine state to rows, timers,
messages and audit."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from models import engine as eng
from models.errors import AlreadyDone, Invalid
from models.pathway import PathwaySpec
from models.schemas import ChildIn, child_identity
from nim_pathway import policy
from notifications.config import NotifyConfig
from notifications.outbox import queue_handoffs
from store import audit, faults, journal, mapping, timers
from store.context import StoreContext
from store.queries import Queries
from store.tables import Case, Practitioner, Task

DELAY_CAUSES = ("court", "family", "capacity", "other")  # why work is late (tasks, move-date)


@dataclass(frozen=True)
class Result:
    """What a command did, for the CLI to print and for orchestration to act on."""

    ref: str
    message: str
    effects: list[eng.Effect] = field(default_factory=list)


def run_engine(fn: Callable[..., list[eng.Effect]], *args: Any) -> list[eng.Effect]:
    """Call a pure engine rule; its refusals become typed command errors."""
    try:
        return fn(*args)
    except eng.AlreadyCompleted as exc:
        raise AlreadyDone(str(exc)) from None
    except eng.EngineError as exc:
        raise Invalid(str(exc)) from None


class CommandBase:
    def __init__(self, ctx: StoreContext, queries: Queries,
                 notify: Callable[[], NotifyConfig]) -> None:
        self.ctx = ctx
        self.queries = queries
        self.notify = notify  # the notification config, loaded on first use

    def identity_digest(self, child: ChildIn) -> str:
        """A keyed hash of the child's normalised names and date of birth: the key is derived
        from the service's secret key, held outside the database, so whoever holds only the
        database cannot test a guessed identity against it."""
        key = hmac.new(self.ctx.secret_key, b"nim-pathway child identity digest v1",
                       hashlib.sha256).digest()
        identity = child_identity(child.given_name, child.family_name, child.date_of_birth)
        return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()

    def authorize(self, session: Session, actor: str, action: str,
                  spec: PathwaySpec | None = None,
                  target: policy.Target = policy.Target()) -> Practitioner | None:
        return policy.authorize(session, self.ctx.now(), actor, action, spec, target,
                                self.ctx.audit_key, self.ctx.secret_key)

    def permit_read(self, actor: str, action: str, ref: str | None = None,
                    doing: str = "") -> str:
        """Ask the policy before a read that leaves the system (an export, a retention list):
        the read is audited, a refusal too. A case read checks the case's pathway."""
        with self.ctx.write() as session:
            spec = None
            if ref is not None:
                spec = self.ctx.spec(session, mapping.find_case(session, ref).pathway_id)
            self.authorize(session, actor, action, spec, policy.Target(ref, doing=doing))
            self.audit(session, actor, "data-read", ref, {"action": action, "doing": doing})
        return actor

    def audit(self, session: Session, actor: str, action: str, case_ref: str | None,
              detail: dict) -> None:
        """One audit row; free text typed about a case is sealed under the case's key, so
        erasing the case shreds it in this append-only log too."""
        from store.crypto import seal_free_text

        detail = seal_free_text(session, case_ref, self.ctx.secret_key, detail, self.ctx.now(),
                                self.ctx.keystore)
        audit.append(session, self.ctx.now(), actor, action, case_ref, detail,
                     self.ctx.audit_key)

    def load(self, session: Session, case: Case) -> tuple[PathwaySpec, eng.CaseState]:
        spec = self.ctx.spec(session, case.pathway_id)
        return spec, mapping.load_state(session, case, spec, self.ctx.closures)

    def commit_state(self, session: Session, case: Case, spec: PathwaySpec,
                     state: eng.CaseState, effects: list[eng.Effect], actor: str) -> None:
        """Write what the engine decided: rows, assignees, decisions, consent, the re-planned
        timers, handoff messages and one audit row per effect, in the caller's transaction."""
        now = self.ctx.now()
        created = mapping.save_state(session, case, state, effects, now, actor)
        self._auto_assign(session, case, created)
        mapping.save_family(session, case, state, self.ctx.today())
        mapping.save_decisions(session, case, state, effects, actor)
        session.flush()
        timers.plan(session, case, spec, state, now)
        queue_handoffs(session, self.notify(), case.id, case.ref, effects, actor, set(spec.gate_of_task),
                       self.ctx.today(), now)
        for e in effects:
            self.audit(session, actor, e.kind, case.ref, {"task": e.task, **e.detail})
        journal.note_change(session, case.ref, now)  # Prefect's runs follow, by change
        faults.reached("command-commit")  # crash tests: everything written, not committed

    def _engine_event(self, ref: str, actor: str, action: str, doing: str,
                      event: Callable[..., list[eng.Effect]], *args: object) -> Result:
        """One case event through the engine (family, lifecycle, court), in one transaction:
        the policy asked for `action`, the event given the case's spec and state, then `args`."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, action, spec, policy.Target(ref, doing=doing))
            effects = run_engine(event, spec, state, *args)
            self.commit_state(session, case, spec, state, effects, actor)
        return Result(ref, f"{ref}: {doing}", effects)

    @staticmethod
    def _auto_assign(session: Session, case: Case, tasks: list[Task]) -> None:
        """Keep one practitioner per role on a case; otherwise the least-loaded one."""
        for task in tasks:
            on_case = session.exec(select(Task.assignee_id).where(
                Task.case_id == case.id, Task.role == task.role, Task.assignee_id.is_not(None)
            ).limit(1)).first()
            if on_case is not None:
                task.assignee_id = on_case
                continue
            load = (select(Practitioner.id, func.count(Task.id).label("n"))
                    .join(Task, (Task.assignee_id == Practitioner.id) & (Task.state == "open"),
                          isouter=True)
                    .where(Practitioner.role == task.role, Practitioner.active)
                    .group_by(Practitioner.id, Practitioner.handle)
                    .order_by(func.count(Task.id), Practitioner.handle).limit(1))
            best = session.exec(load).first()
            task.assignee_id = best[0] if best else None
            session.add(task)
            session.flush()
