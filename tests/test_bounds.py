"""Bounded input and clean errors: every setting, count and offset has a range; a case's dates
keep the rules a referral keeps; outcome dates lie in the case's life; and every bad file,
argument or environment variable is one `error:` line, exit code 2, with nothing written."""

from __future__ import annotations

import json
import os
import threading
from datetime import date, timedelta
from pathlib import Path
from unittest import mock

import pytest
import yaml
from pydantic import ValidationError

from models.calendar import MAX_AMOUNT, CalendarError, WorkingCalendar, compute_due
from models.clock import FileClock, parse_instant
from models.errors import ConfigError, Invalid
from models.pathway import (
    PATHWAYS_DIR,
    PathwayError,
    load_pathway,
    parse_pathway,
    pathway_from_json,
)
from models.refs import TaskRef
from models.schemas import MAX_CAREGIVERS, MAX_CHILDREN, Referral
from tests import test_reliability
from tests.conftest import referral_data, special_files
from tests.test_reliability import _cli, count

cli_store = test_reliability.cli_store  # the in-process CLI's store, logged-in team and all

PROFILES = ("england", "scotland", "wales", "northern-ireland")
ENGLAND = (PATHWAYS_DIR / "england.yaml").read_text(encoding="utf-8")
TABLES = ("nim_case", "task", "case_anchor", "audit_event", "timer", "outbox", "intake",
          "pathway_version", "practitioner")


def open_case(store, **over):
    return store.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali")


def snapshot(url: str) -> dict[str, int]:
    return {t: count(url, t) for t in TABLES}


def _edit(old: str, new: str, text: str = ENGLAND) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _refused(text: str) -> str:
    with pytest.raises(PathwayError) as err:
        parse_pathway(text, source="x.yaml")
    return str(err.value)


# -- the pathway declares every range ---------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_setting_of_a_shipped_pathway_has_a_range_holding_its_default(profile):
    spec = load_pathway(profile)
    assert set(spec.setting_ranges) == set(spec.settings)
    for name, value in spec.settings.items():
        lo, hi = spec.setting_range(name)
        assert lo <= value <= hi and 0 <= lo and hi <= max(MAX_AMOUNT.values()), name
    assert spec.setting_range("treatment_months") == (3, 12)
    assert spec.setting_range("research_follow_up") == (0, 1)


@pytest.mark.parametrize(("old", "new", "says"), [
    ("  closure_weeks: {min: 2, max: 16}\n", "",
     "settings.closure_weeks: give its range under 'setting_ranges'"),
    ("treatment_months: 5 ", "treatment_months: 50 ",
     "settings.treatment_months: 50 is outside its range 3-12"),
    ("treatment_months: {min: 3, max: 12}", "treatment_months: {min: 3, max: 100000000}",
     "setting_ranges.treatment_months: 3-100000000 does not fit its use as a count (1-60)"),
    ("triage_working_days: {min: 1, max: 20}", "triage_working_days: {min: -5, max: 20}",
     "setting_ranges.triage_working_days.min"),
    ("closure_weeks: {min: 2, max: 16}", "closure_weeks: {min: 20, max: 16}",
     "min 20 is more than max 16"),
    ("research_follow_up: {min: 0, max: 1}", "research_follow_up: {min: 0, max: 2}",
     "does not fit its use as a stage's switch (0-1)"),
    ("closure_weeks: {min: 2, max: 16}", "closure_weeks: {min: 2, max: 16}\n  weeks_off: "
     "{min: 1, max: 2}", "setting_ranges.weeks_off: no setting 'weeks_off'"),
    ("due: {anchor: care_entry, months: 30}", "due: {anchor: care_entry, months: 3000}",
     "months: 3000 is outside -60..60"),
    ("warnings: [{weeks: 8}, {weeks: 4}]", "warnings: [{weeks: 8}, {weeks: -9999}]",
     "weeks: -9999 is outside -260..260"),
    ("count: contact_observations_per_parent", "count: 100000000",
     "count: 100000000 is outside 1..60"),
    ("reminders: [5, 1, 0]              #", "reminders: [5, 1, 100000]              #",
     "reminders: give working days before due, 0..60"),
    ("{after_working_days: 5, role: head-of-service, team: nim}",
     "{after_working_days: 100000000, role: head-of-service, team: nim}",
     "after_working_days"),
    ("retention_years: {default: 75, adoption: 100}",
     "retention_years: {default: 75, adoption: 100000000}",
     "retention_years.adoption: 100000000 is outside 1..150 years"),
], ids=["no-range", "default-outside", "range-too-wide", "negative", "min-over-max", "switch",
        "unknown", "literal-months", "warning", "count", "reminders", "escalation",
        "retention"])
