"""The workbench's coordinator forms (nim_pathway/web/actions.py, family_forms.py,
court_forms.py): each runs the CLI's domain command as the signed-in person, the policy's
refusal is the page's one error line, and a bad submission keeps what was typed."""

from __future__ import annotations

from datetime import date

import pytest

from models.errors import Refused
from models.refs import TaskRef
from nim_pathway.web import create_app
from tests import test_workbench
from tests.test_workbench import TestClient, csrf_of, no_identity, sign_in

web = test_workbench.web  # the fixture: the store, its clock, one open case, a client

TODAY = "2026-01-12"


def accepted(web) -> str:
    """The fixture's case past triage: each caregiver's consent task is open."""
    ref = web["ref"]
    web["svc"].tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    return ref


def post(c, path: str, data: dict):
    page = c.get(path)
    assert page.status_code == 200, page.text
    return c.post(path, data={**data, "csrf": csrf_of(page.text)})


def alert(html: str) -> str:
    import re

    found = re.findall(r'role="alert">([^<]*)<', html)
    assert len(found) == 1, found
    return found[0].replace("&#39;", "'")


# Every coordinator form with a valid submission: (path, data, who may send it).
FORMS = [
    ("caregiver", {"relationship": "kinship-carer", "name": "Kept-Kin"}, "coord.ali"),
    ("consent", {"caregiver": "mother", "consent": "given"}, "sw.jones"),
    ("placement", {"kind": "kinship", "start": "2026-01-10", "reason": "Kept reason"},
     "coord.ali"),
    ("pause", {"action": "pause", "person": "father", "reason": "Kept reason"}, "coord.ali"),
    ("exit", {"reason": "disengaged", "note": "Kept note"}, "coord.ali"),
    ("transfer", {"site": "north", "team": "nim"}, "coord.ali"),
    ("court-date", {"anchor": "final_hearing", "value": "2026-06-01", "cause": "Kept cause",
                    "category": "court"}, "coord.ali"),
    ("direction", {"document": "final-report", "by": "2026-05-01"}, "coord.ali"),
    ("extension", {"granted_on": TODAY, "weeks": "8", "reason": "Kept reason"}, "coord.ali"),
    ("interim-order", {"made_on": TODAY, "kind": "interim-care-order",
                       "court": "Kept Court"}, "coord.ali"),
    ("final-order", {"made_on": TODAY, "kind": "care-order"}, "coord.ali"),
    ("looked-after", {"on": TODAY, "reason": "Kept reason"}, "coord.ali"),
    ("child", {"given_name": "Kept-Sib", "family_name": "Kept", "date_of_birth": "2025-11-01"},
     "coord.ali"),
]


@pytest.mark.parametrize("form,data,_who", FORMS, ids=[f[0] for f in FORMS])
def test_a_practitioner_is_refused_every_coordinator_form_with_the_input_kept(web, form, data,
                                                                             _who):
    ref = accepted(web)
    before = web["svc"].queries.show(ref)
    c = sign_in(web, "psy.chen")
    r = post(c, f"/cases/{ref}/{form}", data)
    assert r.status_code == 403, r.text
    assert alert(r.text).startswith("psy.chen is psychologist and may not ")
    for value in data.values():
        assert value in r.text  # what was typed is still on the form
    after = web["svc"].queries.show(ref)
    assert (after.caregivers, after.placements, after.closed_on, after.site, after.dates,
            after.court, after.paused_people, after.children) == (
        before.caregivers, before.placements, before.closed_on, before.site, before.dates,
        before.court, before.paused_people, before.children)


def test_the_refusal_on_the_page_is_the_commands_own(web):
    ref = accepted(web)
    c = sign_in(web, "psy.chen")
    r = post(c, f"/cases/{ref}/placement", FORMS[2][1])
    with pytest.raises(Refused) as direct:
        web["svc"].family.change_placement(ref, "kinship", date(2026, 1, 10), "x", "psy.chen")
    assert alert(r.text) == str(direct.value)


