"""The database owner without the service's keys cannot act as anyone (issue 28, C). Each
attack edits the database directly (sqlite3 or psycopg, as its owner would) and is refused,
with a clear error, and audited."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta

import pytest
from sqlmodel import select

from models.errors import Refused
from models.schemas import Referral
from nim_pathway.app import build_service
from nim_pathway.commands.identity import THROTTLE_AFTER
from nim_pathway.commands.people import code_at
from store.tables import AuditEvent, Practitioner
from tests.conftest import referral_data


def owner_sql(url: str, sql: str, *params: object) -> list[tuple]:
    """Run SQL as the database's owner: straight through the driver, no nim-pathway code."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    import psycopg

    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _id(url: str, handle: str) -> int:
    return owner_sql(url, "SELECT id FROM practitioner WHERE handle = %s", handle)[0][0]


def _code(svc, handle: str) -> str:
    with svc.ctx.read() as s:
        row = s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
    return code_at(svc.identity.enrolled_secret(row), svc.clock.now())


def _audited(svc, action: str) -> list[AuditEvent]:
    with svc.ctx.read() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_session_re_pointed_at_a_manager_is_refused(site):
    svc, _ = site
    token = svc.identity.login("psy.chen", _code(svc, "psy.chen"), 60).token
    assert svc.identity.session_actor(token) == "psy.chen"
    owner_sql(svc.ctx.url, "UPDATE login_session SET practitioner_id = %s",
              _id(svc.ctx.url, "mgr.okafor"))
    with pytest.raises(Refused, match="session was changed in the database"):
        svc.identity.session_actor(token)
    assert [a.actor for a in _audited(svc, "refused-altered-session")] == ["mgr.okafor"]


def test_an_expired_session_extended_in_the_database_is_refused(site):
    svc, _ = site
    token = svc.identity.login("psy.chen", _code(svc, "psy.chen"), 60).token
    svc.clock.set(svc.clock.now() + timedelta(minutes=61))
    with pytest.raises(Refused, match="has ended"):
        svc.identity.session_actor(token)
    owner_sql(svc.ctx.url, "UPDATE login_session SET expires_at = %s",
              svc.clock.now() + timedelta(days=30))
    with pytest.raises(Refused, match="session was changed in the database"):
        svc.identity.session_actor(token)
    assert len(_audited(svc, "refused-altered-session")) == 1


def test_a_revoked_session_revived_in_the_database_is_refused(site):
    svc, _ = site
    token = svc.identity.login("psy.chen", _code(svc, "psy.chen"), 60).token
    svc.identity.logout(token)
    owner_sql(svc.ctx.url, "UPDATE login_session SET revoked_at = NULL")
    with pytest.raises(Refused, match="session was changed in the database"):
        svc.identity.session_actor(token)


def test_a_throttle_cleared_in_the_database_is_refused(site):
    svc, _ = site
    for n in range(THROTTLE_AFTER):
        with pytest.raises(Refused):
            svc.identity.authenticate("mgr.okafor", f"{n:06d}")
    owner_sql(svc.ctx.url, "UPDATE practitioner SET failed_codes = 0, locked_at = NULL "
              "WHERE handle = %s", "mgr.okafor")
    with pytest.raises(Refused, match="changed outside nim-pathway"):
        svc.identity.authenticate("mgr.okafor", _code(svc, "mgr.okafor"))
    assert [a.actor for a in _audited(svc, "refused-altered-record")] == ["mgr.okafor"]


def test_a_role_granted_in_the_database_is_refused(site):
    svc, _ = site
    owner_sql(svc.ctx.url, "UPDATE practitioner SET role = 'nim-service-manager' "
              "WHERE handle = %s", "psy.chen")
    with pytest.raises(Refused, match="changed outside nim-pathway"):
        svc.identity.authenticate("psy.chen", _code(svc, "psy.chen"))


def test_an_installed_pathway_edited_in_the_database_is_refused(site, clock):
    svc, _ = site
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    pid, text = owner_sql(svc.ctx.url, "SELECT p.id, p.spec_json FROM pathway_version p "
                          "JOIN nim_case c ON c.pathway_id = p.id WHERE c.ref = %s", ref)[0]
    spec = json.loads(text)
    spec["permissions"]["erase-identity"] = ["psychologist"]  # a practitioner may now erase
    forged = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    owner_sql(svc.ctx.url, "UPDATE pathway_version SET spec_json = %s, sha256 = %s WHERE id = %s",
              forged, hashlib.sha256(forged.encode()).hexdigest(), pid)
    fresh = build_service(svc.ctx.url, clock, migrate=False, settings=svc.settings)  # a restart
    with pytest.raises(Refused, match="was changed in the database outside nim-pathway"):
        fresh.queries.pathway(ref)
    with pytest.raises(Refused, match="was changed in the database outside nim-pathway"):
        fresh.admin.erase(ref, "psy.chen", reason="forged permission")
    assert len(_audited(fresh, "refused-altered-pathway")) == 1
    assert owner_sql(svc.ctx.url, "SELECT erased_at FROM child") == [(None,)]  # nothing done