def test_a_pathway_file_out_of_bounds_is_refused_naming_the_place(old, new, says):
    msg = _refused(_edit(old, new))
    assert msg.startswith("invalid pathway file\nx.yaml:") and says in msg, msg


def test_a_pathway_version_stored_before_ranges_is_held_to_its_uses():
    spec = load_pathway("england")
    data = json.loads(spec.canonical_json())
    del data["setting_ranges"]
    old = pathway_from_json(json.dumps(data))  # cases keep their stored version
    assert old.setting_range("treatment_months") == (1, 60)  # a count, and months
    assert old.setting_range("triage_working_days") == (0, MAX_AMOUNT["working_days"])
    assert old.setting_problems({"treatment_months": 100_000_000}) == [
        "treatment_months=100000000 is outside 1-60 (the pathway's default is 5)"]
    with pytest.raises(PathwayError, match="give its range under 'setting_ranges'"):
        parse_pathway(yaml.safe_dump(data), source="x.yaml")  # a file must declare them


def test_a_pathway_file_nested_deeply_or_not_utf8_is_refused(tmp_path):
    msg = _refused("a: " + "[" * 5000 + "]" * 5000)
    assert "nested too deeply" in msg
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(ENGLAND.replace("LIFT-like", "caf\xe9").encode("latin-1"))
    with pytest.raises(PathwayError, match="not UTF-8 text"):
        load_pathway(str(latin))


# -- a case overrides within the ranges ---------------------------------------------------------


@pytest.mark.parametrize(("settings", "says"), [
    ({"treatment_months": 100_000_000},
     "treatment_months=100000000 is outside 3-12 (the pathway's default is 5)"),
    ({"triage_working_days": -30}, "triage_working_days=-30 is outside 1-20"),
    ({"research_follow_up": 2}, "research_follow_up=2 is outside 0-1"),
])
def test_a_referral_setting_out_of_range_is_refused_and_nothing_written(store, db_url, settings,
                                                                       says):
    before = snapshot(db_url)
    with pytest.raises(Invalid) as err:
        open_case(store, settings=settings)
    assert f"pathway setting out of range on england@2026.10: {says}" in str(err.value)
    assert snapshot(db_url) == before


def test_a_referral_setting_in_range_is_kept(store):
    ref = open_case(store, settings={"treatment_months": 12, "triage_working_days": 1}).ref
    triage = next(t for t in store.queries.tasks(case=ref) if t.key == "triage")
    assert triage.due == date(2026, 1, 13)  # the next working day


# -- a case's dates keep a referral's rules -----------------------------------------------------


