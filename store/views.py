"""Typed, frozen read models: what crosses a boundary (CLI, Prefect, reports, messages).

`jsonable` turns any of them into plain JSON-ready values (a `TaskRef` becomes its
`CASE/KEY` text), so the CLI's `--json` output keeps one shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from models.refs import TaskRef

if TYPE_CHECKING:  # the work queue imports this module on the fast path: no engine import
    from models.engine import ClockState


def jsonable(value: Any) -> Any:
    """Plain values for json.dumps: dataclasses to dicts, refs to text, tuples to lists."""
    if isinstance(value, TaskRef):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return out | {k: jsonable(getattr(value, k)) for k in getattr(value, "EXTRA_JSON", ())}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task as practitioners see it (the work queue row)."""

    EXTRA_JSON = ("key", "ref")

    task: TaskRef
    spec_id: str
    title: str
    caregiver: str | None
    outcome: dict[str, Any] | None
    completed_by: str | None
    stage: str
    role: str
    assignee: str | None
    due: date
    state: str
    due_explanation: str
    completed_on: date | None
    handover_note: str | None
    child: str | None  # the child of a sibling group this work is about
    days_to_due: int  # calendar days (negative: overdue)
    working_days_to_due: int = 0  # on the case's calendar, as the caseload board counts

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def ref(self) -> str:
        return self.task.case


@dataclass(frozen=True, slots=True)
class CaseSummary:
    ref: str
    stage: str | None
    jurisdiction: str
    site: str
    closed_on: date | None


@dataclass(frozen=True, slots=True)
class CaregiverView:
    key: str
    consent: str | None
    consent_on: date | None
    children: tuple[str, ...] = ()  # empty: every child of the case
    active: bool = True


@dataclass(frozen=True, slots=True)
class ContactView:
    child: str
    caregiver: str
    per_week: float
    supervised: bool
    start: date


@dataclass(frozen=True, slots=True)
class SessionsView:
    """Treatment sessions offered and attended, by kind."""

    offered: int
    attended: int
    by_kind: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class ChildView:
    """A child of the family episode, by key (identity stays in the case store)."""

    key: str
    age_months: int | None
    placement: str | None
    looked_after: bool


@dataclass(frozen=True, slots=True)
class PlacementView:
    child: str
    kind: str
    start: date
    end: date | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ExtensionView:
    granted_on: date
    weeks: int
    reason: str
    child: str | None = None  # a child's own application's; None: the family's


@dataclass(frozen=True, slots=True)
class OrderView:
    """An interim order, or an order after the final one (adoption), made for one child."""

    child: str
    kind: str
    made_on: date
    court: str = ""


@dataclass(frozen=True, slots=True)
class FinalOrderView:
    made_on: date
    kind: str
    follows_recommendation: bool


