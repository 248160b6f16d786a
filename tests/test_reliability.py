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
from unittest import mock

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
from tests.conftest import referral_data, special_files

CLI = str(Path(sys.executable).parent / "nim-pathway")
ROOT = Path(__file__).resolve().parent.parent


def count(url: str, table: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(text(f"select count(*) from {table}")).scalar_one()


def open_case(store, **over) -> str:
    return store.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali").ref


# -- crashes ------------------------------------------------------------------------------

SWEEP = ("import sys\nfrom models.clock import parse_instant, VirtualClock\n"
         "from nim_pathway.app import Service, build_service\n"
         "build_service(sys.argv[1], VirtualClock(parse_instant(sys.argv[2])), migrate=False)"
         ".timers.fire_due_timers(batch=int(sys.argv[3]))\n")


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
        store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    monkeypatch.undo()
    assert {t: count(db_url, t) for t in before} == before
    assert next(t for t in store.queries.tasks(case=ref) if t.key == "triage").state == "open"
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})  # and it recovers
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
        assert "orchestration is pending" in proc.stderr and "nim-pathway drain" in proc.stderr
        assert "Traceback" not in proc.stderr
    shown = json.loads(run("case", "show", "NIM-2026-0001", "--json").stdout)
    assert shown["stage"] == "consent"
    from sqlalchemy import create_engine, text

    with create_engine(env["NIM_DATABASE_URL"]).connect() as conn:  # waiting for the sweep
        assert conn.execute(text("SELECT case_ref FROM orchestration_change "
                                 "WHERE applied_at IS NULL")).scalars().all() == ["NIM-2026-0001"]


# -- races --------------------------------------------------------------------------------


def test_reassignment_racing_a_completion(store, db_url):
    store.admin.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M2",
                                       role="nim-service-manager", team="nim"), DEMO_ADMIN.handle)
    ref = open_case(store)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def complete():
        barrier.wait()
        try:
            store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
            outcomes["complete"] = "ok"
        except CommandError as exc:
            outcomes["complete"] = str(exc)

    def reassign():
        barrier.wait()
        try:
            store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor", "handover")
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
    for attempt in (lambda: store.tasks.complete_task(TaskRef(ref, "triage"), "la.patel", {}),
                    lambda: store.tasks.reassign(TaskRef(ref, "triage"), "mgr.okafor", "la.patel", ""),
                    lambda: store.cases.decide(ref, "d1", "treatment", "psy.chen"),
                    lambda: store.cases.move_date(ref, "referral", datetime(2026, 1, 9).date(), "x",
                                            "psy.chen"),
                    lambda: store.admin.erase(ref, "coord.ali", "court order")):
        with pytest.raises(CommandError):
            attempt()
    with session_scope(db_url) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "refused")
                         .order_by(AuditEvent.id)).all()
    assert [r.actor for r in refused] == ["la.patel", "la.patel", "psy.chen", "coord.ali"]
    assert store.queries.verify_audit() == []


# -- retention and erasure ------------------------------------------------------------------


def test_retention_review_and_erasure(store, db_url, clock):
    ref = open_case(store)
    assert store.queries.retention_review() == []
    with pytest.raises(CommandError, match="not past its retention date"):
        store.admin.erase(ref, "mgr.okafor")
    clock.set(datetime(2100, 6, 2, 9, tzinfo=UK))  # the child's 75th birthday has passed
    due = store.queries.retention_review()
    assert [(r.case, r.basis, str(r.retain_until)) for r in due] == [
        (ref, "default", "2100-06-01")]
    result = store.admin.erase(ref, "mgr.okafor")
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
        store.admin.erase(ref, "mgr.okafor", "again")


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


# -- fuzzing every command, every environment variable and every input file ---------------------
# Each run is clean: exit 0, or exit 2 with one `error:` line and nothing written (an audited
# refusal aside). Commands that start or stop processes or reach the network are left out.

NOT_FUZZED = {("up",), ("down",), ("status",), ("doctor",), ("demo",), ("login",), ("logout",),
              ("web",),  # serves until stopped (tests/test_workbench.py runs it with uvicorn stubbed)
              ("notify", "test"), ("outbox", "dispatch"), ("reconcile",)}
