"""The engine's case state: tasks, caregivers, children, court orders and pauses, the
effects an event returns, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from models.calendar import WorkingCalendar
from models.pathway import RELATIONSHIPS

OPEN, BLOCKED, DONE, CANCELLED = "open", "blocked", "done", "cancelled"


class EngineError(ValueError):
    """An event the pathway cannot accept, with the reason in words a user can act on."""


class AlreadyCompleted(EngineError):
    """The task was completed before; nothing changes."""


FIRST_CHILD = "child-1"  # a one-child case's keys carry no child suffix (first_child_keyed)


@dataclass
class Caregiver:
    key: str  # e.g. "mother", "father", "father-2", "foster-carer"
    relationship: str
    children: list[str] = field(default_factory=list)  # the children cared for; [] = all
    consent: str | None = None  # given, declined, not-reached, withdrawn
    active: bool = True  # False once removed from the case

    def cares_for(self, child: str) -> bool:
        return not self.children or child in self.children


@dataclass(frozen=True)
class Pause:
    start: date
    end: date
    reason: str
    person: str | None = None  # a caregiver's or child's key; None: the whole family


@dataclass(frozen=True)
class Direction:
    """A court direction to file a document by a date, binding the tasks that produce it
    (the pathway's `court.produced_by`): each is due by the earlier of its own date and `by`."""

    document: str
    by: date
    given_on: date  # the day it was recorded
    tasks: tuple[str, ...]  # the task spec ids it governs
    child: str | None = None  # one child's (their tasks only, and the family's); None: all

    def names(self) -> str:
        whose = f" for {self.child}" if self.child else ""
        return f"court direction of {self.given_on}: file {self.document}{whose} by {self.by}"

    def binds(self, spec_id: str, child: str | None) -> bool:
        """Whether it governs a task of `spec_id` about `child` (None: the family's task)."""
        return spec_id in self.tasks and (self.child is None or child in (None, self.child))


@dataclass
class TaskState:
    key: str  # unique in the case, [a-z0-9-]: "wmci-mother", "court-update-3"
    spec_id: str
    stage: str
    title: str
    role: str
    due: date
    due_explanation: str
    anchor: str
    state: str = OPEN
    caregiver: str | None = None
    occurrence: int = 1
    after: list[str] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    completed_on: date | None = None
    completed_by: str | None = None
    child: str | None = None  # the child this work is about (per-child work)
    # the pathway's own date when a court direction made the task due earlier (else None)
    pathway_due: date | None = None


@dataclass(frozen=True)
class Extension:
    """One extension of a court's timetable (Children Act 1989 s32(5)), as granted."""

    granted_on: date
    weeks: int
    reason: str
    child: str | None = None  # a child's own application's timetable; None: the family's


@dataclass(frozen=True)
class CourtOrder:
    """An order for one child that does not dispose of the application: an interim order
    (care or supervision, s38) before the final order, or a later order after it (an adoption
    order after a placement order). It changes that child's looked-after status as the
    pathway says (`court.looked_after_under`, `court.ends_looked_after`)."""

    made_on: date
    kind: str
    child: str
    court: str = ""  # the court that made it (a court's name, never a person's)


@dataclass(frozen=True)
class FinalOrder:
    """The order that disposes of the application: it meets the 26-week clock."""

    made_on: date
    kind: str
    follows_recommendation: bool


@dataclass
class CaseState:
    ref: str
    jurisdiction: str
    anchors: dict[str, date]
    settings: dict[str, int]
    caregivers: list[Caregiver]
    tasks: dict[str, TaskState] = field(default_factory=dict)
    stage: str | None = None
    decisions: dict[str, str] = field(default_factory=dict)
    closed_on: date | None = None
    extensions: list[Extension] = field(default_factory=list)  # in the order granted
    final_order: FinalOrder | None = None
    child_orders: dict[str, FinalOrder] = field(default_factory=dict)  # where orders differ
    closures: frozenset[date] = frozenset()
    children: list[str] = field(default_factory=lambda: [FIRST_CHILD])
    exit_reason: str | None = None  # the early exit the family took, if any
    paused_since: date | None = None  # the whole family's work, since
    pauses: list[Pause] = field(default_factory=list)
    paused_people: dict[str, date] = field(default_factory=dict)  # one person's work, since
    directions: list[Direction] = field(default_factory=list)  # court directions, as given
    # each child's current placement kind (foster, kinship, home, ...), where known: it picks
    # the visit cadence (a kinship or home placement is visited weekly until the first review)
    placement_kinds: dict[str, str] = field(default_factory=dict)
    # interim and later orders made for each child, in the order recorded (CourtOrder)
    orders: list[CourtOrder] = field(default_factory=list)

    @property
    def paused_days(self) -> int:
        """Days the whole family's work was paused: only these stop the programme's targets."""
        return sum((p.end - p.start).days for p in self.pauses if p.person is None)

    @property
    def calendar(self) -> WorkingCalendar:
        return WorkingCalendar(self.jurisdiction, self.closures)


@dataclass(frozen=True)
class Effect:
    """Something that happened, for the audit log, notifications and orchestration."""

    kind: str  # stage-entered, stage-completed, task-created, task-unlocked, task-completed,
    # task-redated, task-cancelled, decision-recorded, anchor-moved, case-closed
    task: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def caregiver_keys(relationships: list[str],
                   existing: list[Caregiver] | None = None) -> list[Caregiver]:
    """Stable per-case keys: the first mother is 'mother', a second father 'father-2'."""
    seen: dict[str, int] = {}
    for c in existing or []:
        seen[c.relationship] = seen.get(c.relationship, 0) + 1
    out = []
    for rel in relationships:
        if rel not in RELATIONSHIPS:
            raise EngineError(
                f"unknown caregiver relationship {rel!r}; use one of {', '.join(RELATIONSHIPS)}"
            )
        seen[rel] = seen.get(rel, 0) + 1
        out.append(Caregiver(rel if seen[rel] == 1 else f"{rel}-{seen[rel]}", rel))
    return out


def child_anchor(name: str, child: str | None) -> str:
    """A per-child date's name: the first child's is the plain name (one-child cases)."""
    return name if child in (None, FIRST_CHILD) else f"{name}@{child}"
