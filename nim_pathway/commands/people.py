"""What the identity and admin commands share about a practitioner row: the one way it is
written (with a fresh seal), their second factor (RFC 6238 TOTP, the secret kept encrypted
under the TOTP key, NIM_TOTP_KEY_FILE, which only the processes that check codes hold), their
CLI sessions ended, and what the audit keeps of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from models.errors import ConfigError, NotFound, Refused
from nim_pathway.policy import seal_of
from store.row_seals import session_seal
from store.tables import LoginSession, Practitioner

ISSUER = "nim-pathway"
STEP_SECONDS = 30  # RFC 6238's default time step
THROTTLE_AFTER = 5  # wrong codes in a row before each further try must wait
FIRST_DELAY_SECONDS = 30  # the wait after THROTTLE_AFTER wrong codes, doubled with each more
MAX_DELAY = timedelta(hours=1)  # the longest wait: no one is locked out for good
INVITED = "i1:"  # no secret yet: an enrolment code was sent to the person (its keyed digest)
WRAPPED = "t1:"  # a secret encrypted under the TOTP key; without it: under the secret key (old)
NO_TOTP_KEY = ("this process does not hold the TOTP key ({why}), so it cannot check or enrol "
               "one-time codes: sign in at the workbench, or run this as the service account "
               "that holds NIM_TOTP_KEY_FILE (docs/DEPLOY.md)")


@dataclass(frozen=True)
class Enrolment:
    """A new second factor, shown once to its owner (QR code or key), never stored plain."""

    handle: str
    secret: str
    uri: str  # otpauth:// for an authenticator app

    def __repr__(self) -> str:  # never in a log or a traceback by accident
        return f"Enrolment({self.handle!r}, secret=***)"


def totp(secret: str):  # noqa: ANN201 (pyotp is imported late: --help stays fast)
    import pyotp

    return pyotp.TOTP(secret, interval=STEP_SECONDS)


def code_at(secret: str, at: datetime) -> str:
    """The one-time code for `secret` at `at` (what an authenticator app shows then)."""
    return totp(secret).at(at)


def save(session: Session, row: Practitioner, secret_key: bytes) -> None:
    """Write a practitioner with a fresh seal (the only way their identity changes)."""
    row.seal = seal_of(row, secret_key)
    session.add(row)


def held_totp_key(source: Callable[[], bytes] | None) -> bytes:
    """The TOTP key, if this process holds it; otherwise refused, saying where codes are
    checked (an operator's CLI runs without it)."""
    if source is None:
        raise Refused(NO_TOTP_KEY.format(why="none configured"))
    try:
        return source()
    except ConfigError as exc:
        raise Refused(NO_TOTP_KEY.format(why=str(exc).rstrip("."))) from None


def wrap_secret(secret: str, totp_key: bytes) -> str:
    from cryptography.fernet import Fernet

    return WRAPPED + Fernet(totp_key).encrypt(secret.encode()).decode()


def unwrap_secret(row: Practitioner, totp_key: bytes) -> str:
    """The enrolled TOTP secret of `row`, opened with the TOTP key."""
    from cryptography.fernet import Fernet, InvalidToken

    value = row.totp_secret or ""
    if not enrolled(row):
        raise Refused(f"{row.handle} has not enrolled yet (an enrolment code was sent to their "
                      "contact, or none: `practitioner enrol` sends one)")
    if not value.startswith(WRAPPED):
        raise Refused(f"{row.handle}'s second factor is still encrypted under the secret key "
                      "(enrolled before the TOTP key): the operator runs `nim-pathway keys "
                      "split-totp` once on the service's host")
    try:
        return Fernet(totp_key).decrypt(value[len(WRAPPED):].encode()).decode()
    except InvalidToken:
        raise Refused(f"{row.handle}'s second factor was enrolled under another TOTP key "
                      "(NIM_TOTP_KEY_FILE); an admin re-enrols them") from None


def enrol(row: Practitioner, totp_key: bytes) -> Enrolment:
    """A new second factor on the row (its old codes stop working); not yet saved."""
    import pyotp

    secret = pyotp.random_base32()
    row.totp_secret = wrap_secret(secret, totp_key)
    row.totp_last_step, row.failed_codes, row.locked_at = None, 0, None
    return Enrolment(row.handle, secret,
                     totp(secret).provisioning_uri(name=row.handle, issuer_name=ISSUER))


ENROL_VALID = timedelta(hours=24)  # how long an enrolment code works
ENROL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from a message


def _enrol_digest(secret_key: bytes, handle: str, code: str) -> str:
    import hashlib
    import hmac

    return hmac.new(secret_key, f"nim-enrolment|{handle}|{code}".encode(),
                    hashlib.sha256).hexdigest()


def normal_enrol_code(code: str) -> str:
    """An enrolment code as typed, without spaces or dashes, upper case (ASCII only)."""
    cleaned = "".join(c for c in code.strip().upper() if c not in " -")
    return cleaned if cleaned.isascii() and cleaned.isalnum() and len(cleaned) <= 40 else ""


def invite(row: Practitioner, secret_key: bytes, now: datetime) -> tuple[str, datetime]:
    """Replace the row's second factor with a pending enrolment (its old codes stop working):
    a one-time enrolment code for its owner, valid ENROL_VALID; only its keyed digest and
    expiry are kept (in the sealed `totp_secret`, so neither can be forged or extended).
    Returns (code, expires); not yet saved."""
    import secrets

    code = "".join(secrets.choice(ENROL_ALPHABET) for _ in range(16))  # 80 bits
    expires = now + ENROL_VALID
    row.totp_secret = f"{INVITED}{_enrol_digest(secret_key, row.handle, code)}|" \
                      f"{expires.astimezone(UTC).isoformat()}"
    row.totp_last_step, row.failed_codes, row.locked_at = None, 0, None
    return "-".join(code[i:i + 4] for i in range(0, 16, 4)), expires


def invitation_holds(row: Practitioner, secret_key: bytes, code: str,
                     now: datetime) -> str | None:
    """Why `code` does not enrol `row` now (None: it does)."""
    import hmac

    value = row.totp_secret or ""
    if not value.startswith(INVITED):
        return f"{row.handle} has no enrolment waiting; ask an admin for a new one"
    digest, _, expires = value[len(INVITED):].partition("|")
    if now >= datetime.fromisoformat(expires):
        return f"the enrolment code for {row.handle} has expired; ask an admin for a new one"
    if not hmac.compare_digest(digest, _enrol_digest(secret_key, row.handle,
                                                     normal_enrol_code(code))):
        return f"wrong enrolment code for {row.handle}"
    return None


def enrolled(row: Practitioner) -> bool:
    """Whether the row has a second factor now (not just an enrolment waiting)."""
    return bool(row.totp_secret) and not row.totp_secret.startswith(INVITED)


def send_invitation(session: Session, notify: Callable[[], Any], row: Practitioner,
                    code: str, expires: datetime, secret_key: bytes, now: datetime) -> str:
    """Queue the enrolment code to its owner's own contact (the outbox; the code sealed there
    under a key derived from the secret key, and never kept in the sent text). What the
    admin is told about where it went (never the code)."""
    from notifications.outbox import enqueue

    if not row.contact:
        return (f"{row.handle} has no contact, so no enrolment code was sent: set one "
                f"(`practitioner update {row.handle} --contact …`), then `practitioner enrol "
                f"{row.handle}` sends a code there")
    try:
        config = notify()
    except ConfigError as exc:
        raise Refused(f"the enrolment code cannot be sent ({exc}); nothing was changed") \
            from None
    enqueue(session, config, "enrolment", f"enrolment/{row.handle}/{now.isoformat()}", None,
            f"practitioner:{row.handle}", {"handle": row.handle,
                                           "sealed_code": seal_code(secret_key, code),
                                           "expires": uk_time(expires) + f" on {expires:%d %b}"},
            now)
    return (f"an enrolment code was sent to {row.handle}'s own contact (valid 24 hours, once); "
            "they enrol at the workbench's /enrol page and see their key there only")


def _code_fernet(secret_key: bytes):  # noqa: ANN202 - a Fernet
    import base64
    import hashlib
    import hmac

    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(hmac.new(secret_key, b"nim-enrolment-outbox",
                                                    hashlib.sha256).digest()))


