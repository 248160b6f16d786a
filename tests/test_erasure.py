"""Erasure that really erases: identity, the free text people typed about the case (names get
typed there), the packs written for it, and, by destroying the case's data key, the free text
the append-only audit log keeps. On SQLite and PostgreSQL; on SQLite the database file itself
is searched byte by byte afterwards."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
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


SENTINELS = ("Zyxwq", "Qqsentinel", "Sentinel Row", NICK, "Dadsentinel", "Carersentinel",
             "2025-06-01")
# every table a name, a date of birth or typed text can reach, read as a backup would
AT_REST = ("SELECT given_name, family_name, date_of_birth, address FROM child",
           "SELECT name FROM caregiver", "SELECT handover_note, outcome FROM task",
           "SELECT reason FROM placement", "SELECT cause FROM case_anchor",
           "SELECT rationale FROM decision", "SELECT referral FROM intake",
           "SELECT detail FROM audit_event")


def at_rest(url: str) -> str:
    """Everything those tables hold, as text: what a copy of the database shows."""
    with get_engine(url).connect() as conn:
        return repr([tuple(r) for q in AT_REST for r in conn.execute(text(q))])


def test_erase_shreds_identity_free_text_packs_and_the_audits_typed_text(store, db_url,
                                                                          clock, tmp_path):
    handle = store.cases.stage_intake(Referral.model_validate(referral_data(
        child={"given_name": "Zyxwq", "family_name": "Qqsentinel",
               "date_of_birth": "2025-06-01", "address": "1 Sentinel Row"},
        caregivers=[{"relationship": "mother", "name": NICK},
                    {"relationship": "father", "name": "Dadsentinel"},
                    {"relationship": "foster-carer", "name": "Carersentinel"}])), "coord.ali")
    ref = store.cases.open_from_intake(handle, "coord.ali").ref
    today = store.queries.today()
    store.admin.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                                role="nim-service-manager", team="nim"),
                                 DEMO_ADMIN.handle)
    store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor",
                         f"{NICK} rings after 4; {TYPED} naps at 1")
    assert store.queries.task(ref, "triage").handover_note.startswith(NICK)  # opened to read
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.two",
                              {"accepted": True, "notes": f"{TYPED} seen at home"})
    store.cases.move_date(ref, "final_hearing", today + timedelta(weeks=20),
                          f"listed after {TYPED}'s assessment", "coord.ali")
    store.cases.pause(ref, f"{NICK} in hospital", "coord.ali")  # kept by the audit only
    store.cases.resume(ref, "coord.ali")
    # authorised readers see what was typed; the database (and so any backup of it) holds
    # ciphertext only: identity, typed text and the staged referral are sealed at rest
    sealed = sealed_rows(db_url, ref)
    assert {k for _, k, _ in sealed} >= {"cause", "reason"}
    with session_scope(db_url, read_only=True) as s:
        opened = [open_text(s, ref, store.ctx.secret_key, v, store.ctx.keystore)
                  for _, _, v in sealed]
    assert f"{NICK} in hospital" in opened
    assert store.queries.case_record(ref).children[0].given_name == "Zyxwq"
    backup = at_rest(db_url)
    assert "nim1:" + ref in backup
    assert [x for x in SENTINELS + (TYPED,) if x in backup] == []
    drive(store, clock, ref, "treatment")  # D1 made: the assessment pack can be written
    pack, _ = store.admin.write_pack(ref, "assessment", "html", tmp_path, "coord.ali")
    assert "Qqsentinel" in pack.read_text()

    result = store.admin.erase(ref, "mgr.okafor", reason="court order")
    assert "1 report pack(s)" in result.message and not pack.exists()
    with session_scope(db_url, read_only=True) as s:
        triage = s.exec(select(Task).where(Task.spec_id == "triage")).one()
        assert triage.handover_note is None and triage.outcome["notes"] == ERASED
        assert triage.outcome["accepted"] is True  # the pathway record stays
        assert {open_text(s, ref, store.ctx.secret_key, v, store.ctx.keystore)
                for _, _, v in sealed} == {ERASED}
        erased = s.exec(select(AuditEvent).where(
            AuditEvent.action == "identity-erased")).one().detail
    assert erased["case_key_destroyed"] is True and erased["packs_deleted"] == [pack.name]
    assert {"task.handover_note", "task.outcome", "case_anchor.cause"} <= set(erased["fields"])
    assert store.queries.verify_audit() == []  # the chain covers the ciphertext: still whole
    # the backup taken before erasure: its sealed values no longer open with the site's keys
    sealer = store.ctx.sealer()
    values = [v for v in re.findall(r"nim1:[^'\" ]+", backup)]
    assert len(values) >= 8
    with session_scope(db_url, read_only=True) as s:
        assert {sealer.open(s, v) for v in values} == {ERASED}
    # a child added after erasure: nothing of their identity is kept either
    from models.schemas import ChildIn

    store.family.add_child(ref, ChildIn(given_name="Lateqq", family_name="Qqsentinel",
                                        date_of_birth="2025-09-01"), "coord.ali")
    late = store.queries.case_record(ref).children[-1]
    assert (late.given_name, late.date_of_birth) == (ERASED, None)
    # typed after erasure: the audit keeps none of it (the case has no key any more)
    store.cases.move_date(ref, "final_hearing", today + timedelta(weeks=21),
                          "relisted after the erasure", "coord.ali")
    with session_scope(db_url, read_only=True) as s:
        assert "relisted" not in str([a.detail for a in s.exec(select(AuditEvent))])

    if db_url.startswith("sqlite"):
        import sqlite3

        get_engine(db_url).dispose()
        db = Path(db_url.removeprefix("sqlite:///"))
        sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        on_disk = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        for sentinel in SENTINELS:
            assert sentinel.encode() not in on_disk, sentinel  # `strings nim.db` finds nothing


def test_the_key_store_is_not_the_case_store(store, db_url, monkeypatch):
    """The keys that erasure destroys never sit in the case store (whose backups outlive an
    erasure); pointing the key store at it is refused."""
    from models.errors import ConfigError
    from nim_pathway.settings import Settings

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with get_engine(db_url).connect() as conn:
        (wrapped,) = conn.execute(text("SELECT wrapped FROM case_key WHERE case_ref = :r"),
                                  {"r": ref}).one()
    assert wrapped.startswith("ks:") and store.ctx.keystore.get(wrapped[3:])
    monkeypatch.setenv("NIM_DATABASE_URL", db_url)
    monkeypatch.setenv("NIM_KEYSTORE_URL", db_url)
    with pytest.raises(ConfigError, match="must not be the case store"):
        _ = Settings.from_env().keystore_url


def test_a_staged_referral_never_opened_expires(store, db_url, clock):
    handle = store.cases.stage_intake(Referral.model_validate(referral_data()), "coord.ali")
    assert store.admin.expire_intakes(14) == 0
    clock.set(clock.now() + timedelta(days=15))
    assert store.admin.expire_intakes(14) == 1
    with session_scope(db_url, read_only=True) as s:
        assert not s.exec(text("SELECT * FROM intake")).all()
        expired = s.exec(select(AuditEvent).where(AuditEvent.action == "intake-expired")).one()
    assert expired.detail["handle"] == handle and expired.actor == "svc.pathway"


def test_free_text_never_reaches_prefect_or_a_message(store, db_url):
    """The task card and Resume form say a handover note exists and where to read it."""
    from tasks.case_tasks import task_description

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.admin.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                                role="nim-service-manager", team="nim"),
                                 DEMO_ADMIN.handle)
    store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor",
                         f"{NICK} prefers mornings, at 1 Sentinel Row")
    card = task_description(ref, store.queries.task(ref, "triage"))
    assert "Handover note:" in card and f"task list --case {ref}" in card
    assert NICK not in card and "Sentinel Row" not in card
    with session_scope(db_url, read_only=True) as s:
        queued = " ".join(f"{meta} {body}" for meta, body in s.exec(text(
            "SELECT meta, body_text FROM outbox")).all())  # the context frozen at queue time
    assert "A handover note was left" in queued
    assert NICK not in queued and "Sentinel Row" not in queued
