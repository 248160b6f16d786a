"""Logs, files and secrets: the error log never holds identity, SQL parameters or config
values; the data folder, case store, packs and logs are the service user's alone; a
credential is masked wherever a URL is shown, and refused in a practitioner's contact."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError

from models.redaction import carries_credentials, mask_url, scrub_text
from models.schemas import PractitionerIn, Referral
from store.db import get_engine, migrate
from store.files import append_private, private_dir, write_private
from tests.cli_team import as_person, log_in_team
from tests.conftest import referral_data
from tests.test_oversight import drive

SENTINELS = ("Sentinel", "2025-06-01", "2025, 6, 1", "hunter2-secret", "abcd1234secrettoken")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def count(url: str, table: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(text(f"select count(*) from {table}")).scalar_one()


def _cli(args: list[str]) -> tuple[int, str, str]:
    """The real entry point, in process (so a fault can be forced with monkeypatch)."""
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
def cli(db_url, tmp_path, monkeypatch):
    """The CLI on each backend, the demo team logged in; returns (url, data folder)."""
    monkeypatch.setenv("NIM_DATABASE_URL", db_url)
    monkeypatch.setenv("NIM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NIM_CLOCK", "2026-01-12T10:00")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("NIM_NOTIFY_CONFIG", raising=False)
    monkeypatch.setenv("NIM_SESSION_FILE", str(tmp_path / "no-session"))
    log_in_team(dict(os.environ), tmp_path / "sessions")
    return db_url, tmp_path / "data"


def _referral_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "referral.json"
    path.write_text(json.dumps(data))
    return path


# -- control characters in referral text ---------------------------------------------------

def _with_child(**child) -> dict:
    return referral_data(child={**referral_data()["child"], **child})


NUL_REFERRALS = {
    "given_name": _with_child(given_name="Sentinel\x00Given"),
    "family_name": _with_child(family_name="Sentinel-Family\x00"),
    "address": _with_child(address="Sentinel Address\x001"),
    "caregiver": referral_data(caregivers=[{"relationship": "mother", "name": "Sentinel\x00M"}]),
    "legal_status": referral_data(legal_status="interim\x00care order"),
    "escape": _with_child(given_name="Sentinel\x1b[2JGiven"),
}


@pytest.mark.parametrize("field", list(NUL_REFERRALS))
def test_control_characters_in_referral_text_are_refused_in_one_line(cli, tmp_path, field):
    url, data = cli
    cases, audit = count(url, "nim_case"), count(url, "audit_event")
    path = _referral_file(tmp_path, NUL_REFERRALS[field])
    code, out, err = _cli(["case", "open", "--file", str(path), "--as", "coord.ali"])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: invalid referral:")
    assert "must not contain control characters" in err and "\x00" not in err
    assert count(url, "nim_case") == cases and count(url, "audit_event") == audit
    assert not (data / "errors.log").exists()
    code, _, err = _cli(["case", "intake", "--file", str(path), "--as", "coord.ali"])
    assert code == 2 and "control characters" in err and count(url, "intake") == 0


def test_newlines_and_tabs_stay_allowed_and_every_input_model_checks():
    address = "1 Sentinel Row\nSentinel Town\tSN1"
    assert Referral.model_validate(_with_child(address=address)).child.address == address
    with pytest.raises(ValidationError, match="control characters"):
        PractitionerIn(handle="sw.x", display_name="X\x00", role="r", team="t")
    with pytest.raises(ValidationError, match="control characters"):
        Referral.model_validate(_with_child(given_name="A\x7fB"))


# -- the error log --------------------------------------------------------------------------

def _crashes() -> dict[str, BaseException]:
    orig = Exception('duplicate key value violates unique constraint "child_pk"\n'
                     "DETAIL:  Key (given_name)=(Sentinel-Given) already exists.")
    orig.sqlstate = "23505"
    params = {"given_name": "Sentinel-Given", "date_of_birth": "2025-06-01",
              "address": "Sentinel Address 1"}
    try:
        Referral.model_validate({"child": {"given_name": 7, "date_of_birth": "Sentinel"}})
    except ValidationError as exc:
        invalid = exc
    return {
        "integrity": IntegrityError("INSERT INTO child (given_name) VALUES (%(given_name)s)",
                                    params, orig),
        "data": DataError("INSERT INTO child VALUES (?)", ("Sentinel-Given",),
                          Exception("Sentinel-Given is not text")),
        "validation": invalid,
        "key": KeyError("Sentinel-Given"),
        "value": ValueError("child born 2025-06-01 at 'Sentinel Address 1' "
                            "(datetime.date(2025, 6, 1))"),
        "url": RuntimeError("cannot reach json://host/hook/abcd1234secrettoken?password="
                            "hunter2-secret"),
        "chained": RuntimeError("wrapped"),
    }


@pytest.mark.parametrize("kind", list(_crashes()))
def test_the_error_log_holds_types_and_frames_never_values(cli, tmp_path, monkeypatch, kind):
    from nim_pathway.commands.cases import CaseCommands

    url, data = cli
    crash = _crashes()[kind]
    if kind == "chained":
        crash.__cause__ = _crashes()["integrity"]

    def boom(*_a, **_k):
        raise crash

    monkeypatch.setattr(CaseCommands, "open_case", boom)
    path = _referral_file(tmp_path, referral_data())
    code, _, err = _cli(["case", "open", "--file", str(path), "--as", "coord.ali"])
    assert code == 1 and err.startswith(f"internal error ({type(crash).__name__})"), err
    log = data / "errors.log"
    written = log.read_text()
    assert mode(log) == 0o600 and mode(data) == 0o700
    for sentinel in SENTINELS + (str(path), "coord.ali"):
        assert sentinel not in written, (sentinel, written)
    assert "parameters" not in written.lower() or "hidden" in written
    assert "nim-pathway case open" in written and type(crash).__name__ in written
    assert "test_data_hygiene.py:" in written and " in boom" in written  # where, not what
    if kind == "validation":
        assert "child.given_name (string_type)" in written
    if kind == "chained":
        assert "caused by sqlalchemy.exc.IntegrityError" in written and "23505" in written


def test_the_command_is_named_by_its_words_only():
    from nim_pathway.cli import app
    from nim_pathway.cli.io import command_words

    assert command_words(["--code", "123456", "case", "open", "--file", "x.json"], app) == [
        "case", "open"]
    assert command_words(["erase", "NIM-2026-0001", "--reason", "Sentinel"], app) == ["erase"]
    assert command_words(["Sentinel-Given", "case"], app) == ["case"]
    assert command_words(["--code=123456"], app) == []


def test_a_nul_that_reaches_the_database_leaves_no_values_in_the_log(cli, tmp_path,
                                                                      monkeypatch):
    """Whatever the validators miss, the database's own error is logged without the SQL
    parameters (`hide_parameters`) and without its message's values."""
    url, data = cli
    with pytest.raises(Exception) as caught, get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO practitioner (handle, display_name, role, team) VALUES "
                          "(:h, :n, 'x', 'y')"), {"h": "nul.test", "n": "Sentinel\x00Name"})
    assert "Sentinel" not in str(caught.value)  # parameters hidden on both backends
    from nim_pathway.cli import app
    from nim_pathway.cli.io import crash_record

    record = crash_record(caught.value, ["case", "open", "--file", "Sentinel.json"], app)
    assert "Sentinel" not in record and "nim-pathway case open" in record


