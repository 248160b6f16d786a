"""The `nim-pathway` command through its real entry point, as a coordinator would use it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli_team import as_person, log_in_team
from tests.conftest import (
    CLI,  # noqa: F401 - other tests import it from here
    referral_data,
)


@pytest.fixture
def team(run, cli_env, tmp_path):
    """The demo team, enrolled, each logged in (their own session file)."""
    log_in_team(cli_env, tmp_path / "sessions")
    return run


def test_help_lists_the_commands(run):
    out = run("--help").stdout
    for word in ("deadline", "case", "task", "decide", "practitioner", "demo"):
        assert word in out


def test_open_from_file_then_work_the_case(team, tmp_path):
    run = team
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    out = run("case", "open", "--file", str(referral), "--as", "coord.ali").stdout
    assert out.startswith("opened NIM-2026-0001 on pathway england@2026.10")
    shown = json.loads(run("case", "show", "NIM-2026-0001", "--json").stdout)
    assert shown["stage"] == "referral" and "Sentinel" not in json.dumps(shown)
    tasks = json.loads(run("task", "list", "--role", "nim-service-manager", "--json").stdout)
    assert [t["task"] for t in tasks] == ["NIM-2026-0001/triage"]
    assert tasks[0]["due"] == "2026-01-19" and tasks[0]["assignee"] == "mgr.okafor"

    wrong = run("task", "complete", "NIM-2026-0001/triage", "--as", "la.patel", code=2)
    assert wrong.stderr.startswith("error: la.patel is la-social-worker")
    done = run("task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor",
               "--field", "accepted=true")
    assert "stage-entered" in done.stdout and "stage=consent" in done.stdout
    twice = run("task", "complete", "NIM-2026-0001/triage", "--as", "mgr.okafor",
                "--field", "accepted=true", code=2)
    assert "already completed on 2026-01-12 by mgr.okafor" in twice.stderr
    assert len(twice.stderr.strip().splitlines()) == 1

    bad = run("task", "complete", "NIM-2026-0001/consent-mother", "--as", "sw.jones",
              "--field", "consent=maybe", code=2)
    assert "consent" in bad.stderr and "'given'" in bad.stderr
    early = run("decide", "NIM-2026-0001", "d1", "treatment", "--as", "mgr.okafor", code=2)
    assert "not at decision d1 yet" in early.stderr
    timeline = json.loads(run("case", "timeline", "NIM-2026-0001", "--json").stdout)
    assert any(r["event"].startswith("Triage the referral") and r["status"] == "on time"
               for r in timeline)
    run("audit", "verify")


def test_open_from_flags_and_refusals(team):
    run = team
    args = ["case", "open", "--as", "coord.ali", "--jurisdiction", "scotland", "--site", "gift",
            "--given-name", "A", "--family-name", "B", "--care-entry", "2026-01-05",
            "--referral", "2026-01-12", "--caregiver", "mother", "--caregiver", "foster-carer:C",
            "--first-entry-to-care"]
    too_old = run(*args, "--dob", "2020-12-01", code=2)  # eligibility comes from the pathway
    assert too_old.stderr.startswith("error: not eligible: the child is 61 months old")
    assert "60 months" in too_old.stderr
    second_entry = [a for a in args if a != "--first-entry-to-care"]
    assert "first entry to care" in run(*second_entry, "--dob", "2025-10-01", code=2).stderr
    before_birth = run(*args, "--dob", "2026-01-10", code=2)
    assert "before the date of birth" in before_birth.stderr
    assert json.loads(run("case", "list", "--json").stdout) == []
    ok = run(*args, "--dob", "2025-10-01", "--setting", "treatment_months=9")
    assert "scotland@2026.9" in ok.stdout
    run("case", "show", "NIM-2099-0009", code=2)
    unknown_role = run("practitioner", "add", "x.y", "--role", "wizard", "--name", "X",
                       "--as", "admin.demo", code=2)
    assert "unknown role 'wizard'" in unknown_role.stderr
    assert "error: give exactly one" in run("deadline", "--jurisdiction", "scotland", "--from",
                                            "2026-01-01", code=2).stderr


def test_notify_test_and_outbox_commands(team):
    from tests.receivers import HttpReceiver

    run = team
    receiver = HttpReceiver().start()
    try:
        ok = run("notify", "test", "--to", receiver.url("check"))
        assert ok.stdout.startswith("test message delivered")
        assert receiver.received and receiver.received[0]["path"] == "/check"
        down = run("notify", "test", "--to", "json://127.0.0.1:9/none", code=2)
        assert "failed" in down.stderr and "127.0.0.1:9" not in down.stderr
        unknown = run("notify", "test", "--to", "nobody", code=2)
        assert "neither a target URL" in unknown.stderr
    finally:
        receiver.stop()
    rows = json.loads(run("outbox", "list", "--json", "--as", "mgr.okafor").stdout)
    assert rows == []
    assert "no outbox message 99" in run("outbox", "retry", "99", "--as", "mgr.okafor",
                                          code=2).stderr


def test_reports_exports_and_forecast(team, tmp_path):
    run = team
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    board = json.loads(run("report", "board", "--json").stdout)
    assert board[0]["case"] == "NIM-2026-0001" and board[0]["rag"] in ("amber", "green")
    assert json.loads(run("report", "kpis", "--json").stdout)["cases"] == 1
    assert "No breaches" in run("report", "breaches").stdout
    assert run("report", "diagram", "--profile", "scotland").stdout.startswith("flowchart TD")
    forecast = run("case", "forecast", "NIM-2026-0001").stdout
    assert "CONFLICT: Proceedings disposed of within 26 weeks" in forecast
    assert "ask for an extension" in forecast
    assert "bad" in run("case", "forecast", "NIM-2026-0001", "--hearing-date", "bad",
                        code=2).stderr
    assert run("export", "csv", "--as", "mgr.okafor").stdout.startswith("task,title,child,stage")
    fhir = run("export", "fhir", "NIM-2026-0001", "--as", "mgr.okafor").stdout
    assert json.loads(fhir)["type"] == "collection"
    # an empty reference is an unknown case, not every case (the fuzzer found it exporting all)
    assert "unknown case ''" in run("export", "fhir", "", "--as", "mgr.okafor", code=2).stderr
    assert run("export", "ics", "mgr.okafor", "--as", "mgr.okafor").stdout.startswith("BEGIN:VCALENDAR")
    early = run("report", "pack", "NIM-2026-0001", "--kind", "assessment", "--as", "coord.ali",
                code=2)
    assert "after D1" in early.stderr


@pytest.mark.parametrize("url", ["postgresql://nim:s3cret@127.0.0.1:1/cases",
                                 "sqlite:////no-such-folder/nim.db"])
@pytest.mark.parametrize("argv", [["case", "list"], ["task", "list"]])
def test_unreachable_case_store_is_one_clear_line(url, argv, tmp_path):
    """Both read paths (ORM and plain DB-API) say which store, why, and what to check, and
    never print its password."""
    proc = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NIM_DATABASE_URL": url,
                               "NIM_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr
    assert "case store at" in proc.stderr and "is unavailable" in proc.stderr
    assert "Check NIM_DATABASE_URL" in proc.stderr and len(proc.stderr.splitlines()) == 1


# -- identity: what an insider tried, refused ------------------------------------------------


def _write_commands() -> list[list[str]]:
    """Every command that takes `--as` (the authenticated actor), as its command path."""
    import typer

    from nim_pathway.cli import app

    found = []

    def walk(command: object, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        elif any("--as" in p.opts for p in command.params):
            found.append(path)

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_with_an_actor_refuses_an_unknown_one(team, cli_env, tmp_path):
    """In-process (the entry point's own parsing and callbacks; 70 runs, no subprocesses)."""
    from typer.testing import CliRunner

    from models.errors import NotFound
    from nim_pathway.cli import app
    from nim_pathway.cli.io import UserError

    commands = _write_commands()
    assert len(commands) >= 35 and ["practitioner", "add"] in commands
    assert ["export", "csv"] in commands and ["report", "pack"] in commands
    runner = CliRunner()
    env = {**cli_env, "NIM_SESSION_FILE": str(tmp_path / "none")}
    for path in commands:  # a code for a made-up handle: refused before anything is read
        result = runner.invoke(app, ["--code", "123456", *path, "--as", "nobody; rm -rf /"],
                               env=env)
        assert isinstance(result.exception, NotFound), (path, result.output)
        assert "unknown practitioner 'nobody; rm -rf /'" in str(result.exception)
    for path in [c for c in commands if c != ["login"]]:  # no session, no code: nobody is
        # assumed, not even an admin (login itself asks for the code)
        result = runner.invoke(app, [*path, "--as", "coord.ali"], env=env)
        assert isinstance(result.exception, UserError), (path, result.output)
        assert "who is acting?" in str(result.exception)


def test_identity_is_proven_not_typed(team, cli_env, tmp_path):
    run = team
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    # coord.ali's own session claiming to be the manager
    env = {**cli_env, "NIM_SESSION_FILE": str(tmp_path / "sessions" / "coord.ali")}
    proc = subprocess.run([CLI, "task", "complete", "NIM-2026-0001/triage", "--as",
                           "mgr.okafor", "--field", "accepted=true"], capture_output=True,
                          text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "logged in as coord.ali, not 'mgr.okafor'" in proc.stderr
    # the manager's handle with a code that is not theirs
    env["NIM_SESSION_FILE"] = str(tmp_path / "none")
    proc = subprocess.run([CLI, "--code", "000000", "task", "complete", "NIM-2026-0001/triage",
                           "--as", "mgr.okafor", "--field", "accepted=true"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "wrong or reused one-time code" in proc.stderr
    shown = json.loads(run("task", "list", "--json").stdout)
    assert "NIM-2026-0001/triage" in [t["task"] for t in shown]  # still open
    # roles are granted by an admin only; no implicit admin
    err = run("practitioner", "add", "x.mgr", "--role", "head-of-service", "--name", "X",
              "--as", "coord.ali", code=2).stderr
    assert "coord.ali is coordinator and may not manage-practitioners; it needs admin" in err
    assert "Missing option '--as'" in run("practitioner", "add", "x.mgr", "--role",
                                          "head-of-service", "--name", "X", code=2).stderr
    assert "may not manage-practitioners" in run("practitioner", "role", "psy.chen",
                                                 "head-of-service", "--as", "psy.chen",
                                                 code=2).stderr
    added = run("practitioner", "add", "x.mgr", "--role", "head-of-service", "--name", "X",
                "--as", "admin.demo").stdout
    # the admin never sees the new person's key: it is made when they enrol (/enrol)
    assert "added x.mgr" in added and "key: " not in added and "no enrolment code" in added
    # a forged pathway file is neither opened on nor installed by a psychologist
    forged = tmp_path / "forged.yaml"
    forged.write_text(Path("pathways/england.yaml").read_text().replace(
        'version: "2026.10"', 'version: "2099.1"'))
    err = run("case", "open", "--file", str(referral), "--pathway", str(forged),
              "--as", "coord.ali", code=2).stderr
    assert "pathway" in err
    err = run("pathway", "install", str(forged), "--as", "psy.chen", code=2).stderr
    assert "may not install-pathway; it needs admin" in err
    assert "installed england@2099.1" in run("pathway", "install", str(forged), "--as",
                                             "admin.demo").stdout
    versions = json.loads(run("pathway", "list", "--json").stdout)
    assert versions[0]["version"] == "2099.1" and versions[0]["installed_by"] == "admin.demo"


def test_my_queue_and_an_assignees_queue(team, cli_env, tmp_path):
    """`task list --mine` is the signed-in practitioner's work (their session says who they
    are); `--assignee HANDLE` anyone's; nobody signed in is asked to log in."""
    run = team
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    mine = subprocess.run([CLI, "task", "list", "--mine", "--json"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=as_person(cli_env, ["--as", "mgr.okafor"], tmp_path / "sessions"))
    assert mine.returncode == 0, mine.stderr
    assert [t["task"] for t in json.loads(mine.stdout)] == ["NIM-2026-0001/triage"]
    others = json.loads(run("task", "list", "--assignee", "la.patel", "--json").stdout)
    assert others and {t["assignee"] for t in others} == {"la.patel"}
    assert run("task", "list", "--assignee", "nobody.here", "--json").stdout.strip() == "[]"
    assert "who is acting?" in run("task", "list", "--mine", code=2).stderr
    assert "not both" in run("task", "list", "--mine", "--assignee", "la.patel",
                             code=2).stderr


def test_login_and_logout_through_the_command_line(cli_env, tmp_path):
    import re

    import pyotp

    from models.clock import parse_instant

    env = {**cli_env, "NIM_SESSION_FILE": str(tmp_path / "me" / "session")}

    def cli(*args, code=0):
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        return proc

    out = cli("init", "--admin", "it.admin", "--name", "IT Admin").stdout
    secret = re.search(r"^key: ([A-Z2-7]+)$", out, re.M).group(1)
    assert "pathways installed: england" in out
    assert "has an admin already" in cli("init", "--admin", "it.two", "--name", "X",
                                         code=2).stderr
    code = pyotp.TOTP(secret).at(parse_instant(cli_env["NIM_CLOCK"]))
    assert "logged in as it.admin" in cli("login", "--as", "it.admin", "--code", code).stdout
    session = tmp_path / "me" / "session"
    assert oct(session.stat().st_mode & 0o777) == "0o600" and secret not in session.read_text()
    assert cli("whoami").stdout.strip() == "it.admin"
    assert "added sw.new" in cli("practitioner", "add", "sw.new", "--role",
                                 "nim-social-worker", "--name", "N", "--as", "it.admin").stdout
    assert "wrong or reused" in cli("login", "--as", "it.admin", "--code", code,
                                    code=2).stderr  # the code was spent
    assert cli("logout").stdout.strip() == "logged out"
    assert "who is acting?" in cli("practitioner", "enrol", "sw.new", "--as", "it.admin",
                                   code=2).stderr


# -- output for people: pipes get every character, terminals get tables and Markdown --------


def in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with stdout on a pseudo-terminal (as a person at a shell), the text seen."""
    import re

    master, slave = os.openpty()
    proc = subprocess.Popen([CLI, *args], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())


def test_case_open_warns_of_work_already_overdue_and_the_board_shows_it(team, tmp_path):
    run = team
    on_time = tmp_path / "on-time.yaml"
    on_time.write_text(yaml.safe_dump(referral_data()))
    assert "warning" not in run("case", "open", "--file", str(on_time), "--as",
                                "coord.ali").stderr
    # placed on Friday 2 Jan: the first visit (within a week) was due Friday 9 Jan, before
    # this referral of Monday 12 Jan
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump(referral_data(care_entry="2026-01-02", placement={
        "kind": "foster", "start": "2026-01-02"}, child={
            "given_name": "Sentinel-Other", "family_name": "Sentinel-Family",
            "date_of_birth": "2025-07-01", "address": "Sentinel Address 2"})))
    opened = run("case", "open", "--file", str(late), "--as", "coord.ali")
    assert opened.stdout.startswith("opened NIM-2026-0002")
    assert ("warning: NIM-2026-0002 opens with 1 overdue task(s): NIM-2026-0002/sw-visit-1 "
            "(due 2026-01-09)") in opened.stderr

    # not a terminal: tab-separated, whole references, most urgent first. The late visit is
    # the LA's work, late before the case came to NIM: counted as LA-late, never NIM's red
    # (issue 27; this test expected red before)
    board = run("report", "board").stdout.splitlines()
    assert board[:2] == ["# Caseload board", "case\trag\toverdue\tla-late\tcourt-late\tworst"
                         "\tdue\twd\towner\tstage\tnext"]
    rows = {line.split("\t")[0]: line.split("\t") for line in board[2:4]}
    assert rows["NIM-2026-0002"][:7] == ["NIM-2026-0002", "amber", "0", "1", "0", "triage",
                                         "2026-01-19"]
    assert rows["NIM-2026-0001"][:5] == ["NIM-2026-0001", "amber", "0", "0", "0"]
    detail = run("report", "board", "--case", "NIM-2026-0002").stdout.splitlines()
    assert detail[2].split("\t")[:3] == ["red", "task", "sw-visit-1"]
    tasks = run("task", "list", "--case", "NIM-2026-0002").stdout
    assert "NIM-2026-0002/sw-visit-1\tSocial worker visit" in tasks
    assert "2026-01-09\t-3\t-1\topen" in tasks  # calendar days, then working days


def test_reports_read_as_text_for_people(team, cli_env, tmp_path):
    run = team
    kpis = run("report", "kpis").stdout
    assert kpis.startswith("# NIM KPIs") and "no D1 decisions yet" in kpis
    assert "None of 0" not in kpis
    env = as_person(cli_env, [], tmp_path / "sessions")
    shown = in_terminal(["report", "kpis"], env)
    assert "NIM KPIs (as of 2026-01-12)" in shown and "# NIM KPIs" not in shown
    assert "|---" not in shown and "no D1 decisions yet" in shown
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    table = in_terminal(["task", "list"], env)
    assert "NIM-2026-0001/triage" in table and "━" in table  # a Rich table, whole references


def test_practitioner_update_and_outbox_preview_from_the_command_line(team, tmp_path):
    run = team
    refused = run("practitioner", "update", "psy.chen", "--digest", "--as", "coord.ali",
                  code=2).stderr
    assert "coord.ali is coordinator and may not manage-practitioners; it needs admin" in refused
    unknown = run("practitioner", "update", "no.body", "--digest", "--as", "admin.demo",
                  code=2).stderr
    assert "unknown practitioner 'no.body'" in unknown
    bad = run("practitioner", "update", "psy.chen", "--contact", "json://h.example/x?token="
              "abcdef123456", "--as", "admin.demo", code=2).stderr
    assert "invalid contact: contact must not hold a password, token or key" in bad
    assert "abcdef123456" not in bad
    done = run("practitioner", "update", "psy.chen", "--contact", "email:chen@nhs.net",
               "--digest", "--as", "admin.demo").stdout
    assert done.strip() == ("updated psy.chen: contact email:chen@nhs.net; reminders in a "
                            "daily digest")
    exists = run("practitioner", "add", "psy.chen", "--role", "psychologist", "--name", "C",
                 "--as", "admin.demo", code=2).stderr
    assert "`nim-pathway practitioner update psy.chen`" in exists

    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    rows = json.loads(run("outbox", "list", "--json", "--as", "mgr.okafor").stdout)
    handoff = next(r for r in rows if r["recipient"] == "practitioner:mgr.okafor")
    assert handoff["status"] == "pending"
    # triage is due in 7 days, so its 7-day notice is already due: one message says both
    assert handoff["subject"] == ("[NIM-2026-0001] New task for you, due in 7 days: "
                                  "Triage the referral")
    assert handoff["preview"].startswith("Triage the referral on case NIM-2026-0001")
    assert "Sentinel" not in json.dumps(rows)
    table = run("outbox", "list", "--as", "mgr.okafor").stdout  # not a terminal: tab-separated
    assert "subject\tpreview" in table.splitlines()[0]
    assert "New task for you, due in 7 days: Triage the referral" in table


def test_pause_one_caregiver_and_a_direction_that_binds_the_report(team, tmp_path):
    run = team
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))  # mother, father, foster carer
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    bad = run("case", "pause", "NIM-2026-0001", "--reason", "in custody", "--caregiver", "uncle",
              "--as", "coord.ali", code=2)
    assert bad.stderr.strip() == ("error: case NIM-2026-0001 has no caregiver or child 'uncle'; "
                                  "its caregivers: mother, father, foster-carer; its children: "
                                  "child-1")
    run("case", "pause", "NIM-2026-0001", "--reason", "in custody", "--caregiver", "father",
        "--as", "coord.ali")
    run("case", "resume", "NIM-2026-0001", "--caregiver", "father", "--as", "coord.ali")
    # the final report is NIM's own task: the direction binds it (no --role), no new task
    run("case", "direction", "NIM-2026-0001", "--document", "final-report", "--by",
        "2026-10-30", "--as", "la.sol.reid")
    tasks = run("task", "list", "--case", "NIM-2026-0001", "--state", "all").stdout
    assert "court-direction" not in tasks
    shown = json.loads(run("case", "show", "NIM-2026-0001", "--json").stdout)
    assert shown["court"]["directions"] == [["final-report", "2026-10-30", "2026-01-12"]]
    forecast = run("case", "forecast", "NIM-2026-0001").stdout
    assert "court direction of 2026-01-12: file final-report by 2026-10-30" in forecast


def test_a_views_values_read_as_words_not_json():
    """Issue 29: `case show` printed raw JSON (nulls, brackets). Plain output now reads as
    words; `--json` keeps the machine form."""
    from nim_pathway.cli.io import readable

    assert readable(None) == "—" and readable(True) == "yes" and readable([]) == "none"
    assert readable([{"key": "mother", "consent": None, "active": True},
                     {"key": "father", "consent": "given", "active": False}]) == \
        "key mother, active yes; key father, consent given, active no"
    assert readable({"extensions": [], "final_order": None}) == "none"
    assert readable({"care_entry": "2026-01-05", "referral": "2026-01-12"}) == \
        "care entry 2026-01-05; referral 2026-01-12"


def test_help_reads_at_80_columns(tmp_path):
    """Issue 29: help was cut at 80 columns (Rich's boxed panels truncated option names to
    `--proceedings-is…`). Click's plain help wraps instead: every option name is whole."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80", "NIM_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "from nim_pathway.cli import main; main()",
                          "case", "open", "--help"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "--proceedings-issued" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
