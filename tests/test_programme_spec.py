"""What a programme file declares instead of the engine assuming NIM: teams, gates with any id
and their branches, dates, `per` groups, eligibility and the tasks reports read, and the
validator's errors for the common mistakes (file, line, path, what is wrong, how to fix)."""

from __future__ import annotations

from datetime import date

import pytest

from models import engine as eng
from models.pathway import PATHWAYS_DIR, PathwayError, load_pathway, parse_pathway
from models.schemas import Referral, eligibility_problems

ENGLAND = (PATHWAYS_DIR / "england.yaml").read_text(encoding="utf-8")


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"fixture text no longer contains exactly one {old!r}"
    return text.replace(old, new)


def _line(text: str, needle: str) -> int:
    assert text.count(needle) == 1, needle
    return text.count("\n", 0, text.index(needle)) + 1


def _refused(text: str) -> list[str]:
    with pytest.raises(PathwayError) as err:
        parse_pathway(text, source="x.yaml")
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid pathway file"
    return lines[1:]


def test_nim_profiles_declare_what_the_engine_used_to_assume():
    for profile in ("england", "scotland", "wales", "northern-ireland"):
        spec = load_pathway(profile)
        assert spec.programme == "nim"
        assert "nim" in spec.teams
        assert {r.team for r in spec.roles.values()} <= set(spec.teams)
        assert spec.eligibility.subject == "child-in-care"
        assert spec.reporting.received_stage == "assessment"
        assert spec.reporting.follow_up_stage == "follow-up"
        assert spec.reporting.treatment_length == "treatment_months"
        assert spec.relationships_of("child-parent") == ("mother", "father", "parent")
    assert set(load_pathway("northern-ireland").teams) == {"nim", "hsc-trust"}


def test_unknown_team():
    text = _edit(ENGLAND, "iro:                    {title: Independent Reviewing Officer, "
                 "team: local-authority}", "iro:                    {title: Independent "
                 "Reviewing Officer, team: la}")
    problems = _refused(text)
    assert problems == [f"x.yaml:{_line(text, 'team: la}')}: roles.iro.team: unknown team "
                        "'la'; declare it under 'teams:' (declared: local-authority, nim)"]


def test_programme_needs_its_own_team():
    text = _edit(ENGLAND, "programme: nim\n", "programme: fdac\n")
    problems = _refused(text)
    assert problems == [f"x.yaml:{_line(text, 'programme: fdac')}: programme: declare the "
                        "programme's own team 'fdac' under 'teams:' (declared: "
                        "local-authority, nim)"]


def test_gate_branch_to_an_unknown_stage():
    text = _edit(ENGLAND, "no_treatment: {label: \"No treatment: straight to recommendation\", "
                 "next: recommendation}", "no_treatment: {label: \"No treatment\", next: "
                 "recomendation}")
    spec = load_pathway("england")
    si = [s.id for s in spec.stages].index("formulation")
    problems = _refused(text)
    assert problems == [f"x.yaml:{_line(text, 'next: recomendation')}: stages.{si}.gate."
                        "outcomes.no_treatment.next: unknown stage 'recomendation'; stages: "
                        "referral, consent, assessment, formulation, treatment, recommendation, "
                        "closure, follow-up (leave next out to end the pathway)"]


def test_a_gate_branch_back_to_an_earlier_stage_is_refused():
    text = _edit(ENGLAND, "no_treatment: {label: \"No treatment: straight to recommendation\", "
                 "next: recommendation}", "no_treatment: {label: \"Assess again\", next: "
                 "assessment}")
    problems = _refused(text)
    spec = load_pathway("england")
    si = [s.id for s in spec.stages].index("assessment")
    assert any(p.endswith(f"stages.{si}: stage 'assessment' leads back to itself (through "
                          "next: or a gate's branch); a pathway only goes forward: add a new "
                          "stage for repeated work") for p in problems), problems


