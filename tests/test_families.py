"""Real cases: a family episode with several children, caregivers identified late or leaving,
consent per person (declined, withdrawn), early exits, pauses. Through the commands, on SQLite
and PostgreSQL, in both the England and the Scotland profile."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlmodel import select

from models.clock import UK
from models.errors import Invalid, Refused
from models.refs import TaskRef
from models.schemas import Referral
from store.db import session_scope
from store.tables import Child, Outbox, Timer
from tests.conftest import referral_data

SIBLINGS = [
    {"given_name": "Sentinel-Given", "family_name": "Sentinel-Family",
     "date_of_birth": "2025-06-01", "address": "Sentinel Address 1"},
    {"given_name": "Sentinel-Twin", "family_name": "Sentinel-Family",
     "date_of_birth": "2025-06-01"},
    {"given_name": "Sentinel-Elder", "family_name": "Sentinel-Family",
     "date_of_birth": "2023-03-01", "placement": {"kind": "kinship", "start": "2026-01-07"}},
]
PROFILES = {"england": {}, "scotland": {"jurisdiction": "scotland", "proceedings_issued": None,
                                         "first_entry_to_care": True}}


def family(store, profile="england", **over) -> str:
    data = referral_data(**PROFILES[profile], **over)
    if "children" in over:
        data.pop("child")
    return store.cases.open_case(Referral.model_validate(data), "coord.ali").ref


def keys(store, ref, spec_id=None, state="open"):
    return sorted(t.key for t in store.queries.tasks(case=ref, state=state)
                  if spec_id is None or t.spec_id == spec_id)


def give_consent(store, ref, answers):
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    for carer, answer in answers.items():
        store.tasks.complete_task(TaskRef(ref, f"consent-{carer}"), "sw.jones",
                                  {"consent": answer})


@pytest.mark.parametrize("profile", list(PROFILES))
def test_sibling_group_with_a_late_father_and_consent_withdrawn(store, clock, profile):
    ref = family(store, profile, children=SIBLINGS, caregivers=[
        {"relationship": "mother", "name": "Sentinel-Mother"},
        {"relationship": "foster-carer", "children": ["child-1", "child-2"]},
        {"relationship": "kinship-carer", "children": ["child-3"]}])
    shown = store.queries.show(ref)
    assert [c.key for c in shown.children] == ["child-1", "child-2", "child-3"]
    assert {c.placement for c in shown.children} == {"foster", "kinship"}
    # each looked-after child has their own reviews and visits
    # child-3 lives with a connected person (kinship): in England and Wales weekly visits
    # (reg 28(4); Wales reg 31(4)); Scotland's reg 46 has one cadence for every placement
    weekly = profile in ("england", "wales")
    # a sibling group's first child's work carries their key too (sw-visit-child-1-1)
    assert keys(store, ref, "sw-visit") == ["sw-visit-child-1-1", "sw-visit-child-2-1"] + (
        [] if weekly else ["sw-visit-child-3-1"])
    assert keys(store, ref, "sw-visit-weekly") == (["sw-visit-weekly-child-3-1"] if weekly
                                                   else [])
    give_consent(store, ref, {"mother": "given", "foster-carer": "given",
                              "kinship-carer": "given"})
    assert store.queries.show(ref).stage == "assessment"
    # relationship assessments: one per caregiver and each child they care for
    assert keys(store, ref, "wmci") == ["wmci-foster-carer-child-1", "wmci-foster-carer-child-2",
                                        "wmci-kinship-carer-child-3", "wmci-mother-child-1",
                                        "wmci-mother-child-2", "wmci-mother-child-3"]
    assert keys(store, ref, "child-assessment") == ["child-assessment-child-1",
                                                    "child-assessment-child-2",
                                                    "child-assessment-child-3"]
    # the father is identified in week 3: asked for consent now, assessed once he gives it
    clock.set(datetime(2026, 2, 23, 10, tzinfo=UK))
    store.family.add_caregiver(ref, "father", "Sentinel-Father", [], "sw.jones")
    assert keys(store, ref, "consent") == ["consent-father"]
    assert not [k for k in keys(store, ref, "wmci") if k.startswith("wmci-father")]
    store.tasks.complete_task(TaskRef(ref, "consent-father"), "sw.jones",
                              {"consent": "given"})
    father = keys(store, ref, "wmci")
    assert {"wmci-father-child-1", "wmci-father-child-2", "wmci-father-child-3"} <= set(father)
    late = store.queries.task(ref, "wmci-father-child-1")
    assert late.due > date(2026, 2, 23)  # due from the day he consented, not overdue at once
    # the mother withdraws consent mid-assessment: her work stops, the family goes on
    store.family.withdraw_consent(ref, "mother", "sw.jones")
    assert not [k for k in keys(store, ref) if "mother" in k]
    assert [c.consent for c in store.queries.show(ref).caregivers
            if c.key == "mother"] == ["withdrawn"]
    assert store.queries.show(ref).stage == "assessment" and not store.queries.show(ref).closed_on


def test_identity_of_every_child_stays_in_the_identity_tables(store, db_url):
    ref = family(store, children=SIBLINGS)
    with session_scope(db_url) as s:
        assert len(s.exec(select(Child)).all()) == 3
    everything = str(store.queries.show(ref)) + str(store.queries.timeline(ref)) + str(
        store.queries.tasks(case=ref))
    assert "Sentinel" not in everything and "child-3" in everything


def test_each_child_has_their_own_d2(store):
    from models.simulate import sample_outcome
    from nim_pathway.demo import DEMO_TEAM

    handles = {role: handle for handle, _, role, _ in DEMO_TEAM}
    ref = family(store, children=SIBLINGS[:2])
    spec = store.queries.pathway(ref)
    decisions = {"d1": "no_treatment", "d2": "kinship_care"}
    for _ in range(60):
        open_work = [t for t in store.queries.tasks(case=ref) if t.stage != "statutory"]
        if store.queries.show(ref).stage == "recommendation" and \
                [t.key for t in open_work] == ["final-report"] or not open_work:
            break
        t = min(open_work, key=lambda t: t.due)
        store.tasks.complete_task(t.task, handles[t.role],
                                  sample_outcome(spec, t.spec_id, decisions))
    store.tasks.complete_task(TaskRef(ref, "final-report"), "psy.chen", {})
    store.cases.decide(ref, "d2", "adoption", "lead.singh", child="child-2")
    assert store.queries.show(ref).stage == "recommendation"  # child-1 still to decide
    store.cases.decide(ref, "d2", "kinship_care", "lead.singh")
    shown = store.queries.show(ref)
    assert shown.decisions == {"d1": "no_treatment", "d2@child-2": "adoption",
                               "d2": "kinship_care"}
    assert shown.stage == "closure"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_triage_not_accepted_exits_and_tells_the_la(store, db_url, profile):
    ref = family(store, profile)
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": False})
    shown = store.queries.show(ref)
    assert (shown.exit_reason, shown.stage) == ("referral-declined", None)
    assert shown.closed_on is not None
    assert not [k for k in keys(store, ref) if not k.startswith(("lac-review", "sw-visit"))]
    assert keys(store, ref, "sw-visit")  # the LA's statutory work goes on
    with session_scope(db_url) as s:
        told = {o.recipient for o in s.exec(select(Outbox).where(Outbox.kind == "exit"))}
        pending = s.exec(select(Timer).where(Timer.fired_at.is_(None),
                                             Timer.cancelled_at.is_(None))).all()
    assert told == {"practitioner:la.patel"}
    assert pending and all(t.task_key and t.task_key.startswith(("lac-review", "sw-visit"))
                           for t in pending)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_nobody_consents_so_no_assessment_is_scheduled(store, profile):
    ref = family(store, profile)
    give_consent(store, ref, {"mother": "declined", "father": "not-reached",
                              "foster-carer": "declined"})
    shown = store.queries.show(ref)
    assert shown.exit_reason == "consent-declined"
    assert not keys(store, ref, "wmci") and not keys(store, ref, "wmci", state=None)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_partial_consent_schedules_work_only_for_who_consented(store, profile):
    ref = family(store, profile)
    give_consent(store, ref, {"mother": "given", "father": "declined", "foster-carer": "given"})
    assert keys(store, ref, "wmci") == ["wmci-foster-carer", "wmci-mother"]
    assert keys(store, ref, "parent-assessment") == ["parent-assessment-mother"]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_carer_who_leaves_has_their_work_cancelled(store, profile):
    ref = family(store, profile)
    give_consent(store, ref, {"mother": "given", "father": "given", "foster-carer": "given"})
    store.family.remove_caregiver(ref, "foster-carer", "placement ended", "sw.jones")
    assert not [k for k in keys(store, ref) if "foster-carer" in k]
    with pytest.raises(Invalid, match="no caregiver 'foster-carer'"):
        store.family.withdraw_consent(ref, "foster-carer", "sw.jones")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_pause_stops_nim_targets_not_statutory_limits(store, clock, db_url, profile):
    ref = family(store, profile)
    triage_due = store.queries.task(ref, "triage").due  # Mon 19 Jan
    visit_due = store.queries.task(ref, "sw-visit-1").due
    with pytest.raises(Refused):
        store.cases.pause(ref, "parent in hospital", "psy.chen")
    store.cases.pause(ref, "parent in hospital", "coord.ali")
    with session_scope(db_url) as s:
        live = {t.task_key for t in s.exec(select(Timer).where(
            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)))}
    assert "triage" not in live and "sw-visit-1" in live  # statutory timers go on
    clock.set(datetime(2026, 1, 26, 10, tzinfo=UK))  # paused for 14 days
    store.cases.resume(ref, "coord.ali")
    # triage Mon 19 Jan + 14 days = Mon 2 Feb; the visit's legal limit does not move
    assert store.queries.task(ref, "triage").due == date(2026, 2, 2) == triage_due.replace(
        day=2, month=2)
    assert store.queries.task(ref, "sw-visit-1").due == visit_due
    timeline = [r.event for r in store.queries.timeline(ref)]
    assert store.queries.show(ref).paused_since is None and timeline


def test_resuming_drops_the_pause_date_from_the_case(store, clock, db_url):
    """Found by the chaos soak (issue 30): the engine drops `paused_since` on resuming, but the
    store kept its row, so a resumed case still showed the pause's start among its key dates
    and no longer equalled the engine's state."""
    from store.mapping import find_case, load_state

    ref = family(store)
    store.cases.pause(ref, "parent in hospital", "coord.ali")
    assert "paused_since" in store.queries.show(ref).dates
    clock.set(datetime(2026, 1, 26, 10, tzinfo=UK))
    store.cases.resume(ref, "coord.ali")
    assert "paused_since" not in store.queries.show(ref).dates
    with session_scope(db_url) as s:
        case = find_case(s, ref)
        state = load_state(s, case, store.ctx.spec(s, case.pathway_id), frozenset())
    assert "paused_since" not in state.anchors and state.paused_since is None
    store.cases.pause(ref, "again", "coord.ali")  # and a second pause starts afresh
    assert store.queries.show(ref).dates["paused_since"] == date(2026, 1, 26)


