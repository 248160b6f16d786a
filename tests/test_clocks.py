"""Statutory clocks in all four UK nations, against dates worked out by hand from the law.

Each table row carries its working. Sources and the counting rules (R1-R7) are in
docs/STATUTORY-CLOCKS.md; the pathway YAML cites act, regulation and paragraph per clock.
Bank holidays 2026: England & Wales 1 Jan, 3 Apr, 6 Apr, 4 May, 25 May, 31 Aug, 25 Dec,
28 Dec; Scotland 1-2 Jan, 3 Apr, 4 May, 25 May, 3 Aug, 30 Nov, 25 Dec, 28 Dec; Northern
Ireland as England and Wales plus 17 Mar and 13 Jul.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import engine as eng
from models.calendar import WorkingCalendar, add_months
from models.forecast import clock_advice, forecast
from models.pathway import load_pathway

PROFILES = ("england", "wales", "scotland", "northern-ireland")


def spec_of(profile: str):
    return load_pathway(profile)


def case_on(profile: str, **anchors: date) -> eng.CaseState:
    spec = spec_of(profile)
    base = {"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 12)}
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction=spec.jurisdictions[0],
                         anchors=base | anchors, settings=dict(spec.settings),
                         caregivers=eng.caregiver_keys(["mother"]))
    return case


def clock(profile: str, clock_id: str, on: date = date(2026, 1, 12), **anchors: date):
    spec = spec_of(profile)
    case = case_on(profile, **anchors)
    return eng.clock_state(spec, case, next(c for c in spec.clocks if c.id == clock_id), on)


def first_due(profile: str, task_id: str, **anchors: date) -> eng.TaskState:
    spec = spec_of(profile)
    case = case_on(profile, **anchors)
    placements = spec.task_by_id[task_id].placements
    if placements:  # a series for some kinds of placement only (kinship, home: issue 27)
        case.placement_kinds[eng.FIRST_CHILD] = placements[0]
    eng.open_case(spec, case, max(case.anchors.values()))
    return next(t for t in case.tasks.values() if t.spec_id == task_id and t.occurrence == 1)


# -- every clock names its law, kind and owner ---------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_clock_and_statutory_task_names_its_law(profile):
    spec = spec_of(profile)
    for c in spec.clocks:
        assert c.source and c.kind in ("maximum", "target", "window") and c.owner
    for t in spec.statutory:
        assert t.source and t.kind == "maximum" and t.while_looked_after


def test_each_nation_has_its_own_law():
    eng_ids = {c.id for c in spec_of("england").clocks}
    assert "la-assessment-45-wd" in eng_ids and "care-proceedings-26-weeks" in eng_ids
    # Wales: s32 and PD12A apply, Working Together (England's guidance) does not
    assert {c.id for c in spec_of("wales").clocks} == {
        "care-proceedings-26-weeks", "case-management-hearing", "nim-assessment-12-weeks"}
    assert "2015/1818" in next(t for t in spec_of("wales").statutory if t.id == "sw-visit").source
    # Northern Ireland: no 26-week limit; the Trust's roles
    ni = spec_of("northern-ireland")
    assert "care-proceedings-26-weeks" not in {c.id for c in ni.clocks}
    assert ni.jurisdictions == ["northern-ireland"] and "trust-social-worker" in ni.roles
    # Scotland: Children's Hearings clocks; PACE is a target owned by the LA, not a court's
    sco = {c.id: c for c in spec_of("scotland").clocks}
    assert {"icso-22-days", "cso-annual-review", "review-before-reporter-referral",
            "review-before-permanence-application"} <= set(sco)
    assert sco["pace-permanence-6-months"].kind == "target"
    assert sco["pace-permanence-6-months"].owner == "local-authority"


def test_a_northern_ireland_referral_opens_on_its_own_pathway():
    from models.schemas import Referral

    referral = Referral(jurisdiction="northern-ireland", site="belfast",
                        child={"given_name": "A", "family_name": "B",
                               "date_of_birth": "2025-06-01"},
                        care_entry="2026-01-05", referral="2026-01-12",
                        caregivers=[{"relationship": "mother"}])
    assert referral.default_pathway() == "northern-ireland"


# -- table tests: each date worked out by hand ---------------------------------------------------


@pytest.mark.parametrize("issued,expected", [
    # s32(1)(a)(ii): "26 weeks beginning with the day ... issued": issue day = day 1, so the
    # last day is issue + 181 days, the weekday before the issue's weekday
    (date(2026, 1, 8), date(2026, 7, 8)),    # Thu -> Wed 8 Jul, a working day
    (date(2026, 1, 12), date(2026, 7, 10)),  # Mon -> Sun 12 Jul: a maximum, pulled back to Fri
    (date(2026, 3, 3), date(2026, 8, 28)),   # Tue -> Mon 31 Aug (bank holiday) -> Fri 28 Aug
])
@pytest.mark.parametrize("profile", ["england", "wales"])
def test_26_weeks_beginning_with_the_issue_day(profile, issued, expected):
    c = clock(profile, "care-proceedings-26-weeks", proceedings_issued=issued)
    assert c.due == expected and c.kind == "maximum" and c.owner == "court"


@pytest.mark.parametrize("issued,earliest,latest", [
    # PD12A: not before day 12, not later than day 18; day 1 = the day of issue.
    # Fri 20 Mar: day 12 = Tue 31 Mar; day 18 = Mon 6 Apr (Easter Monday) -> pulled back past
    # Sun 5, Sat 4 and Good Friday 3 Apr -> Thu 2 Apr
    (date(2026, 3, 20), date(2026, 3, 31), date(2026, 4, 2)),
    # Thu 14 May: day 12 = Mon 25 May (bank holiday) -> the window opens Tue 26 May;
    # day 18 = Sun 31 May -> Fri 29 May
    (date(2026, 5, 14), date(2026, 5, 26), date(2026, 5, 29)),
])
def test_case_management_hearing_window(issued, earliest, latest):
    c = clock("england", "case-management-hearing", on=issued, proceedings_issued=issued)
    assert (c.earliest, c.due, c.state) == (earliest, latest, "upcoming")
    held = clock("england", "case-management-hearing", on=latest, proceedings_issued=issued,
                 cmh_held=earliest)
    assert held.state == "met"
    early = clock("england", "case-management-hearing", on=latest, proceedings_issued=issued,
                  cmh_held=earliest - timedelta(days=1))
    assert early.state == "breached"  # held before day 12
    missed = clock("england", "case-management-hearing", on=latest + timedelta(days=3),
                   proceedings_issued=issued)
    assert missed.state == "breached-open" and missed.days_late == 3


def test_45_working_days_are_the_las_and_informational():
    # referral to the LA Mon 2 Mar 2026: 21 working days in March (3-31), 20 in April (3 and
    # 6 Apr are holidays), Fri 1 May = 42, Mon 4 May a holiday, 5, 6, 7 May = 45 -> Thu 7 May
    c = clock("england", "la-assessment-45-wd", on=date(2026, 6, 1), la_referral=date(2026, 3, 2))
    assert c.due == date(2026, 5, 7) and c.owner == "local-authority"
    assert c.state == "elapsed"  # never "breached" by NIM's work: nothing NIM does meets it
    assert clock("england", "la-assessment-45-wd").state == "not-started"  # no LA date given


@pytest.mark.parametrize("profile,task,anchors,expected", [
    # England reg 33: first review within 20 working days of becoming looked after. Looked
    # after Thu 2 Apr: 3 and 6 Apr holidays; 7-10 Apr = 4, 13-17 = 9, 20-24 = 14, 27-30 = 18,
    # Fri 1 May = 19, Mon 4 May holiday, Tue 5 May = 20
    ("england", "lac-review", {"care_entry": date(2026, 4, 2)}, date(2026, 5, 5)),
    # England reg 28(2)(a): within one week of the placement: Fri 18 Dec + 7 = Fri 25 Dec
    # (Christmas) -> the working day before, Thu 24 Dec
    ("england", "sw-visit", {"care_entry": date(2026, 12, 18)}, date(2026, 12, 24)),
    # Wales reg 31(2)(a): placement Mon 18 May + 7 = Mon 25 May (holiday) -> Fri 22 May
    ("wales", "sw-visit", {"care_entry": date(2026, 5, 18)}, date(2026, 5, 22)),
    # Scotland reg 45(1)(a): within 6 weeks of the placement: Mon 22 Jun + 42 days = Mon 3 Aug,
    # the Scottish summer holiday -> Fri 31 Jul (in England 3 Aug would stand)
    ("scotland", "lac-review", {"care_entry": date(2026, 6, 22)}, date(2026, 7, 31)),
    # Scotland reg 46(2)(a): Mon 21 Dec + 7 = Mon 28 Dec (holiday); Sun, Sat, Fri 25 Dec
    # (Christmas) -> Thu 24 Dec
    ("scotland", "sw-visit", {"care_entry": date(2026, 12, 21)}, date(2026, 12, 24)),
    # Northern Ireland (default 2 weeks, SR 1996/461 reg 3 not retrieved): Tue 3 Mar + 14 =
    # Tue 17 Mar, St Patrick's Day -> Mon 16 Mar
    ("northern-ireland", "lac-review", {"care_entry": date(2026, 3, 3)}, date(2026, 3, 16)),
    # NI visit within a week (default): Mon 6 Jul + 7 = Mon 13 Jul (the Twelfth, observed)
    # -> Fri 10 Jul; the same placement in England is visited by Mon 13 Jul
    ("northern-ireland", "sw-visit", {"care_entry": date(2026, 7, 6)}, date(2026, 7, 10)),
    ("england", "sw-visit", {"care_entry": date(2026, 7, 6)}, date(2026, 7, 13)),
])
def test_statutory_work_against_hand_worked_dates(profile, task, anchors, expected):
    assert first_due(profile, task, referral=max(anchors.values()) + timedelta(days=20),
                     **anchors).due == expected


def test_later_reviews_and_visits_run_from_the_previous_one_as_held():
    spec = spec_of("wales")
    case = case_on("wales", care_entry=date(2026, 4, 20), referral=date(2026, 5, 1))
    eng.open_case(spec, case, date(2026, 5, 1))
    review = next(t for t in case.tasks.values() if t.spec_id == "lac-review")
    eng.complete_task(spec, case, review.key, {}, "iro", date(2026, 5, 29))
    # held Fri 29 May; within 3 months: Sat 29 Aug -> pulled back to Fri 28 Aug
    assert case.tasks["lac-review-2"].due == date(2026, 8, 28)
    visit = next(t for t in case.tasks.values() if t.spec_id == "sw-visit")
    eng.complete_task(spec, case, visit.key, {}, "sw", date(2026, 5, 21))
    # visited Thu 21 May; at most 6 weeks: Thu 2 Jul, a working day
    assert case.tasks["sw-visit-2"].due == date(2026, 7, 2)


@pytest.mark.parametrize("clock_id,anchor,made,expected", [
    # ICSO: "22 days beginning on the day on which the order is made": made Fri 13 Mar, day 22
    # = 13 Mar + 21 = Fri 3 Apr (Good Friday, a Scottish holiday) -> Thu 2 Apr
    ("icso-22-days", "icso_made", date(2026, 3, 13), date(2026, 4, 2)),
    # made Mon 9 Nov: day 22 = Mon 30 Nov, St Andrew's Day -> Fri 27 Nov
    ("icso-22-days", "icso_made", date(2026, 11, 9), date(2026, 11, 27)),
    # CSO ceases "the day one year after the day on which the order is made": made Fri 13 Mar
    # 2026, in force to Fri 12 Mar 2027, a working day: the review must sit by then
    ("cso-annual-review", "cso_made", date(2026, 3, 13), date(2027, 3, 12)),
])
def test_childrens_hearing_clocks(clock_id, anchor, made, expected):
    c = clock("scotland", clock_id, on=made, **{anchor: made})
    assert c.due == expected and c.owner == "childrens-hearing" and c.kind == "maximum"


def test_reg_45_4_review_before_a_permanence_application():
    # the LA plans to apply on Mon 7 Sep 2026: the review must be held before, by Fri 4 Sep
    planned = {"permanence_application_planned": date(2026, 9, 7)}
    c = clock("scotland", "review-before-permanence-application", on=date(2026, 9, 1), **planned)
    assert (c.due, c.state) == (date(2026, 9, 4), "running")
    held = clock("scotland", "review-before-permanence-application", on=date(2026, 9, 8),
                 reg45_4_review_held=date(2026, 9, 2), **planned)
    assert held.state == "met"


def test_pace_aim_is_a_target_that_rolls_forward():
    # accommodated Mon 2 Feb + 6 months = Sun 2 Aug; a target rolls forward, and Mon 3 Aug is
    # the Scottish summer holiday -> Tue 4 Aug
    c = clock("scotland", "pace-permanence-6-months", care_entry=date(2026, 2, 2),
              referral=date(2026, 2, 9))
    assert c.due == date(2026, 8, 4) and c.kind == "target"


# -- the court timetable as data ----------------------------------------------------------------


def test_extensions_one_at_a_time_and_the_final_order():
    spec = spec_of("england")
    case = case_on("england", proceedings_issued=date(2026, 1, 8))
    eng.open_case(spec, case, date(2026, 1, 12))
    c26 = next(c for c in spec.clocks if c.id == "care-proceedings-26-weeks")
    # day 182 = Wed 8 Jul; extension granted Wed 1 Jul for 8 weeks: the later of 8 Jul and
    # 1 Jul, + 56 days = Wed 2 Sep (s32(8))
    eng.extend_timetable(spec, case, date(2026, 7, 1), 8, "expert evidence", date(2026, 7, 1))
    assert eng.clock_state(spec, case, c26, date(2026, 7, 1)).due == date(2026, 9, 2)
    # granted after the period ran out (Mon 7 Sep, 5 weeks): from the grant day, 7 Sep + 35 =
    # Mon 12 Oct
    eng.extend_timetable(spec, case, date(2026, 9, 7), 5, "hearing relisted", date(2026, 9, 7))
    assert eng.clock_state(spec, case, c26, date(2026, 9, 7)).due == date(2026, 10, 12)
    with pytest.raises(eng.EngineError, match="reason"):
        eng.extend_timetable(spec, case, date(2026, 9, 7), 4, " ", date(2026, 9, 7))
    with pytest.raises(eng.EngineError, match="unknown order kind"):
        eng.record_final_order(spec, case, date(2026, 10, 1), "banishment", True, date(2026, 10, 1))
    eng.record_final_order(spec, case, date(2026, 10, 16), "placement-order", False,
                           date(2026, 10, 16))
    late = eng.clock_state(spec, case, c26, date(2026, 10, 20))
    assert (late.state, late.met_on, late.days_late) == ("breached", date(2026, 10, 16), 4)


def test_a_direction_to_file_creates_a_task_for_the_named_role():
    spec = spec_of("england")
    case = case_on("england", proceedings_issued=date(2026, 1, 8))
    eng.open_case(spec, case, date(2026, 1, 12))
    # a document no pathway task produces (the LA's care plan; issue 27 part 5: the final
    # report is bound instead, tests/test_directions.py)
    effects = eng.add_direction(spec, case, "care-plan", "la-social-worker", date(2026, 6, 1),
                                date(2026, 2, 2))
    task = case.tasks[effects[0].task]
    assert (task.role, task.due, task.stage) == ("la-social-worker", date(2026, 6, 1), "court")
    assert task.title == "File Final care plan (court direction)"
    eng.move_anchor(spec, case, "referral", date(2026, 1, 13), "corrected")
    assert task.due == date(2026, 6, 1)  # the court's date does not move with other dates
    with pytest.raises(eng.EngineError, match="unknown role"):
        eng.add_direction(spec, case, "statement", "wizard", date(2026, 6, 1), date(2026, 2, 2))


def test_visits_restart_at_each_placement_and_stop_when_no_longer_looked_after():
    spec = spec_of("england")
    case = case_on("england")
    eng.open_case(spec, case, date(2026, 1, 12))
    first = next(t for t in case.tasks.values() if t.spec_id == "sw-visit")
    assert first.due == date(2026, 1, 12)  # care entry Mon 5 Jan + 1 week
    # a move on Wed 4 Feb: the open visit is replaced by one within a week of the new
    # placement: Wed 11 Feb
    eng.change_placement(spec, case, date(2026, 2, 4))
    assert first.state == eng.CANCELLED
    visit = next(t for t in case.tasks.values() if t.spec_id == "sw-visit" and t.state == eng.OPEN)
    assert visit.due == date(2026, 2, 11) and visit.anchor == "placement_start"
    eng.complete_task(spec, case, visit.key, {}, "sw", date(2026, 2, 10))
    # then every 6 weeks from the visit: Tue 10 Feb + 42 = Tue 24 Mar
    nxt = next(t for t in case.tasks.values() if t.spec_id == "sw-visit" and t.state == eng.OPEN)
    assert nxt.due == date(2026, 3, 24)
    eng.cease_looked_after(spec, case, date(2026, 3, 1), "returned home, order discharged")
    assert not [t for t in case.tasks.values()
                if t.stage == "statutory" and t.state in (eng.OPEN, eng.BLOCKED)]
    eng.change_placement(spec, case, date(2026, 3, 2))  # no new visits once not looked after
    assert not [t for t in case.tasks.values()
                if t.stage == "statutory" and t.state in (eng.OPEN, eng.BLOCKED)]


# -- properties: maxima never after the legal limit, targets never before ------------------------

DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31))


@settings(max_examples=60, deadline=None)
@given(day=DAYS, profile=st.sampled_from(PROFILES))
def test_statutory_maxima_never_fall_after_the_legal_limit(day, profile):
    spec = spec_of(profile)
    cal = WorkingCalendar(spec.jurisdictions[0])
    for task in spec.statutory:
        due = first_due(profile, task.id, care_entry=day, referral=day + timedelta(days=30)).due
        rule = task.due
        n = rule.amount(spec.settings)
        legal = {"weeks": day + timedelta(weeks=n), "days": day + timedelta(days=n),
                 "months": add_months(day, n)}.get(rule.unit)
        assert cal.is_working_day(due)
        if legal is not None:
            assert legal - timedelta(days=6) <= due <= legal
        else:  # working days: always a working day already, counted exactly
            assert due == cal.add_working_days(day, n)[0]


@settings(max_examples=60, deadline=None)
@given(issued=DAYS, profile=st.sampled_from(["england", "wales"]))
def test_26_weeks_and_the_cmh_window_never_exceed_the_law(issued, profile):
    cal = WorkingCalendar("england-and-wales")
    c = clock(profile, "care-proceedings-26-weeks", proceedings_issued=issued)
    legal = issued + timedelta(days=181)
    assert cal.is_working_day(c.due) and legal - timedelta(days=6) <= c.due <= legal
    w = clock(profile, "case-management-hearing", proceedings_issued=issued)
    assert issued + timedelta(days=11) <= w.earliest <= w.due <= issued + timedelta(days=17)
    assert cal.is_working_day(w.earliest) and cal.is_working_day(w.due)


@settings(max_examples=60, deadline=None)
@given(day=DAYS)
def test_targets_never_fall_before_their_limit(day):
    cal = WorkingCalendar("scotland")
    c = clock("scotland", "pace-permanence-6-months", care_entry=day,
              referral=day + timedelta(days=7))
    assert add_months(day, 6) <= c.due <= add_months(day, 6) + timedelta(days=6)
    assert cal.is_working_day(c.due)


# -- the forecast's advice follows the clock's kind ----------------------------------------------


def test_forecast_advice_matches_the_kind_of_clock():
    england = spec_of("england")
    case = case_on("england", proceedings_issued=date(2026, 1, 8))
    eng.open_case(england, case, date(2026, 1, 12))
    advice = forecast(england, case, date(2026, 1, 12)).conflicts
    court = [a for a in advice if a.startswith("Proceedings disposed of")]
    assert court and "ask for an extension" in court[0] and "override" not in court[0]
    scotland = spec_of("scotland")
    case = case_on("scotland")
    eng.open_case(scotland, case, date(2026, 1, 12))
    pace = [a for a in forecast(scotland, case, date(2026, 1, 12)).conflicts if "PACE" in a]
    assert pace and "no court action is needed" in pace[0]
    assert "local-authority's target" in pace[0]
    nim = next(c for c in scotland.clocks if c.id == "nim-assessment-12-weeks")
    assert clock_advice(scotland, case, nim, date(2026, 1, 12)) is None  # on plan


def test_a_breach_is_blamed_on_its_own_clock_s_cause():
    from reports.oversight import clock_cause

    spec = spec_of("england")
    case = case_on("england", proceedings_issued=date(2026, 1, 8))
    eng.open_case(spec, case, date(2026, 1, 12))
    nim12 = next(c for c in spec.clocks if c.id == "nim-assessment-12-weeks")
    c26 = next(c for c in spec.clocks if c.id == "care-proceedings-26-weeks")
    case.tasks["report"] = eng.TaskState("report", "assessment-report", "formulation", "r",
                                         "clinical-lead", date(2026, 5, 1), "", "x")
    causes = {(7, "report"): "capacity"}
    assert clock_cause(nim12, case, 7, causes) == "capacity"  # the delay recorded on its task
    assert clock_cause(c26, case, 7, causes) == "not recorded"  # not every clock's cause
    eng.extend_timetable(spec, case, date(2026, 7, 1), 8, "expert", date(2026, 7, 1))
    assert clock_cause(c26, case, 7, causes) == "court: 1 extension(s) granted"


def test_the_mid_way_review_falls_half_way_through_the_configured_treatment():
    spec = spec_of("england")  # treatment_months 5
    case = case_on("england")
    case.anchors["stage:treatment"] = date(2026, 5, 5)
    midway = next(t for t in spec.stages[4].tasks if t.id == "midway-review")
    due, why = eng._apply_step(case, midway, 1)
    # treatment starts Tue 5 May; + 5 months = Mon 5 Oct 2026, 153 days; half, rounded down,
    # = 76 days -> Mon 20 Jul 2026, a working day
    assert due == date(2026, 7, 20) and "0.5 of 5 calendar months" in why
    case.settings["treatment_months"] = 9  # Scotland's default: half of 9 months
    # 5 May + 9 months = Fri 5 Feb 2027, 276 days; half = 138 days -> Sun 20 Sep 2026; a
    # target for a piece of work rolls forward to Mon 21 Sep
    assert eng._apply_step(case, midway, 1)[0] == date(2026, 9, 21)
