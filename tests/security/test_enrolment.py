"""Admins enrol people without ever seeing their secret (SECURITY.md): `practitioner add`,
`practitioner enrol` and the break-glass `recover-admin` send a one-time enrolment code to
the person's own contact (the outbox, the code sealed there and not kept once sent); the
person enrols at the workbench's /enrol page and is the only one shown their key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from models.errors import Refused
from nim_pathway.commands.people import code_at
from nim_pathway.demo import DEMO_ADMIN, current_code
from nim_pathway.web import create_app
from store.tables import AuditEvent, DeliveryAttempt, Outbox, Practitioner
from tests.receivers import HttpReceiver
from tests.security.conftest import site_env

CLI = str(Path(sys.executable).parent / "nim-pathway")
CODE = re.compile(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}\b")


@pytest.fixture
def hook():
    r = HttpReceiver().start()
    yield r
    r.stop()


def _cli(svc, data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **site_env(data, svc.url), "NIM_CLOCK": svc.clock.now().isoformat()}
    for name in ("NIM_ACTOR", "NIM_CODE", "NIM_SESSION_FILE", "NIM_SECRET_KEY",
                 "NIM_AUDIT_KEY", "NIM_TOTP_KEY"):
        env.pop(name, None)
    env["NIM_SESSION_FILE"] = str(data.parent / "no-session")
    proc = subprocess.run([CLI, *args], env=env, text=True, capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr
    return proc


def _everything_stored(svc) -> str:
    """Every outbox row, delivery attempt, audit row and practitioner row, as text."""
    with svc.ctx.read() as s:
        rows = [*s.exec(select(Outbox)), *s.exec(select(DeliveryAttempt)),
                *s.exec(select(AuditEvent)), *s.exec(select(Practitioner))]
        return "\n".join(repr(r.model_dump()) for r in rows)


def _signin_csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _enrol_at_workbench(svc, handle: str, code: str) -> tuple[int, str]:
    client = TestClient(create_app(svc))
    assert 'href="/enrol"' in client.get("/signin").text  # reached from the sign-in page
    csrf = _signin_csrf(client, "/enrol")
    page = client.post("/enrol", data={"handle": handle, "code": code, "csrf": csrf})
    return page.status_code, page.text


def test_an_admin_reenrolling_a_manager_cannot_obtain_the_secret(site, hook):
    svc, data = site
    svc.admin.update_practitioner("mgr.okafor", DEMO_ADMIN.handle, contact=hook.url("okafor"))
    admin_code = current_code(svc, DEMO_ADMIN.handle)
    said = _cli(svc, data, "--code", admin_code, "practitioner", "enrol", "mgr.okafor",
                "--as", DEMO_ADMIN.handle)
    assert said.returncode == 0, said.stderr
    assert "enrolment code was sent to mgr.okafor's own contact" in said.stdout
    assert not CODE.search(said.stdout + said.stderr) and "key:" not in said.stdout
    queued = _everything_stored(svc)  # what the admin (or the database) can read now
    assert not CODE.search(queued)
    # the old codes stopped at once: an admin cannot keep using the manager's old app either
    with pytest.raises(Refused, match="no second factor yet.*enrolment code"):
        svc.identity.authenticate("mgr.okafor", "123456")

    assert svc.dispatcher().run_until_idle().sent >= 1
    message = next(m for m in hook.received if m["path"] == "/okafor")
    code = CODE.search(message["message"]).group(0)
    assert code not in _everything_stored(svc)  # sent, and not kept (not even sealed)
    status, page = _enrol_at_workbench(svc, "mgr.okafor", code)
    assert status == 200, page
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page).group(1)
    assert svc.identity.authenticate("mgr.okafor", code_at(secret, svc.clock.now()))
    stored = _everything_stored(svc) + said.stdout + said.stderr
    stored += "".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    assert secret not in stored and code not in stored
    with svc.ctx.read() as s:
        rows = s.exec(select(AuditEvent).where(AuditEvent.action.in_((
            "practitioner-enrolled", "enrolment-completed"))).order_by(AuditEvent.id)).all()
    actions = [(r.actor, r.action) for r in rows if r.detail["handle"] == "mgr.okafor"]
    assert actions[-2:] == [(DEMO_ADMIN.handle, "practitioner-enrolled"),
                            ("mgr.okafor", "enrolment-completed")]


def test_an_enrolment_code_works_once_and_expires(site, hook):
    svc, data = site
    svc.admin.update_practitioner("psy.chen", DEMO_ADMIN.handle, contact=hook.url("chen"))

    def sent_code() -> str:
        svc.dispatcher().run_until_idle()
        return CODE.findall(hook.received[-1]["message"])[0]

    svc.identity.reenrol("psy.chen", DEMO_ADMIN.handle)
    code = sent_code()
    status, page = _enrol_at_workbench(svc, "psy.chen", "ABCD-EFGH-JKLM-NPQR")
    assert status == 400 and "wrong enrolment code for psy.chen" in page
    with pytest.raises(Refused, match="enrol.* for mgr.okafor|mgr.okafor has no"):  # theirs only
        svc.identity.redeem_enrolment("mgr.okafor", code)
    svc.clock.advance(timedelta(hours=24))
    with pytest.raises(Refused, match="has expired"):
        svc.identity.redeem_enrolment("psy.chen", code)

    svc.identity.reenrol("psy.chen", DEMO_ADMIN.handle)
    code = sent_code()
    assert svc.identity.redeem_enrolment("psy.chen", code.lower().replace("-", " ")).secret
    with pytest.raises(Refused, match="no enrolment waiting"):  # once only
        svc.identity.redeem_enrolment("psy.chen", code)
    with svc.ctx.read() as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "refused-enrolment")).all()
    assert len(refused) == 4


def test_the_database_owner_cannot_extend_an_enrolment_code(site, hook):
    svc, data = site
    svc.admin.update_practitioner("sw.jones", DEMO_ADMIN.handle, contact=hook.url("jones"))
    svc.identity.reenrol("sw.jones", DEMO_ADMIN.handle)
    svc.dispatcher().run_until_idle()
    code = CODE.findall(hook.received[-1]["message"])[0]
    from sqlalchemy import text

    from store.db import get_engine

    with get_engine(svc.url).begin() as conn:  # a later expiry written straight into the row
        value = conn.execute(text("SELECT totp_secret FROM practitioner WHERE handle = "
                                  "'sw.jones'")).scalar_one()
        later = value.rsplit("|", 1)[0] + "|2030-01-01T00:00:00+00:00"
        conn.execute(text("UPDATE practitioner SET totp_secret = :v WHERE handle = 'sw.jones'"),
                     {"v": later})
    svc.clock.advance(timedelta(hours=25))
    with pytest.raises(Refused, match="changed in the database|seal"):
        svc.identity.redeem_enrolment("sw.jones", code)


def test_break_glass_recovery_sends_the_admin_a_code_and_shows_the_operator_nothing(site, hook):
    svc, data = site
    svc.admin.update_practitioner(DEMO_ADMIN.handle, DEMO_ADMIN.handle, contact=hook.url("adm"))
    said = _cli(svc, data, "practitioner", "recover-admin", DEMO_ADMIN.handle,
                "--reason", "phone lost; asked by J Smith")
    assert said.returncode == 0, said.stderr
    assert "recovered by break glass" in said.stdout and not CODE.search(said.stdout)
    svc.dispatcher().run_until_idle()
    code = CODE.findall(next(m for m in hook.received if m["path"] == "/adm")["message"])[0]
    enrolment = svc.identity.redeem_enrolment(DEMO_ADMIN.handle, code)
    assert svc.identity.authenticate(DEMO_ADMIN.handle, code_at(enrolment.secret,
                                                                svc.clock.now()))
    assert enrolment.secret not in said.stdout + said.stderr

