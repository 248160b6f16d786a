"""The orchestration journal: which cases' Prefect runs must catch up with the case store.

A command that changes what Prefect should show notes the case in the same transaction as the
change (`note_change`), so a change is never committed without its journal entry. Entries are
applied by a drainer that claims them under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
the single writer on SQLite) and marks them applied only while it still holds the lease, or by
the CLI right after its own commit. Applying is a sync of the case, which is idempotent, so an
entry applied twice (a drainer killed after syncing, before recording) changes nothing more.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlmodel import Session, delete, select, update

from store.tables import OrchestrationChange

LEASE = timedelta(minutes=5)
KEEP_APPLIED = timedelta(days=7)  # applied entries stay a week: recent syncs can be inspected


def note_change(session: Session, ref: str, now: datetime) -> None:
    """Journal the case unless an entry nobody has claimed yet already covers it (the
    writer holds the case's lock, so two writers never both add one)."""
    waiting = session.exec(select(OrchestrationChange.id).where(
        OrchestrationChange.case_ref == ref, OrchestrationChange.applied_at.is_(None),
        OrchestrationChange.claimed_until.is_(None))).first()
    if waiting is None:
        session.add(OrchestrationChange(case_ref=ref, created_at=now))


def claim(session: Session, now: datetime, token: str, limit: int,
          skip: Collection[int] = ()) -> list[OrchestrationChange]:
    """Lease up to `limit` pending entries (oldest first), skipping those another drainer
    holds and `skip` (what this drainer failed to apply: the next sweep retries them); an
    entry whose lease ran out (its drainer died) is taken over."""
    stmt = (select(OrchestrationChange)
            .where(OrchestrationChange.applied_at.is_(None))
            .where(OrchestrationChange.id.not_in(list(skip)))
            .where(OrchestrationChange.claimed_until.is_(None)
                   | (OrchestrationChange.claimed_until < now))
            .order_by(OrchestrationChange.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.exec(stmt))
    for row in rows:
        row.claim_token, row.claimed_until = token, now + LEASE
        row.attempts += 1
        session.add(row)
    return rows


def settle(session: Session, ids: list[int], token: str, now: datetime,
           error: str | None = None) -> int:
    """Record the outcome of claimed entries we still hold: applied, or released with the
    error for the next drainer. Returns how many were still ours."""
    if not ids:
        return 0
    values = {"claim_token": None, "claimed_until": None}
    values.update({"last_error": error[:300]} if error else {"applied_at": now,
                                                             "last_error": None})
    result = session.exec(update(OrchestrationChange)  # type: ignore[call-overload]
                          .where(OrchestrationChange.id.in_(ids),
                                 OrchestrationChange.claim_token == token,
                                 OrchestrationChange.applied_at.is_(None))
                          .values(**values))
    return result.rowcount


def applied_up_to(session: Session, ref: str, last_id: int, now: datetime) -> None:
    """The CLI synced the case after its commit: its entries up to `last_id` (those written
    before the sync read the store) are applied, unless a drainer holds them."""
    session.exec(update(OrchestrationChange)  # type: ignore[call-overload]
                 .where(OrchestrationChange.case_ref == ref,
                        OrchestrationChange.id <= last_id,
                        OrchestrationChange.applied_at.is_(None),
                        OrchestrationChange.claimed_until.is_(None))
                 .values(applied_at=now))


def pending(session: Session, ref: str | None = None) -> list[OrchestrationChange]:
    stmt = select(OrchestrationChange).where(OrchestrationChange.applied_at.is_(None))
    if ref is not None:
        stmt = stmt.where(OrchestrationChange.case_ref == ref)
    return list(session.exec(stmt.order_by(OrchestrationChange.id)))


def forget_applied(session: Session, before: datetime) -> int:
    """Delete entries applied before `before`: the journal is a queue, not a record (the
    audit log is the record of every change)."""
    result = session.exec(delete(OrchestrationChange)  # type: ignore[call-overload]
                          .where(OrchestrationChange.applied_at.is_not(None),
                                 OrchestrationChange.applied_at < before))
    return result.rowcount
