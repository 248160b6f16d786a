"""The case store: SQLModel tables. The source of truth for every case fact.

Identity (names, dates of birth, addresses) lives only in `Child` and `Caregiver.name`.
Every other table, the audit log included, carries the case reference and keys only.
Schema changes go through Alembic (migrations/); `alembic check` runs in the tests.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import AutoString, Field, SQLModel


def _json(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=kw.get("nullable", True)))


class PathwayVersion(SQLModel, table=True):
    """The exact pathway a case started on, kept so the case never changes underfoot."""

    __tablename__ = "pathway_version"
    __table_args__ = (UniqueConstraint("profile", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    profile: str
    version: str
    sha256: str
    spec_json: str
    stored_at: datetime
    installed_by: str | None = None  # the admin who installed it (cases open only on these)
    installed_at: datetime | None = None
    seal: str | None = Field(default=None, repr=False)  # MAC of profile, version, sha256


class Case(SQLModel, table=True):
    __tablename__ = "nim_case"
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, index=True)  # NIM-2026-0001
    jurisdiction: str
    site: str
    pathway_id: int = Field(foreign_key="pathway_version.id")
    settings: dict | None = _json()  # pathway settings overridden for this case
    stage: str | None = Field(default=None, index=True)
    opened_at: datetime
    closed_on: date | None = None
    legal_status: str | None = None
    # the order that disposed of the proceedings (meets the 26-week clock)
    final_order_kind: str | None = None
    final_order_follows_recommendation: bool | None = None
    exit_reason: str | None = None  # the early exit the family took
    paused_since: date | None = None
    pauses: list | None = _json()  # [{start, end}] of past pauses (reasons stay in the audit)
    previous_episode: str | None = None  # an earlier episode of this family (re-referral)
    child_orders: dict | None = _json()  # per-child final orders, where a sibling group's differ
    stage_runs: dict | None = _json()  # stage -> the Prefect run started for it (sync reads by id)
    programme: str = Field(default="nim", index=True)  # the programme whose pathway it is on
    # one caregiver's or child's work paused: {person: since}
    paused_people: dict | None = _json()
    # court directions binding the tasks that produce a document:
    # [{document, by, given_on, tasks}], in the order given
    directions: list | None = _json()
    # interim orders (and orders after the disposal, e.g. adoption) made for each child:
    # [{made_on, kind, child, court}], in the order recorded
    orders: list | None = _json()


class CourtExtension(SQLModel, table=True):
    """One extension of the court's timetable (Children Act 1989 s32(5)), as granted."""

    __tablename__ = "court_extension"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    granted_on: date
    weeks: int
    reason: str
    child: str | None = None  # a child's own application's timetable; None: the family's
    recorded_by: str
    recorded_at: datetime


