"""Orders made for each child (issue 27): interim orders (an interim care order keeps or makes
a child looked after), an extension of one child's own application, a court direction in one
child's proceedings, and an adoption order after the placement order. Through the commands
(SQLite and PostgreSQL) where the store must keep the new facts; in the pure engine otherwise.

England and Wales bank holidays in reach (GOV.UK): Good Friday 3 April and Easter Monday 6
April 2026, May Day 4 May, Spring 25 May, Summer 31 August. The family (tests/conftest.py):
care entry Mon 5 Jan 2026, referral Mon 12 Jan, application issued Thu 8 Jan (26 weeks end
Wed 8 Jul: issue + 181 days, the issue day is day 1), foster placement from Mon 5 Jan.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from models import engine as eng
from models.clock import UK
from models.errors import CommandError
from models.forecast import direction_conflicts
from models.pathway import load_pathway
from models.refs import TaskRef
from models.schemas import ChildIn
from tests.conftest import TWINS, open_referral

SPEC = load_pathway("england")
NEWBORN = {"given_name": "Sentinel-Newborn", "family_name": "Sentinel-Family",
           "date_of_birth": "2026-02-20", "looked_after_from": "2026-02-23",
           "proceedings_issued": "2026-02-25"}




def _open_tasks(store, ref) -> dict[str, object]:
    return {t.key: t for t in store.queries.tasks(case=ref)}


def _clocks(store, ref) -> dict[str, object]:
    return {c.id: c for c in store.queries.show(ref).clocks}


# --- 1. interim orders ------------------------------------------------------------------------

def test_an_interim_care_order_makes_a_child_home_again_looked_after_with_weekly_visits(
        store, clock):
    ref = open_referral(store)
    # Mon 16 Feb: the child went home and their accommodation ended (recorded by hand)
    clock.set(datetime(2026, 2, 16, 10, tzinfo=UK))
    store.family.change_placement(ref, "home", date(2026, 2, 16), "returned home", "coord.ali")
    store.court.cease_looked_after(ref, date(2026, 2, 16), "accommodation ended", "coord.ali")
    assert not {"lac-review", "sw-visit", "sw-visit-weekly"} & {
        t.spec_id for t in _open_tasks(store, ref).values()}
    # Mon 2 Mar: the court makes an interim care order; the child stays at home with a parent
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    result = store.court.record_interim_order(ref, date(2026, 3, 2), "interim-care-order",
                                              "Family Court at Leeds", "coord.ali")
    assert [e.kind for e in result.effects][:2] == ["interim-order-recorded",
                                                     "looked-after-again"]
    shown = store.queries.show(ref)
    assert shown.looked_after and [c.looked_after for c in shown.children] == [True]
    assert "ceased_looked_after" not in shown.dates
    assert shown.dates["looked_after_again@child-1"] == date(2026, 3, 2)
    assert [(o.child, o.kind, o.made_on, o.court) for o in shown.court.orders] == [
        ("child-1", "interim-care-order", date(2026, 3, 2), "Family Court at Leeds")]
    assert "interim care order (s38) made for child-1" in [
        r.event for r in store.queries.timeline(ref) if r.date == date(2026, 3, 2)]
    tasks = _open_tasks(store, ref)
    # First review: 20 working days after becoming looked after again on Mon 2 Mar (reg
    # 33(1)): 3-6 Mar = 4, 9-13 Mar = 9, 16-20 Mar = 14, 23-27 Mar = 19, Mon 30 Mar = 20; not
    # the case's care entry (Mon 5 Jan, whose first review fell on Mon 2 Feb).
    review = next(t for t in tasks.values() if t.spec_id == "lac-review")
    assert (review.key, review.due) == ("lac-review-2", date(2026, 3, 30))
    # Placed with a parent under an interim care order (reg 28(4)): visit 1 within a week of
    # the placement as a looked-after child, which starts with the order: Mon 2 Mar + 7 =
    # Mon 9 Mar; then weekly until the first review. No 6-weekly default visit.
    visits = {t.spec_id: t for t in tasks.values() if t.spec_id.startswith("sw-visit")}
    assert list(visits) == ["sw-visit-weekly"]
    assert (visits["sw-visit-weekly"].key, visits["sw-visit-weekly"].due) == (
        "sw-visit-weekly-2", date(2026, 3, 9))
    # completed Mon 9 Mar, the next visit is a week later, Mon 16 Mar
    clock.set(datetime(2026, 3, 9, 10, tzinfo=UK))
    store.tasks.complete_task(TaskRef(ref, "sw-visit-weekly-2"), "la.patel", {})
    assert _open_tasks(store, ref)["sw-visit-weekly-3"].due == date(2026, 3, 16)


def test_an_interim_order_for_a_looked_after_child_keeps_them_so_and_meets_no_clock(
        store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 1, 12, 10, tzinfo=UK))
    before = _open_tasks(store, ref)
    for kind in ("interim-care-order", "interim-supervision-order"):
        result = store.court.record_interim_order(ref, date(2026, 1, 8), kind,
                                                  "Family Court at Leeds", "coord.ali")
        assert [e.kind for e in result.effects] == ["interim-order-recorded"]
    assert _open_tasks(store, ref).keys() == before.keys()
    assert store.queries.show(ref).looked_after
    assert _clocks(store, ref)["care-proceedings-26-weeks"].state == "running"


def test_an_interim_supervision_order_leaves_a_child_who_left_care_not_looked_after(
        store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 2, 16, 10, tzinfo=UK))
    store.court.cease_looked_after(ref, date(2026, 2, 16), "returned home", "coord.ali")
    store.court.record_interim_order(ref, date(2026, 2, 16), "interim-supervision-order",
                                     "Family Court at Leeds", "coord.ali")
    assert not store.queries.show(ref).looked_after
    assert not {t.spec_id for t in _open_tasks(store, ref).values()} & {"lac-review",
                                                                       "sw-visit"}


def test_interim_orders_are_refused_with_how_to_fix(store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 7, 1, 10, tzinfo=UK))
    cases = [
        (dict(kind="care-order"), "unknown interim order kind 'care-order'; use one of "
                                  "interim-care-order, interim-supervision-order"),
        (dict(court="  "), "name the court that made the order"),
        (dict(made=date(2026, 1, 7)), r"between the application's issue \(2026-01-08\) and "
                                      r"today \(2026-07-01\)"),
        (dict(child="child-2"), "has no child 'child-2'"),
    ]
    for over, message in cases:
        args = {"made": date(2026, 2, 2), "kind": "interim-care-order",
                "court": "Family Court at Leeds", "child": None} | over
        with pytest.raises(CommandError, match=message):
            store.court.record_interim_order(ref, args["made"], args["kind"], args["court"],
                                             "coord.ali", args["child"])
    # an interim order given as a final order is pointed to the right command
    with pytest.raises(CommandError, match=r"an interim order: `case interim-order`"):
        store.court.record_final_order(ref, date(2026, 2, 2), "interim-care-order", False,
                                       "coord.ali")
    # after the final order (Wed 1 Jul) no interim order can be made in the application
    store.court.record_final_order(ref, date(2026, 6, 30), "care-order", False, "coord.ali")
    with pytest.raises(CommandError, match=r"and the final order \(2026-06-30\)"):
        store.court.record_interim_order(ref, date(2026, 7, 1), "interim-care-order",
                                         "Family Court at Leeds", "coord.ali")
    assert store.queries.show(ref).court.orders == ()  # nothing was recorded


# --- 2. one child's own timetable and directions ----------------------------------------------

def test_an_extension_of_a_childs_own_application_moves_only_their_clock(store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    store.family.add_child(ref, ChildIn.model_validate(NEWBORN), "coord.ali")
    # child-2's own application, issued Wed 25 Feb: 26 weeks beginning with that day end
    # 25 Feb + 181 days = Tue 25 Aug 2026. The family's: Wed 8 Jul.
    clock.set(datetime(2026, 7, 1, 10, tzinfo=UK))
    store.court.extend_timetable(ref, date(2026, 7, 1), 8, "expert evidence", "coord.ali")
    clocks = _clocks(store, ref)
    # the family's extension (s32(8)): the later of Wed 8 Jul and Wed 1 Jul, + 56 days =
    # Wed 2 Sep 2026 (8 Jul + 23 = 31 Jul, + 31 = 31 Aug, + 2 = 2 Sep); child-2's unmoved
    assert clocks["care-proceedings-26-weeks"].due == date(2026, 9, 2)
    assert clocks["care-proceedings-26-weeks@child-2"].due == date(2026, 8, 25)
    clock.set(datetime(2026, 8, 17, 10, tzinfo=UK))
    result = store.court.extend_timetable(ref, date(2026, 8, 17), 8, "assessment of a parent",
                                          "coord.ali", child="child-2")
    detail = next(e.detail for e in result.effects if e.kind == "timetable-extended")
    assert detail == {"clock": "care-proceedings-26-weeks@child-2", "weeks": 8,
                      "granted_on": "2026-08-17", "from": "2026-08-25", "to": "2026-10-20",
                      "child": "child-2"}
    clocks = _clocks(store, ref)
    # child-2's: the later of Tue 25 Aug and Mon 17 Aug, + 56 days: 25 Aug + 6 = 31 Aug,
    # + 30 = 30 Sep (36), + 20 = Tue 20 Oct (56), a working day
    assert clocks["care-proceedings-26-weeks@child-2"].due == date(2026, 10, 20)
    assert clocks["care-proceedings-26-weeks"].due == date(2026, 9, 2)  # the family's stays
    assert [(e.weeks, e.child) for e in store.queries.show(ref).court.extensions] == [
        (8, None), (8, "child-2")]
    assert "court timetable extended 8 weeks (child-2's own application)" in [
        r.event for r in store.queries.timeline(ref)]
    # child-1 is on the family's application: extend it without --child
    with pytest.raises(CommandError, match="child-1 is on the family's application"):
        store.court.extend_timetable(ref, date(2026, 8, 17), 4, "x", "coord.ali", "child-1")
    # extensions of child-2's application are recorded in the order granted (their own list)
    with pytest.raises(CommandError, match="the last was granted 2026-08-17"):
        store.court.extend_timetable(ref, date(2026, 8, 10), 4, "x", "coord.ali", "child-2")


def _twins_in_assessment() -> eng.CaseState:
    """Two children on one application, one mother; referral Mon 12 Jan 2026, triage Mon
    19 Jan, consent Mon 26 Jan: the assessment stage begins Mon 26 Jan. Each child's
    developmental assessment is due 8 weeks later: 26 Jan + 56 days = Mon 23 Mar (31 Jan is +5,
    28 Feb +33, 23 Mar +56)."""
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction="england-and-wales",
                         anchors={"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 12),
                                  "proceedings_issued": date(2026, 1, 8)},
                         settings=dict(SPEC.settings), caregivers=eng.caregiver_keys(["mother"]),
                         children=["child-1", "child-2"])
    eng.open_case(SPEC, case, date(2026, 1, 12))
    eng.complete_task(SPEC, case, "triage", {"accepted": True}, "mgr", date(2026, 1, 19))
    eng.complete_task(SPEC, case, "consent-mother", {"consent": "given"}, "sw",
                      date(2026, 1, 26))
    assert case.stage == "assessment"
    return case


def test_a_direction_naming_a_child_binds_that_childs_work_only():
    case = _twins_in_assessment()
    mine, theirs = case.tasks["child-assessment-child-2"], case.tasks["child-assessment-child-1"]
    assert mine.due == theirs.due == date(2026, 3, 23)
    # Mon 2 Feb: in child-2's proceedings the court directs their assessment by Fri 13 Mar
    effects = eng.add_direction(SPEC, case, "child-assessment", None, date(2026, 3, 13),
                                date(2026, 2, 2), child="child-2")
    assert effects[0].detail["bound"] == ["child-assessment-child-2"]
    assert effects[0].detail["child"] == "child-2"
    assert (mine.due, mine.pathway_due) == (date(2026, 3, 13), date(2026, 3, 23))
    assert mine.due_explanation.startswith(
        "court direction of 2026-02-02: file child-assessment for child-2 by 2026-03-13")
    assert (theirs.due, theirs.pathway_due) == (date(2026, 3, 23), None)  # child-1's: unbound
    # the pathway re-dates the stage (its start corrected to Mon 2 Feb: + 56 days = Mon
    # 30 Mar): child-1's follows, child-2's stays bound to the court's date
    eng.move_anchor(SPEC, case, "stage:assessment", date(2026, 2, 2), "corrected")
    assert (theirs.due, mine.due, mine.pathway_due) == (
        date(2026, 3, 30), date(2026, 3, 13), date(2026, 3, 30))
    # the forecast's conflict names the child's direction
    conflicts = direction_conflicts(case)
    assert len(conflicts) == 1 and conflicts[0].startswith(
        "court direction of 2026-02-02: file child-assessment for child-2 by 2026-03-13: the "
        "pathway projects child-assessment-child-2 for 2026-03-30, 17 days later")
    # a direction for the family (no child) binds both
    eng.add_direction(SPEC, case, "child-assessment", None, date(2026, 3, 20), date(2026, 2, 3))
    assert (theirs.due, mine.due) == (date(2026, 3, 20), date(2026, 3, 13))
    with pytest.raises(eng.EngineError, match="has no child 'child-3'"):
        eng.add_direction(SPEC, case, "child-assessment", None, date(2026, 3, 20),
                          date(2026, 2, 3), child="child-3")


def test_a_direction_for_a_child_is_kept_by_the_store(store, clock):
    ref = open_referral(store, children=TWINS)
    clock.set(datetime(2026, 1, 12, 10, tzinfo=UK))
    store.court.add_direction(ref, "child-assessment", None, date(2026, 3, 13), "coord.ali",
                              child="child-2")
    # the twins' assessments are made in a later stage: the direction waits with the case
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    for carer in ("mother", "father", "foster-carer"):
        store.tasks.complete_task(TaskRef(ref, f"consent-{carer}"), "sw.jones",
                                  {"consent": "given"})
    tasks = _open_tasks(store, ref)
    # assessment from Mon 12 Jan: + 8 weeks = Mon 9 Mar, earlier than the court's 13 Mar:
    # the pathway's date stands for both children
    assert tasks["child-assessment-child-1"].due == tasks["child-assessment-child-2"].due == \
        date(2026, 3, 9)
    clock.set(datetime(2026, 1, 13, 10, tzinfo=UK))
    store.cases.move_date(ref, "stage:assessment", date(2026, 1, 26), "corrected", "coord.ali")
    tasks = _open_tasks(store, ref)
    # 26 Jan + 56 days = Mon 23 Mar for child-1; child-2's direction binds: Fri 13 Mar
    assert tasks["child-assessment-child-1"].due == date(2026, 3, 23)
    assert tasks["child-assessment-child-2"].due == date(2026, 3, 13)


# --- 3. adoption and placement orders ---------------------------------------------------------

def test_a_placement_order_keeps_a_child_looked_after_and_an_adoption_order_ends_it(
        store, clock):
    ref = open_referral(store, children=TWINS)
    clock.set(datetime(2026, 6, 15, 10, tzinfo=UK))
    # Mon 15 Jun: a placement order for child-2 (ACA 2002 s18(3): looked after), an SGO
    # for child-1: the family's application is disposed of by the later, Mon 15 Jun
    store.court.record_final_order(ref, date(2026, 6, 15), "placement-order", False,
                                   "coord.ali", child="child-2")
    store.court.record_final_order(ref, date(2026, 6, 15), "special-guardianship-order",
                                   False, "coord.ali", child="child-1")
    c26 = _clocks(store, ref)["care-proceedings-26-weeks"]
    assert (c26.state, c26.met_on) == ("met", date(2026, 6, 15))  # due Wed 8 Jul
    assert [c.looked_after for c in store.queries.show(ref).children] == [False, True]
    assert any(t.spec_id == "lac-review" and t.child == "child-2"
               for t in _open_tasks(store, ref).values())
    # the same order cannot be recorded twice; a later one must come after it
    with pytest.raises(CommandError, match="disposed of by a placement order .adoption. on "
                                           "2026-06-15: a later order"):
        store.court.record_final_order(ref, date(2026, 6, 15), "adoption-order", False,
                                       "coord.ali", child="child-2")
    # Mon 14 Dec: the adoption order for child-2 (adoption proceedings, after the care
    # proceedings): no longer looked after; the 26-week clock stays as the order met it
    clock.set(datetime(2026, 12, 14, 10, tzinfo=UK))
    result = store.court.record_final_order(ref, date(2026, 12, 14), "adoption-order", False,
                                            "coord.ali", child="child-2")
    assert [e.kind for e in result.effects][:2] == ["later-order-recorded", "looked-after-ended"]
    shown = store.queries.show(ref)
    assert [c.looked_after for c in shown.children] == [False, False]
    assert shown.dates["ceased_looked_after@child-2"] == date(2026, 12, 14)
    assert shown.court.child_orders["child-2"].kind == "placement-order"
    assert [(o.child, o.kind) for o in shown.court.orders] == [("child-2", "adoption-order")]
    c26 = {c.id: c for c in shown.clocks}["care-proceedings-26-weeks"]
    assert (c26.state, c26.met_on) == ("met", date(2026, 6, 15))
    assert not [t for t in _open_tasks(store, ref).values()
                if t.child == "child-2" and t.spec_id in ("lac-review", "sw-visit")]
    timeline = " ".join(str(r) for r in store.queries.timeline(ref))
    assert "adoption order made on 2026-12-14" in timeline
    with pytest.raises(CommandError, match="it cannot be withdrawn after that"):
        store.court.record_final_order(ref, date(2026, 12, 14), "withdrawn", False,
                                       "coord.ali", child="child-1")


def test_each_nation_declares_the_adoption_order_and_what_it_ends():
    for profile in ("england", "wales", "scotland", "northern-ireland", "fdac-england"):
        spec = load_pathway(profile)
        assert "adoption-order" in spec.court.order_kinds, profile
        assert "adoption-order" in spec.court.ends_looked_after, profile
        assert "placement-order" not in spec.court.ends_looked_after, profile
    for profile in ("england", "wales", "northern-ireland", "fdac-england"):
        assert load_pathway(profile).court.looked_after_under == ["interim-care-order"]


# --- 4. the first child's keys in a sibling group -----------------------------------------------

def _engine_case(children: list[str]) -> eng.CaseState:
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction="england-and-wales",
                         anchors={"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 12),
                                  "proceedings_issued": date(2026, 1, 8)},
                         settings=dict(SPEC.settings), caregivers=eng.caregiver_keys(["mother"]),
                         children=children)
    eng.open_case(SPEC, case, date(2026, 1, 12))
    return case


def test_a_sibling_groups_first_child_has_their_key_on_every_piece_of_their_work():
    case = _engine_case(["child-1", "child-2"])
    mine = sorted(k for k, t in case.tasks.items() if t.child == "child-1")
    assert mine == ["lac-review-child-1-1", "sw-visit-child-1-1"]
    # first review 20 working days after Mon 5 Jan: Mon 2 Feb (6-9 Jan 4, 12-16 9, 19-23 14,
    # 26-30 19, 2 Feb 20); held then, the next is its series' second, keyed the same way
    eng.complete_task(SPEC, case, "lac-review-child-1-1", {}, "iro", date(2026, 2, 2))
    assert "lac-review-child-1-2" in case.tasks and "lac-review-2" not in case.tasks
    eng.complete_task(SPEC, case, "triage", {"accepted": True}, "mgr", date(2026, 2, 2))
    eng.complete_task(SPEC, case, "consent-mother", {"consent": "given"}, "sw",
                      date(2026, 2, 2))
    assert {"child-assessment-child-1", "wmci-mother-child-1", "child-assessment-child-2",
            "wmci-mother-child-2"} <= set(case.tasks)
    # a new placement for child-1 restarts their visits under their key
    eng.change_placement(SPEC, case, date(2026, 2, 9), "child-1", "foster")
    assert case.tasks["sw-visit-child-1-2"].state == eng.OPEN


def test_a_case_whose_first_child_has_plain_keys_keeps_them_when_a_sibling_joins():
    # a one-child case (like every case stored before keys named the first child) keeps the
    # first child's keys as they are: timers, runs, messages and the audit log name them
    case = _engine_case(["child-1"])
    assert "lac-review-1" in case.tasks
    eng.add_child(SPEC, case, date(2026, 3, 2), looked_after_from=date(2026, 2, 23))
    eng.complete_task(SPEC, case, "lac-review-1", {}, "iro", date(2026, 3, 2))
    assert "lac-review-2" in case.tasks and "lac-review-child-1-2" not in case.tasks
    assert "lac-review-child-2-1" in case.tasks
    eng.complete_task(SPEC, case, "triage", {"accepted": True}, "mgr", date(2026, 3, 2))
    eng.complete_task(SPEC, case, "consent-mother", {"consent": "given"}, "sw",
                      date(2026, 3, 2))
    assert {"child-assessment", "child-assessment-child-2"} <= set(case.tasks)
    assert "child-assessment-child-1" not in case.tasks
