"""Read models over the case store: what `case show`, `task list`, timelines, the board,
KPIs, packs, exports and Prefect's sync read. Read-only snapshots; no identity leaves here
except through `case_record`, which report packs use for the court."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from sqlmodel import select

from models import engine as eng
from models.errors import Invalid, NotFound
from models.forecast import Forecast, forecast
from models.pathway import PathwaySpec
from models.schemas import months_between
from store import journal
from store.context import StoreContext
from store.mapping import find_case, load_state, load_states
from store.sealing import open_task_view, sealer_of
from store.tables import (
    Caregiver,
    Case,
    Child,
    ContactArrangement,
    Decision,
    Outbox,
    PathwayVersion,
    Placement,
    Practitioner,
    Task,
    TreatmentSession,
)
from store.views import (
    CaregiverView,
    CaseSummary,
    CaseView,
    ChildView,
    ContactView,
    CourtView,
    ExtensionView,
    FinalOrderView,
    InstalledPathway,
    OpenTask,
    OrderView,
    PlacementView,
    PractitionerView,
    RetentionRow,
    SessionsView,
    TaskView,
    TimelineRow,
)
from store.worklist import task_rows


@dataclass(frozen=True)
class CaseSnapshot:
    """A case's row facts with the engine's state of it, for reports."""

    ref: str
    case_id: int
    jurisdiction: str
    closed_on: date | None
    spec: PathwaySpec
    state: eng.CaseState
    programme: str = "nim"


@dataclass(frozen=True)
class CaseRecord:
    """Everything a report pack shows, identity included (local files only, never Prefect)."""

    snapshot: CaseSnapshot
    site: str
    children: list[Child]
    caregivers: list[Caregiver]
    placements: list[Placement]
    decisions: list[Decision]


class Queries:
    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def today(self) -> date:
        return self.ctx.today()

    def last_audit(self) -> int:
        """The newest audit event's id. Every command that changes a case, a person or a
        pathway audits in its own transaction, so what is computed from the store holds while
        this stays the same (the workbench's board keeps its cards and charts by it)."""
        from sqlalchemy import func

        from store.tables import AuditEvent

        with self.ctx.read() as session:
            return session.exec(select(func.max(AuditEvent.id))).one() or 0

    def verify_audit(self, external: list[dict] | None = None) -> list[str]:
        """Problems in the audit chain, checked with the key, the last local checkpoint and
        any `external` checkpoint entries (copies kept outside the database)."""
        from store.audit import verify

        return verify(self.ctx.url, self.ctx.audit_key, self.ctx.audit_checkpoint,
                      external or [])

    def pathway(self, ref: str) -> PathwaySpec:
        """The pathway version the case started on."""
        with self.ctx.read() as session:
            return self.ctx.spec(session, find_case(session, ref).pathway_id)

    def practitioners(self) -> list[PractitionerView]:
        with self.ctx.read() as session:
            return [PractitionerView(p.handle, p.display_name, p.role, p.team, p.contact,
                                     p.digest, p.active, p.kind,
                                     # "i1:": an enrolment code sent, not yet used
                                     bool(p.totp_secret) and not p.totp_secret.startswith("i1:"),
                                     p.locked_at is not None)
                    for p in session.exec(select(Practitioner).order_by(Practitioner.handle))]

    def installed_pathways(self) -> list[InstalledPathway]:
        """Installed pathway versions, newest first."""
        from store.tables import PathwayVersion

        with self.ctx.read() as session:
            return [InstalledPathway(v.profile, v.version, v.sha256[:16], v.installed_by or "",
                                     v.installed_at)
                    for v in session.exec(select(PathwayVersion).where(
                        PathwayVersion.installed_at.is_not(None)).order_by(
                        PathwayVersion.installed_at.desc(), PathwayVersion.id.desc()))]

    def installed_specs(self) -> dict[str, PathwaySpec]:
        """The newest installed version of each profile, parsed."""
        from store.mapping import find_installed_pathway

        with self.ctx.read() as session:
            return {p: self.ctx.spec(session, find_installed_pathway(session, p).id)
                    for p in sorted({v.profile for v in self.installed_pathways()})}

    def run_ids(self, ref: str) -> dict[str, str]:
        """The Prefect runs the store recorded for a case: task key, or `stage:<name>`, to
        the flow run id."""
        with self.ctx.read() as session:
            case = find_case(session, ref)
            ids = {f"stage:{s}": run for s, run in (case.stage_runs or {}).items()}
            ids.update({key: run for key, run in session.exec(
                select(Task.key, Task.flow_run_id).where(Task.case_id == case.id,
                                                         Task.flow_run_id.is_not(None)))})
            return ids

    def open_work(self) -> dict[str, set[str]]:
        """Every case's work that should have a live run: `stage:<current>` and
        `task:<key>` of each open task (labels only, so no sealed value is opened)."""
        wanted: dict[str, set[str]] = {}
        with self.ctx.read() as session:
            for ref, stage in session.exec(select(Case.ref, Case.stage)
                                           .where(Case.stage.is_not(None))):
                wanted.setdefault(ref, set()).add(f"stage:{stage}")
            for ref, key in session.exec(select(Case.ref, Task.key).join(
                    Task, Task.case_id == Case.id).where(Task.state == "open")):
                wanted.setdefault(ref, set()).add(f"task:{key}")
        return wanted

    def overdue_work(self) -> dict[str, set[str]]:
        """Every case's open tasks past their due date (`task:<key>` labels): their waiting
        runs carry the `overdue` tag (the nightly audit compares)."""
        wanted: dict[str, set[str]] = {}
        with self.ctx.read() as session:
            for ref, key in session.exec(select(Case.ref, Task.key).join(
                    Task, Task.case_id == Case.id).where(Task.state == "open",
                                                         Task.due < self.today())):
                wanted.setdefault(ref, set()).add(f"task:{key}")
        return wanted

    def cases(self) -> list[CaseSummary]:
        with self.ctx.read() as session:
            return [CaseSummary(c.ref, c.stage, c.jurisdiction, c.site, c.closed_on)
                    for c in session.exec(select(Case).order_by(Case.ref))]

    def tasks(self, case: str | None = None, role: str | None = None, overdue: bool = False,
              due_within: int | None = None, state: str | None = "open",
              assignee: str | None = None) -> list[TaskView]:
        """The work queue (the same query `task list` runs without the ORM)."""
        with self.ctx.read() as session:
            conn = session.connection().connection.driver_connection
            rows = task_rows(conn, self.today(), case, role, overdue, due_within, state,
                             assignee, self.ctx.closures)
            return [open_task_view(session, sealer_of(session), t) for t in rows]

    def task(self, ref: str, key: str) -> TaskView:
        found = [t for t in self.tasks(case=ref, state=None) if t.key == key]
        if not found:
            raise NotFound(f"case {ref} has no task {key!r}")
        return found[0]

    def snapshots(self, open_only: bool = False, ref: str | None = None,
                  programme: str | None = None) -> list[CaseSnapshot]:
        """Each case with its engine state (one read transaction, one query per table for all
        the cases), of one programme if given. For reading: free text stays sealed (see
        `load_states`)."""
        with self.ctx.read() as session:
            stmt = select(Case).order_by(Case.ref)
            if open_only:
                stmt = stmt.where(Case.closed_on.is_(None))
            if ref is not None:
                stmt = stmt.where(Case.ref == ref)
            if programme is not None:
                stmt = stmt.where(Case.programme == programme)
            cases = list(session.exec(stmt))
            specs = {c.id: self.ctx.spec(session, c.pathway_id) for c in cases}
            ids = stmt.with_only_columns(Case.id).order_by(None)
            states = load_states(session, cases, specs, self.ctx.closures, ids)
            return [CaseSnapshot(c.ref, c.id, c.jurisdiction, c.closed_on, specs[c.id],
                                 states[c.id], c.programme) for c in cases if c.id is not None]

    def snapshot(self, ref: str) -> CaseSnapshot:
        found = self.snapshots(ref=ref)
        if not found:
            raise NotFound(f"unknown case {ref!r}; `nim-pathway case list` shows the cases")
        return found[0]

    def delay_causes(self) -> dict[tuple[int, str], str | None]:
        with self.ctx.read() as session:
            return {(case_id, key): cause for case_id, key, cause in session.exec(
                select(Task.case_id, Task.key, Task.delay_cause))}

    def placement_counts(self) -> Counter[tuple[int, str]]:
        """Placements per (case id, child key)."""
        with self.ctx.read() as session:
            return Counter((case_id, child) for case_id, child in session.exec(
                select(Placement.case_id, Placement.child)))

    def case_record(self, ref: str) -> CaseRecord:
        with self.ctx.read() as session:
            case = find_case(session, ref)
            spec = self.ctx.spec(session, case.pathway_id)
            snap = CaseSnapshot(case.ref, case.id, case.jurisdiction, case.closed_on, spec,
                                load_state(session, case, spec, self.ctx.closures))
            return CaseRecord(
                snap, case.site,
                list(session.exec(select(Child).where(Child.case_id == case.id)
                                  .order_by(Child.id))),
                list(session.exec(select(Caregiver).where(Caregiver.case_id == case.id)
                                  .order_by(Caregiver.id))),
                list(session.exec(select(Placement).where(Placement.case_id == case.id)
                                  .order_by(Placement.start, Placement.id))),
                list(session.exec(select(Decision).where(Decision.case_id == case.id)
                                  .order_by(Decision.decided_on))))

    def show(self, ref: str) -> CaseView:
        """The case for its team: stage, dates, clocks, open work. No identity fields."""
        on = self.today()
        with self.ctx.read() as session:
            case = find_case(session, ref)
            spec = self.ctx.spec(session, case.pathway_id)
            state = load_state(session, case, spec, self.ctx.closures)
            version = session.get(PathwayVersion, case.pathway_id)
            kids = session.exec(select(Child).where(Child.case_id == case.id)
                                .order_by(Child.id)).all()
            placements = session.exec(select(Placement).where(Placement.case_id == case.id)
                                      .order_by(Placement.start, Placement.id)).all()
            carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)
                                  .order_by(Caregiver.id)).all()
            contact = session.exec(select(ContactArrangement).where(
                ContactArrangement.case_id == case.id, ContactArrangement.end.is_(None))
                .order_by(ContactArrangement.child, ContactArrangement.caregiver)).all()
            sessions = session.exec(select(TreatmentSession).where(
                TreatmentSession.case_id == case.id)).all()
        by_kind: dict[str, dict[str, int]] = {}
        for s in sessions:
            counts = by_kind.setdefault(s.kind, {"offered": 0, "attended": 0})
            counts["offered"] += 1
            counts["attended"] += s.attended
        return CaseView(
            ref=ref, jurisdiction=case.jurisdiction, site=case.site,
            pathway=f"{version.profile}@{version.version}", programme=case.programme,
            stage=case.stage,
            closed_on=case.closed_on,
            child_age_months=months_between(kids[0].date_of_birth, on)
            if kids and kids[0].date_of_birth else None,
            caregivers=tuple(CaregiverView(c.key, c.consent, c.consent_on,
                                           tuple(c.children or ()), c.active) for c in carers),
            placements=tuple(PlacementView(p.child, p.kind, p.start, p.end, p.reason)
                             for p in placements),
            dates=dict(sorted(state.anchors.items(), key=lambda kv: kv[1])),
            decisions=dict(state.decisions),
            court=CourtView(
                tuple(ExtensionView(e.granted_on, e.weeks, e.reason, e.child)
                      for e in state.extensions),
                FinalOrderView(state.final_order.made_on, state.final_order.kind,
                               state.final_order.follows_recommendation)
                if state.final_order else None,
                {k: FinalOrderView(o.made_on, o.kind, o.follows_recommendation)
                 for k, o in state.child_orders.items()} or None,
                tuple((d.document, d.by, d.given_on) for d in state.directions),
                tuple(OrderView(o.child, o.kind, o.made_on, o.court) for o in state.orders)),
            looked_after=any(eng.child_anchor("ceased_looked_after", c) not in state.anchors
                             for c in state.children),  # any child of the family still is
            children=tuple(ChildView(
                k.key, months_between(k.date_of_birth, on) if k.date_of_birth else None,
                next((p.kind for p in reversed(placements) if p.child == k.key and p.end is None),
                     None),
                eng.child_anchor("ceased_looked_after", k.key) not in state.anchors)
                for k in kids if k.removed_on is None),
            exit_reason=case.exit_reason, paused_since=case.paused_since,
            paused_people=dict(state.paused_people) or None,
            previous_episode=case.previous_episode,
            contact=tuple(ContactView(c.child, c.caregiver, c.per_week, c.supervised, c.start)
                          for c in contact),
            sessions=SessionsView(len(sessions), sum(s.attended for s in sessions), by_kind),
            clocks=tuple(eng.clock_states(spec, state, on)),
            open_tasks=tuple(OpenTask(t.key, t.role, t.due, t.state)
                             for t in sorted(state.tasks.values(), key=lambda t: t.due)
                             if t.state in (eng.OPEN, eng.BLOCKED)),
        )

    def forecast(self, ref: str, hearing_date: date | None = None,
                 treatment_months: int | None = None) -> Forecast:
        """Project the case's remaining deadlines (what-if on hearing date or treatment)."""
        if treatment_months is not None and not 1 <= treatment_months <= 24:
            raise Invalid("--treatment-months must be between 1 and 24")
        snap = self.snapshot(ref)
        if snap.state.closed_on:
            raise Invalid(f"{ref} is closed; there is nothing left to forecast")
        try:
            return forecast(snap.spec, snap.state, self.today(), hearing_date, treatment_months)
        except eng.EngineError as exc:
            raise Invalid(str(exc)) from None

    def timeline(self, ref: str) -> list[TimelineRow]:
        """Planned against actual for every task, with stage starts and decisions."""
        on = self.today()
        snap = self.snapshot(ref)
        spec, state = snap.spec, snap.state
        rows: list[TimelineRow] = []
        for name, value in state.anchors.items():
            what = f"stage {name[6:]} started" if name.startswith("stage:") else name
            if name.partition("@")[0] == "ceased_looked_after":
                what = _left_care(spec, state, name.partition("@")[2] or eng.FIRST_CHILD, value)
            rows.append(TimelineRow(value, what.replace("_", " "), None, "", ""))
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
            event = t.title + (f" ({t.caregiver})" if t.caregiver else "") + f" [{t.key}]"
            rows.append(TimelineRow(when, event, t.due, status, t.role))
        for kind, outcome in state.decisions.items():
            gate = next(s.gate for s in spec.stages if s.gate and s.gate.decision == kind)
            label = gate.outcomes[outcome].label if outcome in gate.outcomes else outcome
            when = next((t.completed_on for t in state.tasks.values()
                         if (g := spec.gate_of_task.get(t.spec_id)) and g.decision == kind), on)
            rows.append(TimelineRow(when, f"decision {kind.upper()}: {label}", None, "", ""))
        for p in state.pauses:  # the reason stays in the audit log
            whose = f"{p.person}'s work" if p.person else "NIM's work"
            rows.append(TimelineRow(p.start, f"{whose} paused for {(p.end - p.start).days} "
                                    "days", None, "", ""))
        if state.paused_since:
            rows.append(TimelineRow(state.paused_since, "NIM's work paused", None, "", ""))
        for person, since in state.paused_people.items():
            rows.append(TimelineRow(since, f"{person}'s work paused", None, "", ""))
        if state.exit_reason and state.closed_on:
            rows.append(TimelineRow(state.closed_on, f"left the pathway: {state.exit_reason}",
                                    None, "", ""))
        for ext in state.extensions:  # the court's reason stays in the case store
            whose = f" ({ext.child}'s own application)" if ext.child else ""
            rows.append(TimelineRow(ext.granted_on, f"court timetable extended {ext.weeks} "
                                    f"weeks{whose}", None, "", ""))
        labels = {**spec.court.order_kinds, **spec.court.interim_order_kinds}
        for o in state.orders:  # interim orders, and orders after the final one
            rows.append(TimelineRow(o.made_on, f"{labels.get(o.kind, o.kind).lower()} made for "
                                    f"{o.child}", None, "", ""))
        if state.closed_on:
            rows.append(TimelineRow(state.closed_on, "case closed", None, "", ""))
        rows.sort(key=lambda r: (r.date, r.event))
        return rows

    def outbox_messages(self, failed: bool = False, limit: int = 200) -> list[Outbox]:
        """Outbox rows newest first (only failing and dead ones with `failed`), detached:
        notifications/outbox.py `outbox_listing` renders each as the dispatcher will."""
        with self.ctx.read() as session:
            stmt = select(Outbox).order_by(Outbox.id.desc()).limit(limit)
            if failed:
                stmt = stmt.where((Outbox.status == "dead") | (Outbox.last_error.is_not(None)))
            rows = list(session.exec(stmt))
            for row in rows:
                session.expunge(row)
            return rows

    def retention_review(self) -> list[RetentionRow]:
        """Cases whose identity is past its retention date and not yet erased."""
        on = self.today()
        out = []
        with self.ctx.read() as session:
            births: dict[int, list[date | None]] = {}
            for child in session.exec(select(Child)):
                if not child.erased_at:
                    births.setdefault(child.case_id, []).append(child.date_of_birth)
            decisions = {(d.case_id, d.kind): d.outcome for d in session.exec(select(Decision))}
            for case in session.exec(select(Case).where(Case.id.in_(list(births)))):
                dobs = [d for d in births[case.id] if d is not None]
                if not dobs:
                    continue
                years_by_basis = self.ctx.spec(session, case.pathway_id).retention_years
                basis = "adoption" if "adoption" in years_by_basis and \
                    "adoption" in {o for (cid, _), o in decisions.items() if cid == case.id} \
                    else "default"
                # a family's record is kept until its youngest child's date
                until = _birthday(max(dobs), years_by_basis[basis])
                if until <= on:
                    out.append(RetentionRow(case.ref, basis, until, case.closed_on))
        return out

    # -- the orchestration journal (store/journal.py): what Prefect's runs still have to follow

    def newest_change(self) -> int:
        """The newest journal entry's id (0 if none): a command's changes come after it."""
        with self.ctx.read() as session:
            return journal.newest_id(session)

    def changes_pending(self) -> bool:
        """Whether any journal entry still waits for Prefect's runs to follow it."""
        with self.ctx.read() as session:
            return journal.any_pending(session)

    def changes_covering(self, ref: str, since: int) -> list[tuple[bool, str | None, str | None]]:
        """(applied, outcome, last error) of each entry a command started after `since` on
        the case waits on (store/journal.py `covering`)."""
        with self.ctx.read() as session:
            return [(row.applied_at is not None, row.outcome,
                     row.last_error if row.attempts and row.claimed_until is None else None)
                    for row in journal.covering(session, ref, since)]

    def last_change(self, ref: str) -> int:
        """The newest pending entry of a case (0 if none): what a sync starting now covers."""
        with self.ctx.read() as session:
            rows = journal.pending(session, ref)
            return rows[-1].id if rows else 0


def _birthday(dob: date, years: int) -> date:
    """The `years`-th birthday (29 February births keep theirs on 1 March)."""
    if dob.month == 2 and dob.day == 29:
        return date(dob.year + years, 3, 1)
    return dob.replace(year=dob.year + years)


def _left_care(spec: PathwaySpec, state: eng.CaseState, child: str, on: date) -> str:
    """Why a child stopped being looked after: the order that ended it, or a recorded end."""
    order = next((o for o in reversed(state.orders) if o.child == child and o.made_on == on),
                 None) or state.child_orders.get(child) or state.final_order
    if order and order.made_on == on and order.kind in spec.court.ends_looked_after:
        return (f"{child} no longer looked after: {spec.court.order_kinds[order.kind].lower()} "
                f"made on {on}")
    return f"{child} no longer looked after (recorded)"
