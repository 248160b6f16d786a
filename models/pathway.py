"""A programme's pathway as data: spec types, YAML loading and validation.

A pathway file (pathways/<profile>.yaml) declares its programme (NIM, FDAC), who it is for,
its teams and roles, settings, stages with their tasks and due rules, decision gates with
their branches, statutory clocks and the notification ladders. It is validated on load;
errors name the file, the line, the path and the field, and say how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)

from models.calendar import MAX_AMOUNT, UNITS
from models.nesting import too_deeply_nested

SLUG = r"^[a-z][a-z0-9-]*$"
PATHWAYS_DIR = Path(__file__).resolve().parent.parent / "pathways"

# Anchors every case has from the moment it is opened (placement_start: the current
# placement's first day, care entry unless the referral says otherwise; it moves with each
# placement change).
CASE_ANCHORS = ("care_entry", "referral", "placement_start")
# Anchors a case may gain later: the LA's own referral date, court and hearing dates (listed
# and held), the final order, the day the child stopped being looked after; stage starts are
# added by the engine.
OPTIONAL_ANCHORS = ("la_referral", "proceedings_issued", "case_management_hearing", "cmh_held",
                    "issues_resolution_hearing", "final_hearing", "final_order",
                    "ceased_looked_after", "consent")


# The caregivers a referral can record, and the groups `per:` names by default (a pathway
# file may declare its own groups under `caregiver_groups:`).
PARENT_RELATIONSHIPS = ("mother", "father", "parent")
CARER_RELATIONSHIPS = ("foster-carer", "kinship-carer")
RELATIONSHIPS = PARENT_RELATIONSHIPS + CARER_RELATIONSHIPS
Relationship = Literal["mother", "father", "parent", "foster-carer", "kinship-carer"]
DEFAULT_CAREGIVER_GROUPS: dict[str, list[str]] = {
    "caregiver": list(RELATIONSHIPS), "parent": list(PARENT_RELATIONSHIPS),
    "carer": list(CARER_RELATIONSHIPS)}
# `per:` kinds the engine knows without a group: one task per case, or per child
PER_BUILT_IN = ("case", "child")
# The teams of pathway versions stored before `teams:` existed (all NIM's).
DEFAULT_TEAMS: dict[str, str] = {"nim": "NIM team", "local-authority": "Local authority",
                                 "hsc-trust": "Health and Social Care Trust",
                                 "admin": "Site administration"}
# Whose clock it can be besides a declared team: the court's, or the Children's Hearing's.
OUTSIDE_OWNERS = ("court", "childrens-hearing")
# Who a programme can be for. The engine's case is a family episode around a child who is
# looked after or in care proceedings (statutory reviews, placements, care entry); a programme
# whose subject is an adult with no child in her care (Pause) does not fit (README, Limits).
SUBJECTS = ("child-in-care",)
# The dates a referral gives (models/schemas.py Referral.case_dates).
REFERRAL_DATES = ("care_entry", "referral", "la_referral", "proceedings_issued", "final_hearing")


class PathwayError(ValueError):
    """A pathway file that cannot be used, with where and why."""


# Bounds of every number a pathway holds (besides MAX_AMOUNT for offsets): a task repeats at
# most MAX_COUNT times by count; reminders come at most MAX_REMINDER working days before due;
# escalations at most MAX_ESCALATION working days after; a switch setting (`when:`) is 0 or 1.
MAX_COUNT = 60
MAX_REMINDER = 60
MAX_ESCALATION = 260


# What people do on a case, each granted by the pathway's `permissions:` table (checked by
# nim_pathway/policy.py). A rule lists roles, plus these stand-ins resolved per target:
TASK_ROLE = "task-role"  # the role the task (or the decision's gate task) is for
ASSIGNEE = "assignee"  # the practitioner the task is assigned to
# Manager roles (`manager: true`) may always act. Defaults below are this engine's; each
# pathway file states its own table.
DEFAULT_PERMISSIONS: dict[str, list[str]] = {
    "stage-intake": ["coordinator"],
    "open-case": ["coordinator"],
    "complete-task": [TASK_ROLE],
    "decide": [TASK_ROLE],
    "reassign": [ASSIGNEE],
    "record-delay-cause": [TASK_ROLE],
    "move-date": ["coordinator"],
    "record-court-timetable": ["coordinator"],
    "change-placement": ["coordinator", "la-social-worker"],
    "record-looked-after-status": ["coordinator", "la-social-worker"],
    "change-family": ["coordinator", "nim-social-worker"],
    "record-consent": ["nim-social-worker"],
    "exit-case": ["coordinator"],
    "pause-case": ["coordinator"],
    "record-family-work": ["nim-social-worker", "family-support-worker", "psychologist"],
    "refer-out": ["nim-social-worker", "psychiatrist", "psychologist"],
    "transfer-case": ["coordinator"],
    "write-report-pack": ["coordinator"],
    "erase-identity": [],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offset(_Strict):
    """Exactly one of the units; the amount is a number or the name of a pathway setting.

    `day_one`: the anchor day is day 1 ("within 26 weeks beginning with the day on which the
    application was issued"), so the span ends one day earlier than "26 weeks after".
    `fraction`: that share of the span (the mid-way review at half the treatment months)."""

    working_days: int | str | None = None
    days: int | str | None = None
    weeks: int | str | None = None
    months: int | str | None = None
    day_one: bool = False
    fraction: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _exactly_one_unit(self) -> Offset:
        given = [u for u in UNITS if getattr(self, u) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(UNITS)} (got {', '.join(given) or 'none'})"
            )
        limit = MAX_AMOUNT[given[0]]
        amount = getattr(self, given[0])
        if isinstance(amount, int) and not -limit <= amount <= limit:
            raise ValueError(f"{given[0]}: {amount} is outside -{limit}..{limit} (about five "
                             "years either way)")
        return self

    @property
    def unit(self) -> str:
        return next(u for u in UNITS if getattr(self, u) is not None)

    @property
    def raw_amount(self) -> int | str:
        return getattr(self, self.unit)

    def amount(self, settings: dict[str, int]) -> int:
        raw = self.raw_amount
        return settings[raw] if isinstance(raw, str) else raw


class DueRule(Offset):
    anchor: str = Field(description="a case anchor, 'stage:<id>' or 'done:<task-id>'")


# A deadline's kind decides what a non-working last day does: a legal maximum is pulled back
# to the previous working day, a target for a piece of work rolls forward to the next one.
DeadlineKind = Literal["maximum", "target"]


class OutcomeField(_Strict):
    type: Literal["choice", "text", "date", "bool", "int"] = "text"
    choices: list[str] | None = None
    required: bool = True
    label: str | None = None

    @model_validator(mode="after")
    def _choices_only_for_choice(self) -> OutcomeField:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice field needs a non-empty 'choices' list")
        if self.type != "choice" and self.choices:
            raise ValueError("'choices' only applies to fields of type choice")
        return self


class TaskSpec(_Strict):
    id: str = Field(pattern=SLUG)
    title: str
    role: str
    # one task per case, per child, per caregiver (or parent, or carer), or per child x
    # caregiver for relationship assessments (WMCI and Crowell are of one caregiver and one
    # child)
    # `case`, `child`, a caregiver group (`caregiver_groups:`, default caregiver, parent,
    # carer) or `child-<group>`
    per: str = Field(default="case", pattern=SLUG)
    # needs the caregiver's consent: not scheduled for one who has not given it (or withdrew)
    needs_consent: bool = False
    count: int | str = 1
    due: DueRule
    every: Offset | None = None  # spacing between occurrences when count > 1
    then_every: list[Offset] = []  # recurring series: next occurrence after completion
    after: list[str] = []  # task ids in the same stage that must be done first
    outcome: dict[str, OutcomeField] = {}
    reminders: list[int] | None = None  # working days before due; None = pathway default
    source: str | None = None
    kind: DeadlineKind = "target"  # statutory work is a "maximum"
    # statutory work for a looked-after child stops when the child ceases to be looked after
    while_looked_after: bool = False

    @model_validator(mode="after")
    def _repetition(self) -> TaskSpec:
        if isinstance(self.count, int) and not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count: {self.count} is outside 1..{MAX_COUNT}")
        if any(not 0 <= r <= MAX_REMINDER for r in self.reminders or []):
            raise ValueError(f"reminders: give working days before due, 0..{MAX_REMINDER}")
        if self.count != 1 and self.every is None:
            raise ValueError("a task with count other than 1 needs 'every'")
        if self.then_every and self.count != 1:
            raise ValueError("use either 'count' with 'every' or 'then_every', not both")
        return self


# A court direction to file a document becomes a task of this built-in kind (its role and
# its date come from the direction; its title from the pathway's `court.documents`).
DIRECTION_TASK = TaskSpec(
    id="court-direction", title="Court-directed filing", role="(named by the direction)",
    due=DueRule(anchor="direction", days=0), source="the court's direction",
    outcome={"filed_on": OutcomeField(type="date", required=False,
                                      label="Filed with the court on")})


# A referral out (substance use, domestic abuse, adult mental health services) becomes a task
# of this built-in kind for the role that makes it, due by the date given.
REFERRAL_OUT_TASK = TaskSpec(
    id="referral-out", title="Referral to another service", role="(named by the referral)",
    due=DueRule(anchor="referred", days=0), source="default",
    outcome={"accepted": OutcomeField(type="bool", required=False,
                                      label="Accepted by the service")})
BUILT_IN_TASKS = {DIRECTION_TASK.id: ("court", DIRECTION_TASK),
                  REFERRAL_OUT_TASK.id: ("treatment", REFERRAL_OUT_TASK)}


class GateOutcome(_Strict):
    label: str
    next: str | None = None


class GateSpec(_Strict):
    """A decision taken by completing its task; each outcome names the stage it branches to
    (none: the pathway ends)."""

    decision: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")  # d1, d2, trial-for-change, ...
    task: str
    outcomes: dict[str, GateOutcome] = Field(min_length=1)


class StageSpec(_Strict):
    id: str = Field(pattern=SLUG)
    title: str
    description: str = ""
    next: str | None = None
    gate: GateSpec | None = None
    tasks: list[TaskSpec]
    # a setting that must be non-zero for the stage to run (else the pathway goes past it)
    when: str | None = None


class Window(_Strict):
    earliest: Offset
    latest: Offset


class ClockSpec(_Strict):
    """A statutory or service clock overlaid on the case: its law, kind and owner."""

    id: str = Field(pattern=SLUG)
    title: str
    source: str  # act, regulation and paragraph; "default: ..." where a value is ours
    kind: Literal["maximum", "target", "window"]
    # whose clock it is: NIM's own targets are NIM's breaches; the others are shown, warned of
    # and escalated through their owner
    # a team the pathway declares (`teams:`), "court" or "childrens-hearing"; the programme's
    # own team's clocks are its breaches (and stop while a case is paused)
    owner: str = Field(pattern=SLUG)
    anchor: str
    limit: Offset | None = None  # maximum and target
    window: Window | None = None  # window: earliest and latest day
    met_by: str | None = None  # an anchor ("final_order", "cmh_held") or "done:<task-id>"
    # NIM's task compared with the limit in forecasts (what NIM feeds into the decision)
    forecast_task: str | None = None
    extensions: bool = False  # the court extends it, one extension at a time
    max_extension_weeks: int = Field(default=8, ge=1, le=52)
    notify: str | None = None  # role warned before the limit (default: the met_by task's role)
    escalate: list[str] = []  # roles told when it is breached, in order
    warnings: list[Offset] = []  # warn this long before the limit

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Pathway versions stored before 2026.3 (target, court_override, roll_forward)."""
        if isinstance(data, dict) and "kind" not in data and "limit" in data:
            data = dict(data)
            target = data.pop("target", None)
            data["met_by"] = f"done:{target}" if target else None
            data["extensions"] = bool(data.pop("court_override", False))
            data["kind"] = "target" if data.pop("roll_forward", False) else "maximum"
            data["owner"] = "nim" if data["kind"] == "target" else "court"
            data["source"] = data.get("source") or "legacy pathway version (no source recorded)"
        return data

    @model_validator(mode="after")
    def _shape(self) -> ClockSpec:
        if self.kind == "window" and (self.window is None or self.limit is not None):
            raise ValueError("a window clock needs 'window' (earliest, latest) and no 'limit'")
        if self.kind != "window" and (self.limit is None or self.window is not None):
            raise ValueError(f"a {self.kind} clock needs 'limit' and no 'window'")
        if self.extensions and self.kind != "maximum":
            raise ValueError("only a maximum (a court's limit) can be extended")
        return self


class ExitWhen(_Strict):
    """When the engine takes an exit by itself: a task's outcome field has a value (triage
    not accepted), or no caregiver has (or still has) given consent."""

    task: str | None = None
    field: str | None = None
    equals: bool | str | None = None
    no_consent: Literal["declined", "withdrawn"] | None = None


class ExitSpec(_Strict):
    """A way a family leaves the pathway early, and what it does."""

    label: str
    keeps_statutory: bool = True  # the LA's statutory work for the child goes on
    notify: list[str] = []  # roles told
    when: ExitWhen | None = None  # taken by the engine; otherwise recorded by `case exit`


class ConsentSpec(_Strict):
    """Which task records a caregiver's consent, in which field, and the value that means
    given."""

    task: str
    field: str = "consent"
    given: str = "given"


class EligibilitySpec(_Strict):
    """Who the programme is for, checked per child at referral (a clear refusal otherwise)."""

    # only "child-in-care": a child looked after or in care proceedings, referred on or after
    # the day they came into care (a validator error names the limit for any other subject)
    subject: str = "child-in-care"
    min_age_months: int | None = Field(default=None, ge=0, le=215)
    max_age_months: int | None = Field(default=None, ge=1, le=216)
    not_placed_with_parent: bool = False  # no child placed with a parent (home, mother-and-baby)
    # dates the referral must give (name -> why), e.g. proceedings_issued for a programme that
    # runs inside care proceedings
    needs_dates: dict[str, str] = {}
    first_entry_to_care: bool = False  # the referral must say this is the first entry to care


class CourtSpec(_Strict):
    """What the court timetable can record: the kinds of final order, and the documents a
    court can direct to be filed (each direction becomes a task for the named role)."""

    order_kinds: dict[str, str] = {}  # code -> label
    documents: dict[str, str] = {}  # code -> label, e.g. final-report: Final report


class Escalation(_Strict):
    after_working_days: int = Field(ge=0, le=MAX_ESCALATION)
    role: str
    # the team whose work this rung is for (the LA keeps case responsibility, so its work
    # escalates through the LA); None: every team's work
    team: str | None = None


class Notifications(_Strict):
    reminders: list[int] = [5, 1, 0]
    escalations: list[Escalation] = []
    send_at: str = "09:00"  # UK local time of day timers fire
    # who hears of a statutory clock that no task meets (warnings); default: the first
    # manager role
    clock_owner: str | None = None

    @model_validator(mode="after")
    def _time(self) -> Notifications:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.send_at):
            raise ValueError("send_at must be HH:MM (24-hour UK time)")
        if any(not 0 <= r <= MAX_REMINDER for r in self.reminders):
            raise ValueError(f"reminders: give working days before due, 0..{MAX_REMINDER}")
        return self


