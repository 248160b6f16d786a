"""A manager or admin role needs a second admin (SECURITY.md): one admin asks, the role is not
effective, a different admin approves; whoever asked (or the person it is for) cannot approve,
a request written into the database without the audit key is not one, and the person, every
manager and the admins are told at once. With one admin only, the grant is given at once and
everyone is told (the issue's fallback)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlmodel import select

from models.errors import NotFound, Refused
from models.schemas import PractitionerIn, Referral
from nim_pathway.demo import DEMO_ADMIN
from store.db import get_engine
from store.tables import AuditEvent, Practitioner
from tests.conftest import referral_data
from tests.receivers import HttpReceiver

ADMIN = DEMO_ADMIN.handle
MANAGER = "nim-service-manager"


@pytest.fixture
def hook():
    r = HttpReceiver().start()
    yield r
    r.stop()


def _role(svc, handle: str) -> str:
    with svc.ctx.read() as s:
        return s.exec(select(Practitioner.role).where(Practitioner.handle == handle)).one()


def _told(svc, hook) -> dict[str, list[str]]:
    svc.dispatcher().run_until_idle()
    out: dict[str, list[str]] = {}
    for m in hook.received:
        out.setdefault(m["path"].strip("/"), []).append(m["title"])
    return out


def _contacts(svc, hook, *handles: str) -> None:
    for h in handles:
        svc.admin.update_practitioner(h, ADMIN, contact=hook.url(h))


def test_an_admin_cannot_make_themselves_a_manager_alone(site, hook):
    svc, _ = site
    svc.admin.add_practitioner(PractitionerIn(handle="it.second", display_name="I Two",
                                              role="admin", team="it"), ADMIN)
    _contacts(svc, hook, ADMIN, "it.second", "mgr.okafor")
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    hook.received.clear()

    asked = svc.admin.change_role(ADMIN, MANAGER, ADMIN)
    assert "waits for a second admin (it.second)" in asked.message
    assert _role(svc, ADMIN) == "admin"  # not effective
    with pytest.raises(Refused, match="may not erase"):  # still cannot act as a manager
        svc.admin.erase(ref, ADMIN, reason="court order")
    with pytest.raises(Refused, match="asked for it"):
        svc.admin.approve_role(ADMIN, MANAGER, ADMIN)
    with pytest.raises(Refused, match="needs a second admin"):  # nor via a new handle
        svc.admin.add_practitioner(PractitionerIn(handle="x.mgr", display_name="X",
                                                  role=MANAGER, team="nim",
                                                  contact=hook.url("x")), ADMIN)
    told = _told(svc, hook)
    for who in (ADMIN, "it.second", "mgr.okafor"):  # the person, the managers, the admins
        assert any("a second admin must approve" in t for t in told[who]), (who, told)

    assert "approved by it.second" in svc.admin.approve_role(ADMIN, MANAGER, "it.second").message
    assert _role(svc, ADMIN) == MANAGER
    with pytest.raises(NotFound, match="no request"):  # once
        svc.admin.approve_role(ADMIN, MANAGER, "it.second")
    told = _told(svc, hook)
    assert any(f"{ADMIN} is now {MANAGER}" in t for t in told["mgr.okafor"])
    with svc.ctx.read() as s:
        actions = list(s.exec(select(AuditEvent.action).where(AuditEvent.action.in_((
            "role-grant-requested", "refused-self-approval", "role-grant-approved"))
        ).order_by(AuditEvent.id)))
    assert actions == ["role-grant-requested", "refused-self-approval", "role-grant-approved"]


def test_a_request_written_into_the_database_is_not_one(site):
    """The database owner (no audit key) inserts a request by the other admin: refused."""
    svc, _ = site
    svc.admin.add_practitioner(PractitionerIn(handle="it.second", display_name="I Two",
                                              role="admin", team="it"), ADMIN)
    with svc.ctx.read() as s:
        last = s.exec(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    with get_engine(svc.url).begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_event (at, actor, case_ref, action, detail, prev_hash, hash) "
            "VALUES (:at, 'it.second', NULL, 'role-grant-requested', :d, :p, :h)"),
            {"at": svc.clock.now(), "p": last.hash, "h": "0" * 64,
             "d": json.dumps({"handle": "psy.chen", "role": MANAGER, "by": "it.second"})})
    with pytest.raises(NotFound, match="no request"):
        svc.admin.approve_role("psy.chen", MANAGER, ADMIN)
    assert _role(svc, "psy.chen") == "psychologist"


def test_the_only_admin_grants_at_once_and_everyone_is_told(site, hook):
    svc, _ = site
    _contacts(svc, hook, "psy.chen", "mgr.okafor", "fdac.lead.moss")
    hook.received.clear()
    said = svc.admin.change_role("psy.chen", MANAGER, ADMIN).message
    assert "granted by the site's only admin" in said and _role(svc, "psy.chen") == MANAGER
    told = _told(svc, hook)
    for who in ("psy.chen", "mgr.okafor", "fdac.lead.moss"):
        assert any(f"psy.chen is now {MANAGER}" in t for t in told[who]), (who, told)
    # a working role is no grant: nobody is messaged about it
    hook.received.clear()
    svc.admin.change_role("sw.jones", "psychologist", ADMIN)
    assert _told(svc, hook) == {}
