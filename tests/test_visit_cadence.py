"""Social worker visit cadences per placement kind, in each nation (issue 27, part 3).

Every date below was worked out by hand; the working is beside it. Sources are cited in the
pathway YAML and docs/STATUTORY-CLOCKS.md (EN-5, EN-5a, WA-2, SC-2, NI-2). Bank holidays 2026:
England & Wales 1 Jan, 3 Apr (Good Friday), 6 Apr (Easter Monday), 4 May, 25 May, 31 Aug,
25 Dec, 28 Dec; Scotland has 2 Jan and 3 Aug but not 6 Apr. A visit is a legal maximum: a
limit on a non-working day is pulled back to the working day before (R5); later intervals run
from the actual previous visit (R7).
"""

from __future__ import annotations

from datetime import date

from models import engine as eng
from models.pathway import load_pathway
from models.simulate import sample_outcome

CARE_ENTRY = date(2026, 1, 5)  # Mon 5 Jan 2026


def open_case(profile: str, kind: str | None, placement: date = CARE_ENTRY):
    spec = load_pathway(profile)
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction=spec.jurisdictions[0],
                         anchors={"care_entry": CARE_ENTRY, "referral": date(2026, 1, 12),
                                  "placement_start": placement},
                         settings=dict(spec.settings),
                         caregivers=eng.caregiver_keys(["mother", "kinship-carer"]))
    if kind:
        case.placement_kinds["child-1"] = kind
    eng.open_case(spec, case, date(2026, 1, 12))
    return spec, case


def visits(case: eng.CaseState) -> dict[str, eng.TaskState]:
    return {t.key: t for t in case.tasks.values() if t.spec_id.startswith("sw-visit")}


def open_visit(case: eng.CaseState) -> eng.TaskState:
    (task,) = [t for t in visits(case).values() if t.state == eng.OPEN]
    return task


def done(spec, case, key: str, on: date) -> None:
    data = sample_outcome(spec, case.tasks[key].spec_id, {})
    eng.complete_task(spec, case, key, data, "tester", on)


def test_england_connected_person_weekly_until_first_review_then_four_weekly():
    # SI 2010/959 reg 28(4): kinship placement (a reg 24 connected person) from Mon 5 Jan 2026
    spec, case = open_case("england", "kinship")
    v = open_visit(case)
    # reg 28(2)(a): within one week of the placement: 5 Jan + 7 = Mon 12 Jan
    assert (v.key, v.due) == ("sw-visit-weekly-1", date(2026, 1, 12))
    assert not any(t.spec_id == "sw-visit" for t in case.tasks.values())  # not the 6-weekly
    # the first review (reg 33(1)): 20 working days after Mon 5 Jan: 6-9 Jan (4), 12-16 (9),
    # 19-23 (14), 26-30 (19), Mon 2 Feb (20)
    review = next(t for t in case.tasks.values() if t.spec_id == "lac-review")
    assert review.due == date(2026, 2, 2)
    done(spec, case, "sw-visit-weekly-1", date(2026, 1, 12))
    assert open_visit(case).due == date(2026, 1, 19)  # weekly: 12 Jan + 7
    done(spec, case, "sw-visit-weekly-2", date(2026, 1, 16))  # visited early, on Fri 16 Jan
    assert open_visit(case).due == date(2026, 1, 23)  # from the actual visit: 16 Jan + 7 (R7)
    done(spec, case, "sw-visit-weekly-3", date(2026, 1, 23))
    assert open_visit(case).due == date(2026, 1, 30)
    done(spec, case, "sw-visit-weekly-4", date(2026, 1, 29))
    assert open_visit(case).due == date(2026, 2, 5)  # Thu 29 Jan + 7, before the review
    # the first review is held Mon 2 Feb: "thereafter at intervals of not more than four
    # weeks": visit 5 moves to the last visit (Thu 29 Jan) + 28 days = Thu 26 Feb
    done(spec, case, review.key, date(2026, 2, 2))
    assert (open_visit(case).key, open_visit(case).due) == ("sw-visit-weekly-5",
                                                            date(2026, 2, 26))
    done(spec, case, "sw-visit-weekly-5", date(2026, 2, 26))
    assert open_visit(case).due == date(2026, 3, 26)  # 26 Feb + 28 days
    done(spec, case, "sw-visit-weekly-6", date(2026, 3, 9))  # Mon 9 Mar
    # 9 Mar + 28 = Mon 6 Apr, Easter Monday; Fri 3 Apr is Good Friday: pulled back to Thu 2 Apr
    assert open_visit(case).due == date(2026, 4, 2)