def test_the_error_log_is_tightened_and_appended(tmp_path):
    log = tmp_path / "errors.log"
    log.write_text("old\n")
    log.chmod(0o644)
    append_private(log, "new\n")
    assert log.read_text() == "old\nnew\n" and mode(log) == 0o600


# -- private files --------------------------------------------------------------------------

def test_data_folder_database_and_its_wal_are_private(tmp_path, monkeypatch):
    from nim_pathway.settings import Settings

    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv("NIM_DATA_DIR", str(folder))
    monkeypatch.delenv("NIM_DATABASE_URL", raising=False)
    assert Settings.from_env().data_dir == folder and mode(folder) == 0o755  # never chmodded
    fresh = tmp_path / "new" / "data"
    monkeypatch.setenv("NIM_DATA_DIR", str(fresh))
    assert mode(Settings.from_env().data_dir) == 0o700
    url = Settings.from_env().database_url
    migrate(url)
    db = fresh / "nim.db"
    with get_engine(url).begin() as conn:
        conn.execute(text("select count(*) from nim_case"))
        for name in ("nim.db", "nim.db-wal", "nim.db-shm"):
            assert mode(fresh / name) == 0o600, name
    get_engine(url).dispose()
    assert mode(db) == 0o600


def test_an_existing_loose_database_file_is_tightened(tmp_path):
    db = tmp_path / "loose.db"
    url = f"sqlite:///{db}"
    migrate(url)
    get_engine(url).dispose()
    get_engine.cache_clear()
    db.chmod(0o644)
    with get_engine(url).connect() as conn:
        conn.execute(text("select 1"))
    assert mode(db) == 0o600


