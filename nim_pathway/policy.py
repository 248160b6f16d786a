"""Who may do what: one table, one function.

Case actions are granted by the case's pathway (`permissions:` in the YAML, see
`models.pathway.DEFAULT_PERMISSIONS`); actions that belong to no case are granted by
`SITE_PERMISSIONS` below. Every command calls `authorize` before it changes anything, with an
actor the CLI or the Prefect form has authenticated (nim_pathway/commands/identity.py). A
refusal is written to the audit log and committed even though the command writes nothing
else, then raised as `Refused`. The service identity (flows, sweep, dispatcher) is refused
every action here: it never does human work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from models.errors import NotFound, Refused
from models.pathway import ASSIGNEE, TASK_ROLE, PathwaySpec
from store import audit
from store.tables import Practitioner

ADMIN = "admin"  # the site role that administers people, pathways and the outbox
MANAGERS = "managers"  # stand-in: any manager role of any installed pathway
SERVICE_ACTOR = "svc.pathway"  # the named identity flows, the sweep and the dispatcher act as
# Actions that belong to no case, and who may take them.
SITE_PERMISSIONS: dict[str, set[str]] = {
    "manage-practitioners": {ADMIN},
    "install-pathway": {ADMIN},
    "administer-outbox": {ADMIN, MANAGERS},
    "review-retention": {ADMIN, MANAGERS},
    "export-data": {ADMIN, MANAGERS},
}


# The court's hearing dates (PD12A: the CMH, the IRH, the final hearing): part of the court's
# timetable, so whoever may record that timetable (`record-court-timetable`: the LA solicitor
# in England) may record them with `case move-date`, as well as whoever may move any date.
COURT_HEARING_DATES = ("case_management_hearing", "cmh_held", "issues_resolution_hearing",
                       "final_hearing")


@dataclass(frozen=True)
class Target:
    """What an action is on: the case, and the task's role and owner for task actions."""

    case_ref: str | None = None
    task_role: str | None = None
    assignee_id: int | None = None
    doing: str = ""  # how the refusal says it ("complete NIM-2026-0001/triage")
    via: str | None = None  # the UI attempt a form came from: a replay is refused, not re-audited
    date: str | None = None  # the case date a move-date action sets


def seal_of(row: Practitioner, key: bytes) -> str:
    """An HMAC over who a practitioner is (handle, role, kind, team, active, second factor)
    and where their sign-in stands (wrong codes, since when slowed, last code used) under the
    secret key: a role granted, a throttle cleared or a used code made usable again by
    writing the table directly does not verify."""
    import hashlib
    import hmac

    body = "|".join(str(v) for v in (row.handle, row.role, row.kind, row.team, row.active,
                                     row.totp_secret, row.failed_codes, _instant(row.locked_at),
                                     row.totp_last_step))
    return "v2:" + hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _legacy_seal(row: Practitioner, key: bytes) -> str:
    """The seal of rows written before sign-in state was sealed (it covers who they are only);
    accepted only while no wrong code is counted, and renewed at the next sign-in."""
    import hashlib
    import hmac

    body = "|".join(str(v) for v in (row.handle, row.role, row.kind, row.team, row.active,
                                     row.totp_secret))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _instant(at: datetime | None) -> str:
    """A stored instant the same way on every backend (SQLite gives it back naive UTC)."""
    from datetime import UTC

    if at is None:
        return ""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def seal_holds(row: Practitioner, key: bytes) -> bool:
    import hmac

    if (row.seal or "").startswith("v2:"):
        return hmac.compare_digest(row.seal, seal_of(row, key))
    return (row.failed_codes == 0 and row.locked_at is None
            and hmac.compare_digest(row.seal or "", _legacy_seal(row, key)))


def check_seal(session: Session, now: datetime, row: Practitioner, key: bytes | None,
               audit_key: bytes | None) -> None:
    """Refuse (and audit) a practitioner row changed outside nim-pathway's own commands."""
    if key and not seal_holds(row, key):
        audit_capped(session, now, row.handle, "refused-altered-record", None,
                     {"role": row.role}, audit_key)
        raise Refused(f"{row.handle}'s record was changed outside nim-pathway (its seal does "
                      "not verify); an admin checks it and saves it again with `practitioner "
                      "role` or `practitioner enrol`")