def test_any_gate_id_but_each_once():
    renamed = _edit(ENGLAND, "decision: d1\n", "decision: trial-for-change\n")
    renamed = _edit(renamed, "treatment_gate: d1\n", "treatment_gate: trial-for-change\n")
    renamed = _edit(renamed, "assessment_pack_after: d1\n",
                    "assessment_pack_after: trial-for-change\n")
    spec = parse_pathway(renamed)
    assert [s.gate.decision for s in spec.stages if s.gate] == ["trial-for-change", "d2"]
    twice = _edit(ENGLAND, "decision: d2\n", "decision: d1\n")
    problems = _refused(twice)
    assert any("stages: decision 'd1' is taken in more than one stage; give each gate its own "
               "decision id" in p for p in problems)


def test_undeclared_anchor_says_how_to_declare_one():
    text = _edit(ENGLAND, "due: {anchor: \"stage:closure\", weeks: 4}",
                 "due: {anchor: first_review, weeks: 4}")
    problems = _refused(text)
    assert len(problems) == 1
    assert f"x.yaml:{_line(text, 'anchor: first_review')}:" in problems[0]
    assert "unknown anchor 'first_review'" in problems[0]
    assert "a date the pathway declares under 'dates:' (name: what it is)" in problems[0]
    # declared, it is a date the case can record, and tasks hang on it
    declared = text + "\ndates:\n  first_review: The first non-lawyer review\n"
    assert "first_review" in parse_pathway(declared).dates


def test_undeclared_per_kind():
    text = _edit(ENGLAND, "per: child-parent                  # contact is between a parent "
                 "and a child", "per: child-mother")
    problems = _refused(text)
    assert len(problems) == 1
    assert f"x.yaml:{_line(text, 'per: child-mother')}:" in problems[0]
    assert ("per: unknown kind 'child-mother'; use case, child, a caregiver group (caregiver, "
            "carer, parent) or child-<group>, or declare the group under 'caregiver_groups:' "
            "(mother: a list of mother, father, parent, foster-carer, kinship-carer)"
            ) in problems[0]
    # declared, the group generates work for its members only
    declared = _edit(text, "  carer: [foster-carer, kinship-carer]\n",
                     "  carer: [foster-carer, kinship-carer]\n  mother: [mother]\n")
    spec = parse_pathway(declared)
    case = eng.CaseState("NIM-2026-0001", "england-and-wales",
                         {"care_entry": date(2026, 1, 5), "referral": date(2026, 1, 5)},
                         dict(spec.settings), eng.caregiver_keys(["mother", "father"]))
    eng.open_case(spec, case, date(2026, 1, 5))
    eng.complete_task(spec, case, "triage", {"accepted": True}, "mgr", date(2026, 1, 6))
    for who in ("mother", "father"):
        eng.complete_task(spec, case, f"consent-{who}", {"consent": "given"}, "sw",
                          date(2026, 1, 7))
    contact = sorted(t.key for t in case.tasks.values() if t.spec_id == "contact-observation")
    assert contact == ["contact-observation-mother-1", "contact-observation-mother-2"]


def test_a_group_names_known_relationships_only():
    text = _edit(ENGLAND, "  carer: [foster-carer, kinship-carer]\n",
                 "  carer: [foster-carer, grandmother]\n")
    problems = _refused(text)
    assert len(problems) == 1 and "caregiver_groups.carer.1: Input should be 'mother', " \
        "'father', 'parent', 'foster-carer' or 'kinship-carer'" in problems[0]


def test_task_role_naming_a_missing_task():
    text = _edit(ENGLAND, "  final_report: final-report\n", "  final_report: final-reprot\n")
    problems = _refused(text)
    assert problems == [f"x.yaml:{_line(text, 'final_report: final-reprot')}: "
                        "reporting.final_report: unknown task 'final-reprot'; name a task id "
                        "this pathway declares, or leave it out"]
    text = _edit(ENGLAND, "  received_stage: assessment ", "  received_stage: assesment ")
    assert any("reporting.received_stage: unknown stage 'assesment'; stages: referral, consent,"
               in p for p in _refused(text))
    text = _edit(ENGLAND, "  treatment_outcome: treatment\n", "  treatment_outcome: therapy\n")
    assert any("reporting.treatment_outcome: 'therapy' is not an outcome of decision 'd1' "
               "(treatment, no_treatment)" in p for p in _refused(text))


