"""The forms people answer in Prefect: the code field is required, and a form asked again
after a wrong code says so first, plainly (Prefect's own "Flow run resumed" toast cannot be
changed). The forms are checked here as Prefect stores and validates them; the served flow
and the browser are driven in tests/test_orchestration.py and tests/test_browser.py."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest

from models.errors import Refused, WrongCode
from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.demo import current_code
from orchestration.forms import WRONG_CODE, OpenCaseForm, form_model, task_description
from tests.conftest import referral_data


def stored_schema(model) -> dict:  # noqa: ANN001
    """The schema Prefect keeps for a Resume form (what the server validates input with)."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    return create_v2_schema(model.__name__, model_base=model)


def test_the_code_field_is_required_on_every_form(store):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    task = store.queries.task(ref, "triage")
    schema = stored_schema(form_model(store.queries.pathway(ref), task.spec_id))
    assert "code" in schema["required"] and "completed_by" in schema["required"]
    assert schema["properties"]["code"]["format"] == "password"
    assert "default" not in schema["properties"]["code"]  # so the UI does not say (Optional)
    # the server's check: a form sent without a code is refused before the flow sees it
    with pytest.raises(jsonschema.ValidationError, match="'code' is a required property"):
        jsonschema.validate({"completed_by": "mgr.okafor", "accepted": True}, schema)
    jsonschema.validate({"completed_by": "mgr.okafor", "accepted": True, "code": "123456"},
                        schema)
    assert "code" in OpenCaseForm.model_json_schema()["required"]


def test_a_wrong_code_is_its_own_refusal(store, clock):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(WrongCode, match="wrong or reused one-time code"):
        store.identity.authenticate("mgr.okafor", "000000", ref)
    with pytest.raises(WrongCode, match="enter the one-time code"):
        store.identity.authenticate("mgr.okafor", " ", ref)
    clock.set(clock.now() + timedelta(seconds=30))
    code = current_code(store, "mgr.okafor")
    assert store.identity.authenticate("mgr.okafor", code, ref) == "mgr.okafor"
    with pytest.raises(WrongCode):  # a code works once
        store.identity.authenticate("mgr.okafor", code, ref)
    # the wrong person with a good code of their own is refused by role, not as a wrong code
    clock.set(clock.now() + timedelta(seconds=30))
    store.identity.authenticate("la.patel", current_code(store, "la.patel"), ref)
    with pytest.raises(Refused) as refused:
        store.tasks.complete_task(TaskRef(ref, "triage"), "la.patel", {"accepted": True})
    assert not isinstance(refused.value, WrongCode)


def test_a_form_asked_again_leads_with_why(store):
    """The first line of the description the Resume dialog shows."""
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    view = store.queries.task(ref, "triage")
    assert task_description(ref, view).startswith(f"## {ref} · ")
    wrong = task_description(ref, view, f"{WRONG_CODE} (wrong or reused one-time code for "
                                        "mgr.okafor. After 4 more wrong code(s) each try has "
                                        "to wait.)")
    assert wrong.splitlines()[0] == ("> **Not recorded.** The code you entered was wrong — "
                                     "nothing was saved; enter the current code from your "
                                     "authenticator app. (wrong or reused one-time code for "
                                     "mgr.okafor. After 4 more wrong code(s) each try has to "
                                     "wait.)")
    role = task_description(ref, view, "la.patel (la-social-worker) may not complete triage")
    assert role.splitlines()[0] == ("> **Not recorded.** Nothing was saved: la.patel "
                                    "(la-social-worker) may not complete triage")
