"""Manager oversight: board, breaches, KPIs, forecast, report packs, diagram, exports."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date, datetime, timedelta

import pytest
from sqlmodel import select

from models import engine as eng
from models.clock import UK
from models.errors import CommandError
from models.pathway import load_pathway
from models.refs import TaskRef
from models.schemas import Referral
from models.simulate import sample_outcome
from nim_pathway.demo import DEMO_TEAM
from reports.diagram import mermaid
from reports.exports import fhir_bundle, practitioner_ics, tasks_csv
from reports.oversight import (
    breach_report_markdown,
    breaches,
    case_detail,
    caseload_board,
    kpi_markdown,
    kpis,
    rag,
    timeline_markdown,
)
from store.db import session_scope
from store.tables import AuditEvent
from tests.conftest import referral_data

HANDLES = {role: handle for handle, _, role, _ in DEMO_TEAM}
IDENTITY = ("Sentinel-Given", "Sentinel-Family", "Sentinel-Mother", "Sentinel Address")


def open_case(store, **over) -> str:
    return store.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali").ref


def drive(store, clock, ref, until_stage: str | None, late: dict[str, int] | None = None,
          decisions: dict | None = None) -> None:
    """Complete the case's work on its due dates (some late) until it reaches a stage."""
    spec = store.queries.pathway(ref)
    decisions = decisions or {"d1": "treatment", "d2": "adoption"}
    late = late or {}
    for _ in range(300):
        stage = store.queries.show(ref).stage
        if stage == until_stage or stage is None:
            return
        task = next(t for t in store.queries.tasks(case=ref) if t.stage != "statutory")
        when = task.due + timedelta(days=late.get(task.key, 0))
        clock.set(max(clock.now(), datetime.combine(when, datetime.min.time(), UK)
                      + timedelta(hours=10)))
        store.tasks.complete_task(task.task, HANDLES[task.role],
                            sample_outcome(spec, task.spec_id, decisions))


def test_rag_thresholds():
    assert [rag(n) for n in (-1, 0, 5, 6)] == ["red", "amber", "amber", "green"]


def test_board_breaches_and_kpis(store, clock):
    first = open_case(store)
    second = open_case(store, jurisdiction="scotland", proceedings_issued=None,
                       first_entry_to_care=True)
    drive(store, clock, first, "formulation", late={"wmci-mother": 4, "triage": 2})
    store.cases.move_date(first, "stage:assessment", date(2026, 2, 20), "family unavailable",
                    "coord.ali", category="family")
    board = {r.case: r for r in caseload_board(store.queries)}
    assert board[second].rag == "red" and board[second].overdue >= 1
    assert board[first].stage == "formulation"
    assert "care-proceedings-26-weeks" in board[first].clocks
    assert "pace-permanence-6-months" in board[second].clocks

    store.tasks.record_delay_cause(TaskRef(second, "triage"), "capacity", "manager on leave", "mgr.okafor")
    rows = breaches(store.queries)
    late = {(r.case, r.item): r for r in rows}
    assert late[(first, "wmci-mother")].days_late == 4
    assert late[(first, "triage")].team == "nim"
    assert late[(second, "triage")].cause == "capacity" and late[(second, "triage")].open
    with pytest.raises(CommandError, match="cause must be one of"):
        store.tasks.record_delay_cause(TaskRef(second, "triage"), "weather", "", "mgr.okafor")

    data = kpis(store.queries)
    assert data.cases == 2 and data.days["care entry to referral"]["median"] == 7
    assert data.on_time_by_role["psychologist"]["on_time"] < 1
    assert data.breaches_by_cause["capacity"] == 1
    md = timeline_markdown(store.queries, first)
    assert "late by 2 days" in md and "## Breaches" in md and "| triage | 2026-01-19 | 2 |" in md


