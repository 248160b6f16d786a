"""The whole pathway (`PathwaySpec`): its sections, the checks across them (run on load, in
`validation`), the ranges of its settings and the look-ups the engine uses."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from models.calendar import MAX_AMOUNT
from models.pathway.constants import (
    DEFAULT_CAREGIVER_GROUPS,
    DEFAULT_PERMISSIONS,
    DEFAULT_TEAMS,
    SLUG,
    PathwayError,
    Relationship,
)
from models.pathway.outcomes import _outcome_model
from models.pathway.ranges import setting_uses
from models.pathway.sections import (
    BUILT_IN_TASKS,
    ClockSpec,
    ConsentSpec,
    CourtSpec,
    EligibilitySpec,
    ExitSpec,
    GateSpec,
    Notifications,
    ReportingSpec,
    RoleSpec,
    SettingRange,
    StageSpec,
    TaskSpec,
    _Strict,
)
from models.pathway.validation import pathway_problems


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
        problems = pathway_problems(self, stored=bool((info.context or {}).get("stored")))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def setting_range(self, name: str) -> tuple[int, int]:
        """The values a case may give a declared setting: its declared range, within what its
        uses allow (all a pathway version stored before ranges existed has)."""
        lo, hi = 0, max(MAX_AMOUNT.values())
        declared = self.setting_ranges.get(name)
        if declared is not None:
            lo, hi = declared.min, declared.max
        for _, use_lo, use_hi in setting_uses(self).get(name, []):
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