@pytest.mark.parametrize(("anchor", "value", "says"), [
    ("referral", date(1, 1, 1), "referral date 0001-01-01 is before the date of birth"),
    ("referral", date(2026, 1, 1), "referral date 2026-01-01 is before care entry 2026-01-05"),
    ("referral", date(2026, 2, 2), "referral date 2026-02-02 is in the future"),
    ("care_entry", date(2099, 1, 1), "referral date 2026-01-12 is before care entry 2099-01-01"),
    ("care_entry", date(2025, 5, 1), "care entry date 2025-05-01 is before the date of birth"),
    ("care_entry", date(2026, 1, 10), "placement start 2026-01-05 is before care entry"),
    ("final_hearing", date(2026, 1, 1),
     "final hearing 2026-01-01 is before proceedings were issued (2026-01-08)"),
    ("final_hearing", date(2099, 1, 1), "more than 5 years after the referral"),
    ("cmh_held", date(1999, 1, 1), "cmh held 1999-01-01 is before the date of birth"),
    ("stage:referral", date(2026, 1, 9), "stage:referral 2026-01-09 is before the referral"),
])
def test_move_date_keeps_the_rules_case_open_keeps(store, db_url, anchor, value, says):
    ref = open_case(store).ref
    before, show = snapshot(db_url), store.queries.show(ref)
    with pytest.raises(Invalid) as err:
        store.cases.move_date(ref, anchor, value, "corrected", "coord.ali")
    assert str(err.value).startswith(f"{anchor} cannot move to {value}: ") and says in str(
        err.value), str(err.value)
    assert snapshot(db_url) == before and store.queries.show(ref) == show


def test_move_date_within_the_rules_moves(store):
    ref = open_case(store).ref
    store.cases.move_date(ref, "referral", date(2026, 1, 9), "corrected", "coord.ali")
    store.cases.move_date(ref, "final_hearing", date(2026, 6, 1), "listed", "coord.ali")
    store.cases.move_date(ref, "proceedings_issued", date(2026, 1, 6), "corrected",
                          "coord.ali")
    store.cases.move_date(ref, "care_entry", date(2026, 1, 2), "corrected", "coord.ali")
    dates = store.queries.show(ref).dates
    assert (dates["referral"], dates["care_entry"], dates["final_hearing"]) == (
        date(2026, 1, 9), date(2026, 1, 2), date(2026, 6, 1))


@pytest.mark.parametrize(("over", "says"), [
    ({"referral": "2026-01-12", "care_entry": "2026-01-05",
      "child": {"given_name": "A", "family_name": "B", "date_of_birth": "2007-01-05"}},
     "would be 18 or older at referral"),
    ({"final_hearing": "2031-02-01"}, "final hearing 2031-02-01 is more than 5 years after"),
    ({"proceedings_issued": "1990-01-01"}, "proceedings issued 1990-01-01 is before the date"),
    ({"children": [referral_data()["child"]] * (MAX_CHILDREN + 1), "child": None},
     f"at most {MAX_CHILDREN} items"),
    ({"caregivers": [{"relationship": "parent"}] * (MAX_CAREGIVERS + 1)},
     f"at most {MAX_CAREGIVERS} items"),
])
def test_a_referral_outside_the_window_of_a_case_is_refused(over, says):
    with pytest.raises(ValidationError, match=says):
        Referral.model_validate(referral_data(**over))


def test_a_referral_years_back_is_refused_at_opening(store, clock):
    clock.set(clock.now() + timedelta(days=6 * 366))
    with pytest.raises(Invalid, match="more than 5 years ago"):
        open_case(store)


# -- outcome dates lie in the case's life ---------------------------------------------------------


def test_outcome_dates_lie_between_the_referral_and_today(store, db_url):
    ref = open_case(store).ref
    triage = TaskRef(ref, "triage")
    before = snapshot(db_url)
    for day in ("2026-01-11", "2026-01-13", "2025-02-30"):
        with pytest.raises(Invalid, match="completed_on"):
            store.tasks.complete_task(triage, "mgr.okafor", {"accepted": True,
                                                             "completed_on": day})
    assert snapshot(db_url) == before
    store.tasks.complete_task(triage, "mgr.okafor", {"accepted": True,
                                                     "completed_on": "2026-01-12"})
    for carer in ("mother", "father", "foster-carer"):
        store.tasks.complete_task(TaskRef(ref, f"consent-{carer}"), "sw.jones",
                                  {"consent": "given"})
    wmci = TaskRef(ref, "wmci-mother")
    for day in ("2025-12-31", "2026-02-01"):
        with pytest.raises(Invalid, match=f"interview_date {day} is outside the case's life"):
            store.tasks.complete_task(wmci, "psy.chen", {"classification": "balanced",
                                                         "interview_date": day})
    store.tasks.complete_task(wmci, "psy.chen", {"classification": "balanced",
                                                 "interview_date": "2026-01-12"})


