"""Faults, bad input, races and access: the engine keeps working, loses nothing, sends nothing
twice, writes nothing half-way, and never shows a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import select

from models.clock import UK
from models.errors import CommandError
from models.pathway import PathwayError, parse_pathway
from models.refs import TaskRef
from models.schemas import PractitionerIn, Referral
from nim_pathway.app import Service, build_service  # noqa: F401
from nim_pathway.demo import DEMO_ADMIN, seed_team
from store.db import get_engine, migrate, session_scope
from store.tables import AuditEvent, Outbox, Timer
from tests.cli_team import as_person, log_in_team
from tests.conftest import referral_data

CLI = str(Path(sys.executable).parent / "nim-pathway")
ROOT = Path(__file__).resolve().parent.parent


def count(url: str, table: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(text(f"select count(*) from {table}")).scalar_one()


def open_case(store, **over) -> str:
    return store.commands.open_case(Referral.model_validate(referral_data(**over)), "coord.ali").ref


# -- crashes ------------------------------------------------------------------------------

SWEEP = ("import sys\nfrom models.clock import parse_instant, VirtualClock\n"
         "from nim_pathway.app import Service, build_service\n"
         "build_service(sys.argv[1], VirtualClock(parse_instant(sys.argv[2])), migrate=False)"
         ".commands.fire_due_timers(batch=int(sys.argv[3]))\n")


def _sweep_process(url: str, at: str, batch: int, fault: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "NIM_FAULT"}
    if fault:
        env["NIM_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", SWEEP, url, at, str(batch)], env=env,
                          cwd=ROOT, capture_output=True, timeout=120).returncode


@pytest.mark.parametrize("fault", ["sweep-timer:1", "sweep-timer:17", "sweep-batch:1",
                                   "sweep-batch:3"])
def test_sweep_killed_at_any_point_loses_nothing_and_repeats_nothing(tmp_path, clock, fault):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    migrate(url)
    store = build_service(url, clock, migrate=False)
    seed_team(store)
    for _ in range(6):
        open_case(store)
    get_engine(url).dispose()  # last connection closed: the WAL is checkpointed into the file
    shutil.copy(tmp_path / "crash.db", tmp_path / "control.db")
    at = "2026-03-02T09:30"
    assert _sweep_process(url, at, 10, fault) == -9  # SIGKILL'd mid-sweep
    assert _sweep_process(url, at, 10, None) == 0  # the next sweep catches up
    control = f"sqlite:///{tmp_path / 'control.db'}"
    assert _sweep_process(control, at, 10, None) == 0
    with session_scope(url) as s, session_scope(control) as c:
        keys = sorted(s.exec(select(Outbox.dedupe_key)))
        assert keys == sorted(c.exec(select(Outbox.dedupe_key)))  # nothing lost or extra
        fired = s.exec(select(Timer).where(Timer.fired_at.is_not(None))).all()
        assert len(fired) == len(c.exec(select(Timer).where(Timer.fired_at.is_not(None))).all())
    assert len(keys) == len(set(keys)) and keys


def test_a_case_store_failure_mid_command_writes_nothing(store, db_url, monkeypatch):
    ref = open_case(store)
    before = {t: count(db_url, t) for t in ("task", "audit_event", "timer", "outbox",
                                            "decision", "case_anchor")}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("store.timers.plan", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store.commands.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    monkeypatch.undo()
    assert {t: count(db_url, t) for t in before} == before
    assert next(t for t in store.queries.tasks(case=ref) if t.key == "triage").state == "open"
    store.commands.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})  # and it recovers
    assert store.queries.verify_audit() == []


def test_prefect_unreachable_keeps_the_change_and_says_so(tmp_path):
    env = {**os.environ, "NIM_DATA_DIR": str(tmp_path), "NIM_CLOCK": "2026-01-12T10:00",
           "NIM_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
           "NIM_AUDIT_CHECKPOINT": str(tmp_path / "audit.checkpoint"),
           "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    referral = tmp_path / "r.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    log_in_team(env, tmp_path / "sessions")

    def run(*args):
        return subprocess.run([CLI, *args], env=as_person(env, args, tmp_path / "sessions"),
                              capture_output=True, text=True, timeout=60)

    for args in (("case", "open", "--file", str(referral), "--as", "coord.ali"),
                 ("task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor",
                  "--field", "accepted=true")):
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
        assert "orchestration is pending" in proc.stderr and "reconcile" in proc.stderr
        assert "Traceback" not in proc.stderr
    shown = json.loads(run("case", "show", "NIM-2026-0001", "--json").stdout)
    assert shown["stage"] == "consent"


# -- races --------------------------------------------------------------------------------


def test_reassignment_racing_a_completion(store, db_url):
    store.commands.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M2",
                                          role="nim-service-manager", team="nim"), DEMO_ADMIN.handle)
    ref = open_case(store)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def complete():
        barrier.wait()
        try:
            store.commands.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
            outcomes["complete"] = "ok"
        except CommandError as exc:
            outcomes["complete"] = str(exc)

    def reassign():
        barrier.wait()
        try:
            store.commands.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor", "handover")
            outcomes["reassign"] = "ok"
        except CommandError as exc:
            outcomes["reassign"] = str(exc)

    threads = [threading.Thread(target=complete), threading.Thread(target=reassign)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert outcomes["complete"] == "ok"  # a manager may complete whoever holds it
    assert outcomes["reassign"] in ("ok", f"task {ref}/triage is done; only open work moves")
    triage = next(t for t in store.queries.tasks(case=ref, state=None) if t.key == "triage")
    assert triage.state == "done"
    assert store.queries.verify_audit() == []


# -- access ---------------------------------------------------------------------------------


def test_refusals_are_audited(store, db_url):
    ref = open_case(store)
    for attempt in (lambda: store.commands.complete_task(TaskRef(ref, "triage"), "la.patel", {}),
                    lambda: store.commands.reassign(TaskRef(ref, "triage"), "mgr.okafor", "la.patel", ""),
                    lambda: store.commands.decide(ref, "d1", "treatment", "psy.chen"),
                    lambda: store.commands.move_date(ref, "referral", datetime(2026, 1, 9).date(), "x",
                                            "psy.chen"),
                    lambda: store.commands.erase(ref, "coord.ali", "court order")):
        with pytest.raises(CommandError):
            attempt()
    with session_scope(db_url) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "refused")).all()
    assert [r.actor for r in refused] == ["la.patel", "la.patel", "psy.chen", "coord.ali"]
    assert store.queries.verify_audit() == []


# -- retention and erasure ------------------------------------------------------------------


def test_retention_review_and_erasure(store, db_url, clock):
    ref = open_case(store)
    assert store.queries.retention_review() == []
    with pytest.raises(CommandError, match="not past its retention date"):
        store.commands.erase(ref, "mgr.okafor")
    clock.set(datetime(2100, 6, 2, 9, tzinfo=UK))  # the child's 75th birthday has passed
    due = store.queries.retention_review()
    assert [(r.case, r.basis, str(r.retain_until)) for r in due] == [
        (ref, "default", "2100-06-01")]
    result = store.commands.erase(ref, "mgr.okafor")
    assert "identity erased" in result.message
    engine = get_engine(db_url)
    with engine.connect() as conn:
        dump = str(conn.execute(text("select * from child")).all()) + str(
            conn.execute(text("select * from caregiver")).all())
    assert "Sentinel" not in dump and "2025-06-01" not in dump
    assert store.queries.retention_review() == []
    assert store.queries.show(ref).stage == "referral"  # the pathway record stays
    with session_scope(db_url) as s:
        erased = s.exec(select(AuditEvent).where(AuditEvent.action == "identity-erased")).one()
    assert erased.detail["caregivers"] == 3 and store.queries.verify_audit() == []
    with pytest.raises(CommandError, match="was erased on"):
        store.commands.erase(ref, "mgr.okafor", "again")


# -- fuzzing: no traceback, a named field, exit 2, nothing written --------------------------


def _cli(args: list[str]) -> tuple[int, str, str]:
    from nim_pathway.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["nim-pathway", *args]
    sessions = Path(os.environ["NIM_DATA_DIR"]).parent / "sessions"
    try:
        os.environ["NIM_SESSION_FILE"] = as_person({}, args, sessions)["NIM_SESSION_FILE"]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    monkeypatch.setenv("NIM_DATABASE_URL", url)
    monkeypatch.setenv("NIM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NIM_CLOCK", "2026-01-12T10:00")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("NIM_SESSION_FILE", str(tmp_path / "no-session"))  # _cli sets it per call
    migrate(url)
    log_in_team(dict(os.environ), tmp_path / "sessions")
    return url, tmp_path


def _assert_clean_refusal(code: int, err: str, out: str = "") -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err + out
    if code == 2:  # our one-line refusal, or click's usage error / help for a bare group
        assert err.startswith(("error:", "Usage:")) or "Error" in err or "Usage" in out, err


junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.text(max_size=30), st.dates().map(str),
                 st.lists(st.text(max_size=5), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
FIELDS = ["jurisdiction", "site", "child", "care_entry", "referral", "proceedings_issued",
          "caregivers", "placement", "settings", "pathway", "unexpected"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), junk, max_size=3),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2))
def test_fuzzed_referral_files(cli_store, changes, drop):
    url, tmp = cli_store
    data = referral_data()
    data.update(changes)
    for key in drop:
        data.pop(key, None)
    path = tmp / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    cases, audit = count(url, "nim_case"), count(url, "audit_event")
    code, _out, err = _cli(["case", "open", "--file", str(path), "--as", "coord.ali"])
    _assert_clean_refusal(code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1
        assert count(url, "nim_case") == cases and count(url, "audit_event") == audit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcome=st.dictionaries(st.sampled_from(["classification", "interview_date", "notes",
                                                "completed_on", "extra", "decision"]),
                               junk, max_size=4))
def test_fuzzed_task_outcomes(cli_store, outcome):
    url, tmp = cli_store
    if count(url, "nim_case") == 0:
        path = tmp / "r.yaml"
        path.write_text(yaml.safe_dump(referral_data()))
        _cli(["case", "open", "--file", str(path), "--as", "coord.ali"])
        _cli(["task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor", "--field",
              "accepted=true"])
        for carer in ("mother", "father", "foster-carer"):
            _cli(["task", "complete", f"NIM-2026-0001/consent-{carer}", "--as", "sw.jones",
                  "--field", "consent=given"])
    path = tmp / "outcome.json"
    path.write_text(json.dumps(outcome))
    audit = count(url, "audit_event")
    code, _out, err = _cli(["task", "complete", "NIM-2026-0001/wmci-mother", "--as",
                            "psy.chen", "--outcome-file", str(path)])
    _assert_clean_refusal(code, err)
    if code == 2:
        assert count(url, "audit_event") == audit
        assert "classification" in err or "already completed" in err or "outcome" in err


WORDS = ["case", "open", "show", "task", "list", "complete", "reassign", "decide", "deadline",
         "--jurisdiction", "scotland", "--from", "2026-02-30", "--working-days", "-3", "x",
         "--as", "nobody", "NIM-2026-0001", "NIM-2026-0001/triage", "d1", "d3", "--json",
         "report", "kpis", "export", "fhir", "--kind", "final", "outbox", "retry", "abc",
         "--days", "99999999", "sweep", "--at", "yesterday", "erase", "--weeks", "0"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=7))
def test_fuzzed_cli_arguments(cli_store, argv):
    url, _ = cli_store
    audit = count(url, "audit_event")
    code, out, err = _cli(argv)
    _assert_clean_refusal(code, err, out)
    if code == 2:
        assert count(url, "audit_event") in (audit, audit + 1)  # at most an audited refusal


ENGLAND = (ROOT / "pathways" / "england.yaml").read_text()
LINES = ENGLAND.splitlines()


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(LINES) - 1),
                                st.sampled_from(["drop", "dup", "junk", "indent", "swap"]),
                                st.text(max_size=12)), min_size=1, max_size=3))
def test_fuzzed_pathway_yaml(edits):
    lines = list(LINES)
    for index, how, junk_text in edits:
        index %= len(lines)
        if how == "drop":
            lines.pop(index)
        elif how == "dup":
            lines.insert(index, lines[index])
        elif how == "junk":
            lines[index] = lines[index] + junk_text
        elif how == "indent":
            lines[index] = "  " + lines[index]
        else:
            lines[index] = lines[index].replace(":", " ", 1)
        if not lines:
            lines = ["x"]
    try:
        parse_pathway("\n".join(lines), source="fuzz.yaml")
    except PathwayError as exc:
        assert str(exc).startswith(("fuzz.yaml", "invalid pathway file"))
        assert "fuzz.yaml" in str(exc)
