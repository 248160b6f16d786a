"""Domain commands: the one path every change takes (CLI, Prefect UI resume, API).

Each command is one transaction on the case store: it loads the case, calls the pure
engine with today's date from the injected clock, writes the new state, re-plans the
case's timers and appends hash-chained audit rows. If anything fails, nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple

from sqlalchemy import func, text
from sqlmodel import Session, select

from models import engine as eng
from models.clock import UK, Clock, today, uk_instant
from models.pathway import (
    PATHWAYS_DIR,
    PathwayError,
    PathwaySpec,
    load_pathway,
    pathway_from_json,
)
from models.schemas import PractitionerIn, Referral
from models.tables import (
    AuditEvent,
    Caregiver,
    Case,
    CaseAnchor,
    Child,
    Decision,
    Intake,
    Outbox,
    PathwayVersion,
    Placement,
    Practitioner,
    Task,
    Timer,
)
from nim_pathway import faults
from nim_pathway.db import session_scope
from nim_pathway.errors import CommandError
from nim_pathway.reads import task_rows

GENESIS = "0" * 64
DELAY_CAUSES = ("court", "family", "capacity", "other")
# England: looked-after children's records to their 75th birthday, adoption records 100 years
RETENTION_YEARS = {"default": 75, "adoption": 100}


@dataclass
class Result:
    """What a command did, for the CLI to print and for orchestration to act on."""

    ref: str
    message: str
    effects: list[eng.Effect] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class DueTimer(NamedTuple):
    """The timer columns a sweep reads."""

    id: int
    key: str
    kind: str
    task_key: str | None
    role: str
    due_at: datetime
    detail: dict | None


class TaskForMessage(NamedTuple):
    """The task columns a timer's message needs."""

    key: str
    title: str
    role: str
    due: date
    due_explanation: str
    flow_run_id: str | None
    assignee_id: int | None