def test_report_packs_are_private(store, clock, tmp_path):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    drive(store, clock, ref, "treatment")
    path, _ = store.admin.write_pack(ref, "assessment", "html", tmp_path, "lead.singh")
    assert mode(path) == 0o600 and "Sentinel-Given" in path.read_text()
    loose = tmp_path / "again.bin"
    loose.write_bytes(b"x")
    loose.chmod(0o644)
    assert mode(write_private(loose, b"y")) == 0o600 and loose.read_bytes() == b"y"
    assert mode(private_dir(tmp_path / "a" / "b")) == 0o700


# -- the notification config ------------------------------------------------------------------

CONFIG = {"targets": {"email": "mailtos://nim:hunter2-secret@smtp.example.org?to={to}"}}


def test_a_notify_config_readable_by_others_is_refused_with_the_fix(tmp_path, monkeypatch):
    from notifications.config import NotifyConfigError, load_config

    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    path.chmod(0o644)
    with pytest.raises(NotifyConfigError, match=rf"mode 0644.*`chmod 600 {path}`"):
        load_config(str(path))
    path.chmod(0o600)
    assert load_config(str(path)).targets["email"].startswith("mailtos://")


@pytest.mark.parametrize("content", [
    "targets: 'mailtos://nim:hunter2-secret@smtp.example.org'\n",  # not a mapping
    "targets:\n  email: [mailtos://nim:hunter2-secret@smtp.example.org]\n",
    "targets:\n  email: \"mailtos://nim:hunter2-secret@smtp\n  bad: [\n",  # not YAML
    "admin: mailtos://nim:hunter2-secret@smtp.example.org\nmax_attempts: lots\n",
])
def test_a_malformed_notify_config_names_the_place_never_the_secret(tmp_path, content):
    from notifications.config import NotifyConfigError, load_config

    path = tmp_path / "notify.yaml"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(NotifyConfigError) as caught:
        load_config(str(path))
    assert "hunter2" not in str(caught.value) and str(path) in str(caught.value)


def test_a_malformed_notify_config_is_one_line_in_the_cli_and_not_logged(cli, tmp_path,
                                                                         monkeypatch):
    url, data = cli
    path = tmp_path / "notify.yaml"
    path.write_text(CONFIG["targets"]["email"])  # a bare URL, not a mapping
    path.chmod(0o600)
    monkeypatch.setenv("NIM_NOTIFY_CONFIG", str(path))
    code, _, err = _cli(["notify", "test", "--to", "email:x@example.org"])
    assert code == 2 and err.startswith("error: NIM_NOTIFY_CONFIG") and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1 and not (data / "errors.log").exists()
    path.chmod(0o640)
    code, _, err = _cli(["notify", "test", "--to", "email:x@example.org"])
    assert code == 2 and f"chmod 600 {path}" in err


