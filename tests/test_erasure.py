"""Erasure that really erases: identity, the free text people typed about the case (names get
typed there), the packs written for it, and, by destroying the case's data key, the free text
the append-only audit log keeps. On SQLite and PostgreSQL; on SQLite the database file itself
is searched byte by byte afterwards."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import select

from models.refs import TaskRef
from models.schemas import PractitionerIn, Referral
from nim_pathway.demo import DEMO_ADMIN
from store.crypto import ERASED, open_text
from store.db import get_engine, session_scope
from store.tables import AuditEvent, Task
from tests.conftest import referral_data
from tests.test_oversight import drive

TYPED = "Zyxwq Qqsentinel"  # the child's name, typed into free text as people do
NICK = "Mumsentinel"


def sealed_rows(url: str, ref: str) -> list[tuple[str, str, object]]:
    with session_scope(url, read_only=True) as s:
        return [(a.action, k, v) for a in s.exec(select(AuditEvent).where(
            AuditEvent.case_ref == ref)) for k, v in (a.detail or {}).items()
            if isinstance(v, dict) and "enc" in v]


def test_erase_shreds_identity_free_text_packs_and_the_audits_typed_text(store, db_url,
                                                                          clock, tmp_path):
    ref = store.commands.open_case(Referral.model_validate(referral_data(
        child={"given_name": "Zyxwq", "family_name": "Qqsentinel",
               "date_of_birth": "2025-06-01", "address": "1 Sentinel Row"},
        caregivers=[{"relationship": "mother", "name": NICK},
                    {"relationship": "father", "name": "Dadsentinel"},
                    {"relationship": "foster-carer", "name": "Carersentinel"}])),
        "coord.ali").ref
    today = store.queries.today()
    store.commands.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                                   role="nim-service-manager", team="nim"),
                                    DEMO_ADMIN.handle)
    store.commands.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor",
                            f"{NICK} rings after 4; {TYPED} naps at 1")
    store.commands.move_date(ref, "final_hearing", today + timedelta(weeks=20),
                             f"listed after {TYPED}'s assessment", "coord.ali")
    store.commands.pause(ref, f"{NICK} in hospital", "coord.ali")  # kept by the audit only
    store.commands.resume(ref, "coord.ali")
    # an authorised reader of the audit sees what was typed; the database holds ciphertext
    sealed = sealed_rows(db_url, ref)
    assert {k for _, k, _ in sealed} >= {"cause", "reason"}
    with session_scope(db_url, read_only=True) as s:
        raw = str([a.detail for a in s.exec(select(AuditEvent))])
        assert TYPED not in raw and NICK not in raw
        opened = [open_text(s, ref, store.ctx.secret_key, v) for _, _, v in sealed]
    assert f"{NICK} in hospital" in opened
    drive(store, clock, ref, "treatment")  # D1 made: the assessment pack can be written
    with get_engine(db_url).begin() as conn:  # typed into an outcome's notes, as happens
        conn.execute(text("UPDATE task SET outcome = :o WHERE spec_id = 'triage'"),
                     {"o": f'{{"accepted": true, "notes": "{TYPED} seen"}}'})
    pack, _ = store.commands.write_pack(ref, "assessment", "html", tmp_path, "coord.ali")
    assert "Qqsentinel" in pack.read_text()

    result = store.commands.erase(ref, "mgr.okafor", reason="court order")
    assert "1 report pack(s)" in result.message and not pack.exists()
    with session_scope(db_url, read_only=True) as s:
        triage = s.exec(select(Task).where(Task.spec_id == "triage")).one()
        assert triage.handover_note is None and triage.outcome["notes"] == ERASED
        assert triage.outcome["accepted"] is True  # the pathway record stays
        assert {open_text(s, ref, store.ctx.secret_key, v) for _, _, v in sealed} == {ERASED}
        erased = s.exec(select(AuditEvent).where(
            AuditEvent.action == "identity-erased")).one().detail
    assert erased["case_key_destroyed"] is True and erased["packs_deleted"] == [pack.name]
    assert {"task.handover_note", "task.outcome", "case_anchor.cause"} <= set(erased["fields"])
    assert store.queries.verify_audit() == []  # the chain covers the ciphertext: still whole
    # typed after erasure: the audit keeps none of it (the case has no key any more)
    store.commands.move_date(ref, "final_hearing", today + timedelta(weeks=21),
                             "relisted after the erasure", "coord.ali")
    with session_scope(db_url, read_only=True) as s:
        assert "relisted" not in str([a.detail for a in s.exec(select(AuditEvent))])

    if db_url.startswith("sqlite"):
        import sqlite3

        get_engine(db_url).dispose()
        db = Path(db_url.removeprefix("sqlite:///"))
        sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        on_disk = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        for sentinel in ("Zyxwq", "Qqsentinel", "Sentinel Row", NICK, "Dadsentinel",
                         "Carersentinel", "2025-06-01"):
            assert sentinel.encode() not in on_disk, sentinel  # `strings nim.db` finds nothing


def test_a_staged_referral_never_opened_expires(store, db_url, clock):
    handle = store.commands.stage_intake(Referral.model_validate(referral_data()), "coord.ali")
    assert store.commands.expire_intakes(14) == 0
    clock.set(clock.now() + timedelta(days=15))
    assert store.commands.expire_intakes(14) == 1
    with session_scope(db_url, read_only=True) as s:
        assert not s.exec(text("SELECT * FROM intake")).all()
        expired = s.exec(select(AuditEvent).where(AuditEvent.action == "intake-expired")).one()
    assert expired.detail["handle"] == handle and expired.actor == "svc.pathway"


def test_free_text_never_reaches_prefect_or_a_message(store, db_url):
    """The task card and Resume form say a handover note exists and where to read it."""
    from tasks.case_tasks import task_description

    ref = store.commands.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.commands.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                                   role="nim-service-manager", team="nim"),
                                    DEMO_ADMIN.handle)
    store.commands.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor",
                            f"{NICK} prefers mornings, at 1 Sentinel Row")
    card = task_description(ref, store.queries.task(ref, "triage"))
    assert "Handover note:" in card and f"task list --case {ref}" in card
    assert NICK not in card and "Sentinel Row" not in card
    with session_scope(db_url, read_only=True) as s:
        queued = " ".join(f"{meta} {body}" for meta, body in s.exec(text(
            "SELECT meta, body_text FROM outbox")).all())  # the context frozen at queue time
    assert "A handover note was left" in queued
    assert NICK not in queued and "Sentinel Row" not in queued
