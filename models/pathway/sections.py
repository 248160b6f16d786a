"""The parts of a pathway file, as Pydantic types: offsets and due rules, tasks and their
outcome fields, stages and gates, clocks, exits, consent, eligibility, the court, the
notification ladders, setting ranges, reporting and roles. Each validates itself; the checks
across parts are in `validation`."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.calendar import MAX_AMOUNT, UNITS
from models.pathway.constants import MAX_COUNT, MAX_ESCALATION, MAX_REMINDER, SLUG


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


class ReviewSwitch(_Strict):
    """A series' spacing once the child's first review (a task of `task`) is done."""

    task: str
    every: Offset


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
    # a series that hangs on the child's placement and runs only while the placement is of
    # one of these kinds (foster, kinship, mother-and-baby, residential, home); [] = every
    # kind no other series of the same anchor names (the default cadence)
    placements: list[str] = []
    # kinds among `placements` this series follows only until the child's final order (a
    # child with a parent under an INTERIM care order: SI 2010/959 reg 28(4)); after the
    # order the default cadence of the same anchor applies to them
    until_final_order: list[str] = []
    # the cadence changes once a review is held: e.g. weekly "until the first review", then
    # at intervals of not more than four weeks (SI 2010/959 reg 28(4))
    after_review: ReviewSwitch | None = None

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
    # events (anchors, e.g. final_order) that end the clock when it has not been met: the CMH
    # window is ended by the final order; shown as "ended: ...", never as a breach
    ended_by: list[str] = []

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
    # clocks the exit itself ends (proceedings withdrawn ends the court's timetable): shown
    # as "ended: <label>"; every other clock not NIM's own is handed back to its owner
    ends_clocks: list[str] = []


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
    # the order kinds after which the child they are made for is no longer looked after (an
    # order that discharges the care order, or makes none): that child's reviews and visits
    # stop, and NIM's work for that child alone, with the order named as the reason
    ends_looked_after: list[str] = []
    ends_looked_after_source: str = ""  # the law that says so (act and section)
    # interim orders the court may make for a child before the final order (code -> label):
    # they do not dispose of the application, so they meet no clock
    interim_order_kinds: dict[str, str] = {}
    # the interim order kinds under which the child is looked after (in the authority's care):
    # one made for a child recorded as no longer looked after makes them looked after again
    # from its date (their reviews and visits start again); the others change nothing
    looked_after_under: list[str] = []
    looked_after_under_source: str = ""  # the law that says so
    documents: dict[str, str] = {}  # code -> label, e.g. final-report: Final report
    # a document the programme or the LA produces -> the task(s) that produce it: a direction
    # to file it binds those tasks (due by the earlier of the pathway's date and the court's)
    # instead of opening new work; a document named here has no task of its own
    produced_by: dict[str, list[str]] = {}


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