COUNTED = ("nim_case", "task", "case_anchor", "timer", "outbox", "intake", "pathway_version",
           "practitioner", "child", "caregiver")
HANDLES = ["admin.demo", "mgr.okafor", "coord.ali", "psy.chen", "la.patel"]
DATE_WORDS = ["2026-01-12", "2026-01-05", "2026-02-30", "2026-13-01", "9999-12-31",
              "0001-01-01", "1899-12-31", "2199-12-31", "2031-06-01", "2025-06-01", "today",
              "2026-03-02T09:30", "9999-12-31T23:59-01:00", ""]
INT_WORDS = ["0", "-1", "1", "8", "26", "99999999", "99999999999999",
             "99999999999999999999999", "1e3", "\u00b2", "-99999999999", "x", ""]
REF_WORDS = ["NIM-2026-0001", "NIM-2026-0002", "NIM-2026-0001/triage",
             "NIM-2026-0001/wmci-mother", "NIM-2026-0001/court-update-3", "NIM-2026-0001/x",
             "NIM-2026-99999999999999999999", "x/y", "/", "NIM-2026-0001/" + "t" * 300]
WORDS = ["england", "scotland", "england-and-wales", "foster", "home", "care-order",
         "final-report", "coordinator", "la-social-worker", "nim-social-worker", "mother",
         "father", "foster-carer", "child-1", "child-2", "court", "family", "referral",
         "care_entry", "final_hearing", "proceedings_issued", "stage:assessment", "cmh_held",
         "treatment_months=100000000", "treatment_months=9", "triage_working_days=-1",
         "accepted=true", "completed_on=2026-02-30", "completed_on=2025-01-01",
         "interview_date=9999-12-31", "mother:Name", "foster:2026-01-05", "foster:9999-12-31",
         "substance-use", "dyadic", "d1", "d2", "treatment", "no_treatment", "assessment",
         "final", "html", "disengaged", "maximum", "target", "x" * 300, " ", "\t", "a\x00b"]


def _command_paths() -> list[tuple[tuple[str, ...], object]]:
    import typer

    from nim_pathway.cli import app

    found = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        elif path not in NOT_FUZZED:
            found.append((path, command))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _command_paths()


def _values_for(name: str, files: list[str]) -> st.SearchStrategy[str]:
    """Hostile and plausible values for a parameter, by what its name says it holds."""
    text_junk = st.text(max_size=12)
    if name == "actor":
        return st.sampled_from(HANDLES)
    if name in ("from_", "start", "by", "on", "made", "granted", "new_date", "hearing_date",
                "dob", "care_entry", "referral_date", "proceedings_issued", "at"):
        return st.one_of(st.sampled_from(DATE_WORDS), st.dates().map(str), text_junk)
    if name in ("working_days", "days", "weeks", "months", "due_within", "treatment_months",
                "message_id"):
        return st.one_of(st.sampled_from(INT_WORDS), st.integers().map(str))
    if name == "per_week":
        return st.sampled_from(["nan", "inf", "-1", "0.5", "1e308", "14", "15", "x"])
    if name in ("ref", "task", "case"):
        return st.one_of(st.sampled_from(REF_WORDS), text_junk)
    if name in ("file", "outcome_file", "checkpoint", "out"):
        return st.sampled_from(files)
    return st.one_of(st.sampled_from(WORDS), text_junk)


@st.composite
def _command_lines(draw, files: list[str]) -> list[str]:
    path, command = draw(st.sampled_from(COMMANDS))
    argv, options = list(path), []
    for param in command.params:
        if param.param_type_name == "argument":
            if param.required or draw(st.booleans()):
                argv.append(draw(_values_for(param.name, files)))
            continue
        if not (param.required or draw(st.booleans())):
            continue
        if param.is_flag:
            options.append(draw(st.sampled_from([*param.opts, *param.secondary_opts])))
            continue
        for _ in range(draw(st.integers(1, 2)) if param.multiple else 1):
            options += [param.opts[0], draw(_values_for(param.name, files))]
    if path == ("sweep",):
        options.append("--no-dispatch")  # delivery would reach the network
    return argv + options


