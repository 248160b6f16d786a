"""Each child's own legal timeline (issue 27, items 1-2): a child who joins the family later
gets dates from their own events (the day they became looked after, their own application),
never the family's; an order for one child ends that child's looked-after status, reviews,
visits and NIM work, and nobody else's; a child who returns home under an interim care order
is still looked after. Through the commands, on SQLite and PostgreSQL.

England and Wales bank holidays in reach (GOV.UK): Good Friday 3 April and Easter Monday 6
April 2026, May Day 4 May, Spring 25 May, Summer 31 August. The family: care entry Mon
5 Jan 2026, referral Mon 12 Jan, application issued Thu 8 Jan (its 26 weeks end Wed 8 Jul:
issue + 181 days, day 1 the issue day).
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from models.clock import UK
from models.schemas import ChildIn, Referral
from tests.conftest import TWINS, open_referral, referral_data

NEWBORN = {"given_name": "Sentinel-Newborn", "family_name": "Sentinel-Family",
           "date_of_birth": "2026-02-20"}




def _open_tasks(store, ref, child=None) -> dict[str, object]:
    return {t.key: t for t in store.queries.tasks(case=ref)
            if child is None or t.child == child}


def _clocks(store, ref) -> dict[str, object]:
    return {c.id: c for c in store.queries.show(ref).clocks}


def test_a_newborn_added_later_gets_their_own_dates_not_the_familys(store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))  # Mon 2 March
    child = ChildIn.model_validate({**NEWBORN, "looked_after_from": "2026-02-23",
                                    "proceedings_issued": "2026-02-25"})
    store.family.add_child(ref, child, "coord.ali")
    mine = _open_tasks(store, ref, "child-2")
    # First review: 20 working days after becoming looked after on Mon 23 Feb (reg 33(1)):
    # Tue 24 - Fri 27 Feb = 4, 2-6 Mar = 9, 9-13 Mar = 14, 16-20 Mar = 19, Mon 23 Mar = 20.
    # (With the family's care entry it was Mon 2 Feb: overdue the day the child was added.)
    assert mine["lac-review-child-2-1"].due == date(2026, 3, 23)
    # First visit: within one week of the placement's start (reg 28(2)(a)); the placement
    # began the day they became looked after, Mon 23 Feb -> Mon 2 Mar: due today, not late.
    assert mine["sw-visit-child-2-1"].due == date(2026, 3, 2)
    assert all(t.due >= date(2026, 3, 2) for t in mine.values()), mine
    clocks = _clocks(store, ref)
    # Their own application, issued Wed 25 Feb: 26 weeks beginning with that day end
    # 25 Feb + 181 days = Tue 25 Aug (Feb 28 +3, Mar 31, Apr 30, May 31, Jun 30, Jul 31, Aug 25).
    own = clocks["care-proceedings-26-weeks@child-2"]
    assert (own.due, own.state, own.child) == (date(2026, 8, 25), "running", "child-2")
    # Their own CMH window, days 12-18 beginning with Wed 25 Feb: day 12 is Sun 8 Mar (the
    # earliest rolls forward to Mon 9 Mar), day 18 Sat 14 Mar (a limit: back to Fri 13 Mar).
    cmh = clocks["case-management-hearing@child-2"]
    assert (cmh.earliest, cmh.due) == (date(2026, 3, 9), date(2026, 3, 13))
    # the family's own clock is unchanged: issued Thu 8 Jan -> Wed 8 Jul
    assert clocks["care-proceedings-26-weeks"].due == date(2026, 7, 8)


def test_a_child_added_without_dates_is_looked_after_from_the_day_added(store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    store.family.add_child(ref, ChildIn.model_validate(NEWBORN), "coord.ali")
    # 20 working days after Mon 2 Mar: 3-6 Mar = 4, 9-13 = 9, 16-20 = 14, 23-27 = 19, Mon 30 Mar
    assert _open_tasks(store, ref, "child-2")["lac-review-child-2-1"].due == date(2026, 3, 30)
    # no application of their own: they are on the family's, and have no clock of their own
    assert "care-proceedings-26-weeks@child-2" not in _clocks(store, ref)


def test_a_sibling_groups_later_child_in_the_referral_has_their_own_dates(store):
    later = {**TWINS[1], "date_of_birth": "2025-12-28", "looked_after_from": "2026-01-09",
             "placement": {"kind": "foster", "start": "2026-01-09"}}
    ref = open_referral(store, children=[TWINS[0], later])
    # child-1 from the family's care entry Mon 5 Jan: 20 wd -> Mon 2 Feb (6-9 Jan 4, 12-16 9,
    # 19-23 14, 26-30 19, 2 Feb 20); child-2 from Fri 9 Jan: 12-16 5, 19-23 10, 26-30 15,
    # 2-6 Feb 20 -> Fri 6 Feb
    tasks = _open_tasks(store, ref)
    assert tasks["lac-review-child-1-1"].due == date(2026, 2, 2)
    assert tasks["lac-review-child-2-1"].due == date(2026, 2, 6)
    # the family's placement cannot have begun before the child was looked after
    with pytest.raises(ValidationError, match="placement start 2026-01-05 is before care entry "
                                              "2026-01-09"):
        Referral.model_validate({**referral_data(children=[TWINS[0], {
            **later, "placement": None}]), "child": None})


def test_the_first_childs_dates_are_the_referrals_and_a_childs_own_dates_follow_birth():
    with pytest.raises(ValidationError, match="first child's dates are the referral's own"):
        Referral.model_validate({**referral_data(), "child": {
            **referral_data()["child"], "looked_after_from": "2026-01-06"}})
    with pytest.raises(ValidationError, match="before the child's date of birth"):
        ChildIn.model_validate({**NEWBORN, "looked_after_from": "2026-02-19"})
    with pytest.raises(ValidationError, match="before the child was looked after"):
        ChildIn.model_validate({**NEWBORN, "looked_after_from": "2026-02-23",
                                "placement": {"kind": "foster", "start": "2026-02-21"}})


def test_a_special_guardianship_order_for_one_child_ends_only_their_looked_after_work(
        store, clock):
    ref = open_referral(store, children=TWINS)
    clock.set(datetime(2026, 6, 15, 10, tzinfo=UK))
    store.court.record_final_order(ref, date(2026, 6, 12), "special-guardianship-order",
                                   False, "coord.ali", child="child-2")
    shown = store.queries.show(ref)
    looked_after = {c.key: c.looked_after for c in shown.children}
    assert looked_after == {"child-1": True, "child-2": False}
    assert shown.looked_after  # the family still has a looked-after child
    assert shown.dates["ceased_looked_after@child-2"] == date(2026, 6, 12)
    # child-2's reviews, visits and NIM's work for them alone stop, naming the order ...
    assert not _open_tasks(store, ref, "child-2")
    cancelled = [t for t in store.queries.tasks(case=ref, state="cancelled")
                 if t.child == "child-2"]
    assert cancelled
    timeline = " ".join(str(r) for r in store.queries.timeline(ref))
    assert "special guardianship order made on 2026-06-12" in timeline
    # ... child-1's go on (their reviews and visits are still open and due)
    assert {t.spec_id for t in _open_tasks(store, ref, None).values()} >= {"lac-review",
                                                                          "sw-visit"}
    # the family's application is not disposed of until child-1 has an order too
    assert _clocks(store, ref)["care-proceedings-26-weeks"].state == "running"
    store.court.record_final_order(ref, date(2026, 6, 15), "care-order", False, "coord.ali",
                                   child="child-1")
    c26 = _clocks(store, ref)["care-proceedings-26-weeks"]
    assert (c26.state, c26.met_on) == ("met", date(2026, 6, 15))  # due Wed 8 Jul
    # a care order keeps child-1 looked after: their reviews go on
    assert [c.looked_after for c in store.queries.show(ref).children] == [True, False]
    assert any(t.spec_id == "lac-review" for t in _open_tasks(store, ref).values())


def test_an_order_on_a_childs_own_application_meets_their_clock_not_the_familys(store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    store.family.add_child(ref, ChildIn.model_validate(
        {**NEWBORN, "looked_after_from": "2026-02-23", "proceedings_issued": "2026-02-25"}),
        "coord.ali")
    clock.set(datetime(2026, 7, 1, 10, tzinfo=UK))
    store.court.record_final_order(ref, date(2026, 7, 1), "care-order", False, "coord.ali")
    clocks = _clocks(store, ref)
    # the order without --child disposes of the family's application (child-1): met 1 Jul
    assert clocks["care-proceedings-26-weeks"].state == "met"
    assert clocks["care-proceedings-26-weeks@child-2"].state == "running"
    with pytest.raises(Exception, match=r"between issue \(2026-02-25\)"):
        store.court.record_final_order(ref, date(2026, 2, 24), "care-order", False,
                                       "coord.ali", child="child-2")
    store.court.record_final_order(ref, date(2026, 7, 1), "child-arrangements-order", False,
                                   "coord.ali", child="child-2")
    clocks = _clocks(store, ref)
    assert (clocks["care-proceedings-26-weeks@child-2"].state,
            clocks["care-proceedings-26-weeks@child-2"].met_on) == ("met", date(2026, 7, 1))
    # its CMH window had closed unheld before the order: ended by the order, not red
    assert clocks["case-management-hearing@child-2"].state.startswith("ended")
    assert [c.looked_after for c in store.queries.show(ref).children] == [True, False]


def test_a_child_who_returns_home_under_an_interim_care_order_is_still_looked_after(
        store, clock):
    ref = open_referral(store)
    clock.set(datetime(2026, 2, 16, 10, tzinfo=UK))
    store.cases.exit_case(ref, "child-returned-home", "", "coord.ali")
    # NIM's work ends; the LA's reviews and visits go on while the interim care order stands
    open_specs = {t.spec_id for t in _open_tasks(store, ref).values()}
    assert {"lac-review", "sw-visit"} <= open_specs
    assert store.queries.show(ref).looked_after
    # when the order is discharged the coordinator records it, and they stop
    clock.set(datetime(2026, 2, 20, 10, tzinfo=UK))
    store.court.cease_looked_after(ref, date(2026, 2, 20), "care order discharged",
                                   "coord.ali")
    assert not {"lac-review", "sw-visit"} & {t.spec_id
                                             for t in _open_tasks(store, ref).values()}


def test_a_childs_own_hearing_dates_are_recorded_against_their_application(store, clock):
    from models.errors import Invalid

    ref = open_referral(store)
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    store.family.add_child(ref, ChildIn.model_validate(
        {**NEWBORN, "looked_after_from": "2026-02-23", "proceedings_issued": "2026-02-25"}),
        "coord.ali")
    clock.set(datetime(2026, 3, 11, 10, tzinfo=UK))
    store.cases.move_date(ref, "cmh_held@child-2", date(2026, 3, 11), "CMH held", "coord.ali")
    clocks = _clocks(store, ref)
    # held Wed 11 Mar, inside child-2's window (Mon 9 - Fri 13 Mar): met; the family's CMH
    # (issued Thu 8 Jan: day 12 Mon 19 Jan to day 18 Sun 25 Jan -> Fri 23 Jan) is not met by it
    assert clocks["case-management-hearing@child-2"].state == "met"
    assert clocks["case-management-hearing"].met_on is None
    with pytest.raises(Invalid, match="unknown date 'cmh_held@child-1'"):
        store.cases.move_date(ref, "cmh_held@child-1", date(2026, 3, 11), "CMH", "coord.ali")
