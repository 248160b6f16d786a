"""Who may do what: one table, one function.

Case actions are granted by the case's pathway (`permissions:` in the YAML, see
`models.pathway.DEFAULT_PERMISSIONS`); actions that belong to no case are granted by
`SITE_PERMISSIONS` below. Every command calls `authorize` before it changes anything. A
refusal is written to the audit log and committed even though the command writes nothing
else, then raised as `Refused`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from models.errors import NotFound, Refused
from models.pathway import ASSIGNEE, TASK_ROLE, PathwaySpec
from store import audit
from store.tables import Practitioner

ANYONE = "anyone"  # no check (yet): the identity issue makes these admin-only
# Actions that belong to no case, and who may take them.
SITE_PERMISSIONS: dict[str, str] = {
    "add-practitioner": ANYONE,
    "retry-message": ANYONE,
    "write-report-pack": ANYONE,
}


@dataclass(frozen=True)
class Target:
    """What an action is on: the case, and the task's role and owner for task actions."""

    case_ref: str | None = None
    task_role: str | None = None
    assignee_id: int | None = None
    doing: str = ""  # how the refusal says it ("complete NIM-2026-0001/triage")
    via: str | None = None  # the UI attempt a form came from: a replay is refused, not re-audited


def practitioner(session: Session, handle: str) -> Practitioner:
    """An active practitioner by handle."""
    found = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
    if found is None or not found.active:
        raise NotFound(f"unknown practitioner {handle!r}; `nim-pathway practitioner list` "
                       "shows them")
    return found


UNKNOWN_ACTOR_AUDITS_PER_HOUR = 20  # probing with made-up handles cannot fill the log


def _audit_unknown(session: Session, now: datetime, actor: str, action: str, target: Target,
                   audit_key: bytes | None) -> None:
    """Audit a refusal of an unknown handle, at most so many an hour (then silently)."""
    from datetime import timedelta

    from sqlalchemy import func

    from store.tables import AuditEvent

    recent = session.exec(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "refused-unknown-actor",
        AuditEvent.at >= now - timedelta(hours=1))).one()
    if recent >= UNKNOWN_ACTOR_AUDITS_PER_HOUR:
        return
    audit.append(session, now, actor[:60], "refused-unknown-actor", target.case_ref,
                 {"action": action, "handle_length": len(actor)}, audit_key)
    session.commit()


def allowed_roles(spec: PathwaySpec, action: str, target: Target) -> set[str]:
    """The roles that may take `action` on `target` (managers always may)."""
    roles = set(spec.permitted(action)) - {TASK_ROLE, ASSIGNEE}
    if TASK_ROLE in spec.permitted(action) and target.task_role:
        roles.add(target.task_role)
    return roles | spec.managers()


def authorize(session: Session, now: datetime, actor: str, action: str,
              spec: PathwaySpec | None = None, target: Target = Target(),
              audit_key: bytes | None = None) -> Practitioner | None:
    """The acting practitioner if they may take `action` on `target`; else the refusal is
    audited and `Refused` raised. Site actions granted to ANYONE return None."""
    if spec is None:
        if SITE_PERMISSIONS[action] == ANYONE:
            return None
        raise KeyError(action)  # a site action without a rule is a programming error
    try:
        who = practitioner(session, actor)
    except NotFound:
        _audit_unknown(session, now, actor, action, target, audit_key)
        raise
    roles = allowed_roles(spec, action, target)
    if who.role in roles:
        return who
    if ASSIGNEE in spec.permitted(action) and who.id is not None and who.id == target.assignee_id:
        return who
    needs = " or ".join(sorted(roles))
    if ASSIGNEE in spec.permitted(action):
        needs = f"its current owner or {needs}"
    message = f"{actor} is {who.role} and may not {target.doing or action}; it needs {needs}"
    if target.via is not None and audit.refusal_seen(session, target.case_ref, target.via):
        raise Refused(message)  # a replayed form: refused and audited already
    audit.append(session, now, actor, "refused", target.case_ref,
                 {"doing": target.doing or action, "action": action, "role": who.role,
                  "via": target.via}, audit_key)
    session.commit()
    raise Refused(message)