def _counts(url: str) -> dict[str, int]:
    return {t: count(url, t) for t in COUNTED}


def _assert_one_line_refusal(url: str, argv: list[str], before: dict[str, int], audit: int,
                             code: int, out: str, err: str) -> None:
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err + out and "internal error" not in err, (argv, err)
    if code == 2:  # a pathway file's problems are listed one a line, under one error line
        lines = err.strip().splitlines()
        assert lines[0].startswith("error: "), (argv, err)
        assert len(lines) == 1 or "invalid pathway file" in lines[0], (argv, err)
        assert _counts(url) == before, argv
        assert count(url, "audit_event") in (audit, audit + 1), argv  # an audited refusal


def _hostile_files(tmp: Path) -> list[str]:
    """Files the fuzz points commands at: valid ones, and every kind of broken one."""
    contents: dict[str, bytes] = {
        "ok.yaml": yaml.safe_dump(referral_data()).encode(),
        "outcome.yaml": b"accepted: true\n",
        "pathway.yaml": (ROOT / "pathways" / "england.yaml").read_bytes(),
        "latin.yaml": "site: caf\xe9\n".encode("latin-1"),
        "deep.json": b"[" * 5000 + b"]" * 5000,
        "deep.yaml": b"a: " + b"{a: " * 3000 + b"1" + b"}" * 3000,
        "date.yaml": b"accepted: true\ncompleted_on: 2026-02-30\n",
        "digits.yaml": b"x: " + b"9" * 5000 + b"\n",
        "aliases.yaml": b"a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a]\n"
                        b"c: &c [*b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c]\n",
        "empty.yaml": b"",
        "list.yaml": b"- 1\n- 2\n",
    }
    for name, data in contents.items():
        (tmp / name).write_bytes(data)
    (tmp / "folder").mkdir(exist_ok=True)
    special = special_files(tmp / "special")  # devices, a FIFO, a link: the test's own
    return [str(tmp / n) for n in contents] + [str(tmp / "folder"), str(tmp / "missing.yaml"),
                                               *map(str, special.values())]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_every_command(cli_store, data):
    url, tmp = cli_store
    (tmp / "files").mkdir(exist_ok=True)
    files = _hostile_files(tmp / "files")
    if count(url, "nim_case") == 0:
        _cli(["case", "open", "--file", str(tmp / "files" / "ok.yaml"), "--as", "coord.ali"])
    argv = data.draw(_command_lines(files))
    before, audit = _counts(url), count(url, "audit_event")
    code, out, err = _cli(argv)
    _assert_one_line_refusal(url, argv, before, audit, code, out, err)


ENV_READERS: dict[str, list[str]] = {
    "NIM_CLOCK": ["task", "list"],
    "NIM_CLOCK_FILE": ["task", "list"],
    "NIM_CLOSURE_DAYS": ["deadline", "--jurisdiction", "scotland", "--from", "2026-01-12",
                         "--working-days", "3"],
    "NIM_DATABASE_URL": ["case", "list"],
    "NIM_DATA_DIR": ["case", "list"],
    "NIM_RAG_AMBER_WORKING_DAYS": ["report", "board"],
    "NIM_INTAKE_DAYS": ["sweep", "--no-dispatch"],
    "NIM_AUDIT_KEY_FILE": ["case", "list"],
    "NIM_SECRET_KEY_FILE": ["case", "list"],
    "NIM_KEYSTORE_URL": ["case", "open", "--file", "{ok}", "--as", "coord.ali"],
    "NIM_AUDIT_CHECKPOINT": ["case", "move-date", "NIM-2026-0001", "final_hearing",
                             "2026-06-01", "--cause", "listed", "--as", "coord.ali"],
    "NIM_NOTIFY_CONFIG": ["outbox", "dispatch"],
    "NIM_ACTOR": ["outbox", "list"],
    "NIM_UI_URL": ["outbox", "dispatch"],
    "NIM_ADMIN_TARGETS": ["outbox", "dispatch"],
    "NIM_TARGET_EMAIL": ["outbox", "dispatch"],
}
# values that must not be tried: an empty NIM_DATA_DIR or NIM_AUDIT_CHECKPOINT means the
# default; relative paths would be made in the working folder
PATH_VARIABLES = ("NIM_DATA_DIR", "NIM_AUDIT_CHECKPOINT", "NIM_CLOCK_FILE", "NIM_NOTIFY_CONFIG",
                  "NIM_AUDIT_KEY_FILE", "NIM_SECRET_KEY_FILE")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(ENV_READERS)), data=st.data())