class SettingRange(_Strict):
    """The values a setting may take, in the pathway file and when a case overrides it at
    referral. Settings are lengths, counts and switches: never negative."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> SettingRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max}")
        return self


class ReportingSpec(_Strict):
    """Which of the pathway's tasks and outcomes the KPIs, forecast and report packs read."""

    assessment_report: str | None = None  # task id: NIM's assessment report
    recommendation: str | None = None  # task id: the permanence recommendation sign-off
    final_report: str | None = None  # task id: the final report to the court or hearing
    handover: str | None = None  # task id: handover to the local authority
    treatment_gate: str | None = None  # decision id whose outcome sends a family to treatment
    treatment_outcome: str | None = None  # that outcome's code
    assessment_pack_after: str | None = None  # decision after which the assessment pack is made
    final_pack_after: str | None = None  # decision after which the final pack is made
    pack_stages: list[str] = []  # stages whose completed work the packs list as assessments
    pack_excludes: list[str] = []  # task ids in those stages that are not assessments
    # the stage whose start means the family received the programme (after consent or
    # sign-up): KPIs count it
    received_stage: str | None = None
    # a stage after the service episode (research follow-up): the forecast stops there
    follow_up_stage: str | None = None
    # the setting the forecast's "what if the treatment ran N months" changes
    treatment_length: str | None = None