# -- secrets in URLs -----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://u@h/db?password=hunter2-secret", "postgresql://u@h/db?password=***"),
    ("postgresql://u:hunter2-secret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql+psycopg://u:p%40ss@h/db?sslmode=require&passfile=x",
     "postgresql+psycopg://u:***@h/db?sslmode=require&passfile=***"),
    ("mailtos://nim:hunter2-secret@smtp.office365.com?from=a@b.org&to={to}",
     "mailtos://nim:***@smtp.office365.com?from=a@b.org&to={to}"),
    ("json://host/hook/abcd1234secrettoken", "json://host/hook/***"),
    ("json://h/x?pass=1&pwd=2&token=3&secret=4&key=5&apikey=6&api_key=7&sig=8&to=me",
     "json://h/x?pass=***&pwd=***&token=***&secret=***&key=***&apikey=***&api_key=***"
     "&sig=***&to=me"),
    ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "https://hooks.slack.com/services/***/***/***"),
    ("https://outlook.office.com/webhook/a1b2c3d4-e5f6-4789-abcd-ef0123456789@a1b2c3d4-e5f6"
     "-4789-abcd-ef0123456789/IncomingWebhook/0123456789abcdef0123456789abcdef/a1b2c3d4",
     "https://outlook.office.com/webhook/***/IncomingWebhook/***/***"),
    ("https://discord.com/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOp0123456789",
     "https://discord.com/api/webhooks/***/***"),
    ("msteams://a1b2c3d4e5f6a7b8c9d0/B00000000b1b2c3d4/c0123456789abcdef0123",
     "msteams://***/***/***"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#nim",
     "slack://T1JJ3T3L2/A1BRTD4JD/***/#nim"),
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345", "tgram://***/12345"),
    ("twilio://AC1234:hunter2-secret@447700900000", "twilio://AC1234:***@447700900000"),
])
def test_every_form_of_credential_in_a_url_is_masked(url, masked):
    assert mask_url(url) == masked
    assert carries_credentials(url)
    assert "hunter2" not in scrub_text(f"failed: {url} (password=hunter2-secret)")


@pytest.mark.parametrize("url", [
    "json://127.0.0.1:8080/hook", "json://127.0.0.1:9/nobody-listens", "sms://127.0.0.1/07700900123",
    "mailto://127.0.0.1:2525?from=nim@example.org&to=chen@nhs.net", "email:chen@nhs.net",
    "sqlite:////tmp/pytest-of-someone/pytest-12/test_data_folder_0/nim.db",
    "postgresql://nim@db.example.org:5432/nim?sslmode=require"])
def test_urls_without_credentials_are_shown_as_they_are(url):
    assert mask_url(url) == url and not carries_credentials(url)


@pytest.mark.parametrize("contact", [
    "json://host/hook/abcd1234secrettoken", "json://u:hunter2-secret@host/hook",
    "json://host/hook?token=hunter2-secret", "json://host/x?pass=hunter2-secret",
    "json://host/x?password=hunter2-secret",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "msteams://a1b2c3d4e5f6a7b8c9d0/B00000000b1b2c3d4/c0123456789abcdef0123"])
def test_a_contact_carrying_credentials_is_refused(contact):
    with pytest.raises(ValidationError) as caught:
        PractitionerIn(handle="sw.x", display_name="X", role="r", team="t", contact=contact)
    message = str(caught.value)
    assert "NIM_NOTIFY_CONFIG" in message and "named target" in message
    assert "hunter2" not in message.replace(contact, "")  # the refusal shows it masked
    assert PractitionerIn(handle="sw.x", display_name="X", role="r", team="t",
                          contact="email:chen@nhs.net").contact == "email:chen@nhs.net"


def test_the_cli_masks_the_store_url_and_refuses_and_masks_contacts(cli, tmp_path,
                                                                   monkeypatch):
    url, data = cli
    code, _, err = _cli(["practitioner", "add", "sw.new", "--role", "nim-social-worker",
                         "--name", "N", "--contact", "json://host/hook/abcd1234secrettoken",
                         "--as", "admin.demo"])
    assert code == 2 and "NIM_NOTIFY_CONFIG" in err and "abcd1234secrettoken" not in err
    # a contact stored before this check: shown masked
    with get_engine(url).begin() as conn:
        conn.execute(text("UPDATE practitioner SET contact = :c WHERE handle = 'sw.jones'"),
                     {"c": "json://u:hunter2-secret@host/hook/abcd1234secrettoken"})
    code, out, _ = _cli(["practitioner", "list", "--json"])
    assert code == 0 and "hunter2" not in out and "abcd1234secrettoken" not in out
    assert "json://u:***@host/hook/***" in out

    monkeypatch.setenv("NIM_DATABASE_URL",
                       "postgresql://nobody@127.0.0.1:9/nim?password=hunter2-secret")
    code, _, err = _cli(["case", "list"])
    assert code == 2 and "hunter2" not in err and "password=***" in err, err