def test_england_foster_placement_keeps_the_six_weekly_default():
    # reg 28(2): foster placement Mon 5 Jan: visit 1 by Mon 12 Jan, then at most 6 weeks
    spec, case = open_case("england", "foster")
    assert (open_visit(case).key, open_visit(case).due) == ("sw-visit-1", date(2026, 1, 12))
    done(spec, case, "sw-visit-1", date(2026, 1, 12))
    assert open_visit(case).due == date(2026, 2, 23)  # 12 Jan + 42 days = Mon 23 Feb
    # a placement whose kind is not recorded gets the default too
    _, unknown = open_case("england", None)
    assert open_visit(unknown).key == "sw-visit-1"


def test_england_move_to_kinship_restarts_weekly_until_the_next_review():
    spec, case = open_case("england", "foster")
    review = next(t for t in case.tasks.values() if t.spec_id == "lac-review")
    done(spec, case, review.key, date(2026, 2, 2))  # first review Mon 2 Feb
    # the child moves to a connected person on Wed 4 Mar: the 6-weekly series stops
    eng.change_placement(spec, case, date(2026, 3, 4), kind="kinship")
    assert not [t for t in visits(case).values()
                if t.spec_id == "sw-visit" and t.state == eng.OPEN]
    v = open_visit(case)
    assert (v.key, v.due) == ("sw-visit-weekly-1", date(2026, 3, 11))  # 4 Mar + 7
    done(spec, case, v.key, date(2026, 3, 11))
    # the child's first review (2 Feb) came before this placement: the profile takes the
    # stricter reading, weekly until the next review: 11 Mar + 7 = Wed 18 Mar
    assert open_visit(case).due == date(2026, 3, 18)
    # review 2 is held Mon 16 Mar: then 4-weekly from the last visit: 11 Mar + 28 = Wed 8 Apr
    review2 = next(t for t in case.tasks.values() if t.spec_id == "lac-review"
                   and t.state == eng.OPEN)
    done(spec, case, review2.key, date(2026, 3, 16))
    assert open_visit(case).due == date(2026, 4, 8)
    # and back to a foster placement Mon 13 Apr: the default again, 13 Apr + 7 = Mon 20 Apr
    eng.change_placement(spec, case, date(2026, 4, 13), kind="foster")
    assert (open_visit(case).spec_id, open_visit(case).due) == ("sw-visit", date(2026, 4, 20))


def test_england_home_under_an_ico_is_weekly_until_the_final_care_order_then_six_weekly():
    # reg 28(4) covers a child "placed with a parent ... under an interim care order": with
    # their mother from Mon 5 Jan 2026, proceedings issued that day
    spec, case = open_case("england", "home")
    case.anchors["proceedings_issued"] = CARE_ENTRY
    v = open_visit(case)
    assert (v.key, v.due) == ("sw-visit-weekly-1", date(2026, 1, 12))  # 5 Jan + 7
    done(spec, case, v.key, date(2026, 1, 12))
    done(spec, case, "sw-visit-weekly-2", date(2026, 1, 16))  # Fri 16 Jan
    assert open_visit(case).due == date(2026, 1, 23)  # weekly: 16 Jan + 7
    # the final care order, Tue 20 Jan: placed with a parent under a care order now, so reg
    # 28(2)'s default: not more than six weeks from the last visit, Fri 16 Jan + 42 days =
    # Fri 27 Feb (16 Jan + 15 = 31 Jan, + 27 = 27 Feb; a working day)
    effects = eng.record_final_order(spec, case, date(2026, 1, 20), "care-order", True,
                                     date(2026, 1, 20))
    assert case.tasks["sw-visit-weekly-3"].state == eng.CANCELLED
    assert any(e.kind == "task-cancelled" and e.task == "sw-visit-weekly-3" for e in effects)
    v = open_visit(case)
    assert (v.key, v.due) == ("sw-visit-1", date(2026, 2, 27)), v.due_explanation
    assert "final order 2026-01-20" in v.due_explanation
    done(spec, case, v.key, date(2026, 2, 23))
    # 23 Feb + 42 = Mon 6 Apr (Easter Monday), Fri 3 Apr is Good Friday: Thu 2 Apr (R5)
    assert (open_visit(case).key, open_visit(case).due) == ("sw-visit-2", date(2026, 4, 2))
    # a move home after the order is at the default cadence from the start
    eng.change_placement(spec, case, date(2026, 4, 13), kind="home")
    assert (open_visit(case).spec_id, open_visit(case).due) == ("sw-visit", date(2026, 4, 20))