def test_eligibility_comes_from_the_pathway(store):
    with pytest.raises(Invalid, match="child-3 is 34 months old|placed with a parent"):
        family(store, children=[SIBLINGS[0], SIBLINGS[1], {**SIBLINGS[2], "placement": {
            "kind": "mother-and-baby", "start": "2026-01-07"}}])
    too_old = {**SIBLINGS[2], "date_of_birth": "2020-12-01"}
    with pytest.raises(Invalid, match="child-2 is 61 months old at referral"):
        family(store, children=[SIBLINGS[0], too_old])
    with pytest.raises(Invalid, match="first entry to care"):
        store.cases.open_case(Referral.model_validate(referral_data(
            jurisdiction="scotland", proceedings_issued=None)), "coord.ali")


def test_a_childs_new_placement_restarts_only_their_visits(store, clock):
    ref = family(store, children=SIBLINGS)
    clock.set(datetime(2026, 2, 4, 10, tzinfo=UK))
    store.family.change_placement(ref, "foster", date(2026, 2, 4), "carer change", "la.patel",
                                  child="child-2")
    assert keys(store, ref, "sw-visit") == ["sw-visit-child-1-1", "sw-visit-child-2-2"]
    assert keys(store, ref, "sw-visit-weekly") == ["sw-visit-weekly-child-3-1"]  # kinship
    assert store.queries.task(ref, "sw-visit-child-2-2").due == date(2026, 2, 11)


