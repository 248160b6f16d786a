"""The append-only, hash-chained audit log: every state change and every refusal.

Rows are never updated or deleted (database triggers refuse it, migration 0005); each row's
hash covers its content and the previous row's hash, so an edit, insertion or deletion
breaks the chain and `verify` reports it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import text
from sqlmodel import Session, select

from store.db import session_scope
from store.tables import AuditEvent

GENESIS = "0" * 64


def append(session: Session, at: datetime, actor: str, action: str, case_ref: str | None,
           detail: dict) -> AuditEvent:
    """Append one row to the chain inside the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(724)"))  # one chain, one writer
    last = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
    row = AuditEvent(at=at, actor=actor, case_ref=case_ref, action=action, detail=detail,
                     prev_hash=last.hash if last else GENESIS, hash="")
    row.hash = audit_hash(row)
    session.add(row)
    session.flush()
    return row


def audit_hash(row: AuditEvent) -> str:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    body = json.dumps({"at": at.astimezone(UTC).isoformat(), "actor": row.actor,
                       "case": row.case_ref, "action": row.action, "detail": row.detail,
                       "prev": row.prev_hash}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def verify(url: str) -> list[str]:
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


def refusal_seen(session: Session, case_ref: str | None, via: str) -> bool:
    """Whether a refusal from this UI attempt is audited already (a replayed form)."""
    return any((a.detail or {}).get("via") == via for a in session.exec(
        select(AuditEvent).where(AuditEvent.case_ref == case_ref, AuditEvent.action == "refused")))
