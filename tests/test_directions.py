"""Court directions bind the work that produces the document (issue 27, part 5): in the pure
engine and the forecast, with no database. Dates worked by hand in each test (E&W 2026 bank
holidays: Fri 3 Apr, Mon 6 Apr, Mon 4 May)."""

from __future__ import annotations

from datetime import date

from models import engine as eng
from models.forecast import forecast
from models.pathway import load_pathway
from models.simulate import sample_outcome

SPEC = load_pathway("england")


def _case() -> eng.CaseState:
    """Referral Mon 12 Jan 2026, one mother; triage done Mon 19 Jan (consent stage begins),
    her consent given Mon 26 Jan: the assessment stage begins Mon 26 Jan. The assessment
    report (formulation stage) is then due 26 Jan + 12 weeks = Mon 20 Apr 2026 (26 Jan + 84
    days: 31 Jan is +5, 28 Feb +33, 31 Mar +64, 20 Apr +84; a Monday, no holiday)."""
    case = eng.CaseState(ref="NIM-2026-0001", jurisdiction="england-and-wales",
                         anchors={"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 12),
                                  "proceedings_issued": date(2026, 1, 8)},
                         settings=dict(SPEC.settings), caregivers=eng.caregiver_keys(["mother"]))
    eng.open_case(SPEC, case, date(2026, 1, 12))
    eng.complete_task(SPEC, case, "triage", {"accepted": True}, "mgr", date(2026, 1, 19))
    eng.complete_task(SPEC, case, "consent-mother", {"consent": "given"}, "sw",
                      date(2026, 1, 26))
    assert case.stage == "assessment" and case.anchors["stage:assessment"] == date(2026, 1, 26)
    return case


def _finish_assessment(case: eng.CaseState, on: date) -> None:
    """Every assessment task done on `on`: the formulation stage begins that day."""
    while case.stage == "assessment":
        task = next(t for t in case.tasks.values() if t.stage == "assessment"
                    and t.state == eng.OPEN)
        eng.complete_task(SPEC, case, task.key, sample_outcome(SPEC, task.spec_id, {}), "psy",
                          on)


def test_a_direction_for_work_not_made_yet_binds_it_when_made_and_pauses_keep_it():
    case = _case()
    # Mon 2 Feb: the court directs the assessment report by Fri 10 Apr 2026, before the
    # report's task exists (the formulation stage comes later): remembered, no task made
    effects = eng.add_direction(SPEC, case, "assessment-report", None, date(2026, 4, 10),
                                date(2026, 2, 2))
    assert [e.kind for e in effects] == ["direction-recorded"]
    assert effects[0].detail["pending"] is True
    assert not [t for t in case.tasks.values() if t.spec_id in ("court-direction",
                                                                 "assessment-report")]
    created: list[eng.Effect] = []
    while case.stage == "assessment":  # every assessment task done Tue 7 Apr
        task = next(t for t in case.tasks.values() if t.stage == "assessment"
                    and t.state == eng.OPEN)
        created += eng.complete_task(SPEC, case, task.key, sample_outcome(SPEC, task.spec_id, {}),
                                     "psy", date(2026, 4, 7))
    report = case.tasks["assessment-report"]
    assert next(e.detail["due"] for e in created if e.kind == "task-created"
                and e.task == "assessment-report") == "2026-04-10"
    # the earlier of the pathway's Mon 20 Apr and the court's Fri 10 Apr
    assert (report.due, report.pathway_due) == (date(2026, 4, 10), date(2026, 4, 20))
    assert report.due_explanation.startswith(
        "court direction of 2026-02-02: file assessment-report by 2026-04-10")
    # the assessment stage's start corrected to Mon 2 Feb: the pathway's date is now
    # 2 Feb + 84 days = Mon 27 Apr, still later than the court's: the task stays on 10 Apr
    eng.move_anchor(SPEC, case, "stage:assessment", date(2026, 2, 2), "corrected")
    assert (report.due, report.pathway_due) == (date(2026, 4, 10), date(2026, 4, 27))
    # the family is paused Wed 8 Apr to Wed 15 Apr (7 days); the report was not late on
    # 8 Apr, so the pathway's date moves on 7 days: 27 Apr + 7 = Mon 4 May (May Day) ->
    # Tue 5 May; the court's date still binds
    eng.pause(SPEC, case, date(2026, 4, 8), "parent in hospital")
    eng.resume(SPEC, case, date(2026, 4, 15))
    assert (report.due, report.pathway_due) == (date(2026, 4, 10), date(2026, 5, 5))


