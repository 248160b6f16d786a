"""The local inbox: real SMTP on 127.0.0.1, real Apprise, the real dispatcher, read back through
`nim-pathway inbox` (its real entry point) and the web page."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.app import build_service
from nim_pathway.demo import seed_team
from notifications.config import NotifyConfig
from notifications.dispatcher import Dispatcher
from notifications.inbox import Inbox
from notifications.outbox import enqueue
from store.db import session_scope
from store.tables import Outbox
from tests.conftest import referral_data
from tests.test_notifications import SENTINELS

CLI = str(Path(sys.executable).parent / "nim-pathway")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """One data folder (keys, inbox) for this process and the CLI it starts."""
    path = tmp_path / "data"
    monkeypatch.setenv("NIM_DATA_DIR", str(path))
    monkeypatch.setenv("NIM_AUDIT_CHECKPOINT", str(path / "audit.checkpoint"))
    monkeypatch.delenv("NIM_ADMIN_TARGETS", raising=False)
    return path


@pytest.fixture
def site(data_dir, sqlite_url, clock):
    """The demo team, each one's contact their box in a running inbox."""
    svc = build_service(sqlite_url, clock, migrate=False)
    inbox = Inbox(data_dir / "inbox", clock,
                  known=lambda: {p.handle for p in svc.queries.practitioners()}).start()
    seed_team(svc, inbox.smtp.port)
    yield svc, inbox
    inbox.stop()


def inbox_cli(svc, *args, code=0):
    env = {**os.environ, "NIM_DATABASE_URL": svc.url, "COLUMNS": "200"}
    proc = subprocess.run([CLI, "inbox", *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_dispatched_messages_arrive_in_each_practitioners_inbox(site, clock, data_dir):
    svc, inbox = site
    config = NotifyConfig(admin=[inbox.address("admin")], max_attempts=1)
    dispatcher = Dispatcher(svc.url, clock, config)
    with session_scope(svc.url) as session:  # the team's enrolment and role messages: not ours
        for row in session.exec(select(Outbox).where(Outbox.kind.in_(("enrolment",
                                                                       "role-grant")))):
            session.delete(row)
    # opening the case hands triage to mgr.okafor; an hour later triage hands consents on
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    assert dispatcher.run_until_idle().sent >= 1
    clock.set(clock.now() + timedelta(hours=1))
    svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    with session_scope(svc.url) as session:  # nobody can receive it: a dead-letter alert
        enqueue(session, config, "test", "nobody/1", ref, "role-unstaffed:wizard",
                {"case_ref": ref, "link": config.ui_url}, clock.now())
    done = dispatcher.run_until_idle()
    assert done.sent >= 3 and done.dead == 1 and done.failed == 0, done.errors

    mine = json.loads(inbox_cli(svc, "mgr.okafor", "--json").stdout)
    assert mine and all(m["to"] == ["mgr.okafor"] and ref in m["subject"] for m in mine)
    assert "http://127.0.0.1:4200" in mine[0]["body"]  # the link into the Prefect UI
    assert "\r" not in mine[0]["body"]  # SMTP line ends are not kept
    everyone = json.loads(inbox_cli(svc, "--json").stdout)
    assert [m["received_at"] for m in everyone] == sorted(
        (m["received_at"] for m in everyone), reverse=True)
    assert everyone[0]["to"] != ["mgr.okafor"]  # the hour-later handoffs come first
    theirs = json.loads(inbox_cli(svc, "sw.jones", "--json").stdout)
    assert len(theirs) == 3  # one consent task per caregiver
    alerts = json.loads(inbox_cli(svc, "admin", "--json").stdout)
    assert len(alerts) == 1 and "not delivered" in alerts[0]["subject"]
    text = inbox_cli(svc, "mgr.okafor").stdout
    assert mine[0]["subject"] in text and "2026-01-12 09:" in text

    status, page = get(inbox.web.url("mgr.okafor"))
    assert status == 200 and mine[0]["subject"] in page
    assert '<a href="http://127.0.0.1:4200' in page
    for other in theirs:  # another practitioner's messages are not on this page
        footer = other["body"].rsplit("ref: ", 1)[1].strip()
        assert footer not in page and footer not in json.dumps(mine)
    status, index = get(inbox.web.url())
    assert status == 200 and 'href="/sw.jones"' in index

    stored = list((data_dir / "inbox").glob("*.json"))
    assert len(stored) == len(everyone)
    seen = data_dir / "inbox" / "seen"  # each message's key, as a hash: kept once
    assert len(list(seen.iterdir())) == len(everyone)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (data_dir / "inbox", seen)} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in stored + list(seen.iterdir())} == {0o600}
    raw = "".join(p.read_text() for p in stored)
    assert not [s for s in SENTINELS + ("Sentinel",) if s in raw]