def test_each_form_runs_its_domain_command(web):
    svc = web["svc"]
    ref = accepted(web)
    coord = sign_in(web, "coord.ali")
    done = {}
    for form, data, who in FORMS:
        if who != "coord.ali" or form in ("exit", "transfer"):
            continue
        r = post(coord, f"/cases/{ref}/{form}", data)
        assert r.status_code == 303, (form, r.text)
        assert r.headers["location"] == f"/cases/{ref}?done={form}"
        done[form] = svc.queries.show(ref)
        assert "Kept" not in coord.get(r.headers["location"]).text
    view = svc.queries.show(ref)
    assert "kinship-carer" in [c.key for c in view.caregivers]
    assert any(p.kind == "kinship" and str(p.start) == "2026-01-10" for p in view.placements)
    assert set(view.paused_people or {}) == {"father"}
    assert str(view.dates["final_hearing"]) == "2026-06-01"
    assert [d[0] for d in view.court.directions] == ["final-report"]
    assert [e.weeks for e in view.court.extensions] == [8]
    assert view.court.final_order.kind == "care-order"
    assert [c.key for c in view.children] == ["child-1", "child-2"]
    assert not next(c for c in view.children if c.key == "child-1").looked_after
    page = coord.get(f"/cases/{ref}")
    assert "Paused: father's work since 2026-01-12" in page.text
    no_identity(page.text)
    assert "Kept" not in page.text
    # resume the one person's work, then transfer and exit
    assert post(coord, f"/cases/{ref}/pause", {"action": "resume",
                                               "person": "father"}).status_code == 303
    assert not svc.queries.show(ref).paused_people
    r = post(coord, f"/cases/{ref}/transfer", {"site": "north", "team": "nim"})
    assert r.status_code == 303, r.text
    assert svc.queries.show(ref).site == "north"
    r = post(coord, f"/cases/{ref}/exit", {"reason": "disengaged"})
    assert r.status_code == 303 and svc.queries.show(ref).exit_reason == "disengaged"


def test_consent_given_declined_and_withdrawn_per_person(web):
    svc = web["svc"]
    ref = accepted(web)
    sw = sign_in(web, "sw.jones")
    page = sw.get(f"/cases/{ref}/consent")
    for answer in ("given", "declined", "withdrawn"):
        assert f'<option value="{answer}"' in page.text
    assert post(sw, f"/cases/{ref}/consent", {"caregiver": "mother", "consent": "given",
                                              "notes": "met at home"}).status_code == 303
    assert post(sw, f"/cases/{ref}/consent", {"caregiver": "father",
                                              "consent": "declined"}).status_code == 303
    consent = {c.key: c.consent for c in svc.queries.show(ref).caregivers}
    assert consent["mother"] == "given" and consent["father"] == "declined"
    # given twice: no open task any more, said so with the input kept
    r = post(sw, f"/cases/{ref}/consent", {"caregiver": "mother", "consent": "declined"})
    assert r.status_code == 400
    assert "no open consent task for mother (their consent: given)" in alert(r.text)
    assert 'value="declined" selected' in r.text
    # the coordinator may not record consent in England: the policy says who may
    coord = sign_in(web, "coord.ali", TestClient(create_app(svc), follow_redirects=False))
    r = post(coord, f"/cases/{ref}/consent", {"caregiver": "foster-carer", "consent": "given"})
    assert r.status_code == 403 and "needs" in alert(r.text)
    # withdrawn runs `consent withdraw` (nobody consenting any more: the family exits)
    assert post(sw, f"/cases/{ref}/consent", {"caregiver": "mother",
                                              "consent": "withdrawn"}).status_code == 303
    assert {c.key: c.consent for c in svc.queries.show(ref).caregivers}["mother"] == "withdrawn"
    assert svc.queries.show(ref).exit_reason == "consent-withdrawn"


