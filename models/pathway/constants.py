"""A pathway's fixed vocabulary: the anchors, caregiver relationships, teams, bounds and
permission actions a pathway file names, where the bundled files live, and its error."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

SLUG = r"^[a-z][a-z0-9-]*$"
# the bundled pathway files: pathways/ at the top of the project (beside models/)
PATHWAYS_DIR = Path(__file__).resolve().parent.parent.parent / "pathways"

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
# The kinds of placement a looked-after child can be in (the referral's and `case placement`'s)
PLACEMENT_KINDS = ("foster", "kinship", "mother-and-baby", "residential", "home")
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
