"""Granting a manager or admin role takes two admins (issue 28). One admin asks
(`practitioner role H ROLE`): the request is an audit row (`role-grant-requested`, keyed like
every audit row, so whoever writes the database without the audit key cannot make one) and the
role is not effective; a different admin approves it (`practitioner approve-role H ROLE`)
within GRANT_DAYS, and only then is it given. Whoever asked cannot approve, nor can the person
it is for. When no second admin exists (the site's only admin), the grant takes effect at
once, and the person, every manager and the admins are told at once (the issue's fallback).
Every request, approval and grant is messaged to the person, the managers and the admins."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from models.errors import ConfigError, Refused
from nim_pathway.policy import ADMIN
from store.audit import audit_hash
from store.tables import AuditEvent, PathwayVersion, Practitioner

GRANT_DAYS = 7  # how long a request waits for a second admin


def privileged_roles(session: Session, spec_of: Callable[[Session, int], Any]) -> set[str]:
    """The roles whose grant needs a second admin: admin, and every installed pathway's
    manager roles."""
    ids = session.exec(select(PathwayVersion.id).where(PathwayVersion.installed_at.is_not(None)))
    return {ADMIN}.union(*(spec_of(session, i).managers() for i in ids))


def second_admins(session: Session, actor: str, handle: str) -> list[str]:
    """Active admins who could approve a grant `actor` asks for `handle`."""
    return sorted(h for h in session.exec(select(Practitioner.handle).where(
        Practitioner.role == ADMIN, Practitioner.active, Practitioner.kind == "person"))
        if h not in (actor, handle))


def pending(session: Session, handle: str, role: str, now: datetime,
            audit_key: bytes | None) -> AuditEvent | None:
    """The newest request to give `handle` `role`, if it is still waiting (not approved, not
    older than GRANT_DAYS) and its audit row verifies under the audit key."""
    rows = session.exec(select(AuditEvent).where(
        AuditEvent.action.in_(("role-grant-requested", "role-grant-approved")),
        AuditEvent.at >= now - timedelta(days=GRANT_DAYS)).order_by(AuditEvent.id)).all()
    waiting = None
    for row in rows:
        detail = row.detail or {}
        if detail.get("handle") != handle or detail.get("role") != role:
            continue
        waiting = row if row.action == "role-grant-requested" else None
    if waiting is None or (audit_key and not hmac.compare_digest(
            waiting.hash, audit_hash(waiting, audit_key))):
        return None
    return waiting


def tell(session: Session, notify: Callable[[], Any], now: datetime, privileged: set[str],
         handle: str, role: str, state: str, asked_by: str,
         approved_by: str | None = None) -> list[str]:
    """Message the person, every active manager and the admins' target at once about a grant
    (`state`: requested, granted, granted-alone); who could be reached (a practitioner without
    a contact cannot be). Refused when notifications are not configured: a grant nobody
    hears of is what this prevents."""
    from notifications.outbox import enqueue

    try:
        config = notify()
    except ConfigError as exc:
        raise Refused(f"the managers cannot be told of this grant ({exc}); nothing was "
                      "changed") from None
    people = session.exec(select(Practitioner).where(
        Practitioner.active, Practitioner.kind == "person",
        (Practitioner.handle == handle) | Practitioner.role.in_(privileged))).all()
    told = sorted(p.handle for p in people if p.contact)
    recipients = [f"practitioner:{h}" for h in told] + (["admin"] if config.admin else [])
    context = {"handle": handle, "role": role, "state": state, "asked_by": asked_by,
               "approved_by": approved_by or ""}
    for recipient in recipients:
        enqueue(session, config, "role-grant",
                f"role-grant/{handle}/{role}/{state}/{now.isoformat()}/{recipient}", None,
                recipient, context, now)
    return told

