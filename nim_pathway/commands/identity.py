"""Who is acting: the first admin, practitioners' one-time codes (RFC 6238 TOTP), lockout,
CLI login sessions, the service identity and installed pathway versions.

A handle alone proves nothing. The CLI and the Prefect forms turn a handle plus a one-time
code (or a CLI session made with one) into an authenticated handle, and only then call the
other commands, which take that handle as the actor. Secrets are kept encrypted with a key held
outside the database (NIM_SECRET_KEY_FILE); session tokens are kept as SHA-256 only. Every
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

from models.errors import AlreadyDone, ConfigError, Invalid, NotFound, Refused
from models.pathway import PATHWAYS_DIR, PathwayError, PathwaySpec, parse_pathway
from models.schemas import PractitionerIn
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.policy import ADMIN, SERVICE_ACTOR, audit_capped, check_seal, seal_of
from store.audit import refusal_seen
from store.files import read_bounded
from store.tables import LoginSession, PathwayVersion, Practitioner

ISSUER = "nim-pathway"
STEP_SECONDS = 30  # RFC 6238's default time step
LOCK_AFTER = 5  # wrong codes in a row before an admin must unlock


@dataclass(frozen=True)
class Enrolment:
    """A new second factor, shown once to its owner (QR code or key), never stored plain."""

    handle: str
    secret: str
    uri: str  # otpauth:// for an authenticator app

    def __repr__(self) -> str:  # never in a log or a traceback by accident
        return f"Enrolment({self.handle!r}, secret=***)"


@dataclass(frozen=True)
class LoginToken:
    handle: str
    token: str = ""
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"LoginToken({self.handle!r}, token=***, expires_at={self.expires_at})"


def _totp(secret: str):  # noqa: ANN202 (pyotp is imported late: --help stays fast)
    import pyotp

    return pyotp.TOTP(secret, interval=STEP_SECONDS)


def code_at(secret: str, at: datetime) -> str:
    """The one-time code for `secret` at `at` (what an authenticator app shows then)."""
    return _totp(secret).at(at)


class IdentityCommands(CommandBase):
    # ---- bootstrap and administration -------------------------------------------------

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
            enrolment = self._enrol(row)
            self._save(session, row)
            if not session.exec(select(Practitioner).where(
                    Practitioner.handle == SERVICE_ACTOR)).first():  # made by migration 0008
                session.add(Practitioner(handle=SERVICE_ACTOR, display_name="nim-pathway "
                                         "service", role="service", team="system",
                                         kind="service"))
            for service in session.exec(select(Practitioner).where(
                    Practitioner.kind == "service")):
                self._save(session, service)
            self.audit(session, admin.handle, "site-initialised", None,
                       {"admin": admin.handle, "after": _public(row)})
            installed = [self._install(session, _bundled(p), admin.handle, p.name).profile
                         for p in sorted(PATHWAYS_DIR.glob("*.yaml"))]
        return Result("", f"{admin.handle} is the site's admin; pathways installed: "
                          f"{', '.join(installed)}"), enrolment

    def add_practitioner(self, p: PractitionerIn, actor: str) -> tuple[Result, Enrolment]:
        """Register a practitioner and enrol their second factor (admin only)."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            self._known_role(session, p.role)
            if session.exec(select(Practitioner).where(Practitioner.handle == p.handle)).first():
                raise AlreadyDone(f"practitioner {p.handle!r} exists already; change their "
                                  f"contact or digest with `nim-pathway practitioner update "
                                  f"{p.handle}`, their role with `practitioner role`")
            row = Practitioner(**p.model_dump())
            enrolment = self._enrol(row)
            self._save(session, row)
            self.audit(session, actor, "practitioner-added", None,
                       {"handle": p.handle, "before": None, "after": _public(row)})
        return Result("", f"added {p.handle} ({p.role})"), enrolment

    def change_role(self, handle: str, role: str, actor: str) -> Result:
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            self._known_role(session, role)
            row = self._person(session, handle)
            if row.role == role:
                raise AlreadyDone(f"{handle} is {role} already")
            if row.role == ADMIN:
                self._keep_an_admin(session, handle, "change the role of")
            before = _public(row)
            row.role = role
            self._revoke_sessions(session, row)
            self._save(session, row)
            self.audit(session, actor, "practitioner-changed", None,
                       {"handle": handle, "before": before, "after": _public(row)})
        return Result("", f"{handle} is now {role}; their CLI sessions were ended")

    def update_practitioner(self, handle: str, actor: str, contact: str | None = None,
                            digest: bool | None = None, active: bool | None = None) -> Result:
        """Change a practitioner's contact ("" removes it), daily digest or whether they may
        act (admin only, like `add`); audited with what changed, contacts masked."""
        if contact is None and digest is None and active is None:
            raise Invalid("nothing to change: give --contact, --digest/--no-digest or "
                          "--active/--inactive")
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = self._person(session, handle)
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
                self._revoke_sessions(session, row)
            before = {k: _shown(k, getattr(row, k)) for k in changed}
            for name, value in changed.items():
                setattr(row, name, value)
            self._save(session, row)  # `active` is sealed: a fresh seal
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
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = self._person(session, handle)
            if not row.active:
                raise AlreadyDone(f"{handle} is inactive already")
            if row.role == ADMIN:
                self._keep_an_admin(session, handle, "deactivate")
            before = _public(row)
            row.active = False
            self._revoke_sessions(session, row)
            self._save(session, row)
            self.audit(session, actor, "practitioner-changed", None,
                       {"handle": handle, "before": before, "after": _public(row),
                        "reason_length": len(reason)})
        return Result("", f"{handle} deactivated; their open tasks keep them as assignee until "
                          "reassigned")

    def reenrol(self, handle: str, actor: str) -> tuple[Result, Enrolment]:
        """A new second factor (a lost phone): the old codes and sessions stop working."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = self._person(session, handle)
            before = _public(row)
            enrolment = self._enrol(row)
            self._revoke_sessions(session, row)
            self._save(session, row)
            self.audit(session, actor, "practitioner-enrolled", None,
                       {"handle": handle, "before": before, "after": _public(row)})
        return Result("", f"{handle} enrolled again; their old codes no longer work"), enrolment

    def unlock(self, handle: str, actor: str) -> Result:
        with self.ctx.write() as session:
            self.authorize(session, actor, "manage-practitioners")
            row = self._person(session, handle)
            if row.locked_at is None:
                raise AlreadyDone(f"{handle} is not locked")
            before = _public(row)
            row.locked_at, row.failed_codes = None, 0
            self._save(session, row)
            self.audit(session, actor, "practitioner-unlocked", None,
                       {"handle": handle, "before": before, "after": _public(row)})
        return Result("", f"{handle} unlocked")

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

    # ---- authentication ---------------------------------------------------------------

    def authenticate(self, handle: str, code: str, case_ref: str | None = None,
                     via: str | None = None) -> str:
        """The handle, if `code` is its owner's current one-time code and unused; otherwise
        refused, audited and counted towards the lockout. `via` names a form attempt: a
        replay of one already refused is refused again without counting."""
        now = self.ctx.now()
        with self.ctx.write() as session:
            if via is not None and refusal_seen(session, case_ref, via):
                raise Refused(f"wrong or reused one-time code for {handle}")
            row = self._sign_in_target(session, handle, now)
            if not code.strip():
                raise Refused(f"enter the one-time code your authenticator app shows for "
                              f"{handle}")
            step = self._matching_step(row, code.strip(), now)
            if step is None:
                row.failed_codes += 1
                locked = row.failed_codes >= LOCK_AFTER
                if locked:
                    row.locked_at = now
                session.add(row)
                self.audit(session, handle, "refused-code", case_ref,
                           {"failures": row.failed_codes, "locked": locked, "via": via})
                session.commit()
                more = (" The account is now locked; an admin unlocks it with "
                        f"`nim-pathway practitioner unlock {handle}`." if locked else
                        f" {LOCK_AFTER - row.failed_codes} more wrong code(s) lock it.")
                raise Refused(f"wrong or reused one-time code for {handle}.{more}")
            row.totp_last_step, row.failed_codes = step, 0
            session.add(row)
        return handle

    def login(self, handle: str, code: str, minutes: int) -> LoginToken:
        """A CLI session for `minutes` (only its hash is stored)."""
        self.authenticate(handle, code)
        token = secrets.token_urlsafe(32)
        now = self.ctx.now()
        with self.ctx.write() as session:
            row = self._person(session, handle)
            session.add(LoginSession(token_sha256=self._token_digest(token), practitioner_id=row.id,
                                     created_at=now, expires_at=now + timedelta(minutes=minutes)))
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
        if login.revoked_at is not None or login.expires_at <= now:
            raise Refused(f"your session as {who.handle} has ended; log in again with "
                          "`nim-pathway login`")
        if not who.active or who.locked_at is not None:
            raise Refused(f"{who.handle} is inactive or locked; ask an admin")
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
            session.add(login)
        return Result("", "logged out")

    # ---- helpers ----------------------------------------------------------------------

    def _token_digest(self, token: str) -> str:
        """Keyed: a session row written straight into the database does not verify."""
        return hmac.new(self.ctx.secret_key, token.encode(), hashlib.sha256).hexdigest()

    def _save(self, session: Session, row: Practitioner) -> None:
        """Write a practitioner with a fresh seal (the only way their identity changes)."""
        row.seal = seal_of(row, self.ctx.secret_key)
        session.add(row)

    def _enrol(self, row: Practitioner) -> Enrolment:
        from cryptography.fernet import Fernet

        secret = _random_base32()
        row.totp_secret = Fernet(self.ctx.secret_key).encrypt(secret.encode()).decode()
        row.totp_last_step, row.failed_codes, row.locked_at = None, 0, None
        return Enrolment(row.handle, secret,
                         _totp(secret).provisioning_uri(name=row.handle, issuer_name=ISSUER))

    def enrolled_secret(self, row: Practitioner) -> str:
        from cryptography.fernet import Fernet, InvalidToken

        try:
            return Fernet(self.ctx.secret_key).decrypt(row.totp_secret.encode()).decode()
        except InvalidToken:
            raise Refused(f"{row.handle}'s second factor was enrolled under another secret key "
                          "(NIM_SECRET_KEY_FILE); an admin re-enrols them") from None

    def _matching_step(self, row: Practitioner, code: str, now: datetime) -> int | None:
        """The 30-s step `code` belongs to (now, or one step either side for clock drift), if
        it is later than the last code accepted: a code works once."""
        if not (code.isdigit() and len(code) == 6):
            return None
        secret = self.enrolled_secret(row)
        step = int(now.timestamp()) // STEP_SECONDS
        for candidate in (step - 1, step, step + 1):
            expected = _totp(secret).at(candidate * STEP_SECONDS)
            if hmac.compare_digest(expected, code) and candidate > (row.totp_last_step or -1):
                return candidate
        return None

    def _sign_in_target(self, session: Session, handle: str, now: datetime) -> Practitioner:
        row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
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
        if row.locked_at is not None:
            audit_capped(session, now, handle, "refused-locked", None, {}, self.ctx.audit_key)
            raise Refused(f"{handle} is locked after {LOCK_AFTER} wrong codes; an admin unlocks "
                          f"it with `nim-pathway practitioner unlock {handle}`")
        if row.totp_secret is None:
            audit_capped(session, now, handle, "refused-not-enrolled", None, {},
                         self.ctx.audit_key)
            raise Refused(f"{handle} has no second factor yet; an admin enrols them with "
                          f"`nim-pathway practitioner enrol {handle}`")
        return row

    @staticmethod
    def _person(session: Session, handle: str) -> Practitioner:
        row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
        if row is None:
            raise NotFound(f"unknown practitioner {handle[:60]!r}; `nim-pathway practitioner "
                           "list` shows them")
        if row.kind == "service":
            raise Refused(f"{handle} is the service identity; it is not administered by hand")
        return row

    @staticmethod
    def _keep_an_admin(session: Session, handle: str, doing: str) -> None:
        others = session.exec(select(func.count()).select_from(Practitioner).where(
            Practitioner.role == ADMIN, Practitioner.active, Practitioner.handle != handle)).one()
        if not others:
            raise Refused(f"cannot {doing} {handle}: they are the only active admin; add "
                          "another admin first")

    def _revoke_sessions(self, session: Session, row: Practitioner) -> None:
        for login in session.exec(select(LoginSession).where(
                LoginSession.practitioner_id == row.id, LoginSession.revoked_at.is_(None))):
            login.revoked_at = self.ctx.now()
            session.add(login)

    def _known_role(self, session: Session, role: str) -> None:
        """A role some installed pathway declares, or the site's admin."""
        roles = {ADMIN}.union(*(self.ctx.spec(session, v).roles for v in session.exec(
            select(PathwayVersion.id).where(PathwayVersion.installed_at.is_not(None)))))
        if role not in roles:
            raise Invalid(f"unknown role {role!r}; roles: {', '.join(sorted(roles))}")

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
        session.add(row)
        session.flush()
        self.audit(session, actor, "pathway-installed", None,
                   {"profile": spec.profile, "version": spec.version, "sha256": digest,
                    "source": source})
        return row


def _bundled(path: Path) -> PathwaySpec:
    try:
        return parse_pathway(path.read_text(encoding="utf-8"))
    except PathwayError as exc:
        raise Invalid(f"{path.name}: {exc}") from None


def _random_base32() -> str:
    import pyotp

    return pyotp.random_base32()


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


def _public(row: Practitioner) -> dict:
    """What the audit keeps of a practitioner: never the secret."""
    return {"role": row.role, "team": row.team, "active": row.active,
            "locked": row.locked_at is not None, "enrolled": row.totp_secret is not None}


__all__ = ["IdentityCommands", "Enrolment", "LoginToken", "code_at", "SERVICE_ACTOR", "LOCK_AFTER"]
