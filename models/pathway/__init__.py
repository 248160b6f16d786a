"""A programme's pathway as data: spec types, YAML loading and validation.

A pathway file (pathways/<profile>.yaml) declares its programme (NIM, FDAC), who it is for,
its teams and roles, settings, stages with their tasks and due rules, decision gates with
their branches, statutory clocks and the notification ladders. It is validated on load;
errors name the file, the line, the path and the field, and say how to fix it.

Split by concern; this package re-exports all of it, so callers keep writing
`from models.pathway import PathwaySpec, load_pathway`:

- `constants`: the fixed vocabulary (anchors, relationships, teams, bounds, permissions),
  `PATHWAYS_DIR` and `PathwayError`;
- `sections`: the Pydantic types of a pathway file's parts;
- `spec`: `PathwaySpec`, the whole pathway, with its look-ups;
- `validation`: the checks across sections, one function per section;
- `outcomes`: the Pydantic model of a task's outcome;
- `loading`: `parse_pathway`, `load_pathway` (and `extends:`), `pathway_from_json`.
"""

from __future__ import annotations

from models.pathway.constants import (
    ASSIGNEE,
    CARER_RELATIONSHIPS,
    CASE_ANCHORS,
    DEFAULT_CAREGIVER_GROUPS,
    DEFAULT_PERMISSIONS,
    DEFAULT_TEAMS,
    MAX_COUNT,
    MAX_ESCALATION,
    MAX_REMINDER,
    OPTIONAL_ANCHORS,
    OUTSIDE_OWNERS,
    PARENT_RELATIONSHIPS,
    PATHWAYS_DIR,
    PER_BUILT_IN,
    PLACEMENT_KINDS,
    REFERRAL_DATES,
    RELATIONSHIPS,
    SLUG,
    SUBJECTS,
    TASK_ROLE,
    PathwayError,
    Relationship,
)
from models.pathway.loading import load_pathway, parse_pathway, pathway_from_json
from models.pathway.sections import (
    BUILT_IN_TASKS,
    DIRECTION_TASK,
    REFERRAL_OUT_TASK,
    ClockSpec,
    ConsentSpec,
    CourtSpec,
    DeadlineKind,
    DueRule,
    EligibilitySpec,
    Escalation,
    ExitSpec,
    ExitWhen,
    GateOutcome,
    GateSpec,
    Notifications,
    Offset,
    OutcomeField,
    ReportingSpec,
    ReviewSwitch,
    RoleSpec,
    SettingRange,
    StageSpec,
    TaskSpec,
    Window,
)
from models.pathway.spec import PathwaySpec

__all__ = [
    # constants
    "SLUG", "PATHWAYS_DIR", "CASE_ANCHORS", "OPTIONAL_ANCHORS", "PARENT_RELATIONSHIPS",
    "CARER_RELATIONSHIPS", "RELATIONSHIPS", "Relationship", "DEFAULT_CAREGIVER_GROUPS",
    "PER_BUILT_IN", "DEFAULT_TEAMS", "OUTSIDE_OWNERS", "SUBJECTS", "REFERRAL_DATES",
    "PathwayError", "MAX_COUNT", "MAX_REMINDER", "MAX_ESCALATION", "TASK_ROLE", "ASSIGNEE",
    "DEFAULT_PERMISSIONS", "PLACEMENT_KINDS",
    # sections
    "Offset", "DueRule", "DeadlineKind", "OutcomeField", "TaskSpec", "DIRECTION_TASK",
    "REFERRAL_OUT_TASK", "BUILT_IN_TASKS", "GateOutcome", "GateSpec", "StageSpec", "Window",
    "ClockSpec", "ExitWhen", "ExitSpec", "ConsentSpec", "EligibilitySpec", "CourtSpec",
    "Escalation", "Notifications", "SettingRange", "ReportingSpec", "RoleSpec", "ReviewSwitch",
    # the whole pathway, and loading it
    "PathwaySpec", "parse_pathway", "load_pathway", "pathway_from_json",
]