# -- the calendar and the clock ------------------------------------------------------------------


def test_date_arithmetic_past_the_calendar_is_a_calendar_error():
    cal = WorkingCalendar("england-and-wales")
    for anchor, amount, unit in ((date(9999, 12, 31), 1, "days"), (date(9999, 12, 1), 1, "months"),
                                 (date(9999, 12, 20), 30, "working_days"), (date(1, 1, 1), -1,
                                                                             "weeks")):
        with pytest.raises(CalendarError, match="falls outside the calendar"):
            compute_due(cal, anchor, amount, unit)


def test_instants_are_held_to_the_working_years(tmp_path):
    for text in ("0001-01-01", "9999-12-31T23:59-01:00", "2300-01-01"):
        with pytest.raises(ValueError, match="outside the years 2000-2199"):
            parse_instant(text)
    shared = tmp_path / "clock"
    shared.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="NIM_CLOCK_FILE .* must hold an ISO instant"):
        FileClock(str(shared)).now()


# -- case references under concurrency -------------------------------------------------------------


def test_four_cases_opened_at_once_get_four_references(store, db_url):
    """On PostgreSQL the allocation takes an advisory lock (SQLite has one writer)."""
    barrier = threading.Barrier(4)
    refs: list[str] = []
    errors: list[BaseException] = []

    def opening() -> None:
        barrier.wait()
        try:
            refs.append(open_case(store).ref)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opening) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert sorted(refs) == [f"NIM-2026-000{n}" for n in range(1, 5)]
    assert store.queries.verify_audit() == []


def test_the_reference_after_9999_is_10000(store, db_url):
    from sqlalchemy import text

    from store.db import get_engine

    ref = open_case(store).ref
    with get_engine(db_url).begin() as conn:
        conn.execute(text("update nim_case set ref = 'NIM-2026-9999' where ref = :r"), {"r": ref})
    assert open_case(store).ref == "NIM-2026-10000"
    assert open_case(store).ref == "NIM-2026-10001"


# -- the command line: one `error:` line, exit 2, nothing written ------------------------------


def _refusal(url: str, args: list[str], env: dict[str, str] | None = None) -> str:
    """Run one command in-process; it must be refused cleanly and write nothing."""
    before = snapshot(url)
    with mock.patch.dict(os.environ, env or {}):
        code, out, err = _cli(args)
    assert code == 2, (args, env, code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, env, err)
    assert "Traceback" not in err + out and "internal error" not in err
    assert snapshot(url) == before, (args, env)
    return lines[0]


def _open_first_case(tmp: Path) -> None:
    path = tmp / "ok.yaml"
    path.write_text(yaml.safe_dump(referral_data()))
    assert _cli(["case", "open", "--file", str(path), "--as", "coord.ali"])[0] == 0


