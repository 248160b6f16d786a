"""Validated inputs: a referral (the only input that carries identity) and practitioners."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.calendar import JURISDICTIONS
from models.engine import RELATIONSHIPS
from models.pathway import PathwaySpec

PLACEMENT_KINDS = ("foster", "kinship", "mother-and-baby", "residential", "home")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PlacementIn(_Input):
    kind: Literal["foster", "kinship", "mother-and-baby", "residential", "home"]
    start: date


PLACED_WITH_PARENT = ("home", "mother-and-baby")


class ChildIn(_Input):
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    address: str | None = Field(default=None, max_length=500)
    placement: PlacementIn | None = None  # this child's placement, if not the family's


class CaregiverIn(_Input):
    relationship: Literal["mother", "father", "parent", "foster-carer", "kinship-carer"]
    name: str | None = Field(default=None, max_length=200)
    # the children (child-1, child-2, ... in referral order) this person cares for; all if empty
    children: list[str] = []


def months_between(start: date, end: date) -> int:
    """Whole months from start to end (age in months on a date)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)


class Referral(_Input):
    """What a coordinator enters to open a case."""

    jurisdiction: Literal["england-and-wales", "scotland", "northern-ireland"]
    site: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    # a profile name, never a file: a case opens only on a pathway shipped with the engine
    # (a forged copy of a pathway file cannot grant its author another role)
    pathway: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9-]*$",
        description="pathway profile (england, wales, scotland, northern-ireland); default "
                    "follows the jurisdiction")
    child: ChildIn | None = None  # one child; or `children` for a sibling group
    children: list[ChildIn] = []
    care_entry: date
    referral: date
    la_referral: date | None = Field(
        default=None, description="referral to the LA's children's social care (its 45 days)")
    proceedings_issued: date | None = None
    final_hearing: date | None = None
    legal_status: str | None = Field(default=None, max_length=100)
    caregivers: list[CaregiverIn] = Field(min_length=1)
    placement: PlacementIn | None = None
    settings: dict[str, int] = {}
    first_entry_to_care: bool | None = None  # asked by programmes for a first entry only
    previous_episode: str | None = Field(default=None, pattern=r"^NIM-\d{4}-\d{4,}$",
                                         description="an earlier episode of this family")

    @property
    def all_children(self) -> list[ChildIn]:
        return [self.child] if self.child else list(self.children)

    def placement_of(self, child: ChildIn) -> PlacementIn | None:
        return child.placement or self.placement

    @model_validator(mode="after")
    def _dates(self) -> Referral:
        if bool(self.child) == bool(self.children):
            raise ValueError("give the child (`child:`) or a sibling group (`children:`), not "
                             "both and not neither")
        keys = {f"child-{i}" for i in range(1, len(self.all_children) + 1)}
        for c in self.caregivers:
            unknown = sorted(set(c.children) - keys)
            if unknown:
                raise ValueError(f"caregiver {c.relationship} cares for {', '.join(unknown)}, "
                                 f"but the referral's children are {', '.join(sorted(keys))}")
        for n, child in enumerate(self.all_children, start=1):
            self._child_dates(child, f"child-{n}" if self.children else "the child")
        if self.referral < self.care_entry:
            raise ValueError(
                f"referral date {self.referral} is before care entry {self.care_entry}; NIM "
                "takes children who are already in care"
            )
        if self.final_hearing and self.proceedings_issued and (
            self.final_hearing < self.proceedings_issued
        ):
            raise ValueError("final hearing is before proceedings were issued")
        return self

    def _child_dates(self, child: ChildIn, who: str) -> None:
        dob = child.date_of_birth
        if self.referral < dob:
            raise ValueError(f"referral date {self.referral} is before the date of birth of {who}")
        if self.care_entry < dob:
            raise ValueError(f"care entry date {self.care_entry} is before the date of birth of "
                             f"{who}")
        placement = self.placement_of(child)
        if placement and placement.start < self.care_entry:
            raise ValueError(f"placement start {placement.start} is before care entry "
                             f"{self.care_entry}")
        if self.la_referral and self.la_referral < dob:
            raise ValueError(f"LA referral date {self.la_referral} is before the date of birth "
                             f"of {who}")

    def default_pathway(self) -> str:
        """The profile a referral opens on unless it names one (Wales: `pathway: wales`, as
        Wales shares England's bank holidays)."""
        return self.pathway or {"scotland": "scotland", "northern-ireland": "northern-ireland"
                                }.get(self.jurisdiction, "england")


def eligibility_problems(spec: PathwaySpec, referral: Referral) -> list[str]:
    """Why a referral is not for this programme, per child (the pathway's `eligibility:`)."""
    rule = spec.eligibility
    problems = []
    for n, child in enumerate(referral.all_children, start=1):
        who = f"child-{n}" if referral.children else "the child"
        age = months_between(child.date_of_birth, referral.referral)
        if rule.max_age_months is not None and age >= rule.max_age_months:
            problems.append(f"{who} is {age} months old at referral; {spec.title} is for "
                            f"children under {rule.max_age_months} months")
        placement = referral.placement_of(child)
        if rule.not_placed_with_parent and placement and placement.kind in PLACED_WITH_PARENT:
            problems.append(f"{who} is placed with a parent ({placement.kind}); {spec.title} "
                            "is for families where no child is placed with a parent")
    if rule.first_entry_to_care and referral.first_entry_to_care is not True:
        problems.append(f"{spec.title} is for a first entry to care: say so with "
                        "first_entry_to_care: true (and check the family's history)")
    return problems


class PractitionerIn(_Input):
    handle: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", max_length=60)
    display_name: str = Field(min_length=1, max_length=200)
    role: str
    team: str = Field(min_length=1, max_length=100)
    contact: str | None = Field(default=None, max_length=500)

    @field_validator("contact")
    @classmethod
    def _contact_is_target(cls, value: str | None) -> str | None:
        if value and not re.match(r"^[a-z][a-z0-9+.-]*:(//)?\S+$", value):
            raise ValueError("contact must be a named target with an address (email:you@nhs.net)"
                             " or an Apprise URL without secrets (json://host/path)")
        if value and re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", value):
            raise ValueError("contact must not hold a password: put credentials in the "
                             "notification config (NIM_NOTIFY_CONFIG) and use a named target")
        return value


__all__ = ["JURISDICTIONS", "RELATIONSHIPS", "PLACEMENT_KINDS", "Referral", "PractitionerIn"]
