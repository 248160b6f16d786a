"""The case store and domain commands on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from models.clock import UK
from models.errors import AlreadyDone, CommandError, Invalid, NotFound, Refused
from models.pathway import load_pathway
from models.refs import TaskRef
from models.schemas import Referral
from models.simulate import sample_outcome
from nim_pathway.demo import DEMO_ADMIN, DEMO_TEAM
from store.db import get_engine, session_scope
from store.tables import AuditEvent, Case, Task, Timer
from store.views import jsonable
from tests.conftest import referral_data

SENTINELS = ("Sentinel-Given", "Sentinel-Family", "Sentinel-Mother", "Sentinel-Father",
             "Sentinel-Carer", "Sentinel Address", "2025-06-01")
IDENTITY_TABLES = {"child", "caregiver", "alembic_version", "practitioner"}


def open_case(store, **over):
    return store.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali")


def count(url, table):
    with get_engine(url).connect() as conn:
        return conn.execute(text(f"select count(*) from {table}")).scalar_one()


def test_open_case_writes_the_record(store, db_url):
    result = open_case(store)
    assert result.ref == "NIM-2026-0001"
    assert open_case(store).ref == "NIM-2026-0002"
    tasks = store.queries.tasks(case=result.ref)
    assert [str(t.task) for t in tasks][:2] == ["NIM-2026-0001/sw-visit-1", "NIM-2026-0001/triage"]
    triage = next(t for t in tasks if str(t.task).endswith("/triage"))
    assert triage.assignee == "mgr.okafor" and triage.due == date(2026, 1, 19)
    shown = store.queries.show(result.ref)
    assert shown.stage == "referral" and shown.child_age_months == 7
    assert [c.key for c in shown.caregivers] == ["mother", "father", "foster-carer"]
    assert count(db_url, "timer") > 0
    assert store.queries.verify_audit() == []


def test_identity_lives_only_in_identity_tables(store, db_url):
    ref = open_case(store).ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    engine = get_engine(db_url)
    with engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text(
            "select table_name from information_schema.tables where table_schema='public'"
            if engine.dialect.name == "postgresql" else
            "select name from sqlite_master where type='table'"))]
        for table in set(tables) - IDENTITY_TABLES:
            dump = str(conn.execute(text(f"select * from {table}")).all())
            hits = [s for s in SENTINELS if s in dump]
            assert not hits, f"identity {hits} found in table {table}"
    assert "Sentinel" not in str(store.queries.show(ref)) + str(store.queries.timeline(ref))


def test_bad_referrals_are_refused_and_nothing_is_written(store, db_url):
    cases = [
        ({"child": {"given_name": "A", "family_name": "B", "date_of_birth": "2020-01-01"}},
         "60 months"),
        ({"referral": "2026-01-01", "care_entry": "2025-12-01",
          "child": {"given_name": "A", "family_name": "B", "date_of_birth": "2026-01-05"}},
         "before the date of birth"),
        ({"caregivers": [{"relationship": "aunt"}]}, "caregivers.0.relationship"),
    ]
    for over, message in cases:
        with pytest.raises(ValueError, match=message):
            open_case(store, **over)
    with pytest.raises(CommandError, match="in the future"):
        open_case(store, referral="2026-02-01")
    with pytest.raises(CommandError, match="unknown pathway setting"):
        open_case(store, settings={"treatment_weeks": 3})
    with pytest.raises(CommandError, match="is iro and may not open a case"):
        store.cases.open_case(Referral.model_validate(referral_data()), "iro.khan")
    assert count(db_url, "nim_case") == 0 and count(db_url, "child") == 0


def test_complete_task_twice_and_wrong_role(store, db_url):
    ref = open_case(store).ref
    with pytest.raises(Refused, match="la.patel is la-social-worker and may not complete "
                                      ".*/triage; it needs .*nim-service-manager"):
        store.tasks.complete_task(TaskRef(ref, "triage"), "la.patel", {"accepted": True})
    with session_scope(db_url) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "refused")).all()
        assert len(refused) == 1 and refused[0].actor == "la.patel"
    result = store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert any(e.kind == "stage-entered" for e in result.effects)
    audit_rows = count(db_url, "audit_event")
    with pytest.raises(AlreadyDone, match="already completed on 2026-01-12 by mgr.okafor"):
        store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert count(db_url, "audit_event") == audit_rows
    with pytest.raises(NotFound, match="unknown case 'NIM-2099-0001'"):
        store.tasks.complete_task(TaskRef.parse("NIM-2099-0001/triage"), "mgr.okafor", {})
    with pytest.raises(NotFound, match="unknown practitioner 'nobody'"):
        store.tasks.complete_task(TaskRef(ref, "consent-mother"), "nobody", {})
    with pytest.raises(Invalid, match="CASE-REF/TASK-KEY"):
        TaskRef.parse("triage")


def test_same_task_completed_at_once_wins_once(store, db_url):
    ref = open_case(store).ref
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt():
        barrier.wait()
        try:
            store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
            outcomes.append("ok")
        except CommandError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[0] != "ok" or outcomes.count("ok") == 1
    assert outcomes.count("ok") == 1, outcomes
    assert any("already completed" in o for o in outcomes)
    consent = [t for t in store.queries.tasks(case=ref) if str(t.task).startswith(f"{ref}/consent-")]
    assert len(consent) == 3  # the next stage was entered exactly once
    assert store.queries.verify_audit() == []


def test_reassign_with_handover_note(store, clock):
    from models.schemas import PractitionerIn

    store.admin.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                       role="nim-service-manager", team="nim"), DEMO_ADMIN.handle)
    ref = open_case(store).ref
    with pytest.raises(CommandError, match="psy.chen is psychologist"):
        store.tasks.reassign(TaskRef(ref, "triage"), "psy.chen", "mgr.okafor", "note")
    with pytest.raises(CommandError, match="may not reassign .*; it needs its current owner or"):
        store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "la.patel", "note")
    result = store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor", "Leave from Monday")
    assert result.effects[0].detail == {"from": "mgr.okafor", "to": "mgr.two", "note_length": 17}
    row = next(t for t in store.queries.tasks(case=ref) if str(t.task).endswith("/triage"))
    assert row.assignee == "mgr.two" and row.handover_note == "Leave from Monday"


def test_moved_hearing_redates_tasks_and_timers(store, db_url):
    ref = open_case(store).ref
    with session_scope(db_url) as s:
        # a reminder already due at opening went out with the new-task message (fired): history
        pending = set(s.exec(select(Timer.key).where(Timer.task_key == "triage",
                                                     Timer.cancelled_at.is_(None),
                                                     Timer.fired_at.is_(None))))
        before = {k: d for k, d in s.exec(select(Timer.key, Timer.due_at).where(Timer.kind == "escalation"))}
    result = store.cases.move_date(ref, "referral", date(2026, 1, 9), "referral date corrected",
                             "coord.ali")
    assert any(e.kind == "task-redated" and e.task == "triage" for e in result.effects)
    triage = next(t for t in store.queries.tasks(case=ref) if str(t.task).endswith("/triage"))
    assert triage.due == date(2026, 1, 16)
    with session_scope(db_url) as s:
        cancelled = set(s.exec(select(Timer.key).where(Timer.cancelled_at.is_not(None))))
        live = set(s.exec(select(Timer.key).where(Timer.task_key == "triage",
                                                  Timer.cancelled_at.is_(None))))
        after = {k: d for k, d in s.exec(select(Timer.key, Timer.due_at).where(Timer.kind == "escalation"))}
    # reminders and due notices are keyed by their date: replaced; an escalation keeps its key
    # (one per task and tier) and moves with the task, 3 days earlier (19 -> 16 Jan)
    escalations = {k for k in pending if "/escalation-" in k}
    assert escalations and escalations <= live and escalations.isdisjoint(cancelled)
    assert all(after[k] < before[k] for k in escalations)
    assert (pending - escalations) <= cancelled and live.isdisjoint(pending - escalations)
    with pytest.raises(CommandError, match="say why"):
        store.cases.move_date(ref, "final_hearing", date(2026, 9, 1), " ", "coord.ali")
    with pytest.raises(CommandError, match="unknown date 'birthday'"):
        store.cases.move_date(ref, "birthday", date(2026, 9, 1), "x", "coord.ali")


def test_case_keeps_its_pathway_version(store, db_url, tmp_path):
    spec = load_pathway("england")
    first = open_case(store).ref
    edited_text = (spec_text := open("pathways/england.yaml").read()).replace(
        "triage_working_days: 5", "triage_working_days: 7")
    edited = tmp_path / "england.yaml"
    edited.write_text(edited_text)
    with pytest.raises(CommandError, match="give the edited file a new 'version'"):
        store.identity.install_pathway(edited, DEMO_ADMIN.handle)
    edited.write_text(edited_text.replace('version: "2026.10"', 'version: "2026.11"'))
    assert "installed england@2026.11" in store.identity.install_pathway(
        edited, DEMO_ADMIN.handle).message
    second = open_case(store).ref  # the newest installed version
    assert store.queries.pathway(first).settings["triage_working_days"] == 5
    assert store.queries.pathway(second).settings["triage_working_days"] == 7
    assert store.queries.pathway(first) == spec and spec_text


def test_audit_chain_detects_edit_insert_delete(store, db_url):
    ref = open_case(store).ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert store.queries.verify_audit() == []
    engine = get_engine(db_url)
    postgres = engine.dialect.name == "postgresql"
    for sql in ("update audit_event set actor='x' where id=3", "delete from audit_event where id=3"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    # someone with the database owner's rights drops the guard and tampers
    with engine.begin() as conn:
        if postgres:
            conn.execute(text("drop trigger audit_event_no_change on audit_event"))
        else:
            conn.execute(text("drop trigger audit_event_no_update"))
            conn.execute(text("drop trigger audit_event_no_delete"))
        conn.execute(text("update audit_event set actor='someone-else' where id=3"))
    assert any("row 3" in p and "edited" in p for p in store.queries.verify_audit())
    with engine.begin() as conn:
        conn.execute(text("delete from audit_event where id=5"))
    assert any("row 6" in p and "chain broken" in p for p in store.queries.verify_audit())
    with engine.begin() as conn:
        row = conn.execute(text("select * from audit_event where id=7")).mappings().one()
        conn.execute(text("insert into audit_event (id, at, actor, case_ref, action, detail, "
                          "prev_hash, hash) values (1000, :at, 'forger', :ref, 'forged', "
                          ":detail, :prev, :hash)"),
                     {"at": row["at"], "ref": ref, "detail": '{"task": "triage"}',
                      "prev": row["hash"], "hash": "f" * 64})
    assert any("row 1000" in p for p in store.queries.verify_audit())
    if postgres:  # put the guard back for the other tests sharing this database
        from alembic import command

        from store.db import alembic_config

        command.downgrade(alembic_config(db_url), "0004")
        command.upgrade(alembic_config(db_url), "head")


def test_whole_case_through_the_store(store, clock, db_url):
    """Referral to closure through the domain commands, on both backends."""
    ref = open_case(store).ref
    handles = {role: handle for handle, _, role, _ in DEMO_TEAM}
    spec = store.queries.pathway(ref)
    decisions = {"d1": "treatment", "d2": "return_home"}
    for _ in range(200):
        tasks = [t for t in store.queries.tasks(case=ref) if t.stage != "statutory"]
        if not tasks:
            break
        task = tasks[0]
        clock.set(datetime.combine(task.due, datetime.min.time(), UK) + timedelta(hours=10))
        store.tasks.complete_task(task.task, handles[task.role],
                            sample_outcome(spec, task.spec_id, decisions))
    shown = store.queries.show(ref)
    assert shown.closed_on is not None and shown.decisions == decisions
    with session_scope(db_url) as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        open_left = s.exec(select(Task).where(Task.case_id == case.id, Task.state == "open")).all()
        live_timers = s.exec(select(Timer).where(Timer.fired_at.is_(None),
                                                 Timer.cancelled_at.is_(None))).all()
    assert open_left == [] and live_timers == []
    timeline = store.queries.timeline(ref)
    assert timeline[-1].event == "case closed"
    assert any(r.event == "decision D2: Return home (reunification)" for r in timeline)
    assert store.queries.verify_audit() == []


def test_consent_and_placement_changes_are_recorded(store, clock):
    ref = open_case(store).ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    store.tasks.complete_task(TaskRef(ref, "consent-mother"), "sw.jones", {"consent": "given"})
    store.tasks.complete_task(TaskRef(ref, "consent-father"), "sw.jones", {"consent": "declined"})
    carers = {c.key: c for c in store.queries.show(ref).caregivers}
    assert carers["mother"].consent == "given" and carers["father"].consent == "declined"
    assert carers["foster-carer"].consent is None
    with pytest.raises(CommandError, match="say why"):
        store.family.change_placement(ref, "kinship", date(2026, 1, 10), "", "la.patel")
    with pytest.raises(CommandError, match="unknown placement kind"):
        store.family.change_placement(ref, "hotel", date(2026, 1, 10), "x", "la.patel")
    store.family.change_placement(ref, "kinship", date(2026, 1, 10), "grandmother assessed", "la.patel")
    placements = store.queries.show(ref).placements
    assert [(p.kind, p.end) for p in placements] == [("foster", date(2026, 1, 10)),
                                                           ("kinship", None)]


def test_cli_task_list_reads_what_the_store_holds(store, db_url, clock, tmp_path):
    """`task list` reads through plain DB-API (no ORM import, for start-up time): on both
    backends and for every filter it must print exactly what the store's `tasks()` returns."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    first, second = open_case(store).ref, open_case(store).ref
    store.tasks.complete_task(TaskRef(first, "triage"), "mgr.okafor", {"accepted": True})
    clock.advance(timedelta(days=9))  # some work is now overdue
    env = {**os.environ, "NIM_DATABASE_URL": db_url, "NIM_DATA_DIR": str(tmp_path / "data"),
           "NIM_CLOCK": clock.now().isoformat()}
    cli = str(Path(sys.executable).parent / "nim-pathway")
    filters = [([], {}), (["--state", "all"], {"state": None}),
               (["--state", "done"], {"state": "done"}),
               (["--role", "nim-service-manager"], {"role": "nim-service-manager"}),
               (["--overdue"], {"overdue": True}), (["--due-within", "10"], {"due_within": 10}),
               (["--case", second], {"case": second})]
    for argv, kwargs in filters:
        out = subprocess.run([cli, "task", "list", "--json", *argv], env=env, text=True,
                             capture_output=True, timeout=60, check=True).stdout
        expected = json.loads(json.dumps(jsonable(store.queries.tasks(**kwargs)), default=str))
        assert expected, argv  # every filter selects something, so the comparison means a lot
        assert json.loads(out) == expected, argv
    assert [t.outcome["accepted"] for t in store.queries.tasks(state="done")] == [True]