def test_board_rag_is_our_own_work_and_the_las_lateness_is_theirs(store, clock):
    """A statutory visit (the LA's work) overdue before the case came to NIM: the case is not
    red for it (issue 27: alarms belong to the clock's owner); it is counted as LA-late. The
    old test expected red here: every new case was red at once."""
    fine = open_case(store)
    # placement on Friday 2 Jan: the visit "within one week" was due Friday 9 Jan, before
    # the referral (Monday 12 Jan, today); triage is due Monday 19 Jan, 5 working days off
    late = open_case(store, care_entry="2026-01-02", placement={"kind": "foster",
                                                                "start": "2026-01-02"},
                     child={"given_name": "Sentinel-Other", "family_name": "Sentinel-Family",
                            "date_of_birth": "2025-07-01", "address": "Sentinel Address 2"})
    board = {r.case: r for r in caseload_board(store.queries)}
    row = board[late]
    assert (row.rag, row.overdue, row.la_late, row.court_late) == ("amber", 0, 1, 0)
    # the worst of NIM's own work: triage, 5 working days off (amber)
    assert (row.worst, row.owner_role, row.working_days_to_due) == ("triage",
                                                                    "nim-service-manager", 5)
    assert (board[fine].rag, board[fine].overdue, board[fine].la_late) == ("amber", 0, 0)
    # the case's detail still lists every open item, the LA's visit first (it is overdue)
    detail = case_detail(store.queries, late)
    assert [(i.item, i.rag) for i in detail[:2]] == [("sw-visit-1", "red"), ("triage", "amber")]
    assert "| red | sw-visit-1 | 2026-01-09 | -1 | la-social-worker |" in \
        timeline_markdown(store.queries, late)
    # the breach report shows the visit as the LA's, late before the case opened
    (visit,) = [b for b in breaches(store.queries, late) if b.item == "sw-visit-1"]
    assert (visit.team, visit.own, visit.cause) == ("local-authority", False,
                                                    "late before the case opened")
    report = breach_report_markdown(breaches(store.queries))
    assert "## local-authority (theirs, shown for information)" in report
    # and no escalation to the LA's managers for work late on arrival
    snap = store.queries.snapshot(late)
    timers = [p for p in eng.planned_timers(snap.spec, snap.state) if p.task == "sw-visit-1"]
    assert timers and not [p for p in timers if p.kind == "escalation"]


def test_board_and_task_list_count_working_days_alike_on_a_saturday(store, clock):
    ref = open_case(store, care_entry="2026-01-09", referral="2026-01-09",
                    placement={"kind": "foster", "start": "2026-01-09"})
    # triage: 5 working days after Friday 9 Jan = Friday 16 Jan
    clock.set(datetime(2026, 1, 17, 10, 0, tzinfo=UK))  # Saturday 17 Jan
    # By hand: due Fri 16, today Sat 17. Calendar days: -1. Working days after Fri 16 up to
    # and including Sat 17: none (a weekend day), so the floor applies: -1, red (it was 0,
    # amber). On Tuesday 20 Jan: Mon 19 and Tue 20 have passed: -2 (calendar -4).
    triage = next(t for t in store.queries.tasks(case=ref) if t.key == "triage")
    assert (triage.days_to_due, triage.working_days_to_due) == (-1, -1)
    row = next(r for r in caseload_board(store.queries) if r.case == ref)
    assert row.rag == "red" and row.working_days_to_due == -1
    item = next(i for i in case_detail(store.queries, ref) if i.item == "triage")
    assert (item.working_days_to_due, item.rag) == (-1, "red")
    clock.set(datetime(2026, 1, 20, 10, 0, tzinfo=UK))
    triage = next(t for t in store.queries.tasks(case=ref) if t.key == "triage")
    assert (triage.days_to_due, triage.working_days_to_due) == (-4, -2)
    assert next(i for i in case_detail(store.queries, ref)
                if i.item == "triage").working_days_to_due == -2


def test_kpis_read_as_words_and_percentages(store, clock):
    empty = kpi_markdown(kpis(store.queries))
    assert "no D1 decisions yet" in empty and "None" not in empty
    ref = open_case(store)
    drive(store, clock, ref, "formulation", late={"triage": 2})
    text = kpi_markdown(kpis(store.queries))
    assert "| nim-service-manager | 1 | 0% |" in text  # the one triage, late
    assert "None" not in text and "0.0" not in text and "1.0 |" not in text