def test_bad_files_are_one_line_refusals(cli_store):
    url, tmp = cli_store
    _open_first_case(tmp)
    files = {
        "dob.yaml": yaml.safe_dump(referral_data()).replace("'2025-06-01'", "2025-02-30"),
        "deep.json": "[" * 5000 + "]" * 5000,
        "deep.yaml": "a: " + "{a: " * 5000 + "1" + "}" * 5000,
        "nested.json": json.dumps({**referral_data(), "unexpected": [[[[[[[[[[[1]]]]]]]]]]]}),
        "outcome.yaml": "accepted: true\ncompleted_on: 2026-02-30\n",
        "huge.yaml": "accepted: true\nnotes: " + "9" * 5000 + "\n",
        "settings.yaml": yaml.safe_dump(referral_data(settings={"treatment_months": 10**8})),
        "negative.yaml": yaml.safe_dump(referral_data(settings={"triage_working_days": -30})),
    }
    for name, content in files.items():
        (tmp / name).write_text(content)
    (tmp / "latin.yaml").write_bytes("site: caf\xe9\n".encode("latin-1"))
    (tmp / "latin-pathway.yaml").write_bytes(ENGLAND.replace("LIFT-like", "caf\xe9").encode(
        "latin-1"))
    referral = ["case", "open", "--as", "coord.ali", "--file"]
    outcome = ["task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor",
               "--outcome-file"]
    install = ["pathway", "install", "--as", "admin.demo"]
    expected = [
        (referral + [str(tmp / "dob.yaml")], "day is out of range for month"),
        (referral + [str(tmp / "deep.json")], "nested too deeply"),
        (referral + [str(tmp / "deep.yaml")], "nested too deeply"),
        (referral + [str(tmp / "nested.json")], "nested more than 10 levels deep"),
        (referral + [str(tmp / "latin.yaml")], "not UTF-8 text"),
        (referral + [str(tmp / "settings.yaml")], "treatment_months=100000000 is outside 3-12"),
        (referral + [str(tmp / "negative.yaml")], "triage_working_days=-30 is outside 1-20"),
        (["case", "intake", "--as", "coord.ali", "--file", str(tmp / "deep.yaml")],
         "nested too deeply"),
        (outcome + [str(tmp / "outcome.yaml")], "day is out of range for month"),
        (outcome + [str(tmp / "huge.yaml")], "check the dates and numbers"),
        (outcome + [str(tmp / "latin.yaml")], "not UTF-8 text"),
        (outcome + [str(tmp / "deep.json")], "nested too deeply"),
        (install + [str(tmp / "deep.yaml")], "nested too deeply"),
        (install + [str(tmp / "latin-pathway.yaml")], "not UTF-8 text"),
    ]
    for args, says in expected:
        assert says in _refusal(url, args), args


def test_bad_arguments_are_one_line_refusals(cli_store):
    url, tmp = cli_store
    _open_first_case(tmp)
    move = ["case", "move-date", "NIM-2026-0001", "--as", "coord.ali", "--cause", "x"]
    expected = [
        (["deadline", "--jurisdiction", "england-and-wales", "--from", "9999-12-31", "--days",
          "1"], "--from 9999-12-31 is outside 1900-2199"),
        (["deadline", "--jurisdiction", "england-and-wales", "--from", "2026-01-12",
          "--working-days", "99999999"], "--working-days must be between -1300 and 1300"),
        (["task", "list", "--due-within", "99999999999999"], "--due-within must be 0-3660"),
        (["outbox", "retry", "99999999999999999999999", "--as", "admin.demo"],
         "no outbox message 99999999999999999999999"),
        (["task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor", "--field",
          "accepted=true", "--field", "completed_on=2026-02-30"], "completed_on"),
        (["task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor", "--field",
          "accepted=true", "--field", "completed_on=2025-06-01"], "outside the case's life"),
        (move + ["referral", "0001-01-01"], "date 0001-01-01 is outside 1900-2199"),
        (move + ["referral", "1990-01-01"], "before the date of birth of the child"),
        (move + ["care_entry", "2099-01-01"], "is before care entry 2099-01-01"),
        (move + ["final_hearing", "2026-01-01"], "is before proceedings were issued"),
        (["case", "open", "--file", str(tmp / "ok.yaml"), "--as", "coord.ali", "--setting",
          "treatment_months=\u00b2"], "--setting must be NAME=N"),
        (["case", "forecast", "NIM-2026-0001", "--treatment-months", "99999999999"],
         "--treatment-months must be between 1 and 24"),
        (["outbox", "retry", "abc", "--as", "admin.demo"], "Invalid value for 'message_id'"),
        (["case", "nonsense"], "No such command 'nonsense'"),
    ]
    for args, says in expected:
        assert says in _refusal(url, args), args