class CaseAnchor(SQLModel, table=True):
    """Key dates: care entry, referral, consent, proceedings issued, hearings, stage starts."""

    __tablename__ = "case_anchor"
    __table_args__ = (UniqueConstraint("case_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    name: str
    value: date
    cause: str | None = None


class Child(SQLModel, table=True):
    """The only place a child's identity lives."""

    __table_args__ = (UniqueConstraint("case_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    key: str = "child-1"  # child-1, child-2, ... in referral order: what leaves the store
    removed_on: date | None = None  # left the family episode
    # sealed under the case's key at rest (store/sealing.py): the date of birth is stored as
    # ciphertext text and read back as a date
    given_name: str | None
    family_name: str | None
    date_of_birth: date | None = Field(default=None, sa_type=AutoString)
    address: str | None = None
    erased_at: datetime | None = None
    # a keyed hash (HMAC under a key held outside the database) of the normalised names and
    # date of birth, set when the case opens: finds the same child on another open case
    # without opening its identity; the database owner cannot test guesses against it
    identity_digest: str | None = Field(default=None, index=True)


class Caregiver(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("case_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    key: str  # mother, father, foster-carer, father-2
    relationship: str
    name: str | None = None  # identity: case store only
    consent: str | None = None  # given, declined, not-reached, withdrawn
    consent_on: date | None = None
    children: list | None = _json()  # child keys this person cares for; null = all
    active: bool = True  # False once they left the case


class Placement(SQLModel, table=True):
    """Every placement and placement change, with its date and reason."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    child: str = "child-1"  # whose placement
    kind: str  # foster, kinship, mother-and-baby, residential, home
    start: date
    end: date | None = None
    reason: str | None = None


class ContactArrangement(SQLModel, table=True):
    """How often a child sees a parent or carer, and whether it is supervised (a new
    arrangement for the same pair ends the previous one)."""

    __tablename__ = "contact_arrangement"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    child: str
    caregiver: str
    per_week: float
    supervised: bool
    start: date
    end: date | None = None
    recorded_by: str
    recorded_at: datetime


class TreatmentSession(SQLModel, table=True):
    """A treatment session offered to the family, and whether it was attended."""

    __tablename__ = "treatment_session"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    held_on: date
    kind: str
    caregiver: str | None = None
    child: str | None = None
    attended: bool
    recorded_by: str
    recorded_at: datetime


class Practitioner(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    handle: str = Field(unique=True, index=True)  # e.g. "psy-ward"
    display_name: str
    role: str = Field(index=True)
    team: str
    contact: str | None = None  # a named target ("email:x@y.org") or an Apprise URL, no secrets
    active: bool = True
    digest: bool = False  # reminders in one daily digest instead of single messages
    kind: str = "person"  # "service": flows, the sweep and the dispatcher; never human work
    totp_secret: str | None = Field(default=None, repr=False)  # encrypted (NIM_SECRET_KEY_FILE)
    totp_last_step: int | None = None  # the last accepted code's 30-s step: no code twice
    failed_codes: int = 0  # wrong codes since the last good one; slowed from THROTTLE_AFTER
    locked_at: datetime | None = None  # the last wrong code once slowed (identity.py)
    seal: str | None = Field(default=None, repr=False)  # HMAC of who they are (identity.py)


class CaseKey(SQLModel, table=True):
    """A case's data key, wrapped under the master key (store/crypto.py); NULL once erased."""

    __tablename__ = "case_key"
    id: int | None = Field(default=None, primary_key=True)
    case_ref: str = Field(unique=True, index=True)
    wrapped: str | None = Field(default=None, repr=False)
    created_at: datetime
    destroyed_at: datetime | None = None


class LoginSession(SQLModel, table=True):
    """A short-lived CLI session from `nim-pathway login` (only the token's keyed hash is kept:
    whoever writes the database without the secret key cannot make one)."""

    __tablename__ = "login_session"
    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(unique=True, index=True)  # HMAC-SHA256 under the secret key
    practitioner_id: int = Field(foreign_key="practitioner.id", index=True)
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    seal: str | None = Field(default=None, repr=False)  # MAC of holder, times (secret key)


class Task(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("case_id", "key"),
        Index("ix_task_state_due", "state", "due"),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    key: str
    spec_id: str
    stage: str
    title: str
    role: str = Field(index=True)
    caregiver: str | None = None
    child: str | None = None  # the child this work is about (per-child work)
    occurrence: int = 1
    anchor: str
    after: list | None = _json()
    due: date
    due_explanation: str
    state: str  # blocked, open, done, cancelled
    assignee_id: int | None = Field(default=None, foreign_key="practitioner.id", index=True)
    outcome: dict | None = _json()
    completed_on: date | None = None
    completed_by: str | None = None
    handover_note: str | None = None
    flow_run_id: str | None = None  # the Prefect run waiting for this task (for deep links)
    delay_cause: str | None = None  # court, family, capacity, other: why it moved or slipped
    pathway_due: date | None = None  # the pathway's own date, when a court direction's is earlier
    created_at: datetime
    updated_at: datetime


class Decision(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("case_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    kind: str  # d1, d2
    outcome: str
    decided_on: date
    decided_by: str
    rationale: str = ""


class Timer(SQLModel, table=True):
    """A reminder, due notice, escalation or clock warning; fired exactly once by the sweep.

    `fired_at` is when a sweep settled it. `skip_reason` is set when that sweep queued no
    message for it (a sweep catching up sends a task only its most relevant timer), so a timer
    that said nothing says why."""

    __table_args__ = (Index("ix_timer_pending", "fired_at", "cancelled_at", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    case_id: int = Field(foreign_key="nim_case.id", index=True)
    task_key: str | None = None
    kind: str
    role: str
    due_at: datetime
    detail: dict | None = _json()
    fired_at: datetime | None = None
    cancelled_at: datetime | None = None
    skip_reason: str | None = None


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: each row's hash covers its content and the previous hash."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    actor: str
    case_ref: str | None = Field(default=None, index=True)
    action: str
    detail: dict | None = _json()
    prev_hash: str
    hash: str = Field(unique=True)


class Intake(SQLModel, table=True):
    """A referral staged by a coordinator so that the Prefect UI only ever sees its handle.

    The open-case deployment's form takes the handle; the identity in `referral` never
    becomes a Prefect parameter."""

    id: int | None = Field(default=None, primary_key=True)
    handle: str = Field(unique=True, index=True)  # e.g. IN-7F3A2C9D
    referral: dict | None = _json()  # the validated referral, identity included
    created_by: str
    created_at: datetime
    case_ref: str | None = None  # set once the case is opened (idempotent re-runs)


class Outbox(SQLModel, table=True):
    """A rendered message to one recipient, delivered by the dispatcher exactly once.

    `recipient` names a practitioner or a channel; the Apprise URL (with any secret) is
    resolved from configuration at send time and never stored here or in Prefect."""

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True)
    case_ref: str | None = Field(default=None, index=True)
    kind: str
    recipient: str  # "practitioner:<handle>", "channel:<name>" or "admin"
    subject: str
    body_text: str
    body_html: str
    ics: str | None = None
    meta: dict | None = _json()  # task key, title, due, link: for digests and listings
    # pending, held (for a digest), digested, sent, dead; dropped: no longer true when it was
    # to be sent (its task done, cancelled or re-owned), with the reason in last_error
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime
    claimed_until: datetime | None = None  # a dispatcher's lease
    claim_token: str | None = None  # which dispatcher holds the lease
    reclaimed: int = 0  # leases that expired mid-send: a possible duplicate, counted
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class OrchestrationChange(SQLModel, table=True):
    """A case whose Prefect runs must catch up with the case store (the orchestration
    journal): written in the same transaction as the change, applied by a drainer under a
    lease, or by the CLI right after its commit (orchestration/sync.py)."""

    __tablename__ = "orchestration_change"
    __table_args__ = (Index("ix_orchestration_change_pending", "applied_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    case_ref: str = Field(index=True)
    created_at: datetime
    claimed_until: datetime | None = None  # a drainer's lease
    claim_token: str | None = None  # which drainer holds it
    attempts: int = 0
    last_error: str | None = None  # exception type and Prefect's status, never identity
    applied_at: datetime | None = None
    outcome: str | None = None  # what the sync did (run labels, warnings), for the CLI


class DeliveryAttempt(SQLModel, table=True):
    """One line per attempt: when, to which target, and what happened."""

    __tablename__ = "delivery_attempt"
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    at: datetime
    target: str  # the target's name, never its URL
    ok: bool
    error: str | None = None
