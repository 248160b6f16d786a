"""The append-only, keyed, hash-chained audit log: every state change and every refusal.

Rows are never updated or deleted (database triggers refuse it, migration 0005). Each row's
hash covers its content and the previous row's hash, keyed with HMAC-SHA256 under a key held
outside the database (`NIM_AUDIT_KEY_FILE`): whoever can write the database but not read the
key cannot edit a row and recompute the chain. Rows written before keying carry a plain
SHA-256; once a keyed row exists every later row must be keyed. After each write transaction
the chain's head (row id and hash) is appended to a checkpoint file outside the database, so
a truncated tail, or a chain rebuilt from scratch, no longer matches the last checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, select

from store.db import session_scope
from store.tables import AuditEvent

GENESIS = "0" * 64
KEYED = "hmac:"  # the hash of a keyed row starts with this


def append(session: Session, at: datetime, actor: str, action: str, case_ref: str | None,
           detail: dict, key: bytes | None = None) -> AuditEvent:
    """Append one row to the chain inside the caller's transaction; the session remembers the
    new head for the checkpoint written after the commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(724)"))  # one chain, one writer
    last = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
    row = AuditEvent(at=at, actor=actor, case_ref=case_ref, action=action, detail=detail,
                     prev_hash=last.hash if last else GENESIS, hash="")
    row.hash = audit_hash(row, key)
    session.add(row)
    session.flush()
    session.info["audit_head"] = (row.id, row.hash)
    return row


def audit_hash(row: AuditEvent, key: bytes | None = None) -> str:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    body = json.dumps({"at": at.astimezone(UTC).isoformat(), "actor": row.actor,
                       "case": row.case_ref, "action": row.action, "detail": row.detail,
                       "prev": row.prev_hash}, sort_keys=True, default=str).encode()
    if key:
        return KEYED + hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def database_id(url: str) -> str:
    """Which database a checkpoint is for (never the URL itself: it may hold a password)."""
    return hashlib.sha256(url.split("@")[-1].encode()).hexdigest()[:16]


def write_checkpoint(path: Path, url: str, head: tuple[int, str], key: bytes | None,
                     at: datetime) -> None:
    """Append the chain's head to the checkpoint file (0600, one JSON line per write)."""
    entry = {"db": database_id(url), "id": head[0], "hash": head[1], "at": at.isoformat()}
    if key:
        entry["mac"] = hmac.new(key, _signed(entry), hashlib.sha256).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def _signed(entry: dict) -> bytes:
    return f"{entry['db']}|{entry['id']}|{entry['hash']}|{entry['at']}".encode()


def latest_checkpoint(path: Path | None, url: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    db, found = database_id(url), None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("db") == db and (found is None or entry["id"] >= found["id"]):
            found = entry
    return found


def verify(url: str, key: bytes | None = None, checkpoint: Path | None = None) -> list[str]:
    """Problems in the audit chain: an edited, inserted or deleted row; a row written without
    the key after keyed rows (a rebuilt chain); a tail cut off after the last checkpoint."""
    problems = []
    prev, keyed_seen, rows = GENESIS, False, {}
    with session_scope(url, read_only=True) as session:
        for row in session.exec(select(AuditEvent).order_by(AuditEvent.id)):
            keyed = row.hash.startswith(KEYED)
            rows[row.id] = row.hash
            if row.prev_hash != prev:
                problems.append(f"row {row.id}: chain broken (a row before it was removed or "
                                "inserted)")
            if keyed_seen and not keyed:
                problems.append(f"row {row.id}: not keyed after keyed rows (written without the "
                                "audit key: the chain was rewritten)")
            elif keyed and key is None:
                problems.append(f"row {row.id}: keyed; give the audit key (NIM_AUDIT_KEY_FILE) "
                                "to verify it")
            elif audit_hash(row, key if keyed else None) != row.hash:
                problems.append(f"row {row.id}: content does not match its hash (edited)")
            keyed_seen = keyed_seen or keyed
            prev = row.hash
    last = latest_checkpoint(checkpoint, url)
    if last is not None:
        if key and last.get("mac") != hmac.new(key, _signed(last), hashlib.sha256).hexdigest():
            problems.append("checkpoint: its last entry does not carry the key's signature")
        if rows.get(last["id"]) != last["hash"]:
            problems.append(f"checkpoint: row {last['id']} (checkpointed {last['at']}) is "
                            "missing or changed: the log was truncated or rewritten")
    return problems


def refusal_seen(session: Session, case_ref: str | None, via: str) -> bool:
    """Whether a refusal from this UI attempt (its role, or its one-time code) is audited
    already: a flow replaying a form after its process restarts is answered the same way
    without counting it twice."""
    return any((a.detail or {}).get("via") == via for a in session.exec(
        select(AuditEvent).where(AuditEvent.case_ref == case_ref,
                                 AuditEvent.action.in_(["refused", "refused-code"]))))