class RoleSpec(_Strict):
    title: str
    team: str = Field(pattern=SLUG)  # one of the pathway's `teams:`
    manager: bool = False  # may act on any task and receives escalations


class PathwaySpec(_Strict):
    profile: str = Field(pattern=SLUG)
    # the programme the pathway runs (nim, fdac): a case is on one programme; its own team
    # has the programme's id
    programme: str = Field(default="nim", pattern=SLUG)
    version: str
    title: str
    jurisdictions: list[Literal["england-and-wales", "scotland", "northern-ireland"]]
    # team id -> title; each role is in one (pathway versions stored before `teams:` had NIM's)
    teams: dict[str, str] = DEFAULT_TEAMS
    roles: dict[str, RoleSpec]
    # group name -> relationships: what `per: <group>` and `per: child-<group>` generate for
    caregiver_groups: dict[str, list[Relationship]] = DEFAULT_CAREGIVER_GROUPS
    settings: dict[str, int] = {}
    # every setting's range (`name: {min: 1, max: 20}`): the default must lie in it, and so
    # must a case's override (checked when the case opens)
    setting_ranges: dict[str, SettingRange] = {}
    notifications: Notifications = Notifications()
    decision_outcomes: dict[str, str] = {}
    stages: list[StageSpec]
    statutory: list[TaskSpec] = []
    clocks: list[ClockSpec] = []
    permissions: dict[str, list[str]] = {}
    reporting: ReportingSpec = ReportingSpec()
    # years identity is kept after the child's birth, by basis (England: looked-after
    # children's records to the 75th birthday, adoption records 100 years)
    retention_years: dict[str, int] = {"default": 75, "adoption": 100}
    court: CourtSpec = CourtSpec()
    exits: dict[str, ExitSpec] = {}
    # services a NIM worker refers parents on to (code -> label): each referral is a task
    referral_services: dict[str, str] = {}
    # kinds of treatment session recorded with attendance (code -> label)
    session_kinds: dict[str, str] = {"dyadic": "Parent and child", "parent": "Parent",
                                     "child": "Child", "group": "Group"}
    consent: ConsentSpec | None = None
    eligibility: EligibilitySpec = EligibilitySpec()
    # dated events a case can record besides the engine's own anchors (name -> what it is),
    # e.g. a Scottish interim compulsory supervision order being made
    dates: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _legacy_reporting(cls, data: Any) -> Any:
        """Pathway versions stored before `programme:` (all NIM) had the engine assume the
        stage a family is received at, the follow-up stage and the treatment length."""
        if not isinstance(data, dict) or "programme" in data:
            return data
        reporting = data.get("reporting") or {}
        if not isinstance(reporting, dict) or not isinstance(data.get("stages"), list):
            return data  # nothing to fill in (or the validator says what is wrong)
        stages = {s.get("id") for s in data["stages"] if isinstance(s, dict)}
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        filled = dict(reporting)
        for name, value, present in (("received_stage", "assessment", "assessment" in stages),
                                     ("follow_up_stage", "follow-up", "follow-up" in stages),
                                     ("treatment_length", "treatment_months",
                                      "treatment_months" in settings)):
            if present:
                filled.setdefault(name, value)
        return {**data, "reporting": filled}

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> PathwaySpec:
        problems: list[str] = []
        problems += self._programme_problems()
        stage_ids = [s.id for s in self.stages]
        if len(set(stage_ids)) != len(stage_ids):
            problems.append("stages: stage ids must be unique")
        all_tasks = [t for s in self.stages for t in s.tasks] + list(self.statutory)
        task_ids = [t.id for t in all_tasks]
        dupes = sorted({t for t in task_ids if task_ids.count(t) > 1})
        if dupes:
            problems.append(f"tasks: task ids must be unique across the pathway: {dupes}")
        anchors = set(CASE_ANCHORS) | set(OPTIONAL_ANCHORS) | {f"stage:{s}" for s in stage_ids}
        anchors |= set(self.dates)
        for name in self.dates:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in CASE_ANCHORS + OPTIONAL_ANCHORS:
                problems.append(f"dates.{name}: a date name is lower_snake_case and not one of "
                                "the engine's own dates")
        anchors |= {f"done:{t}" for t in task_ids}

        def check_offset(where: str, offset: Offset | None) -> None:
            if offset is not None and isinstance(offset.raw_amount, str):
                if offset.raw_amount not in self.settings:
                    problems.append(
                        f"{where}.{offset.unit}: setting {offset.raw_amount!r} is not declared under "
                        f"'settings' (declared: {', '.join(sorted(self.settings)) or 'none'})"
                    )

        def check_task(where: str, task: TaskSpec, siblings: set[str]) -> None:
            if task.role not in self.roles:
                problems.append(
                    f"{where}.role: unknown role {task.role!r}; declared roles: "
                    f"{', '.join(sorted(self.roles))}"
                )
            if task.due.anchor not in anchors:
                problems.append(
                    f"{where}.due.anchor: unknown anchor {task.due.anchor!r}; use a case "
                    f"anchor ({', '.join(CASE_ANCHORS + OPTIONAL_ANCHORS)}), a date the "
                    "pathway declares under 'dates:' (name: what it is), 'stage:<id>' or "
                    "'done:<task-id>'"
                )
            groups = sorted(self.caregiver_groups)
            if task.per not in PER_BUILT_IN and \
                    task.per.removeprefix("child-") not in self.caregiver_groups:
                problems.append(
                    f"{where}.per: unknown kind {task.per!r}; use case, child, a caregiver "
                    f"group ({', '.join(groups)}) or child-<group>, or declare the group "
                    f"under 'caregiver_groups:' ({task.per.removeprefix('child-')}: a list of "
                    f"{', '.join(RELATIONSHIPS)})")
            check_offset(f"{where}.due", task.due)
            check_offset(f"{where}.every", task.every)
            for i, off in enumerate(task.then_every):
                check_offset(f"{where}.then_every.{i}", off)
            if isinstance(task.count, str) and task.count not in self.settings:
                problems.append(f"{where}.count: setting {task.count!r} is not declared")
            for dep in task.after:
                if dep not in siblings:
                    problems.append(
                        f"{where}.after: {dep!r} is not a task of the same stage "
                        f"({', '.join(sorted(siblings))})"
                    )

        for si, stage in enumerate(self.stages):
            siblings = {t.id for t in stage.tasks}
            for ti, task in enumerate(stage.tasks):
                check_task(f"stages.{si}.tasks.{ti}", task, siblings)
            if stage.next is not None and stage.next not in stage_ids:
                problems.append(f"stages.{si}.next: unknown stage {stage.next!r}; stages: "
                                f"{', '.join(stage_ids)}")
            if stage.gate:
                if stage.gate.task not in siblings:
                    problems.append(
                        f"stages.{si}.gate.task: {stage.gate.task!r} is not a task of stage "
                        f"{stage.id!r}"
                    )
                for code, out in stage.gate.outcomes.items():
                    if out.next is not None and out.next not in stage_ids:
                        problems.append(
                            f"stages.{si}.gate.outcomes.{code}.next: unknown stage {out.next!r}"
                            f"; stages: {', '.join(stage_ids)} (leave next out to end the "
                            "pathway)")
        problems += self._cycle_problems()
        statutory_ids = {t.id for t in self.statutory}
        for ti, task in enumerate(self.statutory):
            check_task(f"statutory.{ti}", task, statutory_ids)
        for ci, clock in enumerate(self.clocks):
            where = f"clocks.{ci}"
            if clock.anchor not in anchors:
                problems.append(f"{where}.anchor: unknown anchor {clock.anchor!r}; use a case "
                                "anchor, a date declared under 'dates:', 'stage:<id>' or "
                                "'done:<task-id>'")
            if clock.owner not in self.teams and clock.owner not in OUTSIDE_OWNERS:
                problems.append(f"{where}.owner: unknown owner {clock.owner!r}; use a team "
                                f"declared under 'teams:' ({', '.join(sorted(self.teams))}) "
                                f"or {' or '.join(OUTSIDE_OWNERS)}")
            if clock.met_by is not None and clock.met_by not in anchors:
                problems.append(f"{where}.met_by: {clock.met_by!r} is neither a case anchor nor "
                                "'done:<task-id>' of this pathway")
            if clock.forecast_task is not None and clock.forecast_task not in task_ids:
                problems.append(f"{where}.forecast_task: unknown task {clock.forecast_task!r}")
            for name in [clock.notify, *clock.escalate]:
                if name is not None and name not in self.roles:
                    problems.append(f"{where}: unknown role {name!r}")
            check_offset(f"{where}.limit", clock.limit)
            if clock.window:
                check_offset(f"{where}.window.earliest", clock.window.earliest)
                check_offset(f"{where}.window.latest", clock.window.latest)
            for wi, warning in enumerate(clock.warnings):
                check_offset(f"{where}.warnings.{wi}", warning)
        teams = {r.team for r in self.roles.values()}
        for name, role in self.roles.items():
            if role.team not in self.teams:
                problems.append(f"roles.{name}.team: unknown team {role.team!r}; declare it "
                                f"under 'teams:' (declared: {', '.join(sorted(self.teams))})")
        for ei, esc in enumerate(self.notifications.escalations):
            if esc.role not in self.roles:
                problems.append(f"notifications.escalations.{ei}.role: unknown role {esc.role!r}")
            if esc.team is not None and esc.team not in teams:
                problems.append(f"notifications.escalations.{ei}.team: no role is in team "
                                f"{esc.team!r}")
        for code, ex in self.exits.items():
            problems += [f"exits.{code}.notify: unknown role {r!r}" for r in ex.notify
                         if r not in self.roles]
            if ex.when and ex.when.task and ex.when.task not in task_ids:
                problems.append(f"exits.{code}.when.task: unknown task {ex.when.task!r}")
        if self.consent and self.consent.task not in task_ids:
            problems.append(f"consent.task: unknown task {self.consent.task!r}")
        for si, stage in enumerate(self.stages):
            if stage.gate and stage.gate.task in self.task_by_id and \
                    self.task_by_id[stage.gate.task].per == "child":
                nexts = {o.next for o in stage.gate.outcomes.values()}
                if len(nexts) > 1:
                    problems.append(f"stages.{si}.gate: a decision taken per child must lead to "
                                    f"one next stage whatever the outcome (got {sorted(map(str, nexts))})")
        for si, stage in enumerate(self.stages):
            if stage.when is not None and stage.when not in self.settings:
                problems.append(f"stages.{si}.when: setting {stage.when!r} is not declared")
        owner = self.notifications.clock_owner
        if owner is not None and owner not in self.roles:
            problems.append(f"notifications.clock_owner: unknown role {owner!r}")
        for action, roles in self.permissions.items():
            if action not in DEFAULT_PERMISSIONS:
                problems.append(f"permissions.{action}: unknown action; actions: "
                                f"{', '.join(sorted(DEFAULT_PERMISSIONS))}")
            for role in roles:
                if role not in self.roles and role not in (TASK_ROLE, ASSIGNEE):
                    problems.append(f"permissions.{action}: unknown role {role!r}; use declared "
                                    f"roles, {TASK_ROLE!r} or {ASSIGNEE!r}")
        rep = self.reporting
        for name in ("assessment_report", "recommendation", "final_report", "handover"):
            if getattr(rep, name) is not None and getattr(rep, name) not in task_ids:
                problems.append(f"reporting.{name}: unknown task {getattr(rep, name)!r}; name "
                                "a task id this pathway declares, or leave it out")
        for name in ("received_stage", "follow_up_stage"):
            if getattr(rep, name) is not None and getattr(rep, name) not in stage_ids:
                problems.append(f"reporting.{name}: unknown stage {getattr(rep, name)!r}; "
                                f"stages: {', '.join(stage_ids)}")
        if rep.treatment_length is not None and rep.treatment_length not in self.settings:
            problems.append(f"reporting.treatment_length: setting {rep.treatment_length!r} is "
                            "not declared under 'settings'")
        for name in ("pack_excludes",):
            problems += [f"reporting.{name}: unknown task {t!r}" for t in getattr(rep, name)
                         if t not in task_ids]
        problems += [f"reporting.pack_stages: unknown stage {s!r}" for s in rep.pack_stages
                     if s not in stage_ids]
        gate_ids = [s.gate.decision for s in self.stages if s.gate]
        gates = set(gate_ids)
        problems += [f"stages: decision {d!r} is taken in more than one stage; give each gate "
                     "its own decision id" for d in sorted(gates) if gate_ids.count(d) > 1]
        for name in ("treatment_gate", "assessment_pack_after", "final_pack_after"):
            if getattr(rep, name) is not None and getattr(rep, name) not in gates:
                problems.append(f"reporting.{name}: unknown decision {getattr(rep, name)!r}; "
                                f"decisions: {', '.join(gate_ids) or 'none'}")
        treat = next((s.gate for s in self.stages if s.gate and
                      s.gate.decision == rep.treatment_gate), None)
        if treat and rep.treatment_outcome not in treat.outcomes:
            problems.append(f"reporting.treatment_outcome: {rep.treatment_outcome!r} is not an "
                            f"outcome of decision {rep.treatment_gate!r} "
                            f"({', '.join(treat.outcomes)})")
        if "default" not in self.retention_years:
            problems.append("retention_years: needs a 'default' entry")
        problems += [f"retention_years.{basis}: {years} is outside 1..150 years"
                     for basis, years in self.retention_years.items() if not 1 <= years <= 150]
        problems += self._range_problems(stored=bool((info.context or {}).get("stored")))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _programme_problems(self) -> list[str]:
        """Who the programme is for, its own team and its caregiver groups."""
        problems = []
        subject = self.eligibility.subject
        if subject not in SUBJECTS:
            problems.append(
                f"eligibility.subject: {subject!r} is not supported; this engine runs "
                "programmes for a child in care or in care proceedings (subject: child-in-care): "
                "its cases open from a child's care entry, run the child's statutory reviews and "
                "placements, and close on the child's order. A programme for a parent with no "
                "child in her care (Pause) needs another engine (README, Limits)")
        rule = self.eligibility
        problems += [f"eligibility.needs_dates.{name}: a referral gives only "
                     f"{', '.join(REFERRAL_DATES)}" for name in rule.needs_dates
                     if name not in REFERRAL_DATES]
        if rule.min_age_months is not None and rule.max_age_months is not None and \
                rule.min_age_months >= rule.max_age_months:
            problems.append(f"eligibility.min_age_months: {rule.min_age_months} is not below "
                            f"max_age_months {rule.max_age_months}")
        if self.programme not in self.teams:
            problems.append(f"programme: declare the programme's own team {self.programme!r} "
                            f"under 'teams:' (declared: {', '.join(sorted(self.teams))})")
        for name, members in self.caregiver_groups.items():
            if not re.fullmatch(r"[a-z][a-z0-9]*", name) or name in PER_BUILT_IN:
                problems.append(f"caregiver_groups.{name}: a group name is lower-case letters "
                                "and digits, and not case or child")
            if not members:
                problems.append(f"caregiver_groups.{name}: list the relationships in it "
                                f"({', '.join(RELATIONSHIPS)})")
        return problems

    def _cycle_problems(self) -> list[str]:
        """A stage's `next` and its gate's branches lead on, never back: a case re-entering a
        stage it has done would find its work done and loop."""
        ids = {s.id: i for i, s in enumerate(self.stages)}
        onward = {s.id: [n for n in [s.next] + [o.next for o in (s.gate.outcomes.values()
                                                                  if s.gate else [])]
                         if n in ids] for s in self.stages}
        problems = []
        for start in self.stages:
            seen, todo = set(), list(onward[start.id])
            while todo:
                stage = todo.pop()
                if stage == start.id:
                    problems.append(f"stages.{ids[start.id]}: stage {start.id!r} leads back to "
                                    "itself (through next: or a gate's branch); a pathway "
                                    "only goes forward: add a new stage for repeated work")
                    break
                if stage not in seen:
                    seen.add(stage)
                    todo += onward[stage]
        return problems

    def _range_problems(self, stored: bool) -> list[str]:
        """Every setting has a range that holds its default and fits each of its uses (a
        pathway version stored before ranges existed is held to the uses alone)."""
        problems = []
        for name in self.setting_ranges:
            if name not in self.settings:
                problems.append(f"setting_ranges.{name}: no setting {name!r} under 'settings'")
        uses = self._setting_uses()
        for name, value in self.settings.items():
            declared = self.setting_ranges.get(name)
            if declared is None:
                if not stored:
                    problems.append(f"settings.{name}: give its range under 'setting_ranges', "
                                    f"e.g. {name}: {{min: 1, max: {max(value, 1) * 2}}}")
                continue
            if not declared.min <= value <= declared.max:
                problems.append(f"settings.{name}: {value} is outside its range "
                                f"{declared.min}-{declared.max}")
            for what, lo, hi in dict.fromkeys(uses.get(name, [])):
                if declared.min < lo or declared.max > hi:
                    problems.append(f"setting_ranges.{name}: {declared.min}-{declared.max} does "
                                    f"not fit its use as {what} ({lo}-{hi})")
        return problems

    def _setting_uses(self) -> dict[str, list[tuple[str, int, int]]]:
        """Each setting's uses, with the values each allows: an offset amount (up to about
        five years of its unit), a count, or a stage's switch."""
        uses: dict[str, list[tuple[str, int, int]]] = {}
        tasks = [t for s in self.stages for t in s.tasks] + list(self.statutory)
        offsets = [o for t in tasks for o in (t.due, t.every, *t.then_every)]
        for clock in self.clocks:
            offsets += [clock.limit, *clock.warnings]
            if clock.window:
                offsets += [clock.window.earliest, clock.window.latest]
        for off in offsets:
            if off is not None and isinstance(off.raw_amount, str):
                uses.setdefault(off.raw_amount, []).append(
                    (off.unit.replace("_", " "), 0, MAX_AMOUNT[off.unit]))
        for task in tasks:
            if isinstance(task.count, str):
                uses.setdefault(task.count, []).append(("a count", 1, MAX_COUNT))
        for stage in self.stages:
            if stage.when is not None:
                uses.setdefault(stage.when, []).append(("a stage's switch", 0, 1))
        return uses

    def setting_range(self, name: str) -> tuple[int, int]:
        """The values a case may give a declared setting: its declared range, within what its
        uses allow (all a pathway version stored before ranges existed has)."""
        lo, hi = 0, max(MAX_AMOUNT.values())
        declared = self.setting_ranges.get(name)
        if declared is not None:
            lo, hi = declared.min, declared.max
        for _, use_lo, use_hi in self._setting_uses().get(name, []):
            lo, hi = max(lo, use_lo), min(hi, use_hi)
        return lo, hi

    def setting_problems(self, values: dict[str, int]) -> list[str]:
        """A case's overrides outside their ranges, each with its value, range and default."""
        problems = []
        for name, value in values.items():
            if name in self.settings:
                lo, hi = self.setting_range(name)
                if not lo <= value <= hi:
                    problems.append(f"{name}={value} is outside {lo}-{hi} (the pathway's "
                                    f"default is {self.settings[name]})")
        return problems

    # -- look-ups -------------------------------------------------------------------------

    @cached_property
    def stage_by_id(self) -> dict[str, StageSpec]:
        return {s.id: s for s in self.stages}

    @cached_property
    def task_by_id(self) -> dict[str, TaskSpec]:
        found = {t.id: t for s in self.stages for t in s.tasks}
        found.update({t.id: t for t in self.statutory})
        found.update({k: task for k, (_, task) in BUILT_IN_TASKS.items()})
        return found

    @cached_property
    def stage_of_task(self) -> dict[str, str]:
        found = {t.id: s.id for s in self.stages for t in s.tasks}
        found.update({t.id: "statutory" for t in self.statutory})
        found.update({k: stage for k, (stage, _) in BUILT_IN_TASKS.items()})
        return found

    @cached_property
    def gate_of_task(self) -> dict[str, GateSpec]:
        return {s.gate.task: s.gate for s in self.stages if s.gate}

    def relationships_of(self, per: str) -> tuple[str, ...]:
        """The caregiver relationships a `per:` kind generates work for (none: per case or
        per child)."""
        return tuple(self.caregiver_groups.get(per.removeprefix("child-"), ()))

    def own_clock(self, clock: ClockSpec) -> bool:
        """A clock the programme's own team owns: its breaches, stopped while paused."""
        return clock.owner == self.programme

    def managers(self) -> set[str]:
        return {name for name, role in self.roles.items() if role.manager}

    @property
    def consent_rule(self) -> ConsentSpec | None:
        """How consent is recorded; pathway versions stored before `consent:` existed used
        the task `consent` and its field `consent`."""
        if self.consent is None and "consent" in self.task_by_id:
            return ConsentSpec(task="consent")
        return self.consent

    def permitted(self, action: str) -> list[str]:
        """The roles (and stand-ins) the pathway grants an action, managers aside."""
        return self.permissions.get(action, DEFAULT_PERMISSIONS[action])

    @property
    def clock_owner(self) -> str:
        """Who hears of a clock that no task meets."""
        return self.notifications.clock_owner or min(self.managers() or self.roles)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def free_text_fields(self, task_id: str) -> set[str]:
        """The outcome fields people type free text into (`notes` and `type: text`)."""
        task = self.task_by_id.get(task_id)
        return {"notes"} | {name for name, f in (task.outcome if task else {}).items()
                            if f.type == "text"}

    def outcome_model(self, task_id: str) -> type[BaseModel]:
        """The Pydantic model of a task's outcome (its form in the UI and the CLI file)."""
        if task_id not in self.task_by_id:
            raise PathwayError(f"pathway {self.profile} has no task {task_id!r}")
        models = self._outcome_models
        if task_id not in models:  # built once: creating a pydantic model is costly
            models[task_id] = _outcome_model(self, task_id)
        return models[task_id]

    @cached_property
    def _outcome_models(self) -> dict[str, type[BaseModel]]:
        return {}