def practitioner(session: Session, handle: str) -> Practitioner:
    """An active practitioner by handle."""
    found = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
    if found is None or not found.active:
        raise NotFound(f"unknown practitioner {handle!r}; `nim-pathway practitioner list` "
                       "shows them")
    return found


CAPPED_AUDITS_PER_HOUR = 20  # probing with made-up handles or codes cannot fill the log


def audit_capped(session: Session, now: datetime, actor: str, action: str,
                 case_ref: str | None, detail: dict, audit_key: bytes | None) -> None:
    """Audit and commit a refusal of this kind, at most so many an hour (then silently)."""
    from datetime import timedelta

    from sqlalchemy import func

    from store.tables import AuditEvent

    recent = session.exec(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.at >= now - timedelta(hours=1))).one()
    if recent < CAPPED_AUDITS_PER_HOUR:
        audit.append(session, now, actor[:60], action, case_ref, detail, audit_key)
    session.commit()


def site_roles(session: Session, action: str) -> set[str]:
    """The roles granted a site action (MANAGERS stands for every installed manager role)."""
    from store.tables import PathwayVersion

    roles = set(SITE_PERMISSIONS[action])  # KeyError: a site action without a rule is a bug
    if MANAGERS in roles:
        roles.discard(MANAGERS)
        for spec_json in session.exec(select(PathwayVersion.spec_json).where(
                PathwayVersion.installed_at.is_not(None))):
            from models.pathway import pathway_from_json

            roles |= pathway_from_json(spec_json).managers()
    return roles


def allowed_roles(spec: PathwaySpec, action: str, target: Target) -> set[str]:
    """The roles that may take `action` on `target` (managers always may)."""
    roles = set(spec.permitted(action)) - {TASK_ROLE, ASSIGNEE}
    if TASK_ROLE in spec.permitted(action) and target.task_role:
        roles.add(target.task_role)
    if action == "move-date" and target.date in COURT_HEARING_DATES:
        roles |= set(spec.permitted("record-court-timetable")) - {TASK_ROLE, ASSIGNEE}
    return roles | spec.managers()


def authorize(session: Session, now: datetime, actor: str, action: str,
              spec: PathwaySpec | None = None, target: Target = Target(),
              audit_key: bytes | None = None, seal_key: bytes | None = None) -> Practitioner:
    """The acting practitioner if they may take `action` on `target` (a case action when
    `spec` is given, else a site action); else the refusal is audited and `Refused` raised."""
    try:
        who = practitioner(session, actor)
    except NotFound:
        audit_capped(session, now, actor, "refused-unknown-actor", target.case_ref,
                     {"action": action, "handle_length": len(actor)}, audit_key)
        raise
    check_seal(session, now, who, seal_key, audit_key)
    roles = allowed_roles(spec, action, target) if spec else site_roles(session, action)
    needs = " or ".join(sorted(roles))
    if spec and ASSIGNEE in spec.permitted(action):
        needs = f"its current owner or {needs}"
    message = f"{actor} is {who.role} and may not {target.doing or action}; it needs {needs}"
    if who.kind == "service":  # flows, the sweep and the dispatcher never do human work
        message = (f"{actor} is the service identity and may not {target.doing or action}; "
                   f"a person does that ({needs})")
    elif who.role in roles:
        return who
    elif (spec and ASSIGNEE in spec.permitted(action) and who.id is not None
          and who.id == target.assignee_id):
        return who
    if target.via is not None and audit.refusal_seen(session, target.case_ref, target.via):
        raise Refused(message)  # a replayed form: refused and audited already
    audit.append(session, now, actor, "refused", target.case_ref,
                 {"doing": target.doing or action, "action": action, "role": who.role,
                  "via": target.via}, audit_key)
    session.commit()
    raise Refused(message)
