"""Administration: practitioners (added, their role, contact or digest changed, deactivated),
outbox retries, report packs, expired referrals and erasure. Signing in, second factors and
installed pathways: identity.py."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from models.errors import AlreadyDone, Invalid, NotFound, Refused
from models.pathway import PathwaySpec
from models.schemas import PractitionerIn
from nim_pathway.commands import grants, people
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.policy import ADMIN, SERVICE_ACTOR, Target
from reports.packs import render_pack
from store import mapping
from store.crypto import ERASED, destroy_case_key
from store.db import get_engine
from store.files import write_private
from store.keystore import purge
from store.tables import (
    AuditEvent,
    Caregiver,
    Case,
    CaseAnchor,
    Child,
    CourtExtension,
    Decision,
    Intake,
    Outbox,
    PathwayVersion,
    Placement,
    Practitioner,
    Task,
)


class AdminCommands(CommandBase):
    def add_practitioner(self, p: PractitionerIn, actor: str) -> Result:
        """Register a practitioner (admin only) and send them a one-time enrolment code at
        their own contact: the admin never sees their secret (people.invite)."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            self._known_role(session, p.role)
            if session.exec(select(Practitioner).where(Practitioner.handle == p.handle)).first():
                raise AlreadyDone(f"practitioner {p.handle!r} exists already; change their "
                                  f"contact or digest with `nim-pathway practitioner update "
                                  f"{p.handle}`, their role with `practitioner role`")
            row = Practitioner(**p.model_dump())
            now = self.ctx.now()
            privileged = grants.privileged_roles(session, self.ctx.spec)
            if p.role in privileged and grants.second_admins(session, actor, p.handle):
                raise Refused(f"{p.role} is a manager or admin role: granting it needs a second "
                              f"admin. Add {p.handle} with their working role, then `practitioner "
                              f"role {p.handle} {p.role}` asks another admin to approve it")
            code, expires = people.invite(row, self.ctx.secret_key, now)
            people.save(session, row, self.ctx.secret_key)
            told = people.send_invitation(session, self.notify, row, code, expires,
                                          self.ctx.secret_key, now)
            self.audit(session, actor, "practitioner-added", None,
                       {"handle": p.handle, "before": None, "after": people.public(row),
                        "enrolment_sent_until": expires.isoformat()})
            if p.role in privileged:  # the site's only admin: everyone is told at once
                session.flush()
                grants.tell(session, self.notify, now, privileged, p.handle, p.role,
                            "granted-alone", actor)
        return Result("", f"added {p.handle} ({p.role}); {told}")

    def change_role(self, handle: str, role: str, actor: str) -> Result:
        """Change a practitioner's role. A manager or admin role is only asked for: it takes
        effect when a different admin approves (`approve_role`), or at once when there is no
        second admin, with the person, every manager and the admins told (grants.py)."""
        now = self.ctx.now()
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            self._known_role(session, role)
            row = people.person(session, handle)
            if row.role == role:
                raise AlreadyDone(f"{handle} is {role} already")
            privileged = grants.privileged_roles(session, self.ctx.spec)
            others = grants.second_admins(session, actor, handle)
            if role in privileged and others:
                self.audit(session, actor, "role-grant-requested", None,
                           {"handle": handle, "role": role, "by": actor,
                            "until": (now + timedelta(days=grants.GRANT_DAYS)).isoformat()})
                told = grants.tell(session, self.notify, now, privileged, handle, role,
                                   "requested", actor)
                return Result("", f"{role} for {handle} waits for a second admin "
                                  f"({', '.join(others)}): `nim-pathway practitioner "
                                  f"approve-role {handle} {role}`; it is not effective until "
                                  f"then. Told: {', '.join(told) or 'nobody has a contact'}")
            self._apply_role(session, row, role, actor)
            if role in privileged:
                told = grants.tell(session, self.notify, now, privileged, handle, role,
                                   "granted-alone", actor)
                return Result("", f"{handle} is now {role} (granted by the site's only admin; "
                                  f"told: {', '.join(told) or 'nobody has a contact'}); their "
                                  "CLI sessions were ended")
        return Result("", f"{handle} is now {role}; their CLI sessions were ended")

    def approve_role(self, handle: str, role: str, actor: str) -> Result:
        """A second admin approves a manager or admin role another admin asked for: only then
        is it given. Whoever asked, and the person it is for, cannot approve it."""
        now = self.ctx.now()
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            request = grants.pending(session, handle, role, now, self.ctx.audit_key)
            if request is None:
                raise NotFound(f"no request to make {handle} {role} is waiting (requests lapse "
                               f"after {grants.GRANT_DAYS} days); `practitioner role {handle} "
                               f"{role}` asks again")
            asked_by = request.detail.get("by")
            if actor in (asked_by, handle):
                self.audit(session, actor, "refused-self-approval", None,
                           {"handle": handle, "role": role})
                session.commit()
                raise Refused(f"a second admin approves this: {actor} "
                              f"{'asked for it' if actor == asked_by else 'is the person it is for'}"
                              f"; another admin runs `practitioner approve-role {handle} {role}`")
            row = people.person(session, handle)
            self._apply_role(session, row, role, actor, asked_by=asked_by)
            self.audit(session, actor, "role-grant-approved", None,
                       {"handle": handle, "role": role, "by": asked_by, "approved_by": actor})
            grants.tell(session, self.notify, now, grants.privileged_roles(
                session, self.ctx.spec), handle, role, "granted", asked_by, actor)
        return Result("", f"{handle} is now {role} (asked by {asked_by}, approved by {actor}); "
                          "their CLI sessions were ended")

    def _apply_role(self, session: Session, row: Practitioner, role: str, actor: str,
                    **audited: Any) -> None:  # noqa: ANN401
        was_admin, before = row.role == ADMIN, people.public(row)
        row.role = role
        if was_admin:
            self._keep_an_admin(session, row.handle, "change the role of")
        people.revoke_sessions(session, row, self.ctx.now(), self.ctx.secret_key)
        people.save(session, row, self.ctx.secret_key)
        self.audit(session, actor, "practitioner-changed", None,
                   {"handle": row.handle, "before": before, "after": people.public(row),
                    **audited})

    def _change_standing(self, handle: str, actor: str, doing: str,
                         change: Callable[[Session, Practitioner], None],
                         **audited: Any) -> None:  # noqa: ANN401
        """A change to who a practitioner is (active): checked, applied, their sessions
        ended, the row resealed and audited; the last admin is never changed away."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = people.person(session, handle)
            was_admin, before = row.role == ADMIN, people.public(row)
            change(session, row)
            if was_admin:
                self._keep_an_admin(session, handle, doing)
            people.revoke_sessions(session, row, self.ctx.now(), self.ctx.secret_key)
            people.save(session, row, self.ctx.secret_key)
            self.audit(session, actor, "practitioner-changed", None,
                       {"handle": handle, "before": before, "after": people.public(row),
                        **audited})

    def update_practitioner(self, handle: str, actor: str, contact: str | None = None,
                            digest: bool | None = None, active: bool | None = None) -> Result:
        """Change a practitioner's contact ("" removes it), daily digest or whether they may
        act (admin only, like `add`); audited with what changed, contacts masked."""
        if contact is None and digest is None and active is None:
            raise Invalid("nothing to change: give --contact, --digest/--no-digest or "
                          "--active/--inactive")
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = people.person(session, handle)
            wanted: dict[str, object] = {"digest": digest, "active": active}
            if contact is not None:
                wanted["contact"] = _valid_contact(contact)
            changed = {k: v for k, v in wanted.items()
                       if (v is not None or k == "contact") and getattr(row, k) != v}
            if not changed:
                raise AlreadyDone(f"{handle} has these settings already; nothing changed")
            if changed.get("active") is False:  # as `deactivate`: sessions end, an admin stays
                if row.role == ADMIN:
                    self._keep_an_admin(session, handle, "deactivate")
                people.revoke_sessions(session, row, self.ctx.now(), self.ctx.secret_key)
            before = {k: _shown(k, getattr(row, k)) for k in changed}
            for name, value in changed.items():
                setattr(row, name, value)
            people.save(session, row, self.ctx.secret_key)  # `active` is sealed: a fresh seal
            after = {k: _shown(k, v) for k, v in changed.items()}
            self.audit(session, actor, "practitioner-changed", None,
                       {"handle": handle, "changed": sorted(changed), "before": before,
                        "after": after})
        said = {"contact": lambda v: f"contact {v or 'removed'}",
                "digest": lambda v: "reminders in a daily digest" if v else "reminders one by one",
                "active": lambda v: "active" if v else "inactive (their sessions ended)"}
        return Result("", f"updated {handle}: " + "; ".join(said[k](after[k])
                                                            for k in sorted(changed)))

    def deactivate(self, handle: str, actor: str, reason: str) -> Result:
        def change(_session: Session, row: Practitioner) -> None:
            if not row.active:
                raise AlreadyDone(f"{handle} is inactive already")
            row.active = False

        self._change_standing(handle, actor, "deactivate", change, reason_length=len(reason))
        return Result("", f"{handle} deactivated; their open tasks keep them as assignee until "
                          "reassigned")

    def retry_message(self, message_id: int, actor: str) -> Result:
        """Put a dead or failing message back in the queue now."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "administer-outbox")
            row = session.get(Outbox, message_id)
            if row is None:
                raise NotFound(f"no outbox message {message_id}; `nim-pathway outbox list`")
            if row.status == "sent":
                raise AlreadyDone(f"message {message_id} was delivered at {row.sent_at}; it is "
                                  "not sent twice")
            row.status, row.attempts, row.next_attempt_at = "pending", 0, self.ctx.now()
            row.claim_token = row.claimed_until = None
            session.add(row)
            self.audit(session, actor, "outbox-retry", row.case_ref, {"message": message_id})
        return Result(row.case_ref or "", f"message {message_id} queued again")

    def write_pack(self, ref: str, kind: str, fmt: str, out_dir: Path,
                   actor: str) -> tuple[Path, str]:
        """Render a report pack, write it, audit its SHA-256; returns (path, sha256). The
        policy is asked before anything of the case is read."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref)
            self.authorize(session, actor, "write-report-pack",
                           self.ctx.spec(session, case.pathway_id),
                           Target(ref, doing=f"write the {kind} pack (it holds identity)"))
        data = render_pack(self.queries, ref, kind, fmt)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{ref}-{kind}-{self.ctx.today():%Y%m%d}.{fmt}"
        digest = hashlib.sha256(data).hexdigest()
        with self.ctx.write() as session:
            write_private(path, data)  # 0600; in the transaction: no file without its audit row
            self.audit(session, actor, "report-pack", ref,
                       {"kind": kind, "format": fmt, "sha256": digest, "file": path.name,
                        "path": str(path.resolve())})  # erasure deletes it
        return path, digest

    def erase(self, ref: str, actor: str, reason: str = "") -> Result:
        """Remove a case's identity (names, date of birth, address, staged referral); the
        pathway record stays, and the erasure itself is audited."""
        due = {r.case for r in self.queries.retention_review()}
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec = self.ctx.spec(session, case.pathway_id)
            self.authorize(session, actor, "erase-identity", spec,
                           Target(ref, doing="erase identity"))
            children = session.exec(select(Child).where(Child.case_id == case.id)).all()
            if all(c.erased_at for c in children):
                raise AlreadyDone(f"identity on {ref} was erased on "
                                  f"{children[0].erased_at:%Y-%m-%d}")
            if ref not in due and not reason.strip():
                raise Invalid(f"{ref} is not past its retention date; give --reason (for "
                              "example a court order) to erase it earlier")
            for child in children:
                child.given_name = child.family_name = child.address = None
                child.identity_digest = None  # the keyed hash of who they were goes too
                child.date_of_birth, child.erased_at = None, self.ctx.now()
                session.add(child)
            carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)).all()
            for carer in carers:
                carer.name = None
                session.add(carer)
            for intake in session.exec(select(Intake).where(Intake.case_ref == ref)):
                intake.referral = {"erased": True}
                session.add(intake)
                destroy_case_key(session, intake.handle, self.ctx.now(),  # sealed under it
                                 self.ctx.keystore)
            scrubbed = erase_free_text(session, case, spec)
            packs = self._delete_packs(session, ref)
            shredded = destroy_case_key(session, ref, self.ctx.now(), self.ctx.keystore)
            self.audit(session, actor, "identity-erased", ref, {
                "fields": ["child.given_name", "child.family_name", "child.date_of_birth",
                           "child.address", "caregiver.name", "intake.referral", *scrubbed],
                "packs_deleted": packs, "case_key_destroyed": shredded,
                "caregivers": len(carers), "early": ref not in due,
                "reason_length": len(reason)})
        # the blanked rows' old pages leave the case store's log too (SQLite: the -wal)
        purge(get_engine(self.ctx.url), "case_key")
        return Result(ref, f"identity erased from {ref}, with the free text typed on it and "
                           f"{len(packs)} report pack(s); the pathway record and audit remain")

    @staticmethod
    def _delete_packs(session: Session, ref: str) -> list[str]:
        """Delete the report packs written for the case (their paths and hashes are in the
        audit); a file that changed since is left and named, not guessed at."""
        deleted = []
        for row in session.exec(select(AuditEvent).where(AuditEvent.case_ref == ref,
                                                         AuditEvent.action == "report-pack")):
            path = Path((row.detail or {}).get("path") or "")
            if path.name and path.is_file():
                if hashlib.sha256(path.read_bytes()).hexdigest() != row.detail.get("sha256"):
                    raise Invalid(f"report pack {path} changed since it was written; check it "
                                  "and remove it by hand, then erase again")
                path.unlink()
                deleted.append(path.name)
        return deleted

    def expire_intakes(self, days: int) -> int:
        """Delete referrals staged more than `days` ago and never opened (their identity
        should not wait in the store for a case that never comes)."""
        cutoff = self.ctx.now() - timedelta(days=days)
        with self.ctx.write() as session:
            stale = session.exec(select(Intake).where(Intake.case_ref.is_(None),
                                                      Intake.created_at < cutoff)).all()
            for intake in stale:
                session.delete(intake)
                destroy_case_key(session, intake.handle, self.ctx.now(), self.ctx.keystore)
                self.audit(session, SERVICE_ACTOR, "intake-expired", None,
                           {"handle": intake.handle, "days": days})
        return len(stale)

    @staticmethod
    def _keep_an_admin(session: Session, handle: str, doing: str) -> None:
        others = session.exec(select(func.count()).select_from(Practitioner).where(
            Practitioner.role == ADMIN, Practitioner.active, Practitioner.handle != handle)).one()
        if not others:
            raise Refused(f"cannot {doing} {handle}: they are the only active admin; add "
                          "another admin first")

    def _known_role(self, session: Session, role: str) -> None:
        """A role some installed pathway declares, or the site's admin."""
        roles = {ADMIN}.union(*(self.ctx.spec(session, v).roles for v in session.exec(
            select(PathwayVersion.id).where(PathwayVersion.installed_at.is_not(None)))))
        if role not in roles:
            raise Invalid(f"unknown role {role!r}; roles: {', '.join(sorted(roles))}")


