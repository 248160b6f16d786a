"""Timer rows: planned from the engine, claimed by the sweep.

A case's unfired timers always equal the engine's plan (`plan`); the sweep claims due ones in
LIMITed batches (`claim_due`), `FOR UPDATE SKIP LOCKED` on PostgreSQL, so sweeps running at
once never claim the same row."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import NamedTuple

from sqlalchemy import update
from sqlmodel import Session, select

from models import engine as eng
from models.clock import uk_instant
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


class TaskForMessage(NamedTuple):
    """The task columns a timer's message needs."""

    key: str
    title: str
    role: str
    due: date
    due_explanation: str
    flow_run_id: str | None
    assignee_id: int | None


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
    known = set(session.exec(select(Timer.key).where(Timer.case_id == case.id)))
    for key, p in planned.items():
        if key in known:
            continue  # pending already, or fired/cancelled once: never again
        session.add(Timer(key=key, case_id=case.id, task_key=p.task, kind=p.kind,
                          role=p.role, due_at=uk_instant(p.fire_on, send_at), detail=p.detail))


def claim_due(session: Session, at: datetime,
              batch: int) -> list[tuple[DueTimer, str, TaskForMessage | None]]:
    """Up to `batch` timers due by `at`, each with its case ref and the task columns its message
    needs. The claim (LIMITed, locked on PostgreSQL) is a subquery joined by primary and unique
    keys, so the planner never joins the whole task table first; rows are read as Core rows
    (ORM entity loading cost more than the rows)."""
    claim = (select(Timer.id, Timer.key, Timer.kind, Timer.task_key, Timer.role,
                    Timer.due_at, Timer.detail, Timer.case_id)
             .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= at)
             .order_by(Timer.due_at, Timer.id).limit(batch))
    if session.get_bind().dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
    claim = claim.subquery("claim")
    stmt = (select(claim.c.id, claim.c.key, claim.c.kind, claim.c.task_key,
                   claim.c.role, claim.c.due_at, claim.c.detail, Case.ref,
                   Task.key, Task.title, Task.role, Task.due, Task.due_explanation,
                   Task.flow_run_id, Task.assignee_id)
            .select_from(claim).join(Case, Case.id == claim.c.case_id)
            .join(Task, (Task.case_id == claim.c.case_id) & (Task.key == claim.c.task_key),
                  isouter=True)
            .order_by(claim.c.due_at, claim.c.id))
    return [(DueTimer(*r[:7]), r[7], TaskForMessage(*r[8:]) if r[8] else None)
            for r in session.connection().execute(stmt)]


def mark_fired(session: Session, timer_ids: list[int], at: datetime) -> None:
    session.execute(update(Timer.__table__).where(Timer.id.in_(timer_ids)).values(fired_at=at))
