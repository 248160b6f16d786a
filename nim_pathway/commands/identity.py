"""Who is acting: the first admin, practitioners' one-time codes (RFC 6238 TOTP), re-enrolment
and lockout, CLI login sessions, the service identity and installed pathway versions. Adding
and changing practitioners is administration (admin.py).

A handle alone proves nothing. The CLI and the Prefect forms turn a handle plus a one-time
code (or a CLI session made with one) into an authenticated handle, and only then call the
other commands, which take that handle as the actor. Secrets are kept encrypted with the TOTP
key (NIM_TOTP_KEY_FILE), held outside the database by the processes that check codes only (not
by an operator's CLI: it refuses to check a code and says so); session tokens are kept as keyed
SHA-256 only. Every
refusal is audited (unknown handles and locked accounts at a capped rate)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from models.errors import AlreadyDone, ConfigError, Invalid, NotFound, Refused, WrongCode
from models.pathway import PATHWAYS_DIR, PathwayError, PathwaySpec, parse_pathway
from models.schemas import PractitionerIn
from nim_pathway.commands import people
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.commands.people import Enrolment, code_at
from nim_pathway.policy import ADMIN, SERVICE_ACTOR, audit_capped, check_seal
from store.audit import refusal_seen
from store.files import read_bounded
from store.row_seals import pathway_seal, session_holds, session_seal
from store.tables import LoginSession, PathwayVersion, Practitioner

THROTTLE_AFTER = people.THROTTLE_AFTER
LOCK_AFTER = THROTTLE_AFTER  # the old name (tests, scripts)


@dataclass(frozen=True)
class LoginToken:
    handle: str
    token: str = ""
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"LoginToken({self.handle!r}, token=***, expires_at={self.expires_at})"


class IdentityCommands(CommandBase):
    def init_site(self, admin: PractitionerIn) -> tuple[Result, Enrolment]:
        """Create the first admin (once) and install the pathways shipped with this release."""
        if admin.role != ADMIN:
            raise Invalid(f"the first practitioner is the admin; role {admin.role!r} given")
        with self.ctx.write() as session:
            admins = session.exec(select(func.count()).select_from(Practitioner).where(
                Practitioner.role == ADMIN)).one()
            if admins:
                raise AlreadyDone("this site has an admin already; `nim-pathway init` runs "
                                  "once. An admin adds practitioners with `practitioner add`")
            row = Practitioner(**admin.model_dump())
            enrolment = people.enrol(row, self.totp_key())
            people.save(session, row, self.ctx.secret_key)
            if not session.exec(select(Practitioner).where(
                    Practitioner.handle == SERVICE_ACTOR)).first():  # made by migration 0008
                session.add(Practitioner(handle=SERVICE_ACTOR, display_name="nim-pathway "
                                         "service", role="service", team="system",
                                         kind="service"))
            for service in session.exec(select(Practitioner).where(
                    Practitioner.kind == "service")):
                people.save(session, service, self.ctx.secret_key)
            self.audit(session, admin.handle, "site-initialised", None,
                       {"admin": admin.handle, "after": people.public(row)})
            installed = [self._install(session, _bundled(p), admin.handle, p.name).profile
                         for p in sorted(PATHWAYS_DIR.glob("*.yaml"))]
        return Result("", f"{admin.handle} is the site's admin; pathways installed: "
                          f"{', '.join(installed)}"), enrolment

    def install_pathway(self, path: Path, actor: str) -> Result:
        """Install a reviewed pathway version (validated, hashed, audited): cases open only on
        installed versions, and each keeps the version it opened on."""
        try:
            text = read_bounded(path, "the pathway file").decode("utf-8")
        except ConfigError as exc:
            raise Invalid(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise Invalid(f"{path.name}: not UTF-8 text (byte {exc.start}); save it as "
                          "UTF-8") from None
        try:
            spec = parse_pathway(text, source=path.name)
        except PathwayError as exc:
            raise Invalid(str(exc) if str(exc).startswith(path.name) else
                          f"{path.name}: {exc}") from None
        with self.ctx.write() as session:
            self.authorize(session, actor, "install-pathway")
            row = self._install(session, spec, actor, path.name)
        return Result("", f"installed {row.profile}@{row.version} (sha256 {row.sha256[:12]}…)")

    def reenrol(self, handle: str, actor: str) -> Result:
        """A new second factor (a lost phone): the old codes and sessions stop working, and a
        one-time enrolment code goes to the person's own contact (never to the admin)."""
        now = self.ctx.now()
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = people.person(session, handle)
            before = people.public(row)
            code, expires = people.invite(row, self.ctx.secret_key, now)
            people.revoke_sessions(session, row, now, self.ctx.secret_key)
            people.save(session, row, self.ctx.secret_key)
            told = people.send_invitation(session, self.notify, row, code, expires,
                                          self.ctx.secret_key, now)
            self.audit(session, actor, "practitioner-enrolled", None,
                       {"handle": handle, "before": before, "after": people.public(row),
                        "enrolment_sent_until": expires.isoformat()})
        return Result("", f"{handle}'s old codes and sessions no longer work; {told}")

    def redeem_enrolment(self, handle: str, code: str) -> Enrolment:
        """The person, with the enrolment code sent to their own contact: their new second
        factor, shown to them once (the workbench's /enrol page). Once only, before it
        expires; a wrong code is refused and audited (at a capped rate)."""
        totp_key = self.totp_key()
        now = self.ctx.now()
        with self.ctx.write() as session:
            row = session.exec(select(Practitioner).where(Practitioner.handle == handle)
                               .with_for_update()).first()
            if row is None or not row.active or row.kind == "service":
                audit_capped(session, now, handle, "refused-enrolment", None,
                             {"handle_length": len(handle)}, self.ctx.audit_key)
                raise Refused(f"wrong enrolment code for {handle[:60]}")
            check_seal(session, now, row, self.ctx.secret_key, self.ctx.audit_key)
            why = people.invitation_holds(row, self.ctx.secret_key, code, now)
            if why is not None:
                audit_capped(session, now, handle, "refused-enrolment", None, {},
                             self.ctx.audit_key)
                raise Refused(why)
            enrolment = people.enrol(row, totp_key)
            people.save(session, row, self.ctx.secret_key)
            self.audit(session, handle, "enrolment-completed", None,
                       {"handle": handle, "after": people.public(row)})
        return enrolment

    def unlock(self, handle: str, actor: str) -> Result:
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = people.person(session, handle)
            if row.failed_codes == 0 and row.locked_at is None:
                raise AlreadyDone(f"{handle} is not locked or slowed")
            before = people.public(row)
            row.locked_at, row.failed_codes = None, 0
            people.save(session, row, self.ctx.secret_key)
            self.audit(session, actor, "practitioner-unlocked", None,
                       {"handle": handle, "before": before, "after": people.public(row)})
        return Result("", f"{handle} unlocked")

    def recover_admin(self, handle: str, reason: str) -> Result:
        """Break glass (the operator, on the service's host, with its keys; no code asked):
        send an admin a new enrolment code at their own contact and lift any wait, when no
        admin can sign in. Only an admin is recovered; it is audited as the operator's, with
        the reason; the operator never sees the admin's secret."""
        if not reason.strip():
            raise Invalid("give --reason: who asked for the recovery and why (it is audited)")
        with self.ctx.write() as session:
            row = people.person(session, handle)
            if row.role != ADMIN or not row.active:
                raise Refused(f"{handle} is not an active admin; break-glass recovery is for "
                              "the site's admins only (an admin re-enrols everyone else)")
            before = people.public(row)
            now = self.ctx.now()
            code, expires = people.invite(row, self.ctx.secret_key, now)
            people.revoke_sessions(session, row, now, self.ctx.secret_key)
            people.save(session, row, self.ctx.secret_key)
            told = people.send_invitation(session, self.notify, row, code, expires,
                                          self.ctx.secret_key, now)
            self.audit(session, "operator", "break-glass-recovery", None,
                       {"handle": handle, "before": before, "after": people.public(row),
                        "why": reason})
        return Result("", f"{handle} recovered by break glass (audited): their old codes and "
                          f"sessions no longer work; {told}")

    def authenticate(self, handle: str, code: str, case_ref: str | None = None,
                     via: str | None = None) -> str:
        """The handle, if `code` is its owner's current one-time code and unused; otherwise
        refused, audited and counted. After THROTTLE_AFTER wrong codes each try waits longer
        (people.throttled_until, at most an hour); a try while slowed is counted, not checked.
        `via` names a form attempt: a replay of one already refused is refused again without
        counting. The row is locked while it is counted, so parallel tries all count."""
        self.totp_key()  # a process without it says so before anything is counted
        now = self.ctx.now()
        with self.ctx.write() as session:
            if via is not None and refusal_seen(session, case_ref, via):
                raise WrongCode(f"wrong or reused one-time code for {handle}")
            row = self._sign_in_target(session, handle, now)
            code = code.strip()
            if not code:
                raise WrongCode(f"enter the one-time code your authenticator app shows for "
                                f"{handle}")
            until = people.throttled_until(row)
            if until is not None and now < until:
                row.failed_codes += 1
                people.save(session, row, self.ctx.secret_key)
                audit_capped(session, now, handle, "refused-throttled", case_ref,
                             {"failures": row.failed_codes, "via": via}, self.ctx.audit_key)
                raise Refused(f"too many wrong codes for {handle}: try again after "
                              f"{people.uk_time(people.throttled_until(row))}; the person and "
                              "the admins have been told")
            step = self._matching_step(row, code, now)
            if step is None:
                row.failed_codes += 1
                slowed = row.failed_codes >= THROTTLE_AFTER
                if slowed:
                    row.locked_at = now
                    people.tell_throttled(session, self.notify, row, now)
                people.save(session, row, self.ctx.secret_key)
                self.audit(session, handle, "refused-code", case_ref,
                           {"failures": row.failed_codes, "locked": slowed, "via": via})
                session.commit()
                more = (f" Too many wrong codes: the next try waits until "
                        f"{people.uk_time(people.throttled_until(row))}." if slowed else
                        f" After {THROTTLE_AFTER - row.failed_codes} more wrong code(s) each "
                        "try has to wait.")
                raise WrongCode(f"wrong or reused one-time code for {handle}.{more}")
            row.totp_last_step, row.failed_codes, row.locked_at = step, 0, None
            people.save(session, row, self.ctx.secret_key)
        return handle

    def login(self, handle: str, code: str, minutes: int) -> LoginToken:
        """A CLI session for `minutes` (only its hash is stored)."""
        self.authenticate(handle, code)
        token = secrets.token_urlsafe(32)
        now = self.ctx.now()
        with self.ctx.write() as session:
            row = people.person(session, handle)
            login = LoginSession(token_sha256=self._token_digest(token), practitioner_id=row.id,
                                 created_at=now, expires_at=now + timedelta(minutes=minutes))
            login.seal = session_seal(login, self.ctx.secret_key)
            session.add(login)
            self.audit(session, handle, "logged-in", None, {"minutes": minutes})
        return LoginToken(handle, token, now + timedelta(minutes=minutes))

    def session_actor(self, token: str, claimed: str | None = None) -> str:
        """Who a CLI session belongs to, while it is live and its owner active and unlocked;
        claiming to be someone else with it is refused and audited."""
        now = self.ctx.now()
        with self.ctx.read() as session:
            found = session.exec(select(LoginSession, Practitioner).join(
                Practitioner, Practitioner.id == LoginSession.practitioner_id).where(
                LoginSession.token_sha256 == self._token_digest(token))).first()
        if found is None:
            raise Refused("your session is not known here; log in with `nim-pathway login`")
        login, who = found
        if not session_holds(login, self.ctx.secret_key):
            with self.ctx.write() as session:
                audit_capped(session, now, who.handle, "refused-altered-session", None,
                             {"session": login.id}, self.ctx.audit_key)
            raise Refused("your session was changed in the database outside nim-pathway (its "
                          "seal does not verify), so it is refused; log in again with "
                          "`nim-pathway login`")
        if login.revoked_at is not None or _aware(login.expires_at) <= now:
            raise Refused(f"your session as {who.handle} has ended; log in again with "
                          "`nim-pathway login`")
        if not who.active:
            raise Refused(f"{who.handle} is inactive; ask an admin")
        if claimed and claimed != who.handle:
            with self.ctx.write() as session:
                audit_capped(session, now, who.handle, "refused-impersonation", None,
                             {"claimed_length": len(claimed)}, self.ctx.audit_key)
            raise Refused(f"you are logged in as {who.handle}, not {claimed[:60]!r}; each "
                          "person signs in as themselves")
        return who.handle

    def logout(self, token: str) -> Result:
        with self.ctx.write() as session:
            login = session.exec(select(LoginSession).where(
                LoginSession.token_sha256 == self._token_digest(token))).first()
            if login is None or login.revoked_at is not None:
                return Result("", "not logged in")
            login.revoked_at = self.ctx.now()
            login.seal = session_seal(login, self.ctx.secret_key)
            session.add(login)
        return Result("", "logged out")

    def _token_digest(self, token: str) -> str:
        """Keyed: a session row written straight into the database does not verify."""
        return hmac.new(self.ctx.secret_key, token.encode(), hashlib.sha256).hexdigest()

    def totp_key(self) -> bytes:
        """The TOTP key, if this process holds it (else refused, saying where codes are
        checked)."""
        return people.held_totp_key(self.ctx.totp_key)

    def enrolled_secret(self, row: Practitioner) -> str:
        """`row`'s TOTP secret: only a process holding the TOTP key can open it."""
        return people.unwrap_secret(row, self.totp_key())

    def split_totp_key(self) -> Result:
        """Move every second factor enrolled before the TOTP key from the secret key to the
        TOTP key, once (the operator, on the service's host, holding both): afterwards the
        secret key alone opens none. Rows already moved are left; audited with the count."""
        from cryptography.fernet import Fernet, InvalidToken

        totp_key = self.totp_key()
        moved, unreadable = [], []
        with self.ctx.write() as session:
            for row in session.exec(select(Practitioner).where(
                    Practitioner.totp_secret.is_not(None)).with_for_update()):
                if row.totp_secret.startswith((people.WRAPPED, people.INVITED)):
                    continue
                check_seal(session, self.ctx.now(), row, self.ctx.secret_key,
                           self.ctx.audit_key)
                try:
                    secret = Fernet(self.ctx.secret_key).decrypt(
                        row.totp_secret.encode()).decode()
                except InvalidToken:
                    unreadable.append(row.handle)
                    continue
                row.totp_secret = people.wrap_secret(secret, totp_key)
                people.save(session, row, self.ctx.secret_key)
                moved.append(row.handle)
            if moved or unreadable:
                self.audit(session, "operator", "totp-secrets-moved", None,
                           {"moved": len(moved), "unreadable": unreadable})
        left = (f"; {len(unreadable)} could not be opened with the secret key and need "
                f"re-enrolling: {', '.join(unreadable)}" if unreadable else "")
        return Result("", f"{len(moved)} second factor(s) moved to the TOTP key; the secret "
                          f"key no longer opens them{left}")

    def _matching_step(self, row: Practitioner, code: str, now: datetime) -> int | None:
        """The 30-s step `code` belongs to (now, or one step either side for clock drift), if
        it is later than the last code accepted: a code works once."""
        if not (code.isascii() and code.isdigit() and len(code) == 6):  # never "１２３４５６"
            return None
        secret = self.enrolled_secret(row)
        step = int(now.timestamp()) // people.STEP_SECONDS
        for candidate in (step - 1, step, step + 1):
            expected = people.totp(secret).at(candidate * people.STEP_SECONDS)
            if hmac.compare_digest(expected, code) and candidate > (row.totp_last_step or -1):
                return candidate
        return None

    def _sign_in_target(self, session: Session, handle: str, now: datetime) -> Practitioner:
        # locked until this transaction ends (PostgreSQL; SQLite has one writer): parallel
        # tries are counted one after another, none lost
        row = session.exec(select(Practitioner).where(Practitioner.handle == handle)
                           .with_for_update()).first()
        if row is None or not row.active:
            audit_capped(session, now, handle, "refused-unknown-actor", None,
                         {"action": "sign-in", "handle_length": len(handle)},
                         self.ctx.audit_key)
            raise NotFound(f"unknown practitioner {handle[:60]!r}; an admin adds practitioners "
                           "with `nim-pathway practitioner add`")
        check_seal(session, now, row, self.ctx.secret_key, self.ctx.audit_key)
        if row.kind == "service":
            audit_capped(session, now, handle, "refused-service-sign-in", None, {},
                         self.ctx.audit_key)
            raise Refused(f"{handle} is the service identity: it runs flows and cannot sign in")
        if not people.enrolled(row):
            audit_capped(session, now, handle, "refused-not-enrolled", None, {},
                         self.ctx.audit_key)
            raise Refused(f"{handle} has no second factor yet: enrol at the workbench's "
                          "/enrol page with the enrolment code sent to your contact (an admin "
                          f"sends a new one with `nim-pathway practitioner enrol {handle}`)")
        return row

    def _install(self, session: Session, spec: PathwaySpec, actor: str,
                 source: str) -> PathwayVersion:
        digest = spec.digest()
        row = session.exec(select(PathwayVersion).where(
            PathwayVersion.profile == spec.profile, PathwayVersion.version == spec.version
        )).first()
        if row is not None and row.sha256 != digest:
            raise Invalid(f"pathway {spec.profile} version {spec.version} is installed with "
                          "different content; give the edited file a new 'version' so open "
                          "cases keep theirs")
        if row is not None and row.installed_at is not None:
            return row
        if row is None:
            row = PathwayVersion(profile=spec.profile, version=spec.version, sha256=digest,
                                 spec_json=spec.canonical_json(), stored_at=self.ctx.now())
        row.installed_by, row.installed_at = actor, self.ctx.now()
        row.seal = pathway_seal(row, self.ctx.secret_key)
        session.add(row)
        session.flush()
        self.audit(session, actor, "pathway-installed", None,
                   {"profile": spec.profile, "version": spec.version, "sha256": digest,
                    "source": source})
        return row


def _aware(at: datetime) -> datetime:
    """A stored instant as an aware one (SQLite gives it back naive, in UTC)."""
    from datetime import UTC

    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _bundled(path: Path) -> PathwaySpec:
    try:
        return parse_pathway(path.read_text(encoding="utf-8"))
    except PathwayError as exc:
        raise Invalid(f"{path.name}: {exc}") from None


__all__ = ["IdentityCommands", "Enrolment", "LoginToken", "code_at", "SERVICE_ACTOR", "LOCK_AFTER",
           "THROTTLE_AFTER"]