def test_a_direction_binds_open_work_only_when_earlier():
    case = _case()
    _finish_assessment(case, date(2026, 4, 7))
    report = case.tasks["assessment-report"]
    assert report.due == date(2026, 4, 20)  # the pathway's date (see _case)
    # a direction for Fri 24 Apr is later than the pathway's Mon 20 Apr: nothing moves
    effects = eng.add_direction(SPEC, case, "assessment-report", None, date(2026, 4, 24),
                                date(2026, 4, 8))
    assert [e.kind for e in effects] == ["direction-recorded"]
    assert (report.due, report.pathway_due) == (date(2026, 4, 20), None)
    # a second direction, for Thu 16 Apr, is earlier: the report is due then, no new task
    effects = eng.add_direction(SPEC, case, "assessment-report", "psychologist",
                                date(2026, 4, 16), date(2026, 4, 9))
    assert [(e.kind, e.task) for e in effects] == [("direction-recorded", None),
                                                   ("task-redated", "assessment-report")]
    assert effects[1].detail["cause"] == ("court direction of 2026-04-09: file "
                                          "assessment-report by 2026-04-16")
    assert (report.due, report.pathway_due) == (date(2026, 4, 16), date(2026, 4, 20))
    assert not any(t.spec_id == "court-direction" for t in case.tasks.values())


def test_a_direction_for_a_report_already_filed_is_recorded_against_it():
    case = _case()
    _finish_assessment(case, date(2026, 4, 7))
    for key in ("formulation", "professionals-meeting"):  # Mon 13 Apr
        eng.complete_task(SPEC, case, key, sample_outcome(SPEC, key, {"d1": "treatment"}),
                          "psy", date(2026, 4, 13))
    eng.complete_task(SPEC, case, "assessment-report",
                      sample_outcome(SPEC, "assessment-report", {}), "psy", date(2026, 4, 14))
    before = dict(case.tasks)
    effects = eng.add_direction(SPEC, case, "assessment-report", None, date(2026, 5, 1),
                                date(2026, 4, 20))
    assert [(e.kind, e.task) for e in effects] == [("direction-recorded", None), (
        "direction-already-met", "assessment-report")]
    assert effects[1].detail["note"] == "already filed on 2026-04-14"
    report = case.tasks["assessment-report"]
    assert (report.state, report.due) == (eng.DONE, date(2026, 4, 20))  # not reopened
    assert set(case.tasks) == set(before)  # no new task


def test_a_document_no_task_produces_is_still_a_task_for_the_role():
    case = _case()
    effects = eng.add_direction(SPEC, case, "statement", "la-social-worker", date(2026, 3, 2),
                                date(2026, 2, 2))
    task = case.tasks[effects[0].task]
    assert (task.spec_id, task.role, task.due) == ("court-direction", "la-social-worker",
                                                   date(2026, 3, 2))
    try:
        eng.add_direction(SPEC, case, "statement", None, date(2026, 3, 2), date(2026, 2, 2))
    except eng.EngineError as err:
        assert "name the role that files it (--role)" in str(err)
    else:
        raise AssertionError("a direction for a document no task produces needs a role")


def test_the_forecast_names_a_direction_the_pathway_would_miss():
    case = _case()
    eng.add_direction(SPEC, case, "assessment-report", None, date(2026, 4, 10),
                      date(2026, 2, 2))
    # projected from Mon 2 Feb, each task done on its due date: the assessment tasks by week 8
    # (26 Jan + 56 = Mon 23 Mar) open the formulation stage; the report's own date is
    # 26 Jan + 12 weeks = Mon 20 Apr, 10 days after the court's Fri 10 Apr
    projected = forecast(SPEC, case, date(2026, 2, 2))
    assert ("court direction of 2026-02-02: file assessment-report by 2026-04-10: the pathway "
            "projects assessment-report for 2026-04-20, 10 days later; it is planned to the "
            "court's date: bring the work forward or ask the court to vary the direction"
            ) in projected.conflicts
    # without the direction there is no such conflict
    plain = forecast(SPEC, _case(), date(2026, 2, 2))
    assert not [c for c in plain.conflicts if "court direction" in c]