def test_clock_owner_is_a_team_or_a_court():
    text = _edit(ENGLAND, "    owner: local-authority\n", "    owner: council\n")
    problems = _refused(text)
    assert len(problems) == 1 and problems[0].endswith(
        "owner: unknown owner 'council'; use a team declared under 'teams:' (local-authority, "
        "nim) or court or childrens-hearing")


def test_a_subject_other_than_a_child_in_care_is_refused_with_the_reason():
    text = _edit(ENGLAND, "  subject: child-in-care ", "  subject: woman-without-child ")
    problems = _refused(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"x.yaml:{_line(text, 'subject: woman')}: eligibility."
                                  "subject: 'woman-without-child' is not supported; ")
    assert "Pause" in problems[0] and "README, Limits" in problems[0]


def test_age_range():
    text = _edit(ENGLAND, "  max_age_months: 60 ", "  min_age_months: 12\n  max_age_months: 60 ")
    spec = parse_pathway(text)

    def referral(born: date) -> Referral:
        return Referral.model_validate({
            "jurisdiction": "england-and-wales", "site": "x",
            "child": {"given_name": "A", "family_name": "B", "date_of_birth": born},
            "care_entry": "2026-03-02", "referral": "2026-03-09",
            "caregivers": [{"relationship": "mother"}]})

    # born 2025-03-10: on 2026-03-09 one day short of 12 whole months, so 11
    assert eligibility_problems(spec, referral(date(2025, 3, 10))) == [
        f"the child is 11 months old at referral; {spec.title} is for children of 12 months "
        "or more"]
    # born 2025-03-09: exactly 12 months on the referral day
    assert eligibility_problems(spec, referral(date(2025, 3, 9))) == []
    upside_down = _edit(ENGLAND, "  max_age_months: 60 ", "  min_age_months: 60\n"
                        "  max_age_months: 60 ")
    assert any("eligibility.min_age_months: 60 is not below max_age_months 60" in p
               for p in _refused(upside_down))


def test_a_version_stored_before_programmes_reads_as_nim():
    """A case keeps the pathway version it opened on: one stored before `programme:` existed
    has none of the new sections, and reads as the NIM pathway it was."""
    import json

    from models.pathway import pathway_from_json

    stored = json.loads(load_pathway("england").canonical_json())
    for key in ("programme", "teams", "caregiver_groups"):
        del stored[key]
    for key in ("received_stage", "follow_up_stage", "treatment_length"):
        del stored["reporting"][key]
    del stored["eligibility"]["subject"], stored["eligibility"]["min_age_months"]
    old = pathway_from_json(json.dumps(stored))
    assert (old.programme, old.reporting.received_stage, old.reporting.follow_up_stage,
            old.reporting.treatment_length) == ("nim", "assessment", "follow-up",
                                                "treatment_months")
    assert set(old.teams) >= {"nim", "local-authority"} and old.eligibility.subject == \
        "child-in-care"
    assert old.relationships_of("carer") == ("foster-carer", "kinship-carer")


def test_needs_dates_names_a_date_a_referral_gives():
    text = _edit(ENGLAND, "  first_entry_to_care: false\n", "  first_entry_to_care: false\n"
                 "  needs_dates: {first_hearing: the first hearing}\n")
    problems = _refused(text)
    assert len(problems) == 1 and problems[0].endswith(
        "eligibility.needs_dates.first_hearing: a referral gives only care_entry, referral, "
        "la_referral, proceedings_issued, final_hearing")