def test_a_message_sent_again_after_a_crash_is_shown_once(site):
    """Delivery is at least once: a dispatcher killed after the send and before recording it
    sends the message again. Each message carries its outbox key (Idempotency-Key, through
    Apprise's email plugin here); the inbox keeps the first and shows it once."""
    from notifications.dispatcher import apprise_send
    from notifications.inbox import inbox_url

    _svc, inbox = site
    target = inbox_url("psy.chen", inbox.smtp.port)
    for _ in range(2):  # the same message, sent twice
        assert apprise_send(target, "[NIM-2026-0001] Due soon", "body", False, None,
                            key="NIM-2026-0001/wmci-mother/reminder") is None
    assert apprise_send(target, "[NIM-2026-0001] Due now", "body", False, None,
                        key="NIM-2026-0001/wmci-mother/due") is None  # another message
    assert apprise_send(target, "[NIM-2026-0001] A test", "body", False, None) is None  # no key
    assert sorted(m.subject for m in inbox.store.messages("psy.chen")) == [
        "[NIM-2026-0001] A test", "[NIM-2026-0001] Due now", "[NIM-2026-0001] Due soon"]
    inbox.store.clear()  # a new demo run starts empty, its keys unseen
    assert apprise_send(target, "[NIM-2026-0001] Due soon", "body", False, None,
                        key="NIM-2026-0001/wmci-mother/reminder") is None
    assert len(inbox.store.messages("psy.chen")) == 1


def test_unknown_handle_is_refused_clearly(site):
    svc, inbox = site
    refused = inbox_cli(svc, "nobody.here", code=2)
    assert "no practitioner 'nobody.here'" in refused.stderr
    assert "practitioner list" in refused.stderr
    status, page = get(inbox.web.url("nobody.here"))
    assert status == 404 and "No practitioner" in page
    # a practitioner with no messages yet is known, with an empty inbox
    assert json.loads(inbox_cli(svc, "psy.chen", "--json").stdout) == []
    assert "no messages for psy.chen" in inbox_cli(svc, "psy.chen").stdout
    assert get(inbox.web.url("psy.chen"))[0] == 200


def test_page_shows_message_text_never_markup(site, clock):
    _svc, inbox = site
    inbox.store.add(["psy.chen"], "<script>alert(1)</script>",
                    'see http://127.0.0.1:4200/runs/x"onclick=1 and <b>bold</b>', clock.now())
    status, page = get(inbox.web.url("psy.chen"))
    assert status == 200 and "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page and 'href="http://127.0.0.1:4200/runs/x"' in page


def test_the_stack_runs_the_inbox_and_sends_admin_alerts_there(data_dir, monkeypatch):
    from nim_pathway.settings import Settings
    from nim_pathway.stack import LocalStack

    def stack() -> LocalStack:  # the stack of the settings as they are now
        return LocalStack(Settings.from_env())

    from notifications.dispatcher import apprise_send
    from notifications.inbox import free_port, inbox_url

    smtp_port, web_port = free_port(), free_port()
    monkeypatch.setenv("NIM_INBOX_PORT", str(smtp_port))
    monkeypatch.setenv("NIM_INBOX_WEB_PORT", str(web_port))
    env = stack().env()
    assert env["NIM_ADMIN_TARGETS"] == inbox_url("admin", smtp_port)
    monkeypatch.setenv("NIM_ADMIN_TARGETS", "json://127.0.0.1:9/ops")  # configured: kept
    assert stack().env()["NIM_ADMIN_TARGETS"] == "json://127.0.0.1:9/ops"
    try:
        stack().start_inbox(env)
        assert (stack().folder / "inbox.pid").exists()
        assert stack().status()["inbox"].startswith("running")
        assert stack().status()["inbox page"] == f"http://127.0.0.1:{web_port}/"
        assert apprise_send(env["NIM_ADMIN_TARGETS"], "[NIM-2026-0001] alert", "<p>x</p>",
                            True, None) is None
        status, page = get(f"http://127.0.0.1:{web_port}/admin")
        assert status == 200 and "[NIM-2026-0001] alert" in page
    finally:
        assert stack().down() == ["inbox"]
    assert stack().status()["inbox"] == "stopped"
    assert "SMTP on 127.0.0.1" in (stack().folder / "inbox.log").read_text()
    assert len(list((data_dir / "inbox").glob("*.json"))) == 1
