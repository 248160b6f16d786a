"""What the identity and admin commands share about a practitioner row: the one way it is
written (with a fresh seal), their second factor (RFC 6238 TOTP, the secret kept encrypted
under NIM_SECRET_KEY_FILE), their CLI sessions ended, and what the audit keeps of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from models.errors import NotFound, Refused
from nim_pathway.policy import seal_of
from store.tables import LoginSession, Practitioner

ISSUER = "nim-pathway"
STEP_SECONDS = 30  # RFC 6238's default time step


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


def enrol(row: Practitioner, secret_key: bytes) -> Enrolment:
    """A new second factor on the row (its old codes stop working); not yet saved."""
    import pyotp
    from cryptography.fernet import Fernet

    secret = pyotp.random_base32()
    row.totp_secret = Fernet(secret_key).encrypt(secret.encode()).decode()
    row.totp_last_step, row.failed_codes, row.locked_at = None, 0, None
    return Enrolment(row.handle, secret,
                     totp(secret).provisioning_uri(name=row.handle, issuer_name=ISSUER))


def person(session: Session, handle: str) -> Practitioner:
    """A practitioner administered by hand (never the service identity), by handle."""
    row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).first()
    if row is None:
        raise NotFound(f"unknown practitioner {handle[:60]!r}; `nim-pathway practitioner "
                       "list` shows them")
    if row.kind == "service":
        raise Refused(f"{handle} is the service identity; it is not administered by hand")
    return row


def revoke_sessions(session: Session, row: Practitioner, now: datetime) -> None:
    """End the practitioner's live CLI sessions."""
    for login in session.exec(select(LoginSession).where(
            LoginSession.practitioner_id == row.id, LoginSession.revoked_at.is_(None))):
        login.revoked_at = now
        session.add(login)


def public(row: Practitioner) -> dict:
    """What the audit keeps of a practitioner: never the secret."""
    return {"role": row.role, "team": row.team, "active": row.active,
            "locked": row.locked_at is not None, "enrolled": row.totp_secret is not None}