def test_exit_by_hand_and_kpis(store, clock):
    from reports.oversight import kpis

    first, second = family(store), family(store)
    give_consent(store, first, {"mother": "given", "father": "given", "foster-carer": "given"})
    with pytest.raises(Invalid, match="unknown exit 'bored'"):
        store.cases.exit_case(second, "bored", "", "coord.ali")
    store.cases.exit_case(second, "disengaged", "no contact for 6 weeks", "coord.ali")
    data = kpis(store.queries)
    assert data.exits_by_reason == {"disengaged": 1}
    assert data.share_received_nim == 0.5 and data.families == 2


def test_contact_sessions_and_referrals_out_are_recorded(store, clock):
    ref = family(store, children=SIBLINGS[:2])
    give_consent(store, ref, {"mother": "given", "father": "given", "foster-carer": "given"})
    store.family.record_contact(ref, "child-2", "mother", 2, True, date(2026, 1, 12),
                                "sw.jones")
    store.family.record_contact(ref, "child-2", "mother", 3, False, date(2026, 1, 12),
                                "sw.jones")  # replaces the previous arrangement
    with pytest.raises(Invalid, match="no caregiver 'aunt'"):
        store.family.record_contact(ref, "child-1", "aunt", 1, True, date(2026, 1, 12),
                                    "sw.jones")
    contact = store.queries.show(ref).contact
    assert [(c.child, c.caregiver, c.per_week, c.supervised) for c in contact] == [
        ("child-2", "mother", 3, False)]
    store.family.record_session(ref, "dyadic", date(2026, 1, 12), True, "fsw.brown",
                                caregiver="mother", child="child-1")
    store.family.record_session(ref, "parent", date(2026, 1, 12), False, "fsw.brown",
                                caregiver="father")
    sessions = store.queries.show(ref).sessions
    assert (sessions.offered, sessions.attended) == (2, 1)
    result = store.family.refer_out(ref, "substance-use", "nim-social-worker", None,
                                    "sw.jones", caregiver="father")
    task = store.queries.task(ref, result.effects[0].task)
    # referred Mon 12 Jan 2026: by default within 5 working days, Mon 19 Jan
    assert (task.title, task.role, task.caregiver, task.due) == (
        "Refer to Substance use service", "nim-social-worker", "father", date(2026, 1, 19))


