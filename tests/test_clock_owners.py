"""Exits end the clocks they end; alarms belong to the clock's owner (issue 27, parts 1-2).

Dates are worked by hand (docs/STATUTORY-CLOCKS.md R1-R7; England & Wales bank holidays 2026:
1 Jan, 3 Apr, 6 Apr, 4 May, 25 May, 31 Aug, 25 Dec, 28 Dec). The case: care entry Mon 5 Jan
2026, proceedings issued Thu 8 Jan (day 1), referred to NIM and opened Mon 12 Jan. The 26-week
clock's last day is 8 Jan + 181 days = Wed 8 Jul 2026 (EN-1); the CMH window is day 12 = Mon
19 Jan to day 18 = Sun 25 Jan, pulled back to Fri 23 Jan (EN-2).
"""

from __future__ import annotations

from datetime import date

import pytest

from models import engine as eng
from models.pathway import load_pathway
from notifications.render import render_message

OPENED = date(2026, 1, 12)


@pytest.fixture
def england():
    return load_pathway("england")


def new_case(spec, **anchors: date) -> eng.CaseState:
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction="england-and-wales",
                         anchors={"care_entry": date(2026, 1, 5), "referral": OPENED,
                                  "proceedings_issued": date(2026, 1, 8), **anchors},
                         settings=dict(spec.settings),
                         caregivers=eng.caregiver_keys(["mother", "foster-carer"]))
    eng.open_case(spec, case, OPENED)
    return case


def clocks(spec, case, on: date) -> dict[str, eng.ClockState]:
    return {c.id: c for c in eng.clock_states(spec, case, on)}


def test_withdrawal_ends_the_court_clocks_with_the_reason(england):
    case = new_case(england)
    # before: on Wed 1 Jul the 26-week clock runs (last day Wed 8 Jul); the CMH was never held
    before = clocks(england, case, date(2026, 7, 1))
    assert before["care-proceedings-26-weeks"].due == date(2026, 7, 8)
    assert before["case-management-hearing"].state == "breached-open"
    eng.exit_case(england, case, "proceedings-withdrawn", date(2026, 3, 16))
    # months later (Tue 15 Sep, 69 days past 8 Jul): ended, never "late, still open"
    after = clocks(england, case, date(2026, 9, 15))
    for cid in ("care-proceedings-26-weeks", "case-management-hearing"):
        assert after[cid].state == "ended: proceedings withdrawn"
        assert after[cid].days_late is None
    # no clock timers for a closed case; nothing red on its detail
    assert not [p for p in eng.planned_timers(england, case) if p.kind.startswith("clock")]


def test_an_early_exit_hands_court_and_la_clocks_back_to_their_owner(england):
    case = new_case(england, la_referral=date(2026, 1, 5))
    eng.exit_case(england, case, "disengaged", date(2026, 3, 16))
    # Wed 16 Dec 2026: 161 days after 8 Jul; before issue 27 the court clock was a NIM breach
    # "161 days late, still open"
    after = clocks(england, case, date(2026, 12, 16))
    assert after["care-proceedings-26-weeks"].state == "handed back to the court"
    assert after["case-management-hearing"].state == "handed back to the court"
    assert after["la-assessment-45-wd"].state == "handed back to the LA"
    assert all(c.days_late is None for c in after.values())
    # NIM's own 12-week target: the assessment stage never began, so it never started
    assert after["nim-assessment-12-weeks"].state == "not-started"


def test_the_final_order_ends_the_cmh_window_and_meets_the_26_weeks(england):
    case = new_case(england)
    # final order Wed 1 Jul 2026 (no CMH ever recorded): the 26 weeks are met; the CMH
    # window (Mon 19 Jan .. Fri 23 Jan) is ended by the order, not red for ever
    eng.record_final_order(england, case, date(2026, 7, 1), "care-order", False,
                           date(2026, 7, 1))
    after = clocks(england, case, date(2026, 7, 2))
    assert after["care-proceedings-26-weeks"].state == "met"
    assert after["case-management-hearing"].state == "ended: final order on 2026-07-01"
    assert after["case-management-hearing"].days_late is None


def test_la_work_late_on_arrival_is_not_escalated_and_escalation_is_once_per_tier(england):
    # placed Fri 2 Jan: the first visit was due Fri 9 Jan, before the case opened (12 Jan)
    case = new_case(england, care_entry=date(2026, 1, 2), placement_start=date(2026, 1, 2))
    plans = eng.planned_timers(england, case)
    visit = [p for p in plans if p.task == "sw-visit-1"]
    assert visit[0].detail["due"] == "2026-01-09"
    assert not [p for p in visit if p.kind == "escalation"]  # LA-late on arrival
    # NIM's own triage (due Mon 19 Jan: 5 working days after 12 Jan) escalates, one timer per
    # tier, keyed by task and tier only: re-dating the task never re-sends a tier
    esc = {p.key for p in plans if p.task == "triage" and p.kind == "escalation"}
    assert esc == {"NIM-2026-0001/triage/escalation-1", "NIM-2026-0001/triage/escalation-2"}
    eng.move_anchor(england, case, "referral", date(2026, 1, 14), "referral date corrected")
    again = {p.key: p for p in eng.planned_timers(england, case)
             if p.task == "triage" and p.kind == "escalation"}
    assert set(again) == esc
    # triage now due Wed 21 Jan; tier 1 one working day later: Thu 22 Jan
    assert again["NIM-2026-0001/triage/escalation-1"].fire_on == date(2026, 1, 22)


def test_la_work_that_falls_late_after_opening_still_escalates_through_the_la(england):
    case = new_case(england)  # placed 5 Jan: visit due Mon 12 Jan, the day the case opened
    esc = [p for p in eng.planned_timers(england, case)
           if p.task == "sw-visit-1" and p.kind == "escalation"]
    assert [p.role for p in esc] == ["la-team-manager", "la-head-of-service"]


def test_clock_messages_call_a_target_a_target(england):
    case = new_case(england)
    eng.move_anchor(england, case, "stage:assessment", date(2026, 2, 2), "test")
    plans = [p for p in eng.planned_timers(england, case) if p.kind == "clock-breach"]
    kinds = {p.detail["clock"]: p.detail["kind"] for p in plans}
    assert kinds["nim-assessment-12-weeks"] == "target"
    assert kinds["care-proceedings-26-weeks"] == "maximum"
    base = {"case_ref": "NIM-2026-0001", "clock_due": date(2026, 4, 27),
            "due_explanation": "12 weeks after stage assessment", "link": "http://x",
            "recipient": "Sam Okafor (nim-service-manager)", "dedupe_key": "NIM-2026-0001/c"}
    target = render_message("clock-breach", {**base, "clock_kind": "target",
                                             "clock_title": "NIM assessment report by week 12"})
    assert target.subject.startswith("[NIM-2026-0001] Target missed:")
    assert "statutory clock" not in target.text.lower()
    assert "not a statutory limit" in target.text
    limit = render_message("clock-breach", {**base, "clock_kind": "maximum",
                                            "clock_title": "Proceedings within 26 weeks"})
    assert limit.subject.startswith("[NIM-2026-0001] Statutory limit passed:")
    warning = render_message("clock-warning", {**base, "clock_kind": "target", "days_to_due": 14,
                                               "clock_title": "NIM assessment report"})
    assert "The service target" in warning.text and "statutory" not in warning.text.lower()
