"""Throttling, not lock-out (issue 28, B): wrong codes slow an account for at most an hour
from the injected clock, every try is counted even when they arrive together, the person and
the admins are told, and the last admin can always get back in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlmodel import select

from models.errors import NotFound, Refused
from nim_pathway.commands.identity import THROTTLE_AFTER
from nim_pathway.commands.people import code_at
from nim_pathway.demo import DEMO_ADMIN
from store.tables import AuditEvent, Outbox, Practitioner

ADMIN = DEMO_ADMIN.handle


def _code(svc, handle: str) -> str:
    with svc.ctx.read() as s:
        row = s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
    return code_at(svc.identity.enrolled_secret(row), svc.clock.now())


def _failures(svc, handle: str) -> int:
    with svc.ctx.read() as s:
        return s.exec(select(Practitioner.failed_codes).where(
            Practitioner.handle == handle)).one()


def test_parallel_wrong_codes_are_all_counted_and_the_wait_ends_within_the_hour(site):
    svc, _ = site

    def guess(n: int) -> str:
        try:
            svc.identity.authenticate(ADMIN, f"{n:06d}")
        except Refused as exc:
            return str(exc)
        return "accepted"

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(guess, range(24)))
    assert "accepted" not in answers
    assert _failures(svc, ADMIN) == 24  # none lost to a race
    with svc.ctx.read() as s:
        checked = s.exec(select(AuditEvent).where(AuditEvent.action == "refused-code")).all()
    assert len(checked) == THROTTLE_AFTER  # only these were compared with a real code
    with pytest.raises(Refused, match="too many wrong codes"):
        svc.identity.authenticate(ADMIN, _code(svc, ADMIN))  # the right code waits too
    svc.clock.set(svc.clock.now() + timedelta(hours=1, seconds=1))
    assert svc.identity.authenticate(ADMIN, _code(svc, ADMIN)) == ADMIN  # the only admin
    assert _failures(svc, ADMIN) == 0
    with svc.ctx.read() as s:
        told = {o.recipient for o in s.exec(select(Outbox).where(
            Outbox.kind == "sign-in-slowed"))}
    assert told == {ADMIN, "admin"}


def test_break_glass_recovery_of_the_last_admin_is_audited(site):
    svc, _ = site
    for n in range(THROTTLE_AFTER):
        with pytest.raises(Refused):
            svc.identity.authenticate(ADMIN, f"{n:06d}")
    with pytest.raises(Refused, match="not an active admin"):
        svc.identity.recover_admin("psy.chen", "asked by the head of service")
    with pytest.raises(NotFound):
        svc.identity.recover_admin("nobody.here", "asked by the head of service")
    result = svc.identity.recover_admin(ADMIN, "phone lost; asked by J Smith")
    assert "break glass" in result.message
    from nim_pathway.demo import accept_enrolment

    accept_enrolment(svc, ADMIN)  # the admin, with the code sent to their own contact
    with svc.ctx.read() as s:
        secret = svc.identity.enrolled_secret(s.exec(select(Practitioner).where(
            Practitioner.handle == ADMIN)).one())
    svc.clock.set(svc.clock.now() + timedelta(seconds=30))
    assert svc.identity.authenticate(ADMIN, code_at(secret, svc.clock.now())) == ADMIN
    with svc.ctx.read() as s:
        row = s.exec(select(AuditEvent).where(AuditEvent.action == "break-glass-recovery")).one()
    assert (row.actor, row.detail["handle"], row.detail["before"]["locked"]) == \
        ("operator", ADMIN, True)
    assert svc.queries.verify_audit() == []