BAD = [
    ("placement", {"kind": "kinship", "start": "2026-02-30", "reason": "Kept reason"}, "start"),
    ("placement", {"kind": "", "start": TODAY, "reason": "Kept reason"}, "kind"),
    ("extension", {"granted_on": TODAY, "weeks": "eight", "reason": "Kept reason"}, "weeks"),
    ("direction", {"document": "final-report", "by": ""}, "by"),
    ("transfer", {"site": "", "team": "nim"}, "site"),
    ("caregiver", {"relationship": "", "name": "Kept-Kin"}, "relationship"),
    ("consent", {"caregiver": "", "consent": "given"}, "caregiver"),
    ("looked-after", {"on": "someday", "reason": "Kept reason"}, "on"),
    ("court-date", {"anchor": "final_hearing", "value": "2026-06-01", "cause": ""}, "cause"),
]


@pytest.mark.parametrize("form,data,field", BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_a_bad_field_is_marked_with_the_input_kept(web, form, data, field):
    ref = accepted(web)
    c = sign_in(web, "coord.ali")
    r = post(c, f"/cases/{ref}/{form}", data)
    assert r.status_code == 400, r.text
    assert f'id="err-{field}"' in r.text
    assert alert(r.text).startswith("check the fields marked below")
    for value in data.values():
        if value:
            assert value in r.text


RULES = [  # the command's own rules, one line each, input kept
    ("placement", {"kind": "kinship", "start": "2027-01-01", "reason": "Kept reason"},
     "placement start 2027-01-01 is in the future"),
    ("extension", {"granted_on": TODAY, "weeks": "9", "reason": "Kept reason"}, "8 weeks"),
    ("direction", {"document": "statement", "by": "2026-05-01"}, "--role"),
    ("transfer", {"site": "north", "team": "nowhere"}, "team 'nowhere' has no active"),
    ("pause", {"action": "pause", "person": "uncle", "reason": "Kept reason"}, "uncle"),
    ("caregiver", {"relationship": "mother", "children": "child-9"}, "child-9"),
]


@pytest.mark.parametrize("form,data,says", RULES, ids=[r[0] for r in RULES])
def test_a_rule_the_command_enforces_is_one_line_with_the_input_kept(web, form, data, says):
    ref = accepted(web)
    before = web["svc"].queries.show(ref)
    c = sign_in(web, "coord.ali")
    r = post(c, f"/cases/{ref}/{form}", data)
    assert r.status_code == 400, r.text
    assert says in alert(r.text), alert(r.text)
    for value in data.values():
        assert value in r.text
    assert web["svc"].queries.show(ref) == before


def test_a_form_for_an_unknown_case_is_not_found(web):
    c = sign_in(web, "coord.ali")
    for form in ("consent", "placement", "pause", "exit", "transfer", "direction",
                 "final-order", "looked-after"):
        r = c.get(f"/cases/NIM-2026-9999/{form}")
        assert r.status_code == 404 and "NIM-2026-9999" in r.text, form


def test_an_interim_order_and_a_childs_own_timetable_from_their_forms(web):
    """The interim order form records the order for the child it names; an extension for a
    child on the family's application is the command's refusal, with the input kept."""
    svc = web["svc"]
    ref = accepted(web)
    coord = sign_in(web, "coord.ali")
    r = post(coord, f"/cases/{ref}/court-date", {
        "anchor": "proceedings_issued", "value": "2026-01-08", "cause": "Kept cause",
        "category": "court"})
    assert r.status_code == 303, r.text
    r = post(coord, f"/cases/{ref}/interim-order", {
        "made_on": "2026-01-09", "kind": "interim-care-order", "court": "Kept Court",
        "child": "child-1"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/cases/{ref}?done=interim-order"
    view = svc.queries.show(ref)
    assert [(o.child, o.kind, str(o.made_on)) for o in view.court.orders] == [
        ("child-1", "interim-care-order", "2026-01-09")]
    assert view.looked_after
    r = post(coord, f"/cases/{ref}/extension", {
        "granted_on": TODAY, "weeks": "8", "reason": "Kept reason", "child": "child-1"})
    assert r.status_code in (400, 409, 422), r.text
    assert "family's application" in alert(r.text) and "Kept reason" in r.text
    assert not svc.queries.show(ref).court.extensions
