"""The append-only, keyed, hash-chained audit log: every state change and every refusal.

Rows are never updated or deleted (database triggers refuse it, migration 0005). Each row's
hash covers its content and the previous row's hash, keyed with HMAC-SHA256 under a key held
outside the database (`NIM_AUDIT_KEY_FILE`): whoever can write the database but not read the
key cannot edit a row and recompute the chain. Rows written before keying carry a plain
SHA-256; once a keyed row exists every later row must be keyed. After each write transaction
the chain's head (row id, hash and the number of rows up to it, signed with the key) is
appended to a checkpoint file outside the database; the sweep also sends it to the admins and
to a Prefect artifact. A truncated tail, a deleted row or a chain rebuilt from scratch no
longer matches the checkpoint, wherever it was kept (`audit verify --checkpoint FILE`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, text
from sqlmodel import Session, select

from store.db import session_scope
from store.files import append_private
from store.tables import AuditEvent

CHECKPOINT_SETTING = "the audit checkpoint (NIM_AUDIT_CHECKPOINT)"

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
    head = session.info.get("audit_head")  # (id, hash, rows) of this transaction's last row
    rows = head[2] + 1 if head else _rows_upto(session, row.id)
    session.info["audit_head"] = (row.id, row.hash, rows)
    _COUNTED[str(session.get_bind().url)] = (row.id, row.hash, rows)
    return row


# Per database, the last head this process counted rows up to: (row id, hash, rows).
_COUNTED: dict[str, tuple[int, str, int]] = {}


def _rows_upto(session: Session, row_id: int) -> int:
    """How many audit rows have an id up to `row_id`: a checkpoint records it, so a row
    removed and the rest renumbered or re-linked shows. Counting the whole log on every write
    would grow with it: when the head this process counted last still holds its hash, only
    the rows since are counted (rows are never deleted; if someone did delete one before it,
    the checkpoint keeps the count from before, and `verify` reports the difference)."""
    where = str(session.get_bind().url)
    count = select(func.count()).select_from(AuditEvent).where(AuditEvent.id <= row_id)
    known = _COUNTED.get(where)
    if known and known[0] <= row_id and session.exec(
            select(AuditEvent.hash).where(AuditEvent.id == known[0])).first() == known[1]:
        return known[2] + session.exec(count.where(AuditEvent.id > known[0])).one()
    return session.exec(count).one()


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


def checkpoint_entry(url: str, head: tuple, key: bytes | None, at: datetime) -> dict:
    """The checkpoint entry of a chain head, `(row id, hash)` or `(row id, hash, rows)`:
    which database, the head, when, and a MAC over them under the audit key."""
    entry = {"db": database_id(url), "id": head[0], "hash": head[1], "at": at.isoformat()}
    if len(head) > 2:
        entry["rows"] = head[2]
    if key:
        entry["mac"] = _mac(key, entry)
    return entry


def head_entry(session: Session, url: str, key: bytes | None, at: datetime) -> dict | None:
    """The signed checkpoint entry of the chain's current head as the database holds it
    (with its row count), for a place the database owner does not control; None if the log
    is empty."""
    last = session.exec(select(AuditEvent.id, AuditEvent.hash)
                        .order_by(AuditEvent.id.desc()).limit(1)).first()
    if last is None:
        return None
    return checkpoint_entry(url, (last[0], last[1], _rows_upto(session, last[0])), key, at)


def write_checkpoint(path: Path, url: str, head: tuple, key: bytes | None,
                     at: datetime) -> None:
    """Append the chain's head to the checkpoint file (0600, one JSON line per write)."""
    entry = checkpoint_entry(url, head, key, at)
    append_private(path, json.dumps(entry) + "\n", CHECKPOINT_SETTING)


def _signed(entry: dict) -> bytes:
    """What the MAC covers; the row count only where the entry has one (older entries
    were written without it and still verify)."""
    signed = f"{entry['db']}|{entry['id']}|{entry['hash']}|{entry['at']}"
    return (signed + f"|{entry['rows']}" if "rows" in entry else signed).encode()


def _mac(key: bytes, entry: dict) -> str:
    return hmac.new(key, _signed(entry), hashlib.sha256).hexdigest()


def parse_checkpoints(pasted: str) -> list[dict]:
    """The checkpoint entries in text pasted from elsewhere: the admin message (plain text,
    or its HTML with quotes escaped), the Prefect artifact (Markdown), a checkpoint file. A
    JSON object a mail program wrapped over several lines is joined again (its values hold
    no spaces)."""
    found = []
    for match in re.finditer(r"\{[^{}]*\}", html.unescape(pasted)):
        try:
            entry = json.loads(re.sub(r"\s+", "", match.group()))
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), int) and all(
                isinstance(entry.get(k), str) for k in ("db", "hash", "at")):
            found.append(entry)
    return found


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


