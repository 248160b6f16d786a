"""The workbench in headless Chromium, as each kind of user: a coordinator opening a case
and sending every coordinator form (one wrong on purpose), a practitioner doing their work
and refused a coordinator's action, a service manager after a wrong sign-in code reading the
board, a case's timeline and the pathway picture.

With NIM_WRITE_SCREENSHOTS=1 the tests save the guide's pictures (docs/img/workbench-*.png,
docs/WORKBENCH.md shows them); otherwise they write nothing. Skipped without Chromium or
Playwright unless NIM_REQUIRE_BROWSER is set (as tests/test_browser.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from models.refs import TaskRef
from nim_pathway.demo import current_code
from tests import test_workbench

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

served = test_workbench.served  # the fixture: the workbench on uvicorn over the test's store
IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
IDENTITY = test_workbench.IDENTITY + ("Kept-",)


@pytest.fixture
def browser():
    from tests.test_browser import ARGS, CHROMIUM, _browser_or_skip

    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page, name: str) -> None:
    """The guide's picture of what the page shows now (only with NIM_WRITE_SCREENSHOTS=1)."""
    if os.environ.get("NIM_WRITE_SCREENSHOTS") == "1":
        IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMG / f"workbench-{name}.png"))


def new_page(browser):
    page = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
    page.set_default_timeout(30_000)
    return page


def sign_in(page, served, handle: str) -> None:
    from datetime import timedelta

    served["clock"].advance(timedelta(seconds=31))  # a code works once
    page.goto(f"{served['url']}/signin")
    page.fill("#handle", handle)
    page.fill("#code", current_code(served["svc"], handle))
    page.click("button[type=submit]")
    page.wait_for_url(f"{served['url']}/work")
    assert f"signed in as {handle}" in page.inner_text("header")


def alert(page) -> str:
    box = page.locator('[role="alert"]')
    assert box.count() == 1
    return box.inner_text()


def no_identity(page) -> None:
    html = page.content()
    found = [s for s in IDENTITY if s in html]
    assert not found, f"identity in the page: {found}"


def send(page, served, path: str, fields: dict[str, str], shot_as: str | None = None) -> None:
    """Open a form, fill it as a person would (choices picked, text typed) and send it."""
    page.goto(f"{served['url']}{path}")
    for name, value in fields.items():
        box = page.locator(f'[name="{name}"]')
        if box.evaluate("e => e.tagName") == "SELECT":
            box.select_option(value)
        else:
            box.fill(value)
    if shot_as:
        shot(page, shot_as)
    page.click("main button[type=submit]")


def test_a_coordinator_opens_a_case_and_sends_every_form(served, browser):
    svc, url = served["svc"], served["url"]
    page = new_page(browser)
    sign_in(page, served, "coord.ali")
    page.click("text=Open a case")
    page.wait_for_url(f"{url}/cases/new")
    send(page, served, "/cases/new", {
        "jurisdiction": "england-and-wales", "site": "test", "child.given_name": "Kept-Given",
        "child.family_name": "Kept-Family", "child.date_of_birth": "2025-07-01",
        "care_entry": "2026-01-05", "referral": "2026-01-12", "proceedings_issued": "2026-01-08",
        "caregivers.0.relationship": "mother", "caregivers.0.name": "Kept-Mother",
        "caregivers.1.relationship": "father", "placement.kind": "foster",
        "placement.start": "2026-01-05", "new_episode": "yes"}, "open-case-form")
    page.wait_for_url(re.compile(r".*/cases/NIM-\d{4}-\d{4}\?done=opened"))
    ref = page.url.split("/cases/")[1].split("?")[0]
    assert "Done: case opened" in page.inner_text("main")
    no_identity(page)
    # a wrong placement (it starts in the future): one error line, what was typed kept
    send(page, served, f"/cases/{ref}/placement",
         {"kind": "kinship", "start": "2027-01-10", "reason": "moved to an aunt"})
    assert "placement start 2027-01-10 is in the future" in alert(page)
    assert page.input_value('[name="reason"]') == "moved to an aunt"
    assert page.input_value('[name="kind"]') == "kinship"
    shot(page, "form-error")
    page.fill('[name="start"]', "2026-01-10")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/cases/{ref}?done=placement")
    forms = [
        ("caregiver", {"relationship": "kinship-carer", "name": "Kept-Kin"}),
        ("pause", {"action": "pause", "person": "father", "reason": "in hospital"}),
        ("pause", {"action": "resume", "person": "father"}),
        ("court-date", {"anchor": "case_management_hearing", "value": "2026-01-22",
                        "cause": "listed", "category": "court"}),
        ("direction", {"document": "final-report", "by": "2026-05-01"}),
        ("extension", {"granted_on": "2026-01-12", "weeks": "8",
                       "reason": "expert report late"}),
        ("child", {"given_name": "Kept-Sib", "family_name": "Kept-Family",
                   "date_of_birth": "2025-11-01"}),
        ("final-order", {"made_on": "2026-01-12", "kind": "care-order", "child": "child-2"}),
        ("looked-after", {"on": "2026-01-12", "reason": "returned home", "child": "child-2"}),
        ("transfer", {"site": "north", "team": "nim"}),
    ]
    for form, fields in forms:
        send(page, served, f"/cases/{ref}/{form}", fields)
        page.wait_for_url(f"{url}/cases/{ref}?done={form}")
    view = svc.queries.show(ref)
    assert [c.key for c in view.caregivers if c.active] == [
        "mother", "father", "kinship-carer"]
    assert not view.paused_people and view.site == "north"
    assert str(view.dates["case_management_hearing"]) == "2026-01-22"
    assert [d[0] for d in view.court.directions] == ["final-report"]
    assert [e.weeks for e in view.court.extensions] == [8]
    assert view.court.child_orders["child-2"].kind == "care-order"
    page.goto(f"{url}/cases/{ref}")
    assert page.locator("#chart-timeline svg").count() == 1
    no_identity(page)
    page.locator("#case-actions").scroll_into_view_if_needed()
    shot(page, "case-actions")
    send(page, served, f"/cases/{ref}/exit", {"reason": "disengaged"})
    page.wait_for_url(f"{url}/cases/{ref}?done=exit")
    assert svc.queries.show(ref).exit_reason == "disengaged"