@dataclass(frozen=True, slots=True)
class CourtView:
    """The court (or hearing) timetable recorded on the case."""

    extensions: tuple[ExtensionView, ...]
    final_order: FinalOrderView | None
    child_orders: dict[str, FinalOrderView] | None = None  # where a sibling group's differ
    # directions binding the work that produces a document: (document, by, given on)
    directions: tuple[tuple[str, date, date], ...] = ()
    # interim orders and orders after the final one, per child, in the order recorded
    orders: tuple[OrderView, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenTask:
    task: str
    role: str
    due: date
    state: str


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case for its team: stage, dates, clocks, open work. No identity fields."""

    ref: str
    jurisdiction: str
    site: str
    pathway: str
    stage: str | None
    closed_on: date | None
    child_age_months: int | None
    programme: str
    caregivers: tuple[CaregiverView, ...]
    placements: tuple[PlacementView, ...]
    dates: dict[str, date]
    decisions: dict[str, str]
    court: CourtView
    looked_after: bool
    clocks: tuple[ClockState, ...]
    open_tasks: tuple[OpenTask, ...]
    children: tuple[ChildView, ...] = ()
    exit_reason: str | None = None
    paused_since: date | None = None
    paused_people: dict[str, date] | None = None  # one caregiver's or child's work, since
    previous_episode: str | None = None
    contact: tuple[ContactView, ...] = ()
    sessions: SessionsView | None = None


@dataclass(frozen=True, slots=True)
class TimelineRow:
    date: date
    event: str
    due: date | None
    status: str
    role: str


@dataclass(frozen=True, slots=True)
class Milestone:
    task: str
    title: str
    projected: date
    done: bool


@dataclass(frozen=True, slots=True)
class ForecastView:
    ref: str
    milestones: tuple[Milestone, ...]
    clocks: tuple[ClockState, ...]
    conflicts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PractitionerView:
    handle: str
    display_name: str
    role: str
    team: str
    contact: str | None
    digest: bool
    active: bool
    kind: str = "person"
    enrolled: bool = False
    locked: bool = False


@dataclass(frozen=True, slots=True)
class InstalledPathway:
    profile: str
    version: str
    sha256: str
    installed_by: str
    installed_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str
    case: str | None
    recipient: str
    status: str
    attempts: int
    subject: str | None
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    preview: str | None = None  # the text's first words, rendered as it will be sent


@dataclass(frozen=True, slots=True)
class RetentionRow:
    case: str
    basis: str
    retain_until: date
    closed_on: date | None


@dataclass(frozen=True, slots=True)
class FiredTimer:
    """A timer the sweep fired (its messages are in the outbox)."""

    key: str
    ref: str
    kind: str
    task: str | None
    role: str
    due_at: datetime
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class BoardItem:
    """One open piece of work or running statutory clock of a case, as the board weighs it."""

    case: str
    kind: str  # task or clock
    item: str  # the task's key or the clock's id
    title: str
    due: str
    working_days_to_due: int
    rag: str
    owner: str  # the task's role, or whose the clock is (nim, la, court)


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One open case on the caseload board: RAG, due date and owner of its worst open item."""

    case: str
    rag: str
    overdue: int  # open tasks past due plus clocks breached and still open
    worst: str | None  # the most urgent open item: a task key or a clock id
    due: str | None
    working_days_to_due: int | None
    owner_role: str | None
    stage: str | None
    next_task: str | None  # the next piece of pathway work (not statutory visits, reviews)
    jurisdiction: str
    clocks: str
    programme: str = "nim"
    # other owners' lateness, shown as theirs (never the programme's RAG): open LA (or HSC
    # Trust) work and clocks past due, and court (or children's hearing) clocks past due
    la_late: int = 0
    court_late: int = 0


@dataclass(frozen=True, slots=True)
class Kpis:
    """The numbers NIM.md names, across every case (summaries are n / median / mean)."""

    as_of: date
    cases: int
    open_cases: int
    days: dict[str, dict[str, Any]]  # interval -> {n, median, mean}
    share_to_treatment: float | None
    d1_decided: int
    on_time_by_task: dict[str, dict[str, Any]]  # task id -> {n, on_time}
    on_time_by_role: dict[str, dict[str, Any]]
    breaches_by_cause: dict[str, int]
    placement_moves_per_child: dict[str, Any]
    families: int = 0
    children: int = 0
    share_received_nim: float | None = None  # families whose assessment began (S11: < 70%)
    exits_by_reason: dict[str, int] | None = None
    # the programme counted ("nim", "fdac"), or "all programmes" across several
    programme: str = "nim"
    # the decision(s) whose outcome is "treatment" (NIM: d1); none for a programme without one
    treatment_gate: str | None = "d1"
    # each role's team, and the programme's own teams: the KPIs show own work apart from the
    # LA's and the court's
    role_teams: dict[str, str] | None = None
    own_teams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BreachRow:
    case: str
    kind: str  # task or clock
    item: str
    role: str
    team: str
    due: str
    days_late: int
    open: bool
    cause: str
    explanation: str
    own: bool = True  # the programme's own work (else the LA's or the court's, shown as theirs)
