"""The FDAC pathway (pathways/fdac-england.yaml) end to end: the pure engine with dates worked
by hand, the case store with a virtual clock (programme recorded, board, KPIs and breaches
per programme), and the CLI (open on --programme fdac, complete tasks, the trial-for-change
gate).

The case used throughout: proceedings issued Monday 2 March 2026; the interim care order (care
entry) and the referral on Wednesday 4 March, the child at home with the mother under the
order; mother and father. England and Wales bank holidays in reach: Good Friday 3 April,
Easter Monday 6 April, 4 May, 25 May, 31 August 2026.

"Week N" of proceedings is N weeks beginning with the issue day (the day of issue is day 1, as
Children Act 1989 s32(1)(a)(ii) counts): from Monday 2 March every week ends on a Sunday, and an
FDAC target that ends on a Sunday rolls forward to the Monday.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
import yaml

from models import engine as eng
from models.errors import Invalid
from models.pathway import load_pathway
from models.refs import TaskRef
from models.schemas import Referral
from tests.conftest import referral_data

ISSUED = date(2026, 3, 2)  # Monday


@pytest.fixture(scope="module")
def fdac():
    return load_pathway("fdac-england")


def _case(spec) -> eng.CaseState:
    case = eng.CaseState("NIM-2026-0001", "england-and-wales",
                         {"care_entry": date(2026, 3, 4), "referral": date(2026, 3, 4),
                          "proceedings_issued": ISSUED},
                         dict(spec.settings), eng.caregiver_keys(["mother", "father"]))
    eng.open_case(spec, case, date(2026, 3, 4))
    return case


def _open(case: eng.CaseState) -> dict[str, date]:
    return {t.key: t.due for t in case.tasks.values() if t.state in (eng.OPEN, eng.BLOCKED)
            and t.stage != "statutory"}


def _done(spec, case, key: str, on: date, **outcome) -> None:
    eng.complete_task(spec, case, key, outcome, "someone", on)


def _through_sign_up(spec, case, father: str = "declined") -> None:
    _done(spec, case, "screening", date(2026, 3, 9), accepted=True)
    _done(spec, case, "ipm-initial", date(2026, 3, 13))
    for who in ("mother", "father"):
        _done(spec, case, f"substance-assessment-{who}", date(2026, 3, 20), testing_agreed=True)
    _done(spec, case, "parenting-assessment", date(2026, 3, 20), sent_to="court, LA")
    _done(spec, case, "sign-up-mother", date(2026, 3, 27), consent="given")
    _done(spec, case, "sign-up-father", date(2026, 3, 27), consent=father)


def _through_trial(spec, case) -> None:
    for key in sorted(_open(case)):
        if key != "decision-meeting":
            _done(spec, case, key, case.tasks[key].due)


def test_screening_and_sign_up_follow_the_fdac_timetable(fdac):
    case = _case(fdac)
    # screening: 5 working days after the referral, Wed 4 Mar: Thu 5, Fri 6, Mon 9, Tue 10,
    # Wed 11 Mar (F1: "within the next five days")
    assert _open(case) == {"screening": date(2026, 3, 11)}
    _done(fdac, case, "screening", date(2026, 3, 9), accepted=True)
    assert case.stage == "sign-up"
    assert _open(case) == {
        # week 2 ends Sun 15 Mar (2 Mar + 14 days - 1), a target: Mon 16 Mar
        "ipm-initial": date(2026, 3, 16),
        # week 3 ends Sun 22 Mar (2 Mar + 21 - 1): Mon 23 Mar; one per parent
        "substance-assessment-mother": date(2026, 3, 23),
        "substance-assessment-father": date(2026, 3, 23),
        "parenting-assessment": date(2026, 3, 23),
        # week 4 (signup_weeks) ends Sun 29 Mar (2 Mar + 28 - 1): Mon 30 Mar; per parent
        "sign-up-mother": date(2026, 3, 30), "sign-up-father": date(2026, 3, 30)}
    assert case.tasks["sign-up-mother"].state == eng.BLOCKED  # after the plan is filed


def test_trial_for_change_reviews_are_a_fortnightly_series(fdac):
    case = _case(fdac)
    _through_sign_up(fdac, case)  # the father declines, the mother signs up (Fri 27 Mar)
    assert case.stage == "trial-for-change"
    assert case.caregivers[0].consent == "given" and case.caregivers[1].consent == "declined"
    due = _open(case)
    # the first non-lawyer review in week 6: ends Sun 12 Apr (2 Mar + 42 - 1): Mon 13 Apr;
    # then every 2 weeks from that day: Mon 27 Apr, Mon 11 May, Mon 25 May is the spring bank
    # holiday so Tue 26 May, Mon 8 Jun, Mon 22 Jun (six: weeks 6-16, F4 p.10)
    assert [due[f"nlr-report-{n}"] for n in range(1, 7)] == [
        date(2026, 4, 13), date(2026, 4, 27), date(2026, 5, 11), date(2026, 5, 26),
        date(2026, 6, 8), date(2026, 6, 22)]
    # a mentor for the parent who signed up only: stage began Fri 27 Mar + 2 weeks = Fri 10 Apr
    assert due["parent-mentor-mother"] == date(2026, 4, 10) and "parent-mentor-father" not in due
    # Child's Needs Meeting, week 8: Sun 26 Apr (2 Mar + 56 - 1): Mon 27 Apr
    assert due["childs-needs-meeting"] == date(2026, 4, 27)
    # review IPM, week 10: Sun 10 May (2 Mar + 70 - 1): Mon 11 May
    assert due["ipm-review"] == date(2026, 5, 11)
    # the decision, week 18: 2 Mar + 126 - 1 = 2 Mar + 125 days (29 to 31 Mar, 30 in April,
    # 31 in May, 30 in June: 120 to 30 Jun, 5 more) = Sun 5 Jul: Mon 6 Jul
    assert due["decision-meeting"] == date(2026, 7, 6)


def test_extend_then_continue_to_the_recommendation(fdac):
    case = _case(fdac)
    _through_sign_up(fdac, case)
    _through_trial(fdac, case)
    with pytest.raises(eng.EngineError, match="unknown decision 'd1'; this pathway's decisions: "
                       "trial-for-change, extended-trial, recommendation"):
        eng.decide(fdac, case, "d1", "treatment", "tm", date(2026, 7, 6))
    eng.decide(fdac, case, "trial-for-change", "extend", "tm", date(2026, 7, 6))
    assert case.stage == "extended-trial" and case.decisions["trial-for-change"] == "extend"
    due = _open(case)
    # statement a week after the stage began (Mon 6 Jul): Mon 13 Jul; reviews every 2 weeks
    # from it: Mon 20 Jul, Mon 3 Aug, Mon 17 Aug, Mon 31 Aug is the summer bank holiday so
    # Tue 1 Sep; the end-of-extension review at 8 weeks: Mon 31 Aug, so Tue 1 Sep
    assert due == {"extension-statement": date(2026, 7, 13),
                   "extended-nlr-report-1": date(2026, 7, 20),
                   "extended-nlr-report-2": date(2026, 8, 3),
                   "extended-nlr-report-3": date(2026, 8, 17),
                   "extended-nlr-report-4": date(2026, 9, 1),
                   "extension-review": date(2026, 9, 1)}
    # the 26 weeks end Sun 30 Aug (2 Mar + 182 - 1); a court's maximum, so Fri 28 Aug
    clock = next(c for c in fdac.clocks if c.id == "care-proceedings-26-weeks")
    assert eng.clock_state(fdac, case, clock, date(2026, 7, 6)).due == date(2026, 8, 28)
    # the court extends by 8 weeks on Mon 6 Jul: 8 weeks after the later of the legal end
    # (Sun 30 Aug) and the day granted: Sun 25 Oct, pulled back to Fri 23 Oct
    eng.extend_timetable(fdac, case, date(2026, 7, 6), 8, "trial for change", date(2026, 7, 6))
    assert eng.clock_state(fdac, case, clock, date(2026, 7, 6)).due == date(2026, 10, 23)
    for key in sorted(due):
        if key != "extension-review":
            _done(fdac, case, key, min(due[key], date(2026, 8, 28)))
    eng.decide(fdac, case, "extended-trial", "continue", "tm", date(2026, 8, 28))
    assert case.stage == "final"
    # final statement and sign-off 4 weeks after Fri 28 Aug: Fri 25 Sep
    assert _open(case) == {"final-report": date(2026, 9, 25),
                           "recommendation-signoff": date(2026, 9, 25)}
    _done(fdac, case, "final-report", date(2026, 9, 18))
    eng.decide(fdac, case, "recommendation", "return_home", "tm", date(2026, 9, 21))
    assert case.stage == "closure"
    # aftercare from Mon 21 Sep: plan in 2 weeks (Mon 5 Oct), aftercare ends at 12 weeks
    # (Mon 14 Dec)
    assert _open(case) == {"aftercare-plan": date(2026, 10, 5),
                           "aftercare-review": date(2026, 12, 14),
                           "closure-summary": date(2026, 12, 14)}


def test_stop_goes_straight_to_the_final_statement(fdac):
    case = _case(fdac)
    _through_sign_up(fdac, case)
    _through_trial(fdac, case)
    eng.decide(fdac, case, "trial-for-change", "stop", "tm", date(2026, 7, 6))
    # no extension: final statement 4 weeks after Mon 6 Jul = Mon 3 Aug
    assert case.stage == "final" and _open(case)["final-report"] == date(2026, 8, 3)


def test_no_parent_signs_up_exits_and_the_statutory_work_goes_on(fdac):
    case = _case(fdac)
    _done(fdac, case, "screening", date(2026, 3, 9), accepted=True)
    _done(fdac, case, "ipm-initial", date(2026, 3, 13))
    _done(fdac, case, "parenting-assessment", date(2026, 3, 20), sent_to="court")
    _done(fdac, case, "sign-up-mother", date(2026, 3, 27), consent="declined")
    _done(fdac, case, "sign-up-father", date(2026, 3, 27), consent="declined")
    assert case.exit_reason == "parents-opted-out" and case.closed_on == date(2026, 3, 27)
    assert any(t.state == eng.OPEN for t in case.tasks.values() if t.spec_id == "lac-review")


def test_fdacs_sign_up_target_is_met_when_a_parent_signs_up_not_by_the_hearing(fdac):
    case = _case(fdac)
    clock = next(c for c in fdac.clocks if c.id == "fdac-sign-up")
    # issued Mon 2 Mar 2026 is day 1; week 4 ends on day 28 = 2 Mar + 27 = Sun 29 Mar; FDAC's
    # own target rolls forward to Mon 30 Mar
    state = eng.clock_state(fdac, case, clock, date(2026, 3, 20))
    assert (state.due, state.state, state.owner) == (date(2026, 3, 30), "running", "fdac")
    # the sign-up hearing is held Fri 27 Mar, and recorded; nobody has signed up yet: the
    # hearing alone does not meet the target (issue 27 part 9)
    eng.move_anchor(fdac, case, "sign_up_hearing", date(2026, 3, 27), "hearing held")
    assert eng.clock_state(fdac, case, clock, date(2026, 3, 27)).state == "running"
    _done(fdac, case, "screening", date(2026, 3, 9), accepted=True)
    _done(fdac, case, "ipm-initial", date(2026, 3, 13))
    _done(fdac, case, "parenting-assessment", date(2026, 3, 20), sent_to="court")
    # the father declines at the hearing: still no parent signed up
    _done(fdac, case, "sign-up-father", date(2026, 3, 27), consent="declined")
    assert eng.clock_state(fdac, case, clock, date(2026, 3, 27)).state == "running"
    # the mother signs up, recorded Fri 27 Mar: met on 27 Mar, within week 4 (due Mon 30 Mar)
    _done(fdac, case, "sign-up-mother", date(2026, 3, 27), consent="given")
    met = eng.clock_state(fdac, case, clock, date(2026, 3, 30))
    assert (met.state, met.met_on) == ("met", date(2026, 3, 27))
    assert fdac.own_clock(clock) and not fdac.own_clock(fdac.clocks[0])


def test_fdacs_sign_up_target_is_breached_when_no_parent_signs_up_in_time(fdac):
    case = _case(fdac)
    clock = next(c for c in fdac.clocks if c.id == "fdac-sign-up")
    eng.move_anchor(fdac, case, "sign_up_hearing", date(2026, 3, 27), "hearing held")
    # due Mon 30 Mar (week 4, rolled forward); on Tue 31 Mar nobody has signed up
    assert eng.clock_state(fdac, case, clock, date(2026, 3, 31)).state == "breached-open"


def test_forecast_follows_fdacs_gates_and_reporting_tasks(fdac):
    from models.forecast import forecast

    case = _case(fdac)
    # each task done on its due day, the trial-for-change gate assumed "continue" (its first
    # outcome): the decision Mon 6 Jul (week 18), the final statement 4 weeks on, Mon 3 Aug;
    # aftercare plan 2 weeks after the recommendation, Mon 17 Aug
    projected = forecast(fdac, case, date(2026, 3, 4), hearing_date=date(2026, 7, 20))
    assert [(m.task, m.projected) for m in projected.milestones] == [
        ("parenting-assessment", date(2026, 3, 23)), ("decision-meeting", date(2026, 7, 6)),
        ("final-report", date(2026, 8, 3)), ("recommendation-signoff", date(2026, 8, 3)),
        ("aftercare-plan", date(2026, 8, 17))]
    assert projected.conflicts == ["final report projected for 2026-08-03, after the final "
                                   "hearing on 2026-07-20"]
    with pytest.raises(eng.EngineError, match="pathway fdac-england names no treatment length "
                       r"\(reporting.treatment_length\): no what-if on it"):
        forecast(fdac, case, date(2026, 3, 4), treatment_months=6)


def test_referral_needs_proceedings_and_any_child_under_17(fdac):
    def referral(**over) -> Referral:
        return Referral.model_validate(referral_data(
            programme="fdac", care_entry="2026-03-04", referral="2026-03-04",
            proceedings_issued="2026-03-02",
            placement={"kind": "home", "start": "2026-03-04"}, **over))

    from models.schemas import eligibility_problems

    assert referral().default_pathway() == "fdac-england"
    assert eligibility_problems(fdac, referral()) == []  # at home with a parent: FDAC takes it
    no_issue = referral()
    no_issue = no_issue.model_copy(update={"proceedings_issued": None})
    assert eligibility_problems(fdac, no_issue) == [
        "FDAC pathway, England (Family Drug and Alcohol Court) needs the referral's "
        "proceedings issued date (proceedings_issued): FDAC is care proceedings issued by the "
        "local authority (F1); give the day the application was issued"]
    # born 4 Mar 2009: 17 on 4 Mar 2026, 204 months at referral (s31(3): no care order)
    older = referral(child={"given_name": "A", "family_name": "B",
                            "date_of_birth": "2009-03-04"})
    assert eligibility_problems(fdac, older) == [
        "the child is 204 months old at referral; FDAC pathway, England (Family Drug and "
        "Alcohol Court) is for children under 204 months"]


# -- the case store: a site running NIM and FDAC ------------------------------------------


def _fdac_referral(**over) -> Referral:
    return Referral.model_validate(referral_data(
        programme="fdac", care_entry="2026-01-08", referral="2026-01-12",
        proceedings_issued="2026-01-05", placement={"kind": "home", "start": "2026-01-08"},
        caregivers=[{"relationship": "mother"}, {"relationship": "father"}], **over))


def test_a_site_runs_both_programmes_and_reports_each(store, clock):
    from datetime import timedelta

    from reports.oversight import breaches, caseload_board, kpi_markdown, kpis
    from tests.conftest import referral_data as nim_data

    nim = store.cases.open_case(Referral.model_validate(nim_data()), "coord.ali").ref
    fdac = store.cases.open_case(_fdac_referral(), "coord.ali").ref
    assert store.queries.show(nim).programme == "nim"
    shown = store.queries.show(fdac)
    assert (shown.programme, shown.pathway, shown.stage) == ("fdac", "fdac-england@2026.3",
                                                             "introduction")
    q = store.queries
    assert [r.case for r in caseload_board(q, "fdac")] == [fdac]
    assert [r.case for r in caseload_board(q, "nim")] == [nim]
    assert {r.programme for r in caseload_board(q)} == {"nim", "fdac"}
    # the FDAC team screens (5 working days from Mon 12 Jan: Mon 19 Jan)
    screening = next(t for t in q.tasks(case=fdac) if t.task.key == "screening")
    assert (screening.due, screening.assignee) == (date(2026, 1, 19), "fdac.tm.hughes")
    clock.advance(timedelta(days=10))  # Thu 22 Jan: screening 3 days late, triage too
    late = breaches(q, programme="fdac")
    assert {(b.case, b.item, b.team) for b in late if b.kind == "task"} >= {
        (fdac, "screening", "fdac")}
    assert all(b.case == fdac for b in late)
    assert all(b.case == nim for b in breaches(q, programme="nim"))
    numbers = kpis(q, "fdac")
    assert (numbers.families, numbers.programme) == (1, "fdac")
    assert kpi_markdown(numbers).startswith("# FDAC KPIs")
    assert "Going on to treatment: not counted (the pathway names no treatment gate)" in \
        kpi_markdown(numbers)
    assert "no D1 decisions yet" in kpi_markdown(kpis(q, "nim"))
    assert kpis(q).programme == "all programmes" and kpis(q).families == 2
    # the UI: a saved run-list view per programme, beside each person's and role's queue
    from orchestration.reconcile import saved_views

    views = saved_views(store)
    assert {views["Programme: fdac"], views["Programme: nim"]} == {"programme:fdac",
                                                                   "programme:nim"}
    assert views["My queue: fdac.tm.hughes"] == "assignee:fdac.tm.hughes"


def test_the_programme_and_its_pathway_must_agree(store):
    with pytest.raises(Invalid, match="pathway england runs programme nim, not fdac; choose a "
                       "fdac pathway with --pathway or open on programme nim"):
        store.cases.open_case(_fdac_referral(pathway="england"), "coord.ali")
    # a pathway named alone brings its programme
    data = referral_data(care_entry="2026-01-08", referral="2026-01-12",
                         proceedings_issued="2026-01-05", pathway="fdac-england",
                         placement={"kind": "home", "start": "2026-01-08"})
    ref = store.cases.open_case(Referral.model_validate(data), "coord.ali").ref
    assert store.queries.show(ref).programme == "fdac"


def test_prefect_tags_carry_the_programme():
    from orchestration.naming import case_tags

    assert case_tags("NIM-2026-0002", "trial-for-change", "england-and-wales",
                     "fdac-social-worker", programme="fdac") == [
        "case:NIM-2026-0002", "programme:fdac", "stage:trial-for-change",
        "jurisdiction:england-and-wales", "role:fdac-social-worker"]


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli_run(run, cli_env, tmp_path):
    """The CLI as the demo team runs it (each person logged in), at an optional clock."""
    from tests.cli_team import log_in_team

    log_in_team(cli_env, tmp_path / "sessions")
    return run


def test_cli_open_on_fdac_work_the_trial_and_decide(cli_run, tmp_path):
    run = cli_run
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data(
        care_entry="2026-01-08", proceedings_issued="2026-01-05",
        placement={"kind": "home", "start": "2026-01-08"},
        caregivers=[{"relationship": "mother"}, {"relationship": "father"}])))
    refused = run("case", "open", "--file", str(referral), "--programme", "fdac",
                  "--pathway", "england", "--as", "coord.ali", code=2)
    assert "error: pathway england runs programme nim, not fdac" in refused.stderr
    out = run("case", "open", "--file", str(referral), "--programme", "fdac",
              "--as", "coord.ali").stdout
    assert out.startswith("opened NIM-2026-0001 on pathway fdac-england@2026.3")
    ref = "NIM-2026-0001"

    def complete(task: str, who: str, *fields: str) -> str:
        args = [a for f in fields for a in ("--field", f)]
        return run("task", "complete", f"{ref}/{task}", "--as", who, *args).stdout

    wrong = run("task", "complete", f"{ref}/screening", "--as", "mgr.okafor",
                "--field", "accepted=true", code=2)  # NIM's manager is not FDAC's
    assert wrong.stderr.startswith("error: mgr.okafor is nim-service-manager and may not")
    assert "stage=sign-up" in complete("screening", "fdac.tm.hughes", "accepted=true")
    complete("ipm-initial", "fdac.sw.okoro")
    for parent in ("mother", "father"):
        complete(f"substance-assessment-{parent}", "fdac.smw.lane", "testing_agreed=true")
    complete("parenting-assessment", "fdac.clin.rao", "sent_to=court and LA")
    complete("sign-up-mother", "fdac.tm.hughes", "consent=given")
    assert "stage=trial-for-change" in complete("sign-up-father", "fdac.tm.hughes",
                                                "consent=given")
    early = run("decide", ref, "trial-for-change", "extend", "--as", "fdac.tm.hughes", code=2)
    assert "waiting for ipm-review first" in early.stderr
    open_tasks = json.loads(run("task", "list", "--json").stdout)
    by_role = {"fdac-social-worker": "fdac.sw.okoro", "parent-mentor": "fdac.pm.doyle"}
    for t in open_tasks:
        key = t["task"].split("/", 1)[1]
        if t["role"] in by_role and key != "decision-meeting":
            complete(key, by_role[t["role"]])
    decided = run("decide", ref, "trial-for-change", "extend", "--as", "fdac.tm.hughes",
                  "--rationale", "progress, not yet enough").stdout
    assert "stage=extended-trial" in decided
    shown = json.loads(run("case", "show", ref, "--json").stdout)
    assert shown["programme"] == "fdac" and shown["decisions"] == {"trial-for-change": "extend"}
    board = json.loads(run("report", "board", "--programme", "fdac", "--json").stdout)
    assert [r["case"] for r in board] == [ref] and board[0]["stage"] == "extended-trial"
    assert json.loads(run("report", "board", "--programme", "nim", "--json").stdout) == []
    kpis = run("report", "kpis", "--programme", "fdac").stdout
    assert "FDAC KPIs" in kpis
    run("audit", "verify")


# -- messages: the FDAC team's handoffs, escalations and the exit, through real receivers ----

from tests.test_notifications import (  # noqa: E402 - the receivers and team the outbox tests use
    SENTINELS,
    at,
    dispatcher,
    http,  # noqa: F401 - fixture
    smtp,  # noqa: F401 - fixture
    team,  # noqa: F401 - fixture
)


def test_fdac_messages_go_to_the_fdac_team_and_name_the_programme(team, clock, http):  # noqa: F811
    store = team
    ref = store.cases.open_case(_fdac_referral(), "coord.ali").ref
    d = dispatcher(store, clock)
    d.run_until_idle()
    # opening hands screening to the FDAC team manager (due Mon 19 Jan: 5 working days from
    # the referral, Mon 12 Jan)
    handoff = [m for m in http.received if m["path"] == "/fdac.tm.hughes"]
    assert handoff and ref in handoff[0]["title"] + handoff[0]["message"]
    assert "2026" in handoff[0]["message"] and "Screen the family" in handoff[0]["message"]
    # overdue FDAC work escalates through FDAC's managers: tier 1 a working day after the due
    # day (Tue 20 Jan) to the team manager, tier 2 after 5 (Mon 26 Jan) to the service lead,
    # never to NIM's managers
    store.timers.fire_due_timers(at(clock, "2026-01-20"))
    store.timers.fire_due_timers(at(clock, "2026-01-26"))
    d.run_until_idle()
    escalated = {m["path"] for m in http.received
                 if "escalat" in (m["title"] + m["message"]).lower()}
    assert {"/fdac.tm.hughes", "/fdac.lead.moss"} <= escalated
    assert not escalated & {"/mgr.okafor", "/hos.taylor"}
    # screening not accepted: the family leaves FDAC; the LA is told it left the FDAC pathway
    store.tasks.complete_task(TaskRef(ref, "screening"), "fdac.tm.hughes",
                              {"accepted": False})
    d.run_until_idle()
    exits = [m for m in http.received if m["path"] == "/la.patel" and "Left the" in m["title"]]
    assert exits and exits[0]["title"] == (f"[{ref}] Left the FDAC pathway: Not accepted for "
                                           "FDAC at screening")
    assert "FDAC's open work on the case is cancelled" in exits[0]["message"]
    assert not [s for s in SENTINELS if s in str(http.received)]
