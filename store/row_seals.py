"""Keyed seals of the rows that say who may act: a login session (holder, times, revocation)
and an installed pathway version (profile, version, content hash). The MAC is under the site's
secret key, held outside the database, so whoever owns the database but not the key cannot
re-point a session at someone else, extend or revive it, or edit an installed pathway: the
row no longer verifies where it is used, and it is refused. (Practitioner rows are sealed the
same way by nim_pathway/policy.py.) What a seal cannot stop is a whole row put back as it
was earlier: SECURITY.md says what that gives (nothing past the session's sealed expiry)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from sqlmodel import Session, select

from store.audit import audit_hash
from store.tables import AuditEvent, LoginSession, PathwayVersion


def _mac(key: bytes, kind: str, *values: object) -> str:
    body = "|".join([kind, *(_text(v) for v in values)])
    return "v1:" + hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _text(value: object) -> str:
    if isinstance(value, datetime):  # SQLite gives instants back naive (UTC)
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return at.astimezone(UTC).isoformat()
    return "" if value is None else str(value)


def session_seal(row: LoginSession, key: bytes) -> str:
    return _mac(key, "login-session", row.token_sha256, row.practitioner_id, row.created_at,
                row.expires_at, row.revoked_at)


def session_holds(row: LoginSession, key: bytes) -> bool:
    return hmac.compare_digest(row.seal or "", session_seal(row, key))


def pathway_seal(row: PathwayVersion, key: bytes) -> str:
    return _mac(key, "pathway-version", row.profile, row.version, row.sha256)


def pathway_holds(session: Session, row: PathwayVersion, key: bytes,
                  audit_key: bytes | None) -> bool:
    """The stored spec is the one installed: its hash matches its text, and the hash is
    sealed (or, for a version stored before seals, named by its keyed install audit row)."""
    if not key:
        return True  # a store opened without the site's keys (tools, old tests) checks nothing
    if not hmac.compare_digest(row.sha256, hashlib.sha256(row.spec_json.encode()).hexdigest()):
        return False
    if row.seal is not None:
        return hmac.compare_digest(row.seal, pathway_seal(row, key))
    if not audit_key:
        return False
    for event in session.exec(select(AuditEvent).where(AuditEvent.action == "pathway-installed")):
        detail = event.detail or {}
        if (detail.get("profile"), detail.get("version"), detail.get("sha256")) == (
                row.profile, row.version, row.sha256) and hmac.compare_digest(
                event.hash, audit_hash(event, audit_key)):
            return True
    return False