def test_bad_environment_is_a_one_line_refusal(cli_store):
    url, tmp = cli_store
    fifo = special_files(tmp / "special")["fifo"]  # never the host's /dev
    _open_first_case(tmp)
    configs = {"missing": None, "bad.yaml": "targets: [1\n", "types.yaml": "max_attempts: lots\n",
               "deep.yaml": "a: " + "[" * 5000 + "]" * 5000, "date.yaml": "x: 2026-02-30\n"}
    for name, content in configs.items():
        if content is not None:
            (tmp / name).write_text(content)
            (tmp / name).chmod(0o600)
    (tmp / "latin.yaml").write_bytes("ui_url: caf\xe9\n".encode("latin-1"))
    (tmp / "latin.yaml").chmod(0o600)
    listing = ["case", "list"]
    expected = [
        ({"NIM_CLOCK": "garbage"}, listing, "NIM_CLOCK must be an ISO instant"),
        ({"NIM_CLOCK": "0001-01-01"}, listing, "outside the years 2000-2199"),
        ({"NIM_CLOCK_FILE": str(tmp / "nowhere")}, ["task", "list"], "NIM_CLOCK_FILE"),
        ({"NIM_CLOSURE_DAYS": "2026-13-01"}, listing, "NIM_CLOSURE_DAYS must be ISO dates"),
        ({"NIM_DATABASE_URL": "mysql://x"}, listing, "got a 'mysql' scheme"),
        ({"NIM_DATABASE_URL": "garbage"}, listing, "got no scheme"),
        ({"NIM_DATABASE_URL": "postgresql://u:secret@h:port/x"}, listing, "port is not a number"),
        ({"NIM_DATABASE_URL": "sqlite:/relative.db"}, ["task", "list"], "three slashes"),
        ({"NIM_RAG_AMBER_WORKING_DAYS": "\u00b2"}, ["report", "board"],
         "NIM_RAG_AMBER_WORKING_DAYS must be a whole number 0-60"),
        ({"NIM_SESSION_MINUTES": "0"}, ["login", "--as", "coord.ali", "--code", "000000"],
         "NIM_SESSION_MINUTES must be a whole number 1-600"),
        ({"NIM_INTAKE_DAYS": "x"}, ["sweep", "--no-dispatch"], "NIM_INTAKE_DAYS"),
        ({"NIM_DATA_DIR": str(fifo)}, listing, f"NIM_DATA_DIR {fifo} cannot be used"),
        ({"NIM_AUDIT_KEY_FILE": str(tmp / "nowhere")}, listing, "NIM_AUDIT_KEY_FILE"),
        ({"NIM_SECRET_KEY_FILE": str(tmp / "nowhere")}, listing, "NIM_SECRET_KEY_FILE"),
        *[({"NIM_AUDIT_CHECKPOINT": path}, ["case", "move-date", "NIM-2026-0001",
                                             "final_hearing", "2026-06-01", "--cause", "x",
                                             "--as", "coord.ali"], "the audit checkpoint")
          for path in (str(fifo / "checkpoint"), str(fifo), str(tmp))],
        ({"NIM_NOTIFY_CONFIG": str(tmp / "missing")}, ["outbox", "dispatch"], "does not exist"),
        ({"NIM_NOTIFY_CONFIG": str(tmp / "bad.yaml")}, ["outbox", "dispatch"], "not valid YAML"),
        ({"NIM_NOTIFY_CONFIG": str(tmp / "types.yaml")}, ["outbox", "dispatch"],
         "not a valid notification config"),
        ({"NIM_NOTIFY_CONFIG": str(tmp / "deep.yaml")}, ["outbox", "dispatch"],
         "nested too deeply"),
        ({"NIM_NOTIFY_CONFIG": str(tmp / "date.yaml")}, ["outbox", "dispatch"],
         "out of range"),
        ({"NIM_NOTIFY_CONFIG": str(tmp / "latin.yaml")}, ["outbox", "dispatch"],
         "not UTF-8 text"),
    ]
    for env, args, says in expected:
        line = _refusal(url, args, env)
        assert says in line and "secret" not in line, (env, line)