def test_fuzzed_environment(cli_store, name, data):
    url, tmp = cli_store
    (tmp / "files").mkdir(exist_ok=True)
    files = _hostile_files(tmp / "files")
    for path in files:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # the notification config must be private to be read at all
    if count(url, "nim_case") == 0:
        _cli(["case", "open", "--file", str(tmp / "files" / "ok.yaml"), "--as", "coord.ali"])
    if name in PATH_VARIABLES:
        value = data.draw(st.sampled_from([*files, str(tmp / "files" / "ok.yaml" / "x")]))
    else:
        value = data.draw(st.one_of(
            st.sampled_from(["garbage", "0001-01-01", "9999-12-31T23:59-01:00", "2026-13-01",
                             "2026-01-12,x", "-1", "61", "\u00b2", "99999999999", "mysql://x",
                             "postgresql://u:pw@h:port/x", "sqlite:/x.db", "sqlite:///",
                             "nobody", "json://127.0.0.1:9/x"]),
            st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                           blacklist_characters="\x00"), max_size=20)))
    argv = [a.replace("{ok}", str(tmp / "files" / "ok.yaml")) for a in ENV_READERS[name]]
    before, audit = _counts(url), count(url, "audit_event")
    with mock.patch.dict(os.environ, {name: value}):
        code, out, err = _cli(argv)
    _assert_one_line_refusal(url, argv, before, audit, code, out, err)


FILE_LOADERS = {  # every file the service loads, by the command (or variable) that loads it
    "referral": ["case", "open", "--as", "coord.ali", "--file", "{path}"],
    "intake": ["case", "intake", "--as", "coord.ali", "--file", "{path}"],
    "outcome": ["task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor",
                "--outcome-file", "{path}"],
    "pathway": ["pathway", "install", "{path}", "--as", "admin.demo"],
    "notify-config": ["outbox", "dispatch"],
}
nesting = st.integers(1, 6000)
file_contents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    nesting.map(lambda n: b"[" * n + b"]" * n),
    nesting.map(lambda n: b"a: " + b"{a: " * n + b"1" + b"}" * n),
    st.sampled_from([b"x: 2026-02-30\n", b"completed_on: 9999-12-31\naccepted: true\n",
                     b"x: " + b"9" * 5000, b"- a\n", b"", b"!!python/object:os.system x\n"]),
    st.tuples(st.sampled_from(sorted(referral_data())), st.sampled_from(
        ["2025-02-30", "9999-12-31", "0001-01-01", "[[[[[[[[[[[[1]]]]]]]]]]]]", "-1",
         "99999999999999999999999", "{treatment_months: 100000000}", "caf\xe9"])).map(
        lambda kv: yaml.safe_dump({**referral_data(), kv[0]: "§"}).replace(
            "'§'", kv[1]).replace("§", kv[1]).encode("latin-1", "replace")),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loader=st.sampled_from(sorted(FILE_LOADERS)), content=file_contents)
def test_fuzzed_input_files(cli_store, loader, content):
    url, tmp = cli_store
    if count(url, "nim_case") == 0:
        ok = tmp / "ok.yaml"
        ok.write_text(yaml.safe_dump(referral_data()))
        _cli(["case", "open", "--file", str(ok), "--as", "coord.ali"])
    path = tmp / f"fuzz-{loader}.yaml"
    path.write_bytes(content)
    path.chmod(0o600)  # the notification config is read only when private
    argv = [a.replace("{path}", str(path)) for a in FILE_LOADERS[loader]]
    before, audit = _counts(url), count(url, "audit_event")
    env = {"NIM_NOTIFY_CONFIG": str(path)} if loader == "notify-config" else {}
    with mock.patch.dict(os.environ, env):
        code, out, err = _cli(argv)
    _assert_one_line_refusal(url, argv, before, audit, code, out, err)
