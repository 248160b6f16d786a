"""Timer and delivery commands: the sweep that fires due timers into the outbox, the daily
digests, the audit checkpoint queued to the admins, the flow run ids Prefect's sync reports
back (for deep links), and the orchestration journal's writes (claim, settle, forget).
The journal's reads are queries (`Queries.changes_pending` and the like)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models.calendar import WorkingCalendar
from models.clock import UK
from nim_pathway.commands.base import CommandBase
from notifications.kinds import CATCH_UP_RANK
from notifications.outbox import Directory, enqueue, queue_digests, timer_messages
from store import faults, journal, mapping, timers
from store.audit import head_entry
from store.tables import Outbox, Task
from store.views import FiredTimer


class TimerCommands(CommandBase):
    def fire_due_timers(self, at: datetime | None = None, batch: int = 1000) -> list[FiredTimer]:
        """Claim timers due by `at`, queue their messages and mark them fired, one batch per
        transaction: a crash before the commit leaves the batch for the next sweep, so every
        timer turns into its messages exactly once.

        Catching up (after downtime, or a case opened with work already late), a task sends
        only its most relevant due timer; the others are settled as skipped, with the reason
        on the timer row (`timers.superseded`). Only timers that sent are returned.

        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so sweeps running at once never claim the same
        row. SQLite: BEGIN IMMEDIATE makes each batch the single writer."""
        at = at or self.ctx.now()
        on = at.astimezone(UK).date()
        config = self.notify()
        calendars: dict[str, WorkingCalendar] = {}
        fired: list[FiredTimer] = []
        while True:
            with self.ctx.write() as session:
                rows = timers.claim_due(session, at, batch)
                skipped = timers.superseded(rows, on, CATCH_UP_RANK)
                sending = [c for c in rows if c.timer.id not in skipped]
                # a tier-2 escalation whose tier 1 is skipped here must not say it was escalated
                unescalated = {(c.ref, c.timer.task_key) for c in rows
                               if c.timer.id in skipped and c.timer.kind == "escalation"}
                directory = Directory(session, config, {c.task.assignee_id for c in sending
                                                        if c.task and c.task.assignee_id})
                messages = []
                for timer, ref, jurisdiction, task in sending:
                    if jurisdiction not in calendars:
                        calendars[jurisdiction] = WorkingCalendar(jurisdiction, self.ctx.closures)
                    messages += timer_messages(
                        timer, ref, task, on, at, directory, calendars[jurisdiction],
                        escalated_before=(ref, timer.task_key) not in unescalated)
                    faults.reached("sweep-timer")  # crash tests: mid-batch, uncommitted
                    fired.append(FiredTimer(timer.key, ref, timer.kind, timer.task_key,
                                            timer.role, timer.due_at, timer.detail))
                if sending:  # one INSERT and one UPDATE for the batch, in its transaction
                    # (Core statements: the ORM's bulk paths cost more than the rows themselves)
                    session.execute(insert(Outbox.__table__), messages)
                    timers.mark_fired(session, [c.timer.id for c in sending], at)
                if skipped:
                    timers.mark_skipped(session, skipped, at)
            faults.reached("sweep-batch")  # crash tests: between committed batches
            if len(rows) < batch:
                return fired

    def queue_digests(self, at: datetime | None = None, when_due: bool = False) -> int:
        """Bundle held messages into each practitioner's daily digest; with `when_due`, only
        from the configured `digest_hour` (UK time) on."""
        at = at or self.ctx.now()
        if when_due and at.astimezone(UK).hour < self.notify().digest_hour:
            return 0
        with self.ctx.write() as session:
            return queue_digests(session, self.notify(), at, at.astimezone(UK).date())

    def publish_checkpoint(self) -> dict | None:
        """Queue the audit chain's signed head (row id, hash, rows up to it) to the admins,
        a place the database owner does not control, at most once a (UK) day: the first
        sweep of a day sends it, later sweeps that day do not (one every five minutes was
        noise nobody read). Returns the entry (for the Prefect artifact), or None if the log
        is empty, this head was sent already or today's was. Between messages the local
        checkpoint file, written after every audited commit, keeps the head. Not audited
        itself: that would move the head on every sweep."""
        now = self.ctx.now()
        try:
            with self.ctx.write() as session:
                entry = head_entry(session, self.ctx.url, self.ctx.audit_key, now)
                if entry is None:
                    return None
                last = session.exec(select(Outbox.meta).where(
                    Outbox.kind == "audit-checkpoint").order_by(Outbox.id.desc())).first()
                if last and last.get("row_id") == entry["id"]:
                    return None  # nothing new since the last one sent
                day = now.astimezone(UK).date()
                queued = enqueue(session, self.notify(), "audit-checkpoint",
                                 f"audit-checkpoint/{entry['db']}/{day}", None,
                                 "admin", {"checkpoint": json.dumps(entry),
                                           "row_id": entry["id"], "rows": entry["rows"]},
                                 now)
        except IntegrityError:  # a racing sweep queued this head first
            return None
        return entry if queued is not None else None

    def record_flow_runs(self, ref: str, runs: dict[str, str]) -> None:
        """Remember which Prefect run waits for each task (for deep links in messages, and
        for the next sync to read its runs by id); `stage:<name>` keys are stage runs."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref)
            stages = {k[6:]: v for k, v in runs.items() if k.startswith("stage:")}
            if stages:
                case.stage_runs = {**(case.stage_runs or {}), **stages}
                session.add(case)
            for task in session.exec(select(Task).where(Task.case_id == case.id,
                                                        Task.key.in_(list(runs)))):
                task.flow_run_id = runs[task.key]
                session.add(task)

    # -- the orchestration journal's writes (store/journal.py) ----------------------------

    def claim_changes(self, token: str, limit: int,
                      skip: Collection[int] = ()) -> dict[str, list[int]]:
        """Lease pending journal entries for a drainer (but `skip`): entry ids by case."""
        with self.ctx.write() as session:
            rows = journal.claim(session, self.ctx.now(), token, limit, skip)
            out: dict[str, list[int]] = {}
            for row in rows:
                out.setdefault(row.case_ref, []).append(row.id)
            return out

    def settle_changes(self, ids: list[int], token: str, error: str | None = None,
                       outcome: str | None = None) -> int:
        """Applied with what the sync did (or released with `error`) where the drainer
        still holds the lease."""
        with self.ctx.write() as session:
            return journal.settle(session, ids, token, self.ctx.now(), error, outcome)

    def forget_applied_changes(self) -> int:
        """Drop journal entries applied more than a week ago (each sweep does)."""
        with self.ctx.write() as session:
            return journal.forget_applied(session, self.ctx.now() - journal.KEEP_APPLIED)

    def changes_applied(self, ref: str, last_id: int) -> None:
        with self.ctx.write() as session:
            journal.applied_up_to(session, ref, last_id, self.ctx.now())