def seal_code(secret_key: bytes, code: str) -> str:
    return _code_fernet(secret_key).encrypt(code.encode()).decode()


def open_code(secret_key: bytes, sealed: str) -> str:
    return _code_fernet(secret_key).decrypt(sealed.encode()).decode()


def person(session: Session, handle: str) -> Practitioner:
    """A practitioner administered by hand (never the service identity), by handle."""
    row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
    if row is None:
        raise NotFound(f"unknown practitioner {handle[:60]!r}; `nim-pathway practitioner "
                       "list` shows them")
    if row.kind == "service":
        raise Refused(f"{handle} is the service identity; it is not administered by hand")
    return row


def revoke_sessions(session: Session, row: Practitioner, now: datetime,
                    secret_key: bytes) -> None:
    """End the practitioner's live CLI sessions (each sealed again as ended)."""
    for login in session.exec(select(LoginSession).where(
            LoginSession.practitioner_id == row.id, LoginSession.revoked_at.is_(None))):
        login.revoked_at = now
        login.seal = session_seal(login, secret_key)
        session.add(login)


def throttled_until(row: Practitioner) -> datetime | None:
    """Until when sign-in tries are refused unchecked, after THROTTLE_AFTER wrong codes: 30 s
    after the last wrong code, doubling with each further try, never more than an hour."""
    if row.failed_codes < THROTTLE_AFTER or row.locked_at is None:
        return None
    at = row.locked_at if row.locked_at.tzinfo else row.locked_at.replace(tzinfo=UTC)
    extra = min(row.failed_codes - THROTTLE_AFTER, 16)
    return at + min(timedelta(seconds=FIRST_DELAY_SECONDS * 2 ** extra), MAX_DELAY)


def uk_time(at: datetime | None) -> str:
    from models.clock import UK

    return f"{at.astimezone(UK):%H:%M:%S} UK time" if at else "now"


def tell_throttled(session: Session, notify: Callable[[], Any], row: Practitioner,
                   now: datetime) -> None:
    """Tell the person and the admins (the outbox) that wrong codes slowed the sign-in."""
    from models.errors import ConfigError
    from notifications.outbox import enqueue

    context = {"handle": row.handle, "failures": row.failed_codes,
               "until": uk_time(throttled_until(row))}
    try:
        config = notify()
    except ConfigError:
        return  # no notification config: the audit row still says it
    for recipient in (row.handle, "admin"):
        enqueue(session, config, "sign-in-slowed",
                f"sign-in-slowed/{row.handle}/{recipient}/{now.isoformat()}", None,
                recipient, context, now)


def public(row: Practitioner) -> dict:
    """What the audit keeps of a practitioner: never the secret."""
    return {"role": row.role, "team": row.team, "active": row.active,
            "locked": row.locked_at is not None, "enrolled": enrolled(row)}
