"""The orchestration journal: which cases' Prefect runs must catch up with the case store.

A command that changes what Prefect should show notes the case in the same transaction as the
change (`note_change`), so a change is never committed without its journal entry. Entries are
applied by a drainer that claims them under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
the single writer on SQLite) and marks them applied only while it still holds the lease (the
sync service is a drainer that never stops: the CLI waits for it), or by the CLI right after
its own commit. Applying is a sync of the case, which is idempotent, so an
entry applied twice (a drainer killed after syncing, before recording) changes nothing more.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session, delete, func, select, update

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
           error: str | None = None, outcome: str | None = None) -> int:
    """Record the outcome of claimed entries we still hold: applied (with what the sync did,
    for the command that is waiting on it), or released with the error for the next drainer.
    Returns how many were still ours."""
    if not ids:
        return 0
    values = {"claim_token": None, "claimed_until": None}
    values.update({"last_error": error[:300]} if error else {"applied_at": now,
                                                             "last_error": None,
                                                             "outcome": outcome})
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


def newest_id(session: Session) -> int:
    """The newest entry's id (0 when the journal is empty): a command's entries come after."""
    return session.exec(select(func.max(OrchestrationChange.id))).one() or 0


def any_pending(session: Session) -> bool:
    """A cheap read (no write lock) a resident drainer polls before it claims."""
    return session.exec(select(OrchestrationChange.id).where(
        OrchestrationChange.applied_at.is_(None)).limit(1)).first() is not None


def covering(session: Session, ref: str, since: int) -> list[OrchestrationChange]:
    """The case's entries a command that started after entry `since` waits on: those it
    wrote (newer than `since`) and any still pending (an earlier one it joined)."""
    return list(session.exec(select(OrchestrationChange).where(
        OrchestrationChange.case_ref == ref,
        (OrchestrationChange.id > since) | OrchestrationChange.applied_at.is_(None))
        .order_by(OrchestrationChange.id)))


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


# -- the sync service's presence ------------------------------------------------------------
# A resident drainer (`nim-pathway drain --follow`) holds a lock for its lifetime: an advisory
# lock on PostgreSQL, a file lock beside a SQLite store. The operating system or PostgreSQL
# drops it when the process dies, so a command can tell a live service from a crashed one
# without heartbeats or clocks.

SERVICE_LOCK = (0x4E494D, 0x53594E)  # PostgreSQL advisory lock key: "NIM", "SYN"


class ServiceRunning(RuntimeError):
    """Another sync service already holds this case store's lock."""


def _lock_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return f"{database}.sync-service.lock" if database and database != ":memory:" else None


@contextmanager
def service_lock(url: str) -> Iterator[None]:
    """Hold the sync service's lock while the block runs; ServiceRunning if another has it."""
    from sqlalchemy import text

    from store.db import get_engine

    if url.startswith("postgresql"):
        with get_engine(url).connect() as conn:  # the lock lives as long as this session
            if not conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"),
                                dict(zip("ab", SERVICE_LOCK, strict=True))).scalar():
                raise ServiceRunning("a sync service is already running for this case store")
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"),
                             dict(zip("ab", SERVICE_LOCK, strict=True)))
        return
    path = _lock_file(url)
    if path is None:
        raise ServiceRunning("an in-memory case store has no other process to serve")
    from store.files import open_private

    fd, _ = open_private(Path(path), os.O_RDWR, "the sync service's lock file")
    os.set_blocking(fd, True)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceRunning(f"a sync service is already running for this case store "
                                 f"(it holds {path})") from None
        yield
    finally:
        os.close(fd)  # closing drops the lock


def service_running(url: str) -> bool:
    """Whether a live sync service holds the lock (read without taking it for long)."""
    from sqlalchemy import text

    from store.db import get_engine

    if url.startswith("postgresql"):
        with get_engine(url).connect() as conn:
            return bool(conn.execute(text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :a AND objid = :b AND objsubid = 2 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()))"),
                dict(zip("ab", SERVICE_LOCK, strict=True))).scalar())
    path = _lock_file(url)
    if path is None or not os.path.exists(path):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # a link or unreadable: not a lock the service made
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