_FIELD_TYPES: dict[str, Any] = {"text": str, "date": date, "bool": bool, "int": int}


def _optional(py: Any) -> Any:  # noqa: ANN401 - a type
    """`py | None`, shown in forms as `py`: Prefect's UI draws `anyOf [date, null]` as
    "Property is type None" instead of a date picker. No default in the schema either: the
    UI would fill in null and send it, which a plain date refuses; a field left empty is
    absent, and the model's default (None) applies."""
    if py is date:
        return Annotated[date | None, WithJsonSchema({"type": "string", "format": "date"}),
                         Field(json_schema_extra=_no_default)]
    return py | None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _outcome_model(spec: PathwaySpec, task_id: str) -> type[BaseModel]:
    task = spec.task_by_id[task_id]
    fields: dict[str, Any] = {}
    gate = spec.gate_of_task.get(task_id)
    if gate:
        fields["decision"] = (Literal[tuple(gate.outcomes)], Field(description="decision"))
    for name, f in task.outcome.items():
        py: Any = Literal[tuple(f.choices)] if f.type == "choice" else _FIELD_TYPES[f.type]
        if f.required:
            fields[name] = (py, Field(description=f.label or name))
        else:
            fields[name] = (_optional(py), Field(default=None, description=f.label or name))
    fields["completed_on"] = (_optional(date), Field(default=None,
                                                     description="defaults to today"))
    fields["notes"] = (str, Field(default="", max_length=4000))
    return create_model(  # type: ignore[call-overload]
        f"Outcome_{task_id.replace('-', '_')}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


# -- loading ------------------------------------------------------------------------------


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML key or item at a Pydantic error location, as far as it goes."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                node = None
                continue
            line, node = pair[0].start_mark.line + 1, pair[1]  # the key's line, then go down
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
            line = node.start_mark.line + 1 if node is not None else line
        else:
            node = None
    return line


def _path_to_loc(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def parse_pathway(text: str, source: str = "<pathway>") -> PathwaySpec:
    try:
        if too_deeply_nested(text):
            raise RecursionError
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PathwayError(f"{where}: not valid YAML: {why}") from None
    except RecursionError:
        raise PathwayError(f"{source}: nested too deeply to be a pathway file") from None
    except ValueError as exc:  # a value YAML itself cannot build, e.g. a date 2026-02-30
        raise PathwayError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PathwayError(f"{source}: a pathway file must be a mapping with 'profile', 'stages'…")
    if "extends" in data:  # a nation's profile that shares another's pathway: its top-level
        # sections replace the parent's whole (a section is either inherited or restated)
        parent = data.pop("extends")
        if not isinstance(parent, str) or not re.fullmatch(SLUG[1:-1], parent):
            raise PathwayError(f"{source}: extends: give a profile name, e.g. extends: england")
        parent_path = PATHWAYS_DIR / f"{parent}.yaml"
        if not parent_path.is_file() or parent_path.resolve() == Path(source).resolve():
            raise PathwayError(f"{source}: extends: no other pathway {parent!r} in {PATHWAYS_DIR}")
        base = yaml.safe_load(parent_path.read_text(encoding="utf-8"))
        if isinstance(base, dict) and "extends" in base:
            raise PathwayError(f"{source}: extends: {parent!r} extends another profile itself; "
                               "extend the base profile directly")
        data = {**base, **data}
    try:
        return PathwaySpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            if not loc and msg.startswith("Value error, "):
                # cross-reference problems carry their own paths
                for problem in msg.removeprefix("Value error, ").split("\n"):
                    path, _, why = problem.partition(": ")
                    line = _line_of(root, _path_to_loc(path))
                    lines.append(f"{source}:{line or '?'}: {path}: {why}")
                continue
            path = ".".join(str(p) for p in loc)
            line = _line_of(root, loc)
            lines.append(f"{source}:{line or '?'}: {path}: {msg.removeprefix('Value error, ')}")
        raise PathwayError("invalid pathway file\n" + "\n".join(lines)) from None


def load_pathway(profile_or_path: str, directory: Path | None = None) -> PathwaySpec:
    """Load `pathways/<profile>.yaml` (or a file path) and validate it."""
    candidate = Path(profile_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
    else:
        path = (directory or PATHWAYS_DIR) / f"{profile_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (directory or PATHWAYS_DIR).glob("*.yaml"))
        raise PathwayError(
            f"no pathway {profile_or_path!r} (looked for {path}); known profiles: "
            f"{', '.join(known) or 'none'}"
        )
    return _parse_file(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _parse_file(path: str, mtime_ns: int) -> PathwaySpec:
    """Parsed once per file version: the mtime in the key notices edits."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PathwayError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_pathway(text, source=path)


def pathway_from_json(text: str) -> PathwaySpec:
    """A pathway version stored with a case (already validated when it was first used;
    versions stored before setting ranges existed have none)."""
    return PathwaySpec.model_validate_json(text, context={"stored": True})
