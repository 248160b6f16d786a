"""A pause concerns the people it names and never rewrites lateness (issue 27, part 6): the
pure engine, no database. Dates worked by hand in each test (E&W 2026 bank holidays: Fri
3 Apr, Mon 6 Apr, Mon 4 May)."""

from __future__ import annotations

from datetime import date

import pytest

from models import engine as eng
from models.pathway import load_pathway
from models.simulate import sample_outcome

SPEC = load_pathway("england")
TARGET = next(c for c in SPEC.clocks if c.id == "nim-assessment-12-weeks")


def _assessing() -> eng.CaseState:
    """Mother, father and foster carer; referral, triage and every consent on Mon 12 Jan 2026,
    so the assessment stage begins Mon 12 Jan. Due dates from it: contact observation 1 at
    week 3 = Mon 2 Feb, observation 2 four weeks on = Mon 2 Mar; WMCI at week 6 = Mon 23 Feb;
    Crowell, parent and child assessments at week 8 = Mon 9 Mar. NIM's 12-week target:
    12 Jan + 84 days = Mon 6 Apr (Easter Monday), a target rolls forward: Tue 7 Apr."""
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction="england-and-wales",
                         anchors={"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 12),
                                  "proceedings_issued": date(2026, 1, 8)},
                         settings=dict(SPEC.settings),
                         caregivers=eng.caregiver_keys(["mother", "father", "foster-carer"]))
    eng.open_case(SPEC, case, date(2026, 1, 12))
    eng.complete_task(SPEC, case, "triage", {"accepted": True}, "mgr", date(2026, 1, 12))
    for who in ("mother", "father", "foster-carer"):
        eng.complete_task(SPEC, case, f"consent-{who}", {"consent": "given"}, "sw",
                          date(2026, 1, 12))
    assert case.stage == "assessment"
    return case


def _due(case: eng.CaseState) -> dict[str, date]:
    return {k: t.due for k, t in case.tasks.items() if t.state == eng.OPEN
            and t.stage == "assessment"}


def test_a_fathers_pause_moves_only_his_work_not_yet_due_and_not_nims_target():
    case = _assessing()
    before = _due(case)
    # the father is in custody from Wed 4 Feb to Wed 18 Feb: 14 days
    eng.pause(SPEC, case, date(2026, 2, 4), "in custody", "father")
    assert case.paused_since is None and case.paused_people == {"father": date(2026, 2, 4)}
    # his timers stop; the mother's and the foster carer's go on
    planned = {p.task for p in eng.planned_timers(SPEC, case)}
    assert "wmci-father" not in planned and "wmci-foster-carer" in planned
    effects = eng.resume(SPEC, case, date(2026, 2, 18), "", "father")
    assert effects[0].detail == {"on": "2026-02-18", "person": "father", "paused_days": 14}
    after = _due(case)
    # his contact observation 1 was due Mon 2 Feb, already late on 4 Feb: it keeps its date
    # (and its lateness); the rest of his work moves on 14 days (Mondays stay Mondays)
    assert after["contact-observation-father-1"] == date(2026, 2, 2)
    assert after["contact-observation-father-2"] == date(2026, 3, 16)  # 2 Mar + 14
    assert after["wmci-father"] == date(2026, 3, 9)  # 23 Feb + 14
    assert after["crowell-father"] == after["parent-assessment-father"] == date(2026, 3, 23)
    # nobody else's work moved: the foster carer's, the mother's and the child's own
    assert {k: v for k, v in after.items() if "father" not in k} == \
        {k: v for k, v in before.items() if "father" not in k}
    # NIM's own target stops only for a whole-family pause: still Tue 7 Apr
    assert eng.clock_state(SPEC, case, TARGET, date(2026, 2, 18)).due == date(2026, 4, 7)


def test_a_family_pause_keeps_late_work_late_and_moves_the_rest_and_nims_target():
    case = _assessing()
    eng.pause(SPEC, case, date(2026, 2, 4), "hearing adjourned")
    eng.resume(SPEC, case, date(2026, 2, 18))
    after = _due(case)
    # observation 1 (due Mon 2 Feb) was late when the pause began on Wed 4 Feb: it stays, so
    # done on Wed 18 Feb it is 16 days late, not 2 days early
    assert after["contact-observation-mother-1"] == after["contact-observation-father-1"] == \
        date(2026, 2, 2)
    assert after["wmci-foster-carer"] == after["wmci-mother"] == date(2026, 3, 9)
    assert after["child-assessment"] == date(2026, 3, 23)
    # NIM's own target: Tue 7 Apr + 14 days = Tue 21 Apr
    assert eng.clock_state(SPEC, case, TARGET, date(2026, 2, 18)).due == date(2026, 4, 21)
    eng.complete_task(SPEC, case, "contact-observation-mother-1",
                      sample_outcome(SPEC, "contact-observation", {}), "sw", date(2026, 2, 18))
    done = case.tasks["contact-observation-mother-1"]
    assert (done.completed_on - done.due).days == 16


def test_a_person_paused_inside_a_family_pause_is_not_moved_twice():
    case = _assessing()
    # father paused Wed 4 Feb to Wed 18 Feb (14 days); the whole family Mon 9 Feb to Mon
    # 16 Feb (7 days) inside it. His WMCI (Mon 23 Feb) moves 7 days with the family, then
    # 14 - 7 = 7 more with his own resume: Mon 9 Mar, as if paused once for 14 days
    eng.pause(SPEC, case, date(2026, 2, 4), "in custody", "father")
    eng.pause(SPEC, case, date(2026, 2, 9), "hearing adjourned")
    eng.resume(SPEC, case, date(2026, 2, 16))
    assert case.tasks["wmci-father"].due == date(2026, 3, 2)
    assert case.tasks["wmci-mother"].due == date(2026, 3, 2)
    eng.resume(SPEC, case, date(2026, 2, 18), "", "father")
    assert case.tasks["wmci-father"].due == date(2026, 3, 9)
    assert case.tasks["wmci-mother"].due == date(2026, 3, 2)
    assert [(p.person, (p.end - p.start).days) for p in case.pauses] == [(None, 7),
                                                                          ("father", 14)]
    assert case.paused_days == 7  # only the family's pause stops NIM's targets


def test_pausing_someone_the_case_does_not_have_names_who_it_has():
    case = _assessing()
    with pytest.raises(eng.EngineError, match="case NIM-2026-0001 has no caregiver or child "
                                              "'uncle'; its caregivers: mother, father, "
                                              "foster-carer; its children: child-1"):
        eng.pause(SPEC, case, date(2026, 2, 4), "in custody", "uncle")
    with pytest.raises(eng.EngineError, match="father's work on case NIM-2026-0001 is not "
                                              "paused"):
        eng.resume(SPEC, case, date(2026, 2, 4), "", "father")
    eng.pause(SPEC, case, date(2026, 2, 4), "in custody", "father")
    with pytest.raises(eng.EngineError, match="is paused already"):
        eng.pause(SPEC, case, date(2026, 2, 5), "again", "father")
    with pytest.raises(eng.EngineError, match="is not paused; the work of father is"):
        eng.resume(SPEC, case, date(2026, 2, 5))