def test_transfer_to_another_site_hands_nim_work_to_its_team(store, db_url):
    from models.schemas import PractitionerIn
    from nim_pathway.demo import DEMO_ADMIN

    ref = family(store)
    give_consent(store, ref, {"mother": "given", "father": "given", "foster-carer": "given"})
    nim_roles = {t.role for t in store.queries.tasks(case=ref) if t.stage != "statutory"}
    with pytest.raises(Invalid, match="team 'east' has no active"):
        store.cases.transfer(ref, "east-site", "east", "coord.ali")
    for role in sorted(nim_roles):
        store.admin.add_practitioner(PractitionerIn(handle=f"east.{role}", display_name="E",
                                                    role=role, team="east"), DEMO_ADMIN.handle)
    result = store.cases.transfer(ref, "east-site", "east", "coord.ali")
    tasks = store.queries.tasks(case=ref)
    assert {t.assignee for t in tasks if t.stage != "statutory"} == {
        f"east.{r}" for r in nim_roles}
    assert {t.assignee for t in tasks if t.stage == "statutory"} <= {"la.patel", "iro.khan"}
    assert store.queries.show(ref).site == "east-site"
    with session_scope(db_url) as s:
        told = {o.recipient for o in s.exec(select(Outbox).where(Outbox.kind == "reassigned"))}
    assert "practitioner:psy.chen" in told and "practitioner:east.psychologist" in told
    assert len(result.effects) == len([t for t in tasks if t.stage != "statutory"])


def test_per_child_runs_are_tagged_by_child_key_never_by_name(store):
    from orchestration.naming import case_tags, run_name

    ref = family(store, children=SIBLINGS[:2])
    visit = store.queries.task(ref, "sw-visit-child-2-1")
    assert visit.child == "child-2"
    tags = case_tags(ref, visit.stage, "england-and-wales", visit.role, visit.child)
    assert "child:child-2" in tags and run_name(ref, visit.stage, visit.key).endswith(
        "sw-visit-child-2-1")
    assert "Sentinel" not in " ".join(tags)


