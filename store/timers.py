"""Timer rows: planned from the engine, claimed by the sweep.

A case's unfired timers always equal the engine's plan (`plan`); the sweep claims due ones in
LIMITed batches (`claim_due`), `FOR UPDATE SKIP LOCKED` on PostgreSQL, so sweeps running at
once never claim the same row. Catching up, a task sends only its most relevant due timer
(`superseded`); the rest are settled with a `skip_reason` (`mark_skipped`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any, NamedTuple

from sqlalchemy import tuple_, update
from sqlmodel import Session, select

from models import engine as eng
from models.clock import UK, uk_instant
from models.pathway import PathwaySpec
from store.tables import Case, Task, Timer


class DueTimer(NamedTuple):
    """The timer columns a sweep reads."""

    id: int
    key: str
    kind: str
    task_key: str | None
    role: str
    due_at: datetime
    detail: dict | None
    case_id: int


class TaskForMessage(NamedTuple):
    """The task columns a timer's message needs."""

    key: str
    title: str
    role: str
    due: date
    due_explanation: str
    flow_run_id: str | None
    assignee_id: int | None
    caregiver: str | None = None  # whose work it is, for the message's title
    child: str | None = None


def plan(session: Session, case: Case, spec: PathwaySpec, state: eng.CaseState,
         now: datetime) -> None:
    """Make the case's unfired timers equal the engine's plan: add, keep, cancel."""
    send_at = time.fromisoformat(spec.notifications.send_at)
    planned = {p.key: p for p in eng.planned_timers(spec, state)}
    pending = {t.key: t for t in session.exec(select(Timer).where(
        Timer.case_id == case.id, Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)))}
    for key, timer in pending.items():
        if key not in planned:
            timer.cancelled_at = now
            session.add(timer)
        elif timer.due_at != (due_at := uk_instant(planned[key].fire_on, send_at)):
            # a key without a date (an escalation: once per task and tier) follows its task
            timer.due_at, timer.detail = due_at, planned[key].detail
            session.add(timer)
    known = set(session.exec(select(Timer.key).where(Timer.case_id == case.id)))
    for key, p in planned.items():
        if key in known:
            continue  # pending already, or fired/cancelled once: never again
        session.add(Timer(key=key, case_id=case.id, task_key=p.task, kind=p.kind,
                          role=p.role, due_at=uk_instant(p.fire_on, send_at), detail=p.detail))


class Claimed(NamedTuple):
    """A claimed timer with its case and the task its message is about (None for clocks)."""

    timer: DueTimer
    ref: str
    jurisdiction: str
    task: TaskForMessage | None


def claim_due(session: Session, at: datetime, batch: int) -> list[Claimed]:
    """Up to `batch` timers due by `at`, each with its case and the task columns its message
    needs. The claim (LIMITed, locked on PostgreSQL) is a subquery joined by primary and unique
    keys, so the planner never joins the whole task table first; rows are read as Core rows
    (ORM entity loading cost more than the rows).

    A full batch may have cut a task's backlog in two (a sweep catching up after downtime):
    the rest of those tasks' due timers join the batch, so one batch sees all that a task has
    due and `superseded` can pick the one to send."""
    pending = (Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= at)
    claim = (select(*_TIMER_COLUMNS).where(*pending).order_by(Timer.due_at, Timer.id).limit(batch))
    rows = _with_case_and_task(session, _locked(session, claim).subquery("claim"))
    tasks = {(c.timer.case_id, c.timer.task_key) for c in rows if c.timer.task_key}
    if len(rows) == batch and tasks:
        rest = select(*_TIMER_COLUMNS).where(
            *pending, Timer.id.not_in([c.timer.id for c in rows]),
            tuple_(Timer.case_id, Timer.task_key).in_(tasks))
        rows += _with_case_and_task(session, _locked(session, rest).subquery("rest"))
    return rows


_TIMER_COLUMNS = (Timer.id, Timer.key, Timer.kind, Timer.task_key, Timer.role, Timer.due_at,
                  Timer.detail, Timer.case_id)


def _locked(session: Session, claim: Any) -> Any:
    """PostgreSQL: skip rows another sweep holds, and hold these until the commit."""
    if session.get_bind().dialect.name == "postgresql":
        return claim.with_for_update(skip_locked=True)
    return claim


def _with_case_and_task(session: Session, claim: Any) -> list[Claimed]:
    stmt = (select(*claim.c, Case.ref, Case.jurisdiction,
                   Task.key, Task.title, Task.role, Task.due, Task.due_explanation,
                   Task.flow_run_id, Task.assignee_id, Task.caregiver, Task.child)
            .select_from(claim).join(Case, Case.id == claim.c.case_id)
            .join(Task, (Task.case_id == claim.c.case_id) & (Task.key == claim.c.task_key),
                  isouter=True)
            .order_by(claim.c.due_at, claim.c.id))
    return [Claimed(DueTimer(*r[:8]), r[8], r[9], TaskForMessage(*r[10:]) if r[10] else None)
            for r in session.connection().execute(stmt)]


def superseded(claimed: list[Claimed], today: date, rank: Mapping[str, int]) -> dict[int, str]:
    """Timers not to send, with why: when a sweep finds a task with timers that should have
    fired on an earlier day (the sweep was down, or the case opened with work already late),
    only the task's most relevant due timer is sent. Timers due today are never skipped, so a
    sweep that runs on time sends exactly what it always did. Which of a task's timers matters
    most: the kind of highest `rank` (the message-kind registry's `catch_up_rank`: escalation,
    due, reminder), the highest tier, the latest. Kinds without a rank (clocks) are never
    skipped."""

    def _rank(timer: DueTimer) -> tuple[int, int, datetime, int]:
        return (rank.get(timer.kind, -1), (timer.detail or {}).get("tier", 0), timer.due_at,
                timer.id)

    by_task: dict[tuple[str, str], list[Claimed]] = {}
    for c in claimed:
        if c.timer.task_key and c.timer.kind in rank:
            by_task.setdefault((c.ref, c.timer.task_key), []).append(c)
    skipped: dict[int, str] = {}
    for (ref, task_key), group in by_task.items():
        best = max((c.timer for c in group), key=_rank)
        # the key past "<ref>/<task>/" names the rung: reminder-5wd, due-0wd, escalation-2
        label = best.key.removeprefix(f"{ref}/{task_key}/").rsplit("/", 1)[0]
        for c in group:
            if c.timer.id != best.id and c.timer.due_at.astimezone(UK).date() < today:
                skipped[c.timer.id] = f"superseded by {label} after catch-up"
    return skipped


def mark_fired(session: Session, timer_ids: list[int], at: datetime) -> None:
    session.execute(update(Timer.__table__).where(Timer.id.in_(timer_ids)).values(fired_at=at))


def mark_skipped(session: Session, reasons: dict[int, str], at: datetime) -> None:
    """Settled without a message: fired (no later sweep claims them again), with the reason."""
    by_reason: dict[str, list[int]] = {}
    for timer_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(timer_id)
    for reason, ids in by_reason.items():  # a handful of distinct reasons per batch
        session.execute(update(Timer.__table__).where(Timer.id.in_(ids))
                        .values(fired_at=at, skip_reason=reason))