def test_a_practitioner_does_their_work_and_is_refused_a_coordinators_action(served, browser):
    svc, ref, url = served["svc"], served["ref"], served["url"]
    svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    page = new_page(browser)
    sign_in(page, served, "sw.jones")
    rows = page.locator("tr.task-row")
    assert rows.count() >= 3
    titles = rows.all_inner_texts()
    assert any("Explain NIM and record consent — mother" in t for t in titles), titles
    no_identity(page)
    shot(page, "my-work-practitioner")
    # the consent form: given for the mother
    send(page, served, f"/cases/{ref}/consent", {"caregiver": "mother", "consent": "given"},
         "consent-form")
    page.wait_for_url(f"{url}/cases/{ref}?done=consent")
    assert "mother (consent: given)" in page.inner_text("main")
    # a task from My work: the father's consent, declined
    page.goto(f"{url}/work")
    page.locator(f'tr[data-task="{ref}/consent-father"]').get_by_text("Complete…").click()
    page.select_option("#f-consent", "declined")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/work\?done=.*"))
    assert f"Completed {ref}/consent-father" in page.inner_text("main")
    assert {c.key: c.consent for c in svc.queries.show(ref).caregivers}["father"] == "declined"
    # pausing is the coordinator's: the policy's refusal where it was typed, input kept
    send(page, served, f"/cases/{ref}/pause", {"action": "pause", "reason": "in hospital"})
    assert alert(page).startswith("sw.jones is nim-social-worker and may not pause")
    assert page.input_value('[name="reason"]') == "in hospital"
    assert svc.queries.show(ref).paused_since is None
    shot(page, "refused")


def test_a_manager_after_a_wrong_code_reads_the_board_a_timeline_and_the_pathway(served,
                                                                                browser):
    from datetime import timedelta

    svc, ref, url = served["svc"], served["ref"], served["url"]
    other = test_workbench.open_case(svc, referral="2026-01-06")
    svc.tasks.complete_task(TaskRef(other, "triage"), "mgr.okafor", {"accepted": True})
    page = new_page(browser)
    page.goto(f"{url}/signin")
    right = current_code(svc, "mgr.okafor")
    page.fill("#handle", "mgr.okafor")
    page.fill("#code", right[:5] + str((int(right[5]) + 1) % 10))
    page.click("button[type=submit]")
    assert "wrong or reused one-time code for mgr.okafor" in alert(page)
    assert page.input_value("#handle") == "mgr.okafor"
    assert "signed in as" not in page.inner_text("header")
    shot(page, "wrong-code")
    served["clock"].advance(timedelta(days=20))  # work falls due and late: amber and red
    sign_in(page, served, "mgr.okafor")
    assert page.locator(f'tr[data-task="{ref}/triage"]').count() == 1
    shot(page, "my-work")
    page.click("header >> text=Board")
    page.wait_for_url(f"{url}/board")
    assert page.locator("[data-stage]").count() == 2
    card = page.locator(f'[data-case="{ref}"]')
    assert "RED" in card.inner_text()
    colour = card.locator(".rag").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(176, 0, 32)"  # the red, not just the word
    assert page.locator("#chart-on-time svg").bounding_box()["height"] > 100
    no_identity(page)
    shot(page, "board")
    page.select_option("#programme", "fdac")
    page.click("text=Filter")
    assert "No open cases for this filter" in page.inner_text("main")
    page.goto(f"{url}/board")
    card = page.locator(f'[data-case="{other}"]')
    card.locator("a").click()
    page.wait_for_url(f"{url}/cases/{other}")
    assert page.locator("#chart-timeline svg").bounding_box()["height"] > 100
    no_identity(page)
    shot(page, "case-timeline")
    page.click("text=england@")
    page.wait_for_url(f"{url}/pathway/england")
    assert page.locator("#stage-referral").count() == 1
    shot(page, "pathway")