def verify(url: str, key: bytes | None = None, checkpoint: Path | None = None,
           external: Iterable[dict] = ()) -> list[str]:
    """Problems in the audit chain: an edited, inserted or deleted row; a row written without
    the key after keyed rows (a rebuilt chain); and, against the latest entry of the local
    checkpoint file and each `external` entry (a copy kept outside the database, from the
    admin message or the Prefect artifact), a tail cut off, a row removed, a chain rebuilt."""
    problems = []
    prev, keyed_seen, hashes = GENESIS, False, {}
    with session_scope(url, read_only=True) as session:
        for row in session.exec(select(AuditEvent).order_by(AuditEvent.id)):
            keyed = row.hash.startswith(KEYED)
            hashes[row.id] = row.hash
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
    ids = list(hashes)  # in id order
    last = latest_checkpoint(checkpoint, url)
    if last is not None:
        problems += _against(last, "checkpoint", url, key, hashes, ids)
    for entry in external:
        problems += _against(entry, f"checkpoint of row {entry['id']} ({entry['at']})", url,
                             key, hashes, ids)
    return problems + _unproven(url, ids, [e for e in (last, *external) if e])


def _unproven(url: str, ids: list[int], entries: list[dict]) -> list[str]:
    """A log no checkpoint covers to its end cannot be shown complete: its tail could have
    been cut (with the checkpoint file deleted, trimmed or put back from an older copy)."""
    if not ids:
        return []
    covered = max((e["id"] for e in entries if e["db"] == database_id(url)), default=None)
    if covered is None:
        return [f"no checkpoint of this database was found, so the log (rows up to {ids[-1]}) "
                "cannot be shown complete: a cut tail would not show. Give a copy kept "
                "outside the database: `audit verify --checkpoint FILE` (the admin message "
                "or the Prefect artifact `audit-checkpoint`)"]
    if covered < ids[-1]:
        return [f"the newest checkpoint covers rows up to {covered} but the log holds rows up "
                f"to {ids[-1]}: the rows after it cannot be shown complete (the checkpoint file "
                "was trimmed, put back from an older copy, or not written). Check against a "
                "newer copy: `audit verify --checkpoint FILE`"]
    return []


def _against(entry: dict, label: str, url: str, key: bytes | None, hashes: dict[int, str],
             ids: list[int]) -> list[str]:
    """What a checkpoint entry says is wrong with the log as the database holds it now."""
    if entry["db"] != database_id(url):
        return [f"{label}: made for another database (db {entry['db']}, this one is "
                f"{database_id(url)}); give a checkpoint of this database"]
    if key and entry.get("mac") != _mac(key, entry):
        return [f"{label}: its signature does not match the audit key (the entry was altered, "
                "or signed with another key); check the key (NIM_AUDIT_KEY_FILE) and take "
                "the entry from another copy"]
    problems = []
    end = ids[-1] if ids else 0
    if entry["id"] > end:
        return [f"{label}: row {entry['id']} is missing and the log ends at row {end}: the "
                f"log was truncated (its tail deleted) after {entry['at']}; restore the "
                "audit_event table from a backup and find out who deleted the rows"]
    if hashes.get(entry["id"]) != entry["hash"]:
        problems.append(f"{label}: row {entry['id']} is missing or no longer has the hash "
                        f"checkpointed at {entry['at']}: the log was rewritten (rows edited, "
                        "deleted or inserted and the chain recomputed); restore the "
                        "audit_event table from a backup and find out who changed it")
    held = bisect_right(ids, entry["id"])
    if "rows" in entry and held != entry["rows"]:
        problems.append(f"{label}: {held} rows up to row {entry['id']}, but {entry['rows']} "
                        f"at {entry['at']}: rows were deleted or inserted before it (and the "
                        "rest renumbered or re-linked); restore the audit_event table from a "
                        "backup and find out who changed it")
    return problems


def refusal_seen(session: Session, case_ref: str | None, via: str) -> bool:
    """Whether a refusal from this UI attempt (its role, or its one-time code) is audited
    already: a flow replaying a form after its process restarts is answered the same way
    without counting it twice."""
    return any((a.detail or {}).get("via") == via for a in session.exec(
        select(AuditEvent).where(AuditEvent.case_ref == case_ref,
                                 AuditEvent.action.in_(["refused", "refused-code"]))))
