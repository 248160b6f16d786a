"""What each person who can sign in cannot do (SECURITY.md, the threat model): each attack is
made through the same commands the CLI and the Prefect forms call."""

from __future__ import annotations

import pytest
from sqlmodel import select

from models.errors import Refused
from models.refs import TaskRef
from models.schemas import PractitionerIn, Referral
from nim_pathway.commands.people import code_at
from nim_pathway.demo import DEMO_ADMIN
from store.tables import AuditEvent, Practitioner
from tests.conftest import referral_data


def _code(svc, handle: str) -> str:
    with svc.ctx.read() as s:
        row = s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
    return code_at(svc.identity.enrolled_secret(row), svc.clock.now())


def _refusals(svc) -> int:
    with svc.ctx.read() as s:
        return len(s.exec(select(AuditEvent).where(AuditEvent.action.like("refused%"))).all())


def test_an_outsider_at_the_form_cannot_sign_with_someone_elses_code(site):
    """Anyone who reaches a Resume form types a handle and a code: a code proves only its
    owner, and a form attempt refused once is refused again without being counted twice."""
    svc, _ = site
    with pytest.raises(Refused, match="wrong or reused"):
        svc.identity.authenticate("mgr.okafor", _code(svc, "psy.chen"), "NIM-2026-0001", "a-1")
    with pytest.raises(Refused, match="wrong or reused"):
        svc.identity.authenticate("mgr.okafor", _code(svc, "psy.chen"), "NIM-2026-0001", "a-1")
    with svc.ctx.read() as s:
        row = s.exec(select(Practitioner).where(Practitioner.handle == "mgr.okafor")).one()
    assert row.failed_codes == 1


def test_a_practitioner_cannot_erase_or_act_as_someone_else(site):
    svc, _ = site
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Refused, match="psy.chen is psychologist and may not erase identity"):
        svc.admin.erase(ref, "psy.chen", reason="because")
    token = svc.identity.login("psy.chen", _code(svc, "psy.chen"), 60).token
    with pytest.raises(Refused, match="you are logged in as psy.chen, not 'mgr.okafor'"):
        svc.identity.session_actor(token, claimed="mgr.okafor")
    assert _refusals(svc) == 2


def test_a_coordinator_cannot_complete_clinical_work_or_grant_roles(site):
    svc, _ = site
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Refused, match="coord.ali is coordinator and may not"):
        svc.tasks.complete_task(TaskRef(ref, "triage"), "coord.ali", {"accepted": True})
    with pytest.raises(Refused, match="may not manage-practitioners"):
        svc.admin.change_role("coord.ali", "nim-service-manager", "coord.ali")
    with pytest.raises(Refused, match="may not manage-practitioners"):
        svc.admin.add_practitioner(PractitionerIn(handle="x.mgr", display_name="X",
                                                  role="nim-service-manager", team="nim"),
                                   "coord.ali")


def test_an_admin_cannot_act_on_cases(site):
    svc, _ = site
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Refused, match=f"{DEMO_ADMIN.handle} is admin and may not"):
        svc.tasks.complete_task(TaskRef(ref, "triage"), DEMO_ADMIN.handle, {"accepted": True})
    with pytest.raises(Refused, match=f"{DEMO_ADMIN.handle} is admin and may not"):
        svc.admin.erase(ref, DEMO_ADMIN.handle, reason="court order")
