"""The workbench (nim_pathway/web): sign-in by one-time code, My work, the board and case
pages, and the coordinator's forms, through Starlette's TestClient; and one run in real
headless Chromium (marked like tests/test_browser.py's)."""

from __future__ import annotations

import re
import threading
import time
import warnings
from datetime import timedelta

import pytest

from models.errors import Refused
from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.demo import current_code
from nim_pathway.web import create_app
from tests.conftest import referral_data

with warnings.catch_warnings():  # Starlette asks for httpx2; the httpx client works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

IDENTITY = ("Sentinel-Given", "Sentinel-Family", "Sentinel-Mother", "Sentinel-Father",
            "Sentinel-Carer", "Sentinel Address", "2025-06-01")


def open_case(svc, **over) -> str:
    return svc.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali").ref


@pytest.fixture
def web(store, clock):
    ref = open_case(store)
    client = TestClient(create_app(store), follow_redirects=False)
    return {"svc": store, "clock": clock, "ref": ref, "client": client}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(web, handle: str, client: TestClient | None = None) -> TestClient:
    """Sign `handle` in with their current one-time code (the clock moves on a step first: a
    code works once)."""
    client = client or web["client"]
    web["clock"].advance(timedelta(seconds=31))
    page = client.get("/signin")
    r = client.post("/signin", data={"handle": handle, "code": current_code(web["svc"], handle),
                                     "csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/work", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    return client


def no_identity(html: str) -> None:
    found = [s for s in IDENTITY if s in html]
    assert not found, f"identity in the page: {found}"


# -- sign-in ------------------------------------------------------------------------------

def test_pages_need_a_session(web):
    c = web["client"]
    for path in ("/work", "/board", f"/cases/{web['ref']}", "/cases/new"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert c.get("/").headers["location"] == "/signin"


def test_wrong_code_is_an_error_on_the_sign_in_page(web):
    c = web["client"]
    page = c.get("/signin")
    right = current_code(web["svc"], "mgr.okafor")
    wrong = right[:5] + str((int(right[5]) + 1) % 10)
    r = c.post("/signin", data={"handle": "mgr.okafor", "code": wrong, "csrf": csrf_of(page.text)})
    assert r.status_code == 401
    assert "wrong or reused one-time code for mgr.okafor" in r.text
    assert 'value="mgr.okafor"' in r.text  # the handle is kept
    assert "nim_session" not in r.headers.get("set-cookie", "")
    assert c.get("/work").status_code == 303


@pytest.mark.parametrize("code", ["12345x", "１２３４５６", "١٢٣٤٥٦", "", "1234567", "9" * 5000,
                                  "12 34 56", "½½½½½½"])
def test_a_code_that_is_not_six_ascii_digits_is_refused(web, code):
    c = web["client"]
    page = c.get("/signin")
    r = c.post("/signin", data={"handle": "mgr.okafor", "code": code, "csrf": csrf_of(page.text)})
    assert r.status_code == 401
    assert "6 digits (0-9)" in r.text
    assert c.get("/work").status_code == 303


def test_unknown_handle_is_one_line_not_a_crash(web):
    c = web["client"]
    page = c.get("/signin")
    r = c.post("/signin", data={"handle": "<script>x</script>", "code": "123456",
                                "csrf": csrf_of(page.text)})
    assert r.status_code == 401 and "unknown practitioner" in r.text
    assert "<script>x" not in r.text


def test_sign_in_without_its_csrf_token_is_refused(web):
    c = web["client"]
    c.get("/signin")
    r = c.post("/signin", data={"handle": "mgr.okafor",
                                "code": current_code(web["svc"], "mgr.okafor")})
    assert r.status_code == 403 and "security token" in r.text
    assert c.get("/work").status_code == 303


def test_a_signed_in_form_without_csrf_changes_nothing(web):
    c = sign_in(web, "mgr.okafor")
    r = c.post(f"/tasks/{web['ref']}/triage", data={"accepted": "yes"})
    assert r.status_code == 403 and "security token" in r.text
    r = c.post(f"/tasks/{web['ref']}/triage", data={"accepted": "yes", "csrf": "0" * 64})
    assert r.status_code == 403
    assert web["svc"].queries.task(web["ref"], "triage").state == "open"


def test_sign_out_ends_the_session(web):
    c = sign_in(web, "mgr.okafor")
    page = c.get("/work")
    r = c.post("/signout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    c.cookies.clear()
    assert c.get("/work").status_code == 303


def test_signing_in_again_ends_the_session_it_replaces(web):
    c = sign_in(web, "mgr.okafor")
    first = c.cookies.get("nim_session")
    sign_in(web, "coord.ali", c)
    assert c.cookies.get("nim_session") != first
    assert "signed in as coord.ali" in c.get("/work").text
    other = TestClient(create_app(web["svc"]), follow_redirects=False)
    other.cookies.set("nim_session", first)
    assert other.get("/work").status_code == 303


def test_a_stolen_cookie_stops_working_after_sign_out(web):
    c = sign_in(web, "mgr.okafor")
    token = c.cookies.get("nim_session")
    page = c.get("/work")
    c.post("/signout", data={"csrf": csrf_of(page.text)})
    other = TestClient(create_app(web["svc"]), follow_redirects=False)
    other.cookies.set("nim_session", token)
    assert other.get("/work").status_code == 303


# -- My work ------------------------------------------------------------------------------

def test_my_work_is_mine_soonest_first_with_why_and_rag_words(web):
    svc = web["svc"]
    later = web["ref"]
    sooner = open_case(svc, referral="2026-01-06")
    c = sign_in(web, "mgr.okafor")
    html = c.get("/work").text
    rows = re.findall(r'data-task="([^"]+)"', html)
    assert rows == [f"{sooner}/triage", f"{later}/triage"]
    assert "Triage the referral" in html
    assert svc.queries.task(sooner, "triage").due_explanation in html
    assert re.search(r'rag-(red|amber|green)">(RED|AMBER|GREEN)</span> (overdue|due soon|on track)',
                     html)
    no_identity(html)
    # another role's work is not on this page
    assert "Explain NIM and record consent" not in html


def test_my_work_names_children_and_caregivers_by_position_never_by_name(web):
    svc = web["svc"]
    svc.tasks.complete_task(TaskRef(web["ref"], "triage"), "mgr.okafor", {"accepted": True})
    c = sign_in(web, "sw.jones")
    html = c.get("/work").text
    titles = re.findall(r"<td>(Explain NIM[^<]*)<", html)
    assert any(t.endswith("— mother") for t in titles), titles
    assert any(t.endswith("— father") for t in titles), titles
    no_identity(html)


def test_a_sibling_groups_work_names_each_child_by_position(web):
    data = referral_data()
    data["children"] = [data.pop("child"), {**referral_data()["child"], "given_name": "Other"}]
    ref = web["svc"].cases.open_case(Referral.model_validate(data), "coord.ali").ref
    c = sign_in(web, "la.patel")
    html = c.get("/work").text
    assert f'data-task="{ref}/sw-visit-child-2-1"' in html
    assert "Social worker visit — child 1" in html and "Social worker visit — child 2" in html
    no_identity(html)
    assert "Other" not in html


def test_a_task_completed_from_its_form_then_again(web):
    svc, ref = web["svc"], web["ref"]
    c = sign_in(web, "mgr.okafor")
    page = c.get(f"/tasks/{ref}/triage")
    assert page.status_code == 200
    assert 'name="accepted"' in page.text and "Family accepted for NIM" in page.text
    no_identity(page.text)
    r = c.post(f"/tasks/{ref}/triage", data={"accepted": "yes", "notes": "ok",
                                             "csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == f"/work?done={ref}/triage"
    assert svc.queries.task(ref, "triage").state == "done"
    assert f"Completed {ref}/triage" in c.get(r.headers["location"]).text
    again = c.post(f"/tasks/{ref}/triage", data={"accepted": "yes", "csrf": csrf_of(page.text)})
    assert again.status_code == 400
    assert f"task {ref}/triage was already completed on 2026-01-12 by mgr.okafor" in again.text
    assert again.text.count('role="alert"') == 1


def test_a_wrong_outcome_is_shown_by_field_with_the_input_kept(web):
    ref = web["ref"]
    c = sign_in(web, "mgr.okafor")
    page = c.get(f"/tasks/{ref}/triage")
    r = c.post(f"/tasks/{ref}/triage", data={"completed_on": "2026-02-30", "notes": "kept note",
                                             "csrf": csrf_of(page.text)})
    assert r.status_code == 400
    assert 'id="err-accepted"' in r.text and 'id="err-completed_on"' in r.text
    assert "kept note" in r.text and 'value="2026-02-30"' in r.text
    assert web["svc"].queries.task(ref, "triage").state == "open"


def test_another_roles_task_is_refused_by_the_policy(web):
    ref = web["ref"]
    c = sign_in(web, "psy.chen")
    page = c.get(f"/tasks/{ref}/triage")
    r = c.post(f"/tasks/{ref}/triage", data={"accepted": "yes", "csrf": csrf_of(page.text)})
    assert r.status_code == 400
    with pytest.raises(Refused) as direct:
        web["svc"].tasks.complete_task(TaskRef(ref, "triage"), "psy.chen", {"accepted": True})
    assert str(direct.value) in r.text.replace("&#39;", "'")


# -- the board and the case page -----------------------------------------------------------

def test_the_board_groups_cards_by_stage_with_rag_words_and_charts(web):
    svc = web["svc"]
    other = open_case(svc)
    svc.tasks.complete_task(TaskRef(other, "triage"), "mgr.okafor", {"accepted": True})
    web["clock"].advance(timedelta(days=60))  # work goes late: red cards, charts with data
    c = sign_in(web, "mgr.okafor")
    html = c.get("/board").text
    stages = re.findall(r'data-stage="([^"]+)"', html)
    assert stages == ["referral", "consent"]
    assert f'data-case="{web["ref"]}"' in html and f'data-case="{other}"' in html
    assert "RED</span> red: own work overdue" in html
    assert "LA late:" in html and "court late:" in html
    assert html.count("<svg") >= 2 and 'id="chart-on-time"' in html
    assert "<script" not in html
    no_identity(html)
    fdac = c.get("/board?programme=fdac").text
    assert "data-case=" not in fdac and "No open cases for this filter" in fdac
    scot = c.get("/board?nation=scotland").text
    assert "data-case=" not in scot
    assert 'data-case="' in c.get("/board?nation=england-and-wales&programme=nim").text


def test_the_board_reads_every_case_once_and_agrees_with_the_reports(web, monkeypatch):
    from nim_pathway.web.board import OneRead
    from reports.oversight import caseload_board, kpis

    svc = web["svc"]
    closed = open_case(svc)
    svc.cases.exit_case(closed, "disengaged", "", "coord.ali")
    open_case(svc, referral="2026-01-06")
    web["clock"].advance(timedelta(days=30))
    expected = caseload_board(svc.queries), kpis(svc.queries)
    calls = []
    real = svc.queries.snapshots
    monkeypatch.setattr(svc.queries, "snapshots", lambda **kw: calls.append(kw) or real(**kw))
    once = OneRead(svc.queries)
    assert (caseload_board(once), kpis(once)) == expected
    assert len(expected[0]) == 2 and expected[1].cases == 3
    assert len(calls) == 1  # the board, the KPIs and the breaches inside them: one read


def test_the_case_page_draws_its_timeline_and_clocks_with_owners(web):
    ref = web["ref"]
    c = sign_in(web, "coord.ali")
    r = c.get(f"/cases/{ref}")
    assert r.status_code == 200
    assert 'id="chart-timeline"' in r.text and "<svg" in r.text
    assert "triage (nim-service-manager)" in r.text
    assert "(owner: court)" in r.text
    no_identity(r.text)
    assert c.get("/cases/NIM-2026-9999").status_code == 404


def test_the_timeline_shows_pauses_and_court_extensions(web):
    from datetime import date

    svc, ref = web["svc"], web["ref"]
    svc.cases.pause(ref, "in hospital", "coord.ali")
    web["clock"].advance(timedelta(days=9))
    svc.cases.resume(ref, "coord.ali")
    svc.court.extend_timetable(ref, date(2026, 1, 20), 8, "expert report late", "coord.ali")
    c = sign_in(web, "coord.ali")
    html = c.get(f"/cases/{ref}").text
    assert "NIM&#39;s work paused" in html or "NIM's work paused" in html
    assert "court extension 8 weeks" in html
    assert "in hospital" not in html and "expert report late" not in html  # reasons stay put


def test_the_web_command_serves_the_app_from_its_settings(cli_env, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from nim_pathway.cli import app

    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NIM_WEB_PORT", "4391")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda served, **kw: seen.update(kw, app=served))
    result = CliRunner().invoke(app, ["web"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 4391
    assert "http://127.0.0.1:4391/" in result.output
    assert CliRunner().invoke(app, ["web", "--port", "4392"]).exit_code == 0
    assert seen["port"] == 4392


def test_the_pathway_is_a_picture(web):
    c = sign_in(web, "coord.ali")
    r = c.get("/pathway/england")
    assert r.status_code == 200 and "<svg" in r.text and 'id="stage-referral"' in r.text
    assert "gate D1:" in r.text
    assert c.get("/pathway/nowhere").status_code == 404


# -- the coordinator's forms --------------------------------------------------------------

def test_a_practitioner_gets_the_policys_refusal_on_a_coordinator_form(web):
    ref = web["ref"]
    c = sign_in(web, "psy.chen")
    page = c.get(f"/cases/{ref}/pause")
    r = c.post(f"/cases/{ref}/pause", data={"action": "pause", "reason": "in hospital",
                                            "csrf": csrf_of(page.text)})
    assert r.status_code == 403
    with pytest.raises(Refused) as direct:
        web["svc"].cases.pause(ref, "in hospital", "psy.chen")
    assert str(direct.value) in r.text.replace("&#39;", "'")
    assert "in hospital" in r.text  # the input is kept
    assert web["svc"].queries.show(ref).paused_since is None


def referral_form(csrf: str, **over) -> dict:
    data = {"jurisdiction": "england-and-wales", "site": "test", "child.given_name": "Kept-Given",
            "child.family_name": "Kept-Family", "child.date_of_birth": "2025-07-01",
            "care_entry": "2026-01-05", "referral": "2026-01-12",
            "proceedings_issued": "2026-01-08", "caregivers.0.relationship": "mother",
            "caregivers.0.name": "Kept-Mother", "placement.kind": "foster",
            "placement.start": "2026-01-05", "new_episode": "yes", "csrf": csrf}
    data.update(over)
    return data


def test_a_bad_referral_keeps_its_input_with_errors_by_field(web):
    c = sign_in(web, "coord.ali")
    page = c.get("/cases/new")
    assert 'name="child.given_name"' in page.text and 'name="caregivers.0.relationship"' in page.text
    r = c.post("/cases/new", data=referral_form(csrf_of(page.text), **{
        "child.date_of_birth": "2025-13-01", "site": "Bad Site!", "caregivers.0.relationship": ""}))
    assert r.status_code == 400
    for name in ("child.date_of_birth", "site", "caregivers.0.relationship"):
        assert f'id="err-{name}"' in r.text, name
    assert 'value="Kept-Given"' in r.text and 'value="2025-13-01"' in r.text
    assert 'value="Kept-Mother"' in r.text
    assert [c.ref for c in web["svc"].queries.cases()] == [web["ref"]]


def test_a_practitioner_opening_a_case_gets_the_policys_refusal(web):
    c = sign_in(web, "psy.chen")
    page = c.get("/cases/new")
    r = c.post("/cases/new", data=referral_form(csrf_of(page.text)))
    assert r.status_code == 403
    assert "psy.chen is psychologist and may not open a case" in r.text
    assert 'value="Kept-Given"' in r.text
    assert [c.ref for c in web["svc"].queries.cases()] == [web["ref"]]


def test_a_referral_the_engine_refuses_is_one_line_with_the_input_kept(web):
    c = sign_in(web, "coord.ali")
    page = c.get("/cases/new")
    r = c.post("/cases/new", data=referral_form(csrf_of(page.text), referral="2026-03-01"))
    assert r.status_code == 400
    assert r.text.count('role="alert"') == 1
    assert 'value="Kept-Given"' in r.text


def test_a_referral_opens_a_case_and_the_forms_run_the_domain_commands(web):
    svc = web["svc"]
    c = sign_in(web, "coord.ali")
    page = c.get("/cases/new")
    token = csrf_of(page.text)
    r = c.post("/cases/new", data=referral_form(token))
    assert r.status_code == 303, r.text
    ref = r.headers["location"].split("/")[2].split("?")[0]
    assert "Kept" not in r.headers["location"]
    assert svc.queries.show(ref).stage == "referral"

    r = c.post(f"/cases/{ref}/child", data={"given_name": "Kept-Sib", "family_name": "Kept",
                                            "date_of_birth": "2025-11-01",
                                            "placement.kind": "foster",
                                            "placement.start": "2026-01-10", "csrf": token})
    assert r.status_code == 303, r.text
    assert [k.key for k in svc.queries.show(ref).children] == ["child-1", "child-2"]

    r = c.post(f"/cases/{ref}/court-date", data={
        "anchor": "case_management_hearing", "value": "2026-01-22", "cause": "listed",
        "category": "court", "csrf": token})
    assert r.status_code == 303, r.text
    assert str(svc.queries.show(ref).dates["case_management_hearing"]) == "2026-01-22"

    r = c.post(f"/cases/{ref}/pause", data={"action": "pause", "reason": "in hospital",
                                            "csrf": token})
    assert r.status_code == 303 and svc.queries.show(ref).paused_since is not None
    r = c.post(f"/cases/{ref}/pause", data={"action": "pause", "reason": "again",
                                            "csrf": token})
    assert r.status_code == 400 and r.text.count('role="alert"') == 1
    r = c.post(f"/cases/{ref}/pause", data={"action": "resume", "csrf": token})
    assert r.status_code == 303 and svc.queries.show(ref).paused_since is None

    r = c.post(f"/cases/{ref}/final-order", data={"made_on": "2026-01-12", "kind": "care-order",
                                                  "csrf": token})
    assert r.status_code == 303, r.text
    assert svc.queries.show(ref).court.final_order.kind == "care-order"

    r = c.post(f"/cases/{ref}/exit", data={"reason": "disengaged", "csrf": token})
    assert r.status_code == 303, r.text
    assert svc.queries.show(ref).exit_reason == "disengaged"
    page = c.get(f"/cases/{ref}")
    no_identity(page.text)
    assert "Kept" not in page.text


# -- in a real browser ----------------------------------------------------------------------

@pytest.fixture
def served(store, clock):
    """The workbench over the test's store, served by uvicorn on a free port."""
    import socket

    import uvicorn

    ref = open_case(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the workbench did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "svc": store, "clock": clock, "ref": ref}
    server.should_exit = True
    thread.join(10)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_in_chromium_sign_in_complete_from_my_work_and_see_the_board_chart(served):
    from tests.test_browser import ARGS, CHROMIUM, _browser_or_skip

    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    svc, ref, url = served["svc"], served["ref"], served["url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
            page.goto(f"{url}/work")
            page.fill("#handle", "mgr.okafor")
            page.fill("#code", current_code(svc, "mgr.okafor"))
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/work")
            row = page.locator(f'tr[data-task="{ref}/triage"]')
            assert "Triage the referral" in row.inner_text()
            row.get_by_text("Complete…").click()
            page.select_option("#f-accepted", "yes")
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/work\?done=.*"))
            assert f"Completed {ref}/triage" in page.inner_text("main")
            assert svc.queries.task(ref, "triage").state == "done"
            page.click("text=Board")
            page.wait_for_url(f"{url}/board")
            chart = page.locator("#chart-on-time svg")
            assert chart.count() == 1 and chart.bounding_box()["height"] > 100
            assert page.locator(f'[data-case="{ref}"]').count() == 1
            assert "Sentinel" not in page.content()
        finally:
            browser.close()