def test_forecast_flags_the_26_week_conflict(store, clock):
    ref = open_case(store)
    plan = store.queries.forecast(ref)
    # a court's maximum: the advice is an extension from the court, never an "override"
    advice = [c for c in plan.conflicts if c.startswith("Proceedings disposed of within 26")]
    assert advice and "ask for an extension" in advice[0] and "s32" in advice[0]
    signoff = next(m for m in plan.milestones if m.task == "recommendation-signoff")
    assert signoff.projected > date(2026, 7, 9)
    shorter = store.queries.forecast(ref, treatment_months=3)
    later = next(m for m in shorter.milestones if m.task == "recommendation-signoff")
    assert later.projected < signoff.projected
    hearing = store.queries.forecast(ref, hearing_date=date(2026, 9, 1))
    assert any("after the final hearing" in c for c in hearing.conflicts)
    # extensions granted one at a time until NIM's recommendation fits
    for granted in (date(2026, 1, 12),) * 5:
        store.court.extend_timetable(ref, granted, 8, "trial of NIM treatment", "coord.ali")
    assert not [c for c in store.queries.forecast(ref).conflicts if "26 weeks" in c]
    assert store.queries.show(ref).stage == "referral"  # a forecast changes nothing


def test_report_packs_render_and_are_audited(store, clock, tmp_path):
    ref = open_case(store)
    with pytest.raises(CommandError, match="after D1"):
        store.admin.write_pack(ref, "assessment", "html", tmp_path, "lead.singh")
    drive(store, clock, ref, "treatment")
    path, digest = store.admin.write_pack(ref, "assessment", "html", tmp_path, "lead.singh")
    html = path.read_text()
    assert "Sentinel-Given" in html  # the one place identity belongs
    assert "Working Model of the Child Interview" in html and "Go on to treatment" in html
    # the workbench's timeline picture, the same SVG, with no identity in it
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "planned" in svg and "triage" in svg
    assert not [i for i in IDENTITY if i in svg]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    drive(store, clock, ref, "closure")
    pdf, pdf_digest = store.admin.write_pack(ref, "final", "pdf", tmp_path, "lead.singh")
    assert pdf.read_bytes().startswith(b"%PDF")
    with session_scope(store.url) as s:
        audited = [a.detail["sha256"] for a in s.exec(select(AuditEvent).where(
            AuditEvent.action == "report-pack"))]
    assert audited == [digest, pdf_digest]
    assert not [i for i in IDENTITY if i in json.dumps(audited)]


def test_diagram_covers_the_pathway():
    for profile in ("england", "scotland"):
        spec = load_pathway(profile)
        chart = mermaid(spec)
        assert chart.startswith("flowchart TD")
        for stage in spec.stages:
            assert stage.id.replace("-", "_") in chart
        assert "formulation_gate -->|no_treatment| recommendation" in chart
    assert "permanence_order" in mermaid(load_pathway("scotland"))


def test_exports(store, clock):
    ref = open_case(store)
    drive(store, clock, ref, "assessment")
    rows = list(csv.DictReader(io.StringIO(tasks_csv(store.queries, ref))))
    assert {r["task"] for r in rows} >= {f"{ref}/triage", f"{ref}/wmci-mother"}
    assert next(r for r in rows if r["task"] == f"{ref}/triage")["completed_on"]
    bundle = fhir_bundle(store.queries, ref)
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == len(rows)
    tasks = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in bundle["entry"]}
    triage = tasks[f"{ref}/triage"]
    assert triage["status"] == "completed" and triage["executionPeriod"]["end"]
    wmci = tasks[f"{ref}/wmci-mother"]
    assert wmci["status"] == "ready" and wmci["performerType"][0]["text"] == "psychologist"
    assert wmci["restriction"]["period"]["end"] == str(
        next(r for r in rows if r["task"] == f"{ref}/wmci-mother")["due"])
    assert not [i for i in IDENTITY if i in json.dumps(bundle)]
    ics = practitioner_ics(store.queries, "psy.chen", store.notify_config())
    assert ics.count("BEGIN:VEVENT") == len([r for r in rows if r["role"] == "psychologist"
                                             and r["state"] == "open"])
    with pytest.raises(CommandError, match="unknown practitioner"):
        practitioner_ics(store.queries, "nobody", store.notify_config())