def test_keyed_audit_resists_recompute_and_truncation(store, db_url):
    """The database owner without the key: a chain rebuilt with plain hashes, or a tail cut
    off, no longer matches; with the key everything verifies."""
    from store.audit import GENESIS, KEYED

    ref = open_case(store).ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert store.queries.verify_audit() == []
    engine = get_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("select * from audit_event order by id")).mappings().all()
    assert all(r["hash"].startswith(KEYED) for r in rows)
    _drop_guard(engine)
    # edit a row's actor, then recompute the whole chain as its owner could, without the key
    from store.audit import audit_hash
    from store.tables import AuditEvent

    with session_scope(db_url) as s:
        events = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    prev = GENESIS
    with engine.begin() as conn:
        for e in events:
            e.actor = "someone-else" if e.id == 3 else e.actor
            e.prev_hash = prev
            e.hash = audit_hash(e, None)
            conn.execute(text("update audit_event set actor=:a, prev_hash=:p, hash=:h "
                              "where id=:i"), {"a": e.actor, "p": e.prev_hash, "h": e.hash,
                                               "i": e.id})
            prev = e.hash
    problems = store.queries.verify_audit()
    # every row is self-consistent again: only the checkpoint outside the database tells
    assert problems and all(p.startswith("checkpoint") for p in problems)
    _restore_guard(db_url, engine)


def test_a_truncated_tail_is_detected(store, db_url):
    ref = open_case(store).ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    engine = get_engine(db_url)
    _drop_guard(engine)
    with engine.begin() as conn:
        last = conn.execute(text("select max(id) from audit_event")).scalar_one()
        conn.execute(text("delete from audit_event where id >= :i"), {"i": last - 2})
    assert any("truncated" in p for p in store.queries.verify_audit())
    _restore_guard(db_url, engine)


def _drop_guard(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("drop trigger audit_event_no_change on audit_event"))
        else:
            conn.execute(text("drop trigger audit_event_no_update"))
            conn.execute(text("drop trigger audit_event_no_delete"))


def _restore_guard(db_url, engine) -> None:
    if engine.dialect.name == "postgresql":  # put the guard back for the other tests
        from alembic import command

        from store.db import alembic_config

        command.downgrade(alembic_config(db_url), "0004")
        command.upgrade(alembic_config(db_url), "head")