def erase_free_text(session: Session, case: Case, spec: PathwaySpec) -> list[str]:
    """Blank everything typed into the case as free text (handover notes, outcome notes and
    text fields, rationales, reasons, causes): names get typed there too. Returns what was
    blanked, by table.column."""
    done: set[str] = set()
    for task in session.exec(select(Task).where(Task.case_id == case.id)):
        if task.handover_note:
            task.handover_note = None
            done.add("task.handover_note")
        text_keys = spec.free_text_fields(task.spec_id) if task.outcome else set()
        if any(task.outcome.get(k) for k in text_keys):
            task.outcome = {k: (ERASED if k in text_keys and v else v)
                            for k, v in task.outcome.items()}
            done.add("task.outcome")
        session.add(task)
    for table, column in ((Decision, "rationale"), (Placement, "reason"),
                          (CaseAnchor, "cause"), (CourtExtension, "reason")):
        for row in session.exec(select(table).where(table.case_id == case.id)):
            if getattr(row, column):
                setattr(row, column, ERASED)
                session.add(row)
                done.add(f"{table.__tablename__}.{column}")
    return sorted(done)


def _valid_contact(value: str) -> str | None:
    """A contact `practitioner update` may store ("" removes it), or Invalid saying why not."""
    from pydantic import ValidationError

    from models.schemas import ContactIn

    try:
        return ContactIn(contact=value).contact or None
    except ValidationError as exc:
        why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise Invalid(f"invalid contact: {why}") from None


def _shown(name: str, value: object) -> object:
    """A practitioner setting as the audit and the CLI show it: a contact masked."""
    from models.redaction import mask_url

    return mask_url(value) if name == "contact" and isinstance(value, str) else value