def test_per_child_final_orders_and_children_leaving_or_relinked(store, clock):
    ref = family(store, children=SIBLINGS[:2])
    clock.set(datetime(2026, 6, 1, 10, tzinfo=UK))
    # orders that differ: the 26-week clock is met only once every child has one
    store.court.record_final_order(ref, date(2026, 5, 20), "placement-order", False,
                                   "coord.ali", child="child-2")
    c26 = {c.id: c for c in store.queries.show(ref).clocks}["care-proceedings-26-weeks"]
    assert c26.met_on is None
    store.court.record_final_order(ref, date(2026, 6, 1), "special-guardianship-order",
                                   False, "coord.ali", child="child-1")
    shown = store.queries.show(ref)
    c26 = {c.id: c for c in shown.clocks}["care-proceedings-26-weeks"]
    assert (c26.state, c26.met_on) == ("met", date(2026, 6, 1))  # issue 8 Jan: due 8 Jul
    assert shown.court.child_orders["child-2"].kind == "placement-order"

    ref2 = family(store, children=SIBLINGS)
    give_consent(store, ref2, {"mother": "given", "father": "given", "foster-carer": "given"})
    # the foster carer turns out to care for child-1 only
    store.family.link_caregiver(ref2, "foster-carer", ["child-1"], "sw.jones")
    assert [k for k in keys(store, ref2, "wmci") if "foster-carer" in k] == [
        "wmci-foster-carer-child-1"]
    # child-3 leaves the episode: their work stops, the family goes on
    store.family.remove_child(ref2, "child-3", "placed with a relative elsewhere", "sw.jones")
    assert not [k for k in keys(store, ref2) if "child-3" in k]
    assert [c.key for c in store.queries.show(ref2).children] == ["child-1", "child-2"]
    assert store.queries.show(ref2).stage == "assessment"
    with pytest.raises(Invalid, match="has no child 'child-3'"):
        store.family.link_caregiver(ref2, "mother", ["child-3"], "sw.jones")


def test_a_fathers_pause_stops_only_his_work_and_lateness_stays_visible(store, clock, db_url):
    from reports.oversight import breaches, kpis

    ref = family(store)  # mother, father, foster carer; referral Mon 12 Jan 2026
    give_consent(store, ref, {"mother": "given", "father": "given", "foster-carer": "given"})
    # all on Mon 12 Jan: the assessment stage begins then; contact observation 1 is due at
    # week 3 = Mon 2 Feb, the WMCI at week 6 = Mon 23 Feb (tests/test_pauses.py)
    with pytest.raises(Invalid, match="has no caregiver or child 'uncle'; its caregivers: "
                                      "mother, father, foster-carer"):
        store.cases.pause(ref, "in custody", "coord.ali", caregiver="uncle")
    clock.set(datetime(2026, 2, 4, 10, tzinfo=UK))  # Wed 4 Feb
    store.cases.pause(ref, "in custody", "coord.ali", caregiver="father")
    shown = store.queries.show(ref)  # the family's work goes on
    assert (shown.paused_since, shown.paused_people) == (None, {"father": date(2026, 2, 4)})
    with session_scope(db_url) as s:
        live = {t.task_key for t in s.exec(select(Timer).where(
            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)))}
    assert "wmci-father" not in live and "wmci-foster-carer" in live
    clock.set(datetime(2026, 2, 18, 10, tzinfo=UK))  # Wed 18 Feb: 14 days
    store.cases.resume(ref, "coord.ali", caregiver="father")
    due = {t.key: t.due for t in store.queries.tasks(case=ref)}
    # his observation 1 was late on 4 Feb: it keeps Mon 2 Feb; his WMCI 23 Feb + 14 = Mon
    # 9 Mar; the foster carer's WMCI stays Mon 23 Feb
    assert due["contact-observation-father-1"] == date(2026, 2, 2)
    assert due["wmci-father"] == date(2026, 3, 9) and due["wmci-foster-carer"] == date(2026, 2, 23)
    # done on Wed 18 Feb: 16 days late in the breach report (18 Feb - 2 Feb), and not on time
    # in the KPIs
    store.tasks.complete_task(TaskRef(ref, "contact-observation-father-1"), "sw.jones",
                              {"quality": "warm"})
    row = next(b for b in breaches(store.queries, ref) if b.item == "contact-observation-father-1")
    assert (row.days_late, row.due) == (16, "2026-02-02")
    assert kpis(store.queries).on_time_by_task["contact-observation"]["on_time"] < 1
    assert "father's work paused for 14 days" in [r.event for r in store.queries.timeline(ref)]