class CaseStore:
    def __init__(self, url: str, clock: Clock, closures: frozenset[date] = frozenset()) -> None:
        self.url = url
        self.clock = clock
        self.closures = closures
        self._specs: dict[int, PathwaySpec] = {}

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock.now()

    def _today(self) -> date:
        return today(self.clock)

    def _spec(self, session: Session, pathway_id: int) -> PathwaySpec:
        if pathway_id not in self._specs:
            row = session.get(PathwayVersion, pathway_id)
            self._specs[pathway_id] = pathway_from_json(row.spec_json)
        return self._specs[pathway_id]

    def _case(self, session: Session, ref: str, lock: bool = False) -> Case:
        stmt = select(Case).where(Case.ref == ref)
        if lock and session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()  # one writer per case; SQLite's BEGIN IMMEDIATE
        case = session.exec(stmt).first()
        if case is None:
            raise CommandError(f"unknown case {ref!r}; `nim-pathway case list` shows the cases")
        return case

    def _practitioner(self, session: Session, handle: str) -> Practitioner:
        found = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
        if found is None or not found.active:
            raise CommandError(
                f"unknown practitioner {handle!r}; `nim-pathway practitioner list` shows them"
            )
        return found

    def audit(
        self, session: Session, actor: str, action: str, case_ref: str | None, detail: dict
    ) -> AuditEvent:
        """Append one hash-chained audit row (never updated, never deleted)."""
        if session.get_bind().dialect.name == "postgresql":
            session.exec(text("SELECT pg_advisory_xact_lock(724)"))  # one chain, one writer
        last = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
        row = AuditEvent(at=self._now(), actor=actor, case_ref=case_ref, action=action,
                         detail=detail, prev_hash=last.hash if last else GENESIS, hash="")
        row.hash = audit_hash(row)
        session.add(row)
        session.flush()
        return row

    def _store_pathway(self, session: Session, spec: PathwaySpec) -> PathwayVersion:
        row = session.exec(select(PathwayVersion).where(
            PathwayVersion.profile == spec.profile, PathwayVersion.version == spec.version
        )).first()
        digest = spec.digest()
        if row is None:
            row = PathwayVersion(profile=spec.profile, version=spec.version, sha256=digest,
                                 spec_json=spec.canonical_json(), stored_at=self._now())
            session.add(row)
            session.flush()
        elif row.sha256 != digest:
            raise CommandError(
                f"pathway {spec.profile} version {spec.version} has changed since cases started "
                "on it; give the edited file a new 'version' so open cases keep theirs"
            )
        return row

    # -- state <-> rows -------------------------------------------------------------------

    def _load(self, session: Session, case: Case) -> tuple[PathwaySpec, eng.CaseState]:
        spec = self._spec(session, case.pathway_id)
        anchors = {a.name: a.value for a in session.exec(
            select(CaseAnchor).where(CaseAnchor.case_id == case.id))}
        carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)
                              .order_by(Caregiver.id)).all()
        tasks = session.exec(select(Task).where(Task.case_id == case.id).order_by(Task.id)).all()
        decisions = {d.kind: d.outcome for d in session.exec(
            select(Decision).where(Decision.case_id == case.id))}
        state = eng.CaseState(
            ref=case.ref, jurisdiction=case.jurisdiction, anchors=anchors,
            settings={**spec.settings, **(case.settings or {})},
            caregivers=[eng.Caregiver(c.key, c.relationship) for c in carers],
            stage=case.stage, decisions=decisions, closed_on=case.closed_on,
            court_override_weeks=case.court_override_weeks, closures=self.closures,
        )
        for t in tasks:
            state.tasks[t.key] = eng.TaskState(
                key=t.key, spec_id=t.spec_id, stage=t.stage, title=t.title, role=t.role,
                due=t.due, due_explanation=t.due_explanation, anchor=t.anchor, state=t.state,
                caregiver=t.caregiver, occurrence=t.occurrence, after=list(t.after or []),
                outcome=t.outcome, completed_on=t.completed_on, completed_by=t.completed_by)
        return spec, state

    def _save(
        self, session: Session, case: Case, spec: PathwaySpec, state: eng.CaseState,
        effects: list[eng.Effect], actor: str,
    ) -> None:
        now = self._now()
        case.stage, case.closed_on = state.stage, state.closed_on
        case.court_override_weeks = state.court_override_weeks
        session.add(case)
        existing_anchors = {a.name: a for a in session.exec(
            select(CaseAnchor).where(CaseAnchor.case_id == case.id))}
        causes = {e.detail["anchor"]: e.detail["cause"] for e in effects
                  if e.kind == "anchor-moved"}
        for name, value in state.anchors.items():
            row = existing_anchors.get(name)
            if row is None:
                session.add(CaseAnchor(case_id=case.id, name=name, value=value,
                                       cause=causes.get(name)))
            elif row.value != value:
                row.value, row.cause = value, causes.get(name, row.cause)
                session.add(row)
        rows = {t.key: t for t in session.exec(select(Task).where(Task.case_id == case.id))}
        new_tasks = []
        for t in state.tasks.values():
            row = rows.get(t.key)
            values = dict(spec_id=t.spec_id, stage=t.stage, title=t.title, role=t.role,
                          caregiver=t.caregiver, occurrence=t.occurrence, anchor=t.anchor,
                          after=t.after, due=t.due, due_explanation=t.due_explanation,
                          state=t.state, outcome=t.outcome, completed_on=t.completed_on,
                          completed_by=t.completed_by)
            if row is None:
                row = Task(case_id=case.id, key=t.key, created_at=now, updated_at=now, **values)
                new_tasks.append(row)
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                row.updated_at = now
            else:
                continue
            session.add(row)
        self._auto_assign(session, case, new_tasks)
        self._record_consent(session, case, state, effects)
        for e in effects:
            if e.kind == "decision-recorded":
                task = state.tasks[e.task]
                session.add(Decision(case_id=case.id, kind=e.detail["decision"],
                                     outcome=e.detail["outcome"], decided_on=task.completed_on,
                                     decided_by=actor, rationale=task.outcome.get("notes", "")))
        session.flush()
        self._plan_timers(session, case, spec, state)
        from notifications.outbox import queue_handoffs

        queue_handoffs(session, case.id, case.ref, effects, actor, set(spec.gate_of_task),
                       self._today(), self._now())
        for e in effects:
            self.audit(session, actor, e.kind, case.ref, {"task": e.task, **e.detail})

    def _record_consent(
        self, session: Session, case: Case, state: eng.CaseState, effects: list[eng.Effect]
    ) -> None:
        """Consent is kept per person on the caregiver record as well as in the task."""
        for e in effects:
            task = state.tasks.get(e.task or "")
            if e.kind != "task-completed" or not task or "consent" not in (task.outcome or {}):
                continue
            carer = session.exec(select(Caregiver).where(
                Caregiver.case_id == case.id, Caregiver.key == task.caregiver)).first()
            if carer is not None:
                carer.consent, carer.consent_on = task.outcome["consent"], task.completed_on
                session.add(carer)

    def _auto_assign(self, session: Session, case: Case, tasks: list[Task]) -> None:
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

    def _plan_timers(
        self, session: Session, case: Case, spec: PathwaySpec, state: eng.CaseState
    ) -> None:
        """Make the case's unfired timers equal the engine's plan: add, keep, cancel."""
        send_at = time.fromisoformat(spec.notifications.send_at)
        planned = {p.key: p for p in eng.planned_timers(spec, state)}
        pending = {t.key: t for t in session.exec(select(Timer).where(
            Timer.case_id == case.id, Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)))}
        now = self._now()
        for key, timer in pending.items():
            if key not in planned:
                timer.cancelled_at = now
                session.add(timer)
        known = set(session.exec(select(Timer.key).where(Timer.case_id == case.id)))
        for key, p in planned.items():
            if key in known:
                continue  # pending already, or fired/cancelled once: never again
            session.add(Timer(key=key, case_id=case.id, task_key=p.task, kind=p.kind,
                              role=p.role, due_at=uk_instant(p.fire_on, send_at),
                              detail=p.detail))

    # -- commands -------------------------------------------------------------------------

    def stage_intake(self, referral: Referral, actor: str) -> str:
        """Keep a referral in the case store and return the handle the Prefect form takes."""
        import secrets

        with session_scope(self.url) as session:
            self._require_role(session, load_pathway(referral.default_pathway()), actor,
                               {"coordinator"}, "stage a referral")
            handle = f"IN-{secrets.token_hex(4).upper()}"
            session.add(Intake(handle=handle, referral=referral.model_dump(mode="json"),
                               created_by=actor, created_at=self._now()))
            self.audit(session, actor, "intake-staged", None, {"handle": handle})
        return handle

    def open_from_intake(self, handle: str, actor: str) -> Result:
        """Open the case for a staged referral; running it again returns the same case."""
        with session_scope(self.url) as session:
            intake = self._intake(session, handle)
            if intake.case_ref:
                return Result(intake.case_ref, f"{handle} was opened as {intake.case_ref}")
            referral = Referral.model_validate(intake.referral)
        return self.open_case(referral, actor, intake_handle=handle)

    def _intake(self, session: Session, handle: str, lock: bool = False) -> Intake:
        stmt = select(Intake).where(Intake.handle == handle.strip())
        if lock and session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        intake = session.exec(stmt).first()
        if intake is None:
            raise CommandError(f"no staged referral {handle!r}; create one with "
                               "`nim-pathway case intake --file referral.yaml`")
        return intake

    def open_case(self, referral: Referral, actor: str, pathway: PathwaySpec | None = None,
                  intake_handle: str | None = None) -> Result:
        on = self._today()
        if referral.referral > on:
            raise CommandError(f"referral date {referral.referral} is in the future (today {on})")
        try:
            spec = pathway or load_pathway(referral.default_pathway())
        except PathwayError as exc:
            raise CommandError(str(exc)) from None
        if referral.jurisdiction not in spec.jurisdictions:
            raise CommandError(
                f"pathway {spec.profile} is for {', '.join(spec.jurisdictions)}, not "
                f"{referral.jurisdiction}; choose another with --pathway"
            )
        unknown = sorted(set(referral.settings) - set(spec.settings))
        if unknown:
            raise CommandError(
                f"unknown pathway setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(spec.settings))}"
            )
        with session_scope(self.url) as session:
            self._require_role(session, spec, actor, {"coordinator"}, "open a case")
            if intake_handle:  # one case per staged referral, however often the flow runs
                intake = self._intake(session, intake_handle, lock=True)
                if intake.case_ref:
                    return Result(intake.case_ref, f"{intake_handle} was opened as "
                                  f"{intake.case_ref}")
            version = self._store_pathway(session, spec)
            ref = self._next_ref(session, on.year)
            case = Case(ref=ref, jurisdiction=referral.jurisdiction, site=referral.site,
                        pathway_id=version.id, settings=referral.settings or None,
                        opened_at=self._now(), legal_status=referral.legal_status)
            session.add(case)
            session.flush()
            child = referral.child
            session.add(Child(case_id=case.id, given_name=child.given_name,
                              family_name=child.family_name,
                              date_of_birth=child.date_of_birth, address=child.address))
            carers = eng.caregiver_keys([c.relationship for c in referral.caregivers])
            for c, given in zip(carers, referral.caregivers, strict=True):
                session.add(Caregiver(case_id=case.id, key=c.key, relationship=c.relationship,
                                      name=given.name))
            if referral.placement:
                session.add(Placement(case_id=case.id, kind=referral.placement.kind,
                                      start=referral.placement.start, reason="care entry"))
            anchors = {"care_entry": referral.care_entry, "referral": referral.referral}
            for name in ("proceedings_issued", "final_hearing"):
                if getattr(referral, name):
                    anchors[name] = getattr(referral, name)
            state = eng.CaseState(ref=ref, jurisdiction=referral.jurisdiction, anchors=anchors,
                                  settings={**spec.settings, **referral.settings},
                                  caregivers=carers, closures=self.closures)
            effects = [eng.Effect("case-opened", None, {
                "pathway": f"{spec.profile}@{spec.version}", "jurisdiction": case.jurisdiction,
                "site": case.site, "caregivers": [c.key for c in carers]})]
            effects += self._engine(eng.open_case, spec, state, on)
            self._save(session, case, spec, state, effects, actor)
            if intake_handle:
                intake.case_ref = ref
                session.add(intake)
        return Result(ref, f"opened {ref} on pathway {spec.profile}@{spec.version}", effects)

    def _next_ref(self, session: Session, year: int) -> str:
        prefix = f"NIM-{year}-"
        last = session.exec(select(func.max(Case.ref)).where(Case.ref.like(prefix + "%"))).first()
        n = int(last.rsplit("-", 1)[1]) + 1 if last else 1
        return f"{prefix}{n:04d}"

    @staticmethod
    def _engine(fn, *args: Any) -> list[eng.Effect]:  # noqa: ANN001
        try:
            return fn(*args)
        except eng.EngineError as exc:
            raise CommandError(str(exc)) from None

    def _refuse(self, session: Session, actor: str, case_ref: str | None, message: str,
                detail: dict) -> None:
        """Audit an access refusal (kept even though the command changes nothing), then say so."""
        self.audit(session, actor, "refused", case_ref, detail)
        session.commit()
        raise CommandError(message)

    def _require_role(
        self, session: Session, spec: PathwaySpec, handle: str, roles: set[str], doing: str,
        case_ref: str | None = None,
    ) -> Practitioner:
        who = self._practitioner(session, handle)
        if who.role not in roles | spec.managers():
            self._refuse(session, handle, case_ref,
                         f"{handle} is {who.role} and may not {doing}; it needs "
                         f"{' or '.join(sorted(roles | spec.managers()))}",
                         {"doing": doing, "role": who.role})
        return who

    def _find_task(self, session: Session, task_ref: str) -> tuple[Case, Task]:
        ref, sep, key = task_ref.partition("/")
        if not sep:
            raise CommandError(
                f"task {task_ref!r} should be CASE-REF/TASK-KEY, e.g. NIM-2026-0001/triage "
                "(`nim-pathway task list --case REF` shows them)"
            )
        case = self._case(session, ref, lock=True)
        task = session.exec(select(Task).where(Task.case_id == case.id, Task.key == key)).first()
        if task is None:
            raise CommandError(f"case {ref} has no task {key!r}")
        return case, task

    def complete_task(self, task_ref: str, actor: str, outcome: dict[str, Any],
                      via: str | None = None) -> Result:
        """Record an outcome. `via` names the UI attempt (flow run and form) it came from, so a
        replayed flow does not audit the same refusal twice."""
        with session_scope(self.url) as session:
            case, task = self._find_task(session, task_ref)
            spec, state = self._load(session, case)
            who = self._practitioner(session, actor)
            if who.role != task.role and who.role not in spec.managers():
                message = f"{actor} is {who.role}; task {task_ref} needs a {task.role} (or a manager)"
                seen = via is not None and any(
                    (a.detail or {}).get("via") == via for a in session.exec(select(AuditEvent)
                    .where(AuditEvent.case_ref == case.ref, AuditEvent.action == "refused")))
                if seen:  # a replayed form: refused and audited already
                    raise CommandError(message)
                self._refuse(session, actor, case.ref, message,
                             {"task": task.key, "why": f"role {who.role} is not {task.role}",
                              "via": via})
            effects = self._engine(eng.complete_task, spec, state, task.key, outcome, actor,
                                   self._today())
            self._save(session, case, spec, state, effects, actor)
        return Result(case.ref, f"completed {task_ref}", effects)

    def decide(self, ref: str, decision: str, outcome: str, actor: str,
               rationale: str = "") -> Result:
        with session_scope(self.url) as session:
            case = self._case(session, ref, lock=True)
            spec, state = self._load(session, case)
            gate_task = next((t for t in state.tasks.values()
                              if (g := spec.gate_of_task.get(t.spec_id)) and g.decision == decision
                              and t.state != eng.CANCELLED), None)
            if gate_task is not None:
                who = self._practitioner(session, actor)
                if who.role != gate_task.role and who.role not in spec.managers():
                    self._refuse(session, actor, ref, f"{actor} is {who.role}; {decision} is "
                                 f"recorded by a {gate_task.role} (or a manager)",
                                 {"doing": f"decide {decision}", "role": who.role})
            effects = self._engine(eng.decide, spec, state, decision, outcome, actor,
                                   self._today(), {"notes": rationale})
            self._save(session, case, spec, state, effects, actor)
        return Result(ref, f"recorded {decision} = {outcome} for {ref}", effects)

    def reassign(self, task_ref: str, to: str, actor: str, note: str) -> Result:
        with session_scope(self.url) as session:
            case, task = self._find_task(session, task_ref)
            spec = self._spec(session, case.pathway_id)
            who = self._practitioner(session, actor)
            target = self._practitioner(session, to)
            if task.state not in (eng.OPEN, eng.BLOCKED):
                raise CommandError(f"task {task_ref} is {task.state}; only open work moves")
            if target.role != task.role:
                raise CommandError(f"{to} is {target.role}; task {task_ref} needs a {task.role}")
            if who.id != task.assignee_id and who.role not in spec.managers():
                self._refuse(session, actor, case.ref, f"{actor} may not reassign {task_ref}: "
                             "only its current owner or a manager can",
                             {"doing": "reassign", "task": task.key, "role": who.role})
            before = session.get(Practitioner, task.assignee_id) if task.assignee_id else None
            task.assignee_id, task.handover_note, task.updated_at = target.id, note, self._now()
            session.add(task)
            effect = eng.Effect("task-reassigned", task.key, {
                "from": before.handle if before else None, "to": target.handle,
                "note_length": len(note)})
            self.audit(session, actor, effect.kind, case.ref, {"task": task.key, **effect.detail})
            session.flush()
            from notifications.outbox import queue_handoffs

            queue_handoffs(session, case.id, case.ref, [effect], actor, set(spec.gate_of_task),
                           self._today(), self._now())
        return Result(case.ref, f"reassigned {task_ref} to {to}", [effect])

    def move_date(self, ref: str, anchor: str, value: date, cause: str, actor: str,
                  category: str = "court") -> Result:
        """Move a key date; the re-dated tasks record the category of the delay."""
        if not cause.strip():
            raise CommandError("say why the date moved (--cause), e.g. 'hearing adjourned'")
        if category not in DELAY_CAUSES:
            raise CommandError(f"--category must be one of {', '.join(DELAY_CAUSES)}")
        with session_scope(self.url) as session:
            case = self._case(session, ref, lock=True)
            spec, state = self._load(session, case)
            self._require_role(session, spec, actor, {"coordinator"}, "move a case date")
            allowed = {"care_entry", "referral", "proceedings_issued", "case_management_hearing",
                       "final_hearing"} | {a for a in state.anchors if a.startswith("stage:")}
            if anchor not in allowed:
                raise CommandError(f"unknown date {anchor!r}; use one of {', '.join(sorted(allowed))}")
            effects = self._engine(eng.move_anchor, spec, state, anchor, value, cause)
            self._save(session, case, spec, state, effects, actor)
            moved = [e.task for e in effects if e.kind == "task-redated"]
            for task in session.exec(select(Task).where(Task.case_id == case.id,
                                                        Task.key.in_(moved))):
                task.delay_cause = category
                session.add(task)
        return Result(ref, f"{anchor} is now {value}", effects)

    def record_delay_cause(self, task_ref: str, category: str, note: str, actor: str) -> Result:
        """Say why a task is late: court or family events, or team capacity."""
        if category not in DELAY_CAUSES:
            raise CommandError(f"cause must be one of {', '.join(DELAY_CAUSES)}")
        with session_scope(self.url) as session:
            case, task = self._find_task(session, task_ref)
            spec = self._spec(session, case.pathway_id)
            who = self._practitioner(session, actor)
            if who.role != task.role and who.role not in spec.managers():
                self._refuse(session, actor, case.ref, f"{actor} is {who.role}; the cause of a "
                             f"delay on {task_ref} is recorded by a {task.role} or a manager",
                             {"doing": "delay-cause", "task": task.key, "role": who.role})
            task.delay_cause = category
            session.add(task)
            self.audit(session, actor, "delay-cause", case.ref,
                       {"task": task.key, "cause": category, "note_length": len(note)})
        return Result(case.ref, f"{task_ref}: delay cause {category}")

    def set_court_override(self, ref: str, weeks: int | None, direction: str,
                           actor: str) -> Result:
        if weeks is not None and not 1 <= weeks <= 156:
            raise CommandError("--weeks must be between 1 and 156")
        if not direction.strip():
            raise CommandError("record the court's direction (--direction)")
        with session_scope(self.url) as session:
            case = self._case(session, ref, lock=True)
            spec, state = self._load(session, case)
            self._require_role(session, spec, actor, {"coordinator"}, "record a court timetable")
            effects = eng.set_court_override(spec, state, weeks, direction)
            case.court_override_direction = direction
            self._save(session, case, spec, state, effects, actor)
        return Result(ref, f"court timetable for {ref}: {weeks or 'default'} weeks", effects)

    def change_placement(self, ref: str, kind: str, start: date, reason: str,
                         actor: str) -> Result:
        """Record a placement move: the current placement ends the day the new one starts."""
        from models.schemas import PLACEMENT_KINDS

        if kind not in PLACEMENT_KINDS:
            raise CommandError(f"unknown placement kind {kind!r}; use {', '.join(PLACEMENT_KINDS)}")
        if not reason.strip():
            raise CommandError("say why the placement changed (--reason)")
        with session_scope(self.url) as session:
            case = self._case(session, ref, lock=True)
            spec = self._spec(session, case.pathway_id)
            self._require_role(session, spec, actor, {"coordinator", "la-social-worker"},
                               "record a placement change")
            if start > self._today():
                raise CommandError(f"placement start {start} is in the future")
            current = session.exec(select(Placement).where(
                Placement.case_id == case.id, Placement.end.is_(None))).first()
            if current is not None:
                if start < current.start:
                    raise CommandError(f"the current placement started {current.start}; a "
                                       "change cannot start before it")
                current.end = start
                session.add(current)
            session.add(Placement(case_id=case.id, kind=kind, start=start, reason=reason))
            self.audit(session, actor, "placement-changed", ref,
                       {"kind": kind, "start": str(start), "reason": reason})
        return Result(ref, f"placement for {ref}: {kind} from {start}")

    def add_practitioner(self, p: PractitionerIn, actor: str) -> Result:
        roles = known_roles()
        if p.role not in roles:
            raise CommandError(f"unknown role {p.role!r}; roles: {', '.join(sorted(roles))}")
        with session_scope(self.url) as session:
            if session.exec(select(Practitioner).where(Practitioner.handle == p.handle)).first():
                raise CommandError(f"practitioner {p.handle!r} exists already")
            session.add(Practitioner(**p.model_dump()))
            self.audit(session, actor, "practitioner-added", None,
                       {"handle": p.handle, "role": p.role, "team": p.team})
        return Result("", f"added {p.handle} ({p.role})")

    def fire_due_timers(self, at: datetime | None = None, batch: int = 1000) -> list[dict]:
        """Claim timers due by `at`, queue their messages and mark them fired, one batch per
        transaction: a crash before the commit leaves the batch for the next sweep, so every
        timer turns into its messages exactly once.

        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so sweeps running at once never claim the same
        row. SQLite: BEGIN IMMEDIATE makes each batch the single writer."""
        from sqlalchemy import insert, update

        from notifications.config import load_config
        from notifications.outbox import Directory, timer_messages

        at = at or self._now()
        on = at.astimezone(UK).date()
        config = load_config()
        fired: list[dict] = []
        while True:
            with session_scope(self.url) as session:
                # the claim (LIMITed, and locked on PostgreSQL) in a subquery, then each claimed
                # timer's case ref and the task columns its message needs, by primary and
                # unique keys: the planner never joins the whole task table first
                claim = (select(Timer.id, Timer.key, Timer.kind, Timer.task_key, Timer.role,
                                Timer.due_at, Timer.detail, Timer.case_id)
                         .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None),
                                Timer.due_at <= at)
                         .order_by(Timer.due_at, Timer.id).limit(batch))
                if session.get_bind().dialect.name == "postgresql":
                    claim = claim.with_for_update(skip_locked=True)
                claim = claim.subquery("claim")
                stmt = (select(claim.c.id, claim.c.key, claim.c.kind, claim.c.task_key,
                               claim.c.role, claim.c.due_at, claim.c.detail, Case.ref,
                               Task.key, Task.title, Task.role, Task.due, Task.due_explanation,
                               Task.flow_run_id, Task.assignee_id)
                        .select_from(claim).join(Case, Case.id == claim.c.case_id)
                        .join(Task, (Task.case_id == claim.c.case_id)
                              & (Task.key == claim.c.task_key), isouter=True)
                        .order_by(claim.c.due_at, claim.c.id))
                rows = [(DueTimer(*r[:7]), r[7], TaskForMessage(*r[8:]) if r[8] else None)
                        for r in session.connection().execute(stmt)]  # Core rows: no ORM
                directory = Directory(session, config,
                                      {t.assignee_id for _, _, t in rows if t and t.assignee_id})
                messages = []
                for timer, ref, task in rows:
                    messages += timer_messages(timer, ref, task, on, at, directory)
                    faults.reached("sweep-timer")  # crash tests: mid-batch, uncommitted
                    fired.append({"key": timer.key, "ref": ref, "kind": timer.kind,
                                  "task": timer.task_key, "role": timer.role,
                                  "due_at": timer.due_at, "detail": timer.detail})
                if rows:  # one INSERT and one UPDATE for the batch, in its transaction (Core
                    # statements: the ORM's bulk paths cost more than the rows themselves)
                    session.execute(insert(Outbox.__table__), messages)
                    session.execute(update(Timer.__table__)
                                    .where(Timer.id.in_([t.id for t, _, _ in rows]))
                                    .values(fired_at=at))
            faults.reached("sweep-batch")  # crash tests: between committed batches
            if len(rows) < batch:
                return fired

    def queue_digests(self, at: datetime | None = None) -> int:
        from notifications.outbox import queue_digests

        at = at or self._now()
        with session_scope(self.url) as session:
            return queue_digests(session, at, at.astimezone(UK).date())

    def record_flow_runs(self, ref: str, runs: dict[str, str]) -> None:
        """Remember which Prefect run waits for each task (for deep links in messages)."""
        with session_scope(self.url) as session:
            case = self._case(session, ref)
            for task in session.exec(select(Task).where(Task.case_id == case.id,
                                                        Task.key.in_(list(runs)))):
                task.flow_run_id = runs[task.key]
                session.add(task)

    def outbox(self, failed: bool = False, limit: int = 200) -> list[dict]:
        with session_scope(self.url, read_only=True) as session:
            stmt = select(Outbox).order_by(Outbox.id.desc()).limit(limit)
            if failed:
                stmt = stmt.where((Outbox.status == "dead") | (Outbox.last_error.is_not(None)))
            return [{"id": o.id, "kind": o.kind, "case": o.case_ref, "recipient": o.recipient,
                     "status": o.status, "attempts": o.attempts, "subject": o.subject,
                     "last_error": o.last_error, "next_attempt_at": o.next_attempt_at,
                     "sent_at": o.sent_at} for o in session.exec(stmt)]

    def retry_message(self, message_id: int, actor: str) -> Result:
        """Put a dead or failing message back in the queue now."""
        with session_scope(self.url) as session:
            row = session.get(Outbox, message_id)
            if row is None:
                raise CommandError(f"no outbox message {message_id}; `nim-pathway outbox list`")
            if row.status == "sent":
                raise CommandError(f"message {message_id} was delivered at {row.sent_at}; "
                                   "it is not sent twice")
            row.status, row.attempts, row.next_attempt_at = "pending", 0, self._now()
            row.claim_token = row.claimed_until = None
            session.add(row)
            self.audit(session, actor, "outbox-retry", row.case_ref, {"message": message_id})
        return Result(row.case_ref or "", f"message {message_id} queued again")

    def retention_review(self) -> list[dict]:
        """Cases whose identity is past its retention date and not yet erased."""
        on = self._today()
        out = []
        with session_scope(self.url, read_only=True) as session:
            rows = session.exec(select(Case, Child).join(Child, Child.case_id == Case.id))
            decisions = {(d.case_id, d.kind): d.outcome for d in session.exec(select(Decision))}
            for case, child in rows:
                if child.erased_at or child.date_of_birth is None:
                    continue
                basis = "adoption" if decisions.get((case.id, "d2")) == "adoption" else "default"
                dob = child.date_of_birth
                years = RETENTION_YEARS[basis]
                until = dob.replace(year=dob.year + years) if not (dob.month == 2 and
                                                                  dob.day == 29) \
                    else date(dob.year + years, 3, 1)
                if until <= on:
                    out.append({"case": case.ref, "basis": basis, "retain_until": until,
                                "closed_on": case.closed_on})
        return out

    def erase(self, ref: str, actor: str, reason: str = "") -> Result:
        """Remove a case's identity (names, date of birth, address, staged referral); the
        pathway record stays, and the erasure itself is audited."""
        with session_scope(self.url) as session:
            case = self._case(session, ref, lock=True)
            spec = self._spec(session, case.pathway_id)
            self._require_role(session, spec, actor, set(), "erase identity")
            child = session.exec(select(Child).where(Child.case_id == case.id)).one()
            if child.erased_at:
                raise CommandError(f"identity on {ref} was erased on {child.erased_at:%Y-%m-%d}")
            due = {r["case"] for r in self.retention_review()}
            if ref not in due and not reason.strip():
                raise CommandError(f"{ref} is not past its retention date; give --reason (for "
                                   "example a court order) to erase it earlier")
            child.given_name = child.family_name = child.address = None
            child.date_of_birth, child.erased_at = None, self._now()
            session.add(child)
            carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)).all()
            for carer in carers:
                carer.name = None
                session.add(carer)
            for intake in session.exec(select(Intake).where(Intake.case_ref == ref)):
                intake.referral = {"erased": True}
                session.add(intake)
            self.audit(session, actor, "identity-erased", ref, {
                "fields": ["child.given_name", "child.family_name", "child.date_of_birth",
                           "child.address", "caregiver.name", "intake.referral"],
                "caregivers": len(carers), "early": ref not in due, "reason_length": len(reason)})
        return Result(ref, f"identity erased from {ref}; the pathway record and audit remain")

    # -- reads ----------------------------------------------------------------------------

    def pathway(self, ref: str) -> PathwaySpec:
        """The pathway version the case started on."""
        with session_scope(self.url, read_only=True) as session:
            return self._spec(session, self._case(session, ref).pathway_id)

    def practitioners(self) -> list[dict]:
        with session_scope(self.url, read_only=True) as session:
            return [p.model_dump(exclude={"id"}) for p in
                    session.exec(select(Practitioner).order_by(Practitioner.handle))]

    def cases(self) -> list[dict]:
        with session_scope(self.url, read_only=True) as session:
            return [{"ref": c.ref, "stage": c.stage, "jurisdiction": c.jurisdiction,
                     "site": c.site, "closed_on": c.closed_on}
                    for c in session.exec(select(Case).order_by(Case.ref))]

    def tasks(self, case: str | None = None, role: str | None = None, overdue: bool = False,
              due_within: int | None = None, state: str | None = "open") -> list[dict]:
        with session_scope(self.url, read_only=True) as session:
            conn = session.connection().connection.driver_connection
            return task_rows(conn, self._today(), case, role, overdue, due_within, state)

    def show(self, ref: str) -> dict:
        """The case for its team: stage, dates, clocks, open work. No identity fields."""
        on = self._today()
        with session_scope(self.url, read_only=True) as session:
            case = self._case(session, ref)
            spec, state = self._load(session, case)
            version = session.get(PathwayVersion, case.pathway_id)
            child = session.exec(select(Child).where(Child.case_id == case.id)).one()
            placements = session.exec(select(Placement).where(Placement.case_id == case.id)
                                      .order_by(Placement.start, Placement.id)).all()
            carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)
                                  .order_by(Caregiver.id)).all()
        age = None
        if child.date_of_birth:
            from models.schemas import months_between
            age = months_between(child.date_of_birth, on)
        return {
            "ref": ref, "jurisdiction": case.jurisdiction, "site": case.site,
            "pathway": f"{version.profile}@{version.version}", "stage": case.stage,
            "closed_on": case.closed_on, "child_age_months": age,
            "caregivers": [{"key": c.key, "consent": c.consent, "consent_on": c.consent_on}
                           for c in carers],
            "placements": [{"kind": p.kind, "start": p.start, "end": p.end, "reason": p.reason}
                           for p in placements],
            "dates": dict(sorted(state.anchors.items(), key=lambda kv: kv[1])),
            "decisions": state.decisions,
            "court_override": {"weeks": case.court_override_weeks,
                               "direction": case.court_override_direction}
            if case.court_override_weeks else None,
            "clocks": [c.__dict__ for c in eng.clock_states(spec, state, on)],
            "open_tasks": [{"task": t.key, "role": t.role, "due": t.due, "state": t.state}
                           for t in sorted(state.tasks.values(), key=lambda t: t.due)
                           if t.state in (eng.OPEN, eng.BLOCKED)],
        }

    def forecast(self, ref: str, hearing_date: date | None = None,
                 treatment_months: int | None = None) -> dict:
        """Project the case's remaining deadlines (what-if on hearing date or treatment)."""
        from models.forecast import forecast

        if treatment_months is not None and not 1 <= treatment_months <= 24:
            raise CommandError("--treatment-months must be between 1 and 24")
        with session_scope(self.url, read_only=True) as session:
            spec, state = self._load(session, self._case(session, ref))
        if state.closed_on:
            raise CommandError(f"{ref} is closed; there is nothing left to forecast")
        result = self._engine(forecast, spec, state, self._today(), hearing_date,
                              treatment_months)
        return {"ref": ref, "milestones": result.milestones, "clocks": result.clocks,
                "conflicts": result.conflicts}

    def timeline(self, ref: str) -> list[dict]:
        """Planned against actual for every task, with stage starts and decisions."""
        on = self._today()
        with session_scope(self.url, read_only=True) as session:
            case = self._case(session, ref)
            spec, state = self._load(session, case)
        rows: list[dict] = []
        for name, value in state.anchors.items():
            what = f"stage {name[6:]} started" if name.startswith("stage:") else name
            rows.append({"date": value, "event": what.replace("_", " "), "due": None,
                         "status": "", "role": ""})
        for t in state.tasks.values():
            if t.state == eng.DONE:
                late = (t.completed_on - t.due).days
                status = "on time" if late <= 0 else f"late by {late} days"
                when = t.completed_on
            elif t.state == eng.CANCELLED:
                status, when = "cancelled", t.due
            else:
                status = "overdue" if t.due < on else "due"
                when = t.due
            rows.append({"date": when, "event": t.title + (f" ({t.caregiver})" if t.caregiver
                                                           else "") + f" [{t.key}]",
                         "due": t.due, "status": status, "role": t.role})
        for kind, outcome in state.decisions.items():
            gate = next(s.gate for s in spec.stages if s.gate and s.gate.decision == kind)
            label = gate.outcomes[outcome].label if outcome in gate.outcomes else outcome
            when = next((t.completed_on for t in state.tasks.values()
                         if (g := spec.gate_of_task.get(t.spec_id)) and g.decision == kind), on)
            rows.append({"date": when, "event": f"decision {kind.upper()}: {label}",
                         "due": None, "status": "", "role": ""})
        if state.closed_on:
            rows.append({"date": state.closed_on, "event": "case closed", "due": None,
                         "status": "", "role": ""})
        rows.sort(key=lambda r: (r["date"], r["event"]))
        return rows


def known_roles() -> set[str]:
    """Every role any installed pathway declares."""
    return set().union(*(load_pathway(p.stem).roles for p in PATHWAYS_DIR.glob("*.yaml")))


def audit_hash(row: AuditEvent) -> str:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    body = json.dumps({"at": at.astimezone(UTC).isoformat(), "actor": row.actor,
                       "case": row.case_ref, "action": row.action, "detail": row.detail,
                       "prev": row.prev_hash}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def verify_audit(url: str) -> list[str]:
    """Problems in the audit chain: an edited, inserted or deleted row breaks it."""
    problems = []
    prev = GENESIS
    with session_scope(url, read_only=True) as session:
        for row in session.exec(select(AuditEvent).order_by(AuditEvent.id)):
            if row.prev_hash != prev:
                problems.append(f"row {row.id}: chain broken (a row before it was removed or "
                                "inserted)")
            if audit_hash(row) != row.hash:
                problems.append(f"row {row.id}: content does not match its hash (edited)")
            prev = row.hash
    return problems
