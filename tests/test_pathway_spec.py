"""The pathway files in pathways/ and the spec loader: validation and error messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.pathway import PATHWAYS_DIR, PathwayError, PathwaySpec, load_pathway, parse_pathway

PROFILES = ["england", "scotland"]


@pytest.fixture(scope="module")
def eng() -> PathwaySpec:
    return load_pathway("england")


@pytest.fixture(scope="module")
def sco() -> PathwaySpec:
    return load_pathway("scotland")


@pytest.fixture(scope="module")
def eng_text() -> str:
    return (PATHWAYS_DIR / "england.yaml").read_text(encoding="utf-8")


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"fixture text no longer contains exactly one {old!r}"
    return text.replace(old, new)


def _line(text: str, needle: str) -> int:
    """1-based line of the only occurrence of `needle`."""
    assert text.count(needle) == 1, needle
    return text.count("\n", 0, text.index(needle)) + 1


def _refused(text: str) -> str:
    with pytest.raises(PathwayError) as err:
        parse_pathway(text, source="x.yaml")
    return str(err.value)


def _index(spec: PathwaySpec, task_id: str) -> tuple[int, int]:
    for si, stage in enumerate(spec.stages):
        for ti, task in enumerate(stage.tasks):
            if task.id == task_id:
                return si, ti
    raise AssertionError(task_id)


# -- the shipped files ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_loads_and_validates(profile):
    spec = load_pathway(profile)
    assert spec.profile == profile
    assert spec.stages and spec.roles
    by_path = load_pathway(str(PATHWAYS_DIR / f"{profile}.yaml"))
    assert by_path.digest() == spec.digest()
    text = (PATHWAYS_DIR / f"{profile}.yaml").read_text(encoding="utf-8")
    assert parse_pathway(text, source="x.yaml") == spec


def test_jurisdictions(eng, sco):
    assert eng.jurisdictions == ["england-and-wales"]
    assert sco.jurisdictions == ["scotland"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_role_used_is_declared(profile):
    spec = load_pathway(profile)
    tasks = [t for s in spec.stages for t in s.tasks] + list(spec.statutory)
    assert tasks
    for task in tasks:
        assert task.role in spec.roles, (task.id, task.role)
    for esc in spec.notifications.escalations:
        assert esc.role in spec.roles
    assert spec.managers(), "someone must receive escalations"


@pytest.mark.parametrize("profile", PROFILES)
def test_gate_tasks_and_next_stages_resolve(profile):
    spec = load_pathway(profile)
    for stage in spec.stages:
        if stage.gate:
            assert stage.gate.task in {t.id for t in stage.tasks}
            for out in stage.gate.outcomes.values():
                assert out.next is None or out.next in spec.stage_by_id
        if stage.next:
            assert stage.next in spec.stage_by_id


def _d2_outcomes(spec: PathwaySpec) -> set[str]:
    gates = [s.gate for s in spec.stages if s.gate and s.gate.decision == "d2"]
    assert len(gates) == 1
    return set(gates[0].outcomes)


def test_permanence_order_is_scottish_only(eng, sco):
    assert "permanence_order" in _d2_outcomes(sco)
    assert "permanence_order" in sco.decision_outcomes
    assert "permanence_order" not in _d2_outcomes(eng)
    assert "permanence_order" not in eng.decision_outcomes
    common = {"return_home", "kinship_care", "adoption", "long_term_foster_care"}
    assert common <= _d2_outcomes(eng)
    assert common <= _d2_outcomes(sco)


def test_treatment_months(eng, sco):
    assert eng.settings["treatment_months"] == 5
    # GIFT's "up to 12 months" (S4) is a ceiling; BeST? treatment ran 6-9 months (S11)
    assert sco.settings["treatment_months"] == 9


# -- malformed files --------------------------------------------------------------------------


def test_invalid_yaml_small_file():
    msg = _refused("profile: x\nversion: '1'\n  title: oops\n")
    assert msg.startswith("x.yaml:3: not valid YAML")


def test_invalid_yaml_in_pathway_file(eng_text):
    text = _replace_once(eng_text, "      - id: triage\n", "      - id: triage\n\tbad: tab\n")
    msg = _refused(text)
    assert msg.startswith(f"x.yaml:{_line(text, chr(9))}: not valid YAML")


def test_not_a_mapping():
    msg = _refused("- just\n- a list\n")
    assert msg.startswith("x.yaml:")
    assert "mapping" in msg


def test_unknown_role(eng_text, eng):
    text = _replace_once(
        eng_text,
        "role: nim-service-manager\n        due: {anchor: referral",
        "role: boss\n        due: {anchor: referral",
    )
    msg = _refused(text)
    si, ti = _index(eng, "triage")
    assert f"x.yaml:{_line(text, 'role: boss')}: stages.{si}.tasks.{ti}.role: " in msg
    assert "unknown role 'boss'" in msg
    for role in eng.roles:
        assert role in msg


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        ("role: nim-service-manager\n        due: {anchor: referral",
         "role: boss\n        due: {anchor: referral", "declared roles"),
        ("due: {anchor: referral, working_days",
         "due: {anchor: referal, working_days", "use a case anchor"),
    ],
    ids=["role", "anchor"],
)
def test_cross_reference_message_stays_on_its_line(eng_text, old, new, hint):
    msg = _refused(_replace_once(eng_text, old, new))
    problems = msg.splitlines()[1:]
    assert len(problems) == 1, problems
    assert problems[0].startswith("x.yaml:") and ": stages.0.tasks.0." in problems[0]
    assert hint in problems[0]


def test_unknown_setting_as_due_amount(eng_text):
    text = _replace_once(eng_text, "working_days: triage_working_days}",
                         "working_days: triage_days}")
    msg = _refused(text)
    assert f"x.yaml:{_line(text, 'triage_days')}: stages.0.tasks.0.due" in msg
    assert "setting 'triage_days' is not declared" in msg
    assert "triage_working_days" in msg  # lists the declared settings


def test_unknown_setting_in_every_and_clock(eng_text, eng):
    text = _replace_once(eng_text, "every: {weeks: court_update_weeks}",
                         "every: {weeks: court_weeks}")
    text = _replace_once(text, "limit: {weeks: assessment_weeks}", "limit: {weeks: assess_wks}")
    msg = _refused(text)
    si, ti = _index(eng, "court-update")
    ci = [c.id for c in eng.clocks].index("nim-assessment-12-weeks")
    assert f"x.yaml:{_line(text, 'court_weeks}')}: stages.{si}.tasks.{ti}.every.weeks: " in msg
    assert "setting 'court_weeks'" in msg
    assert f"x.yaml:{_line(text, 'assess_wks')}: clocks.{ci}.limit.weeks: " in msg
    assert "setting 'assess_wks'" in msg


@pytest.mark.parametrize(
    ("due", "got"),
    [
        ("{anchor: referral, working_days: 5, days: 3}", "got working_days, days"),
        ("{anchor: referral, weeks: 1, months: triage_working_days}", "got weeks, months"),
        ("{anchor: referral}", "got none"),
    ],
)
def test_due_rule_needs_exactly_one_unit(eng_text, due, got):
    text = _replace_once(eng_text, "due: {anchor: referral, working_days: triage_working_days}",
                         f"due: {due}")
    msg = _refused(text)
    assert f"x.yaml:{_line(text, f'due: {due}')}: stages.0.tasks.0.due: " in msg
    assert "give exactly one of working_days, days, weeks, months" in msg
    assert got in msg


def test_unknown_anchor(eng_text):
    text = _replace_once(eng_text, "due: {anchor: referral, working_days",
                         "due: {anchor: referal, working_days")
    msg = _refused(text)
    assert f"x.yaml:{_line(text, 'anchor: referal')}: stages.0.tasks.0.due.anchor: " in msg
    assert "unknown anchor 'referal'" in msg
    assert "care_entry" in msg  # names the anchors that exist


def test_unknown_stage_anchor_and_clock_anchor(eng_text, eng):
    text = _replace_once(eng_text, 'due: {anchor: "stage:treatment", weeks: 2}',
                         'due: {anchor: "stage:therapy", weeks: 2}')
    text = _replace_once(text, "anchor: la_referral\n", "anchor: proceedings_started\n")
    msg = _refused(text)
    si, ti = _index(eng, "treatment-plan")
    ci = [c.id for c in eng.clocks].index("la-assessment-45-wd")
    assert (f"x.yaml:{_line(text, 'stage:therapy')}: stages.{si}.tasks.{ti}.due.anchor: "
            "unknown anchor 'stage:therapy'") in msg
    assert (f"x.yaml:{_line(text, 'proceedings_started')}: clocks.{ci}.anchor: "
            "unknown anchor 'proceedings_started'") in msg


def test_after_must_name_a_task_of_the_same_stage(eng_text, eng):
    text = _replace_once(eng_text, "after: [formulation]", "after: [triage]")
    msg = _refused(text)
    si, ti = _index(eng, "professionals-meeting")
    assert f"x.yaml:{_line(text, 'after: [triage]')}: stages.{si}.tasks.{ti}.after: " in msg
    assert "'triage' is not a task of the same stage" in msg


def test_gate_task_must_be_in_its_stage(eng_text, eng):
    text = _replace_once(eng_text, "task: professionals-meeting", "task: consent")
    msg = _refused(text)
    si = [s.id for s in eng.stages].index("formulation")
    line = text[:text.index("task: consent\n")].count("\n") + 1
    assert f"x.yaml:{line}: stages.{si}.gate.task: " in msg
    assert "'consent' is not a task of stage 'formulation'" in msg


def test_typo_key_on_task_is_refused(eng_text):
    text = _replace_once(
        eng_text,
        "        role: nim-service-manager\n        due: {anchor: referral",
        "        rol: nim-service-manager\n        due: {anchor: referral",
    )
    msg = _refused(text)
    assert f"x.yaml:{_line(text, 'rol: nim')}: stages.0.tasks.0.rol: Extra inputs" in msg
    assert "stages.0.tasks.0.role: Field required" in msg


def test_typo_key_at_top_level_is_refused(eng_text):
    text = _replace_once(eng_text, "\nnotifications:\n", "\nnotification:\n")
    msg = _refused(text)
    key_line = _line(text, "notification:")
    # the key's line (a block value starts on the next one)
    assert any(f"x.yaml:{n}: notification: Extra inputs" in msg for n in (key_line, key_line + 1))


def test_typo_key_with_block_value_reports_the_key_line(eng_text):
    text = _replace_once(eng_text, "\nnotifications:\n", "\nnotification:\n")
    msg = _refused(text)
    assert f"x.yaml:{_line(text, 'notification:')}: notification: Extra inputs" in msg


def test_typo_in_due_rule_is_refused(eng_text):
    text = _replace_once(eng_text, "due: {anchor: referral, working_days: triage_working_days}",
                         "due: {anchor: referral, workingdays: triage_working_days}")
    msg = _refused(text)
    assert "stages.0.tasks.0.due.workingdays: Extra inputs" in msg


def test_malformed_file_on_disk_names_the_file(tmp_path, eng_text):
    path = tmp_path / "broken.yaml"
    path.write_text(_replace_once(eng_text, "after: [formulation]", "after: [triage]"),
                    encoding="utf-8")
    with pytest.raises(PathwayError) as err:
        load_pathway(str(path))
    assert f"{path}:" in str(err.value)


# -- looking up profiles ----------------------------------------------------------------------


def test_unknown_profile_lists_known_ones():
    with pytest.raises(PathwayError) as err:
        load_pathway("nope")
    msg = str(err.value)
    assert "'nope'" in msg
    known = msg.split("known profiles:", 1)[1]
    assert "england" in known and "scotland" in known


def test_unknown_profile_in_other_directory(tmp_path, eng_text):
    with pytest.raises(PathwayError, match="known profiles: none"):
        load_pathway("nope", directory=tmp_path)
    (tmp_path / "custom.yaml").write_text(eng_text, encoding="utf-8")
    assert load_pathway("custom", directory=tmp_path).profile == "england"
    with pytest.raises(PathwayError, match="known profiles: custom"):
        load_pathway("nope", directory=tmp_path)


# -- outcome models ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["balanced", "disengaged", "distorted"])
def test_outcome_model_accepts_valid_choice(eng, value):
    outcome = eng.outcome_model("wmci").model_validate({"classification": value})
    assert outcome.classification == value
    assert outcome.interview_date is None  # optional field


def test_an_optional_date_is_a_date_picker_in_the_form(eng):
    """Prefect's UI draws `anyOf [date, null]` as "Property is type None": an optional date's
    schema is a plain date, and a form left empty (the field absent) still validates."""
    schema = eng.outcome_model("wmci").model_json_schema()["properties"]
    for name in ("interview_date", "completed_on"):
        assert {schema[name]["type"], schema[name]["format"]} == {"string", "date"}
        assert "anyOf" not in schema[name] and "default" not in schema[name]  # the UI
        # would send a default null, which a plain date refuses
    outcome = eng.outcome_model("wmci").model_validate({"classification": "balanced",
                                                         "interview_date": "2026-02-03"})
    assert str(outcome.interview_date) == "2026-02-03" and outcome.completed_on is None


@pytest.mark.parametrize(
    "data",
    [
        {"classification": "secure"},
        {"classification": "Balanced"},
        {},
        {"classification": "balanced", "surprise": 1},
        {"classification": "balanced", "interview_date": "2026-02-30"},
    ],
    ids=["bad-choice", "wrong-case", "missing", "extra-field", "bad-date"],
)
def test_outcome_model_rejects_invalid(eng, data):
    with pytest.raises(ValidationError):
        eng.outcome_model("wmci").model_validate(data)


def test_gate_task_requires_decision(eng):
    model = eng.outcome_model("professionals-meeting")
    assert model.model_validate({"decision": "treatment"}).decision == "treatment"
    assert model.model_validate({"decision": "no_treatment"}).decision == "no_treatment"
    for bad in ({"decision": "maybe"}, {}, {"decision": None}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_d2_decision_choices_follow_the_profile(eng, sco):
    assert sco.outcome_model("recommendation-signoff").model_validate(
        {"decision": "permanence_order"}).decision == "permanence_order"
    with pytest.raises(ValidationError):
        eng.outcome_model("recommendation-signoff").model_validate(
            {"decision": "permanence_order"})
    assert eng.outcome_model("recommendation-signoff").model_validate(
        {"decision": "adoption"}).decision == "adoption"


def test_until_final_order_names_only_the_series_own_placements(eng_text):
    """A kind the series does not follow cannot end with the final order: refused, naming
    the series' placements."""
    bad = _replace_once(eng_text, "    until_final_order: [home]\n",
                        "    until_final_order: [foster]\n")
    said = _refused(bad)
    assert "until_final_order: 'foster' is not one of this series' placements (kinship, home)" \
        in said, said