def test_england_kinship_stays_weekly_after_the_final_order():
    # reg 24's temporary approval of a connected person does not end with the order
    spec, case = open_case("england", "kinship")
    case.anchors["proceedings_issued"] = CARE_ENTRY
    done(spec, case, "sw-visit-weekly-1", date(2026, 1, 12))
    eng.record_final_order(spec, case, date(2026, 1, 14), "care-order", True,
                           date(2026, 1, 14))
    assert (open_visit(case).key, open_visit(case).due) == ("sw-visit-weekly-2",
                                                            date(2026, 1, 19))  # 12 Jan + 7


def test_wales_placement_with_a_parent_under_an_ico_is_weekly():
    # SI 2015/1818 reg 31(4): placed with a parent (ICO) Mon 18 May 2026; visit 1 within a
    # week: Mon 25 May, a bank holiday, pulled back to Fri 22 May (reg 31(2)(a))
    spec, case = open_case("wales", "home", placement=date(2026, 5, 18))
    v = open_visit(case)
    assert (v.spec_id, v.due) == ("sw-visit-weekly", date(2026, 5, 22))
    done(spec, case, v.key, date(2026, 5, 21))
    assert open_visit(case).due == date(2026, 5, 28)  # Thu 21 May + 7, no review yet


def test_scotland_kinship_is_reg_46_three_monthly():
    # SSI 2009/210 reg 46(2): kinship placement Mon 5 Jan: visit 1 by Mon 12 Jan, then at most
    # 3 months from the previous visit: 12 Jan + 3 months = Sun 12 Apr, pulled back to Fri 10
    # Apr (Scotland has no Easter Monday holiday, and 10 Apr is a working day)
    spec, case = open_case("scotland", "kinship")
    v = open_visit(case)
    assert (v.spec_id, v.due) == ("sw-visit", date(2026, 1, 12))
    done(spec, case, v.key, date(2026, 1, 12))
    assert open_visit(case).due == date(2026, 4, 10)


def test_northern_ireland_kinship_keeps_the_default():
    # SR 1996/467 reg 6 (not retrieved): the 1-week / 6-weekly default for every kind
    spec, case = open_case("northern-ireland", "kinship")
    assert open_visit(case).spec_id == "sw-visit"
    assert open_visit(case).due == date(2026, 1, 12)


def test_a_recorded_kinship_placement_moves_the_case_to_weekly_visits(store):
    """Through the store: `case placement --kind kinship` picks the reg 28(4) cadence."""
    from models.schemas import Referral
    from tests.conftest import referral_data

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    # today is Mon 12 Jan 2026; the child moves to a connected person today: visit 1 within a
    # week, Mon 19 Jan, of the weekly series; the 6-weekly series is cancelled
    store.family.change_placement(ref, "kinship", date(2026, 1, 12), "grandmother approved",
                                  "la.patel")
    tasks = {t.key: t for t in store.queries.tasks(case=ref)}
    assert tasks["sw-visit-weekly-1"].due == date(2026, 1, 19)
    assert "sw-visit-1" not in tasks or tasks["sw-visit-1"].state == "cancelled"


def test_a_case_opened_in_a_kinship_placement_starts_weekly_visits(store):
    """The referral's placement kind reaches the engine at opening: a child placed with a
    connected person from the start is visited weekly (reg 28(4)), a foster child 6-weekly."""
    from models.schemas import Referral
    from tests.conftest import referral_data

    def visits(kind: str) -> list[str]:
        ref = store.cases.open_case(Referral.model_validate(referral_data(
            placement={"kind": kind, "start": "2026-01-05"})), "coord.ali").ref
        return sorted(t.key for t in store.queries.tasks(case=ref) if "visit" in t.key)

    assert visits("kinship") == ["sw-visit-weekly-1"]
    assert visits("foster") == ["sw-visit-1"]
