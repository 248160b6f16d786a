"""Validated inputs: a referral (the only input that carries identity) and practitioners."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.calendar import JURISDICTIONS
from models.engine import RELATIONSHIPS

PLACEMENT_KINDS = ("foster", "kinship", "mother-and-baby", "residential", "home")
MAX_AGE_MONTHS = 60  # NIM is for children under five


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChildIn(_Input):
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    address: str | None = Field(default=None, max_length=500)


class CaregiverIn(_Input):
    relationship: Literal["mother", "father", "parent", "foster-carer", "kinship-carer"]
    name: str | None = Field(default=None, max_length=200)


class PlacementIn(_Input):
    kind: Literal["foster", "kinship", "mother-and-baby", "residential", "home"]
    start: date


def months_between(start: date, end: date) -> int:
    """Whole months from start to end (age in months on a date)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)


class Referral(_Input):
    """What a coordinator enters to open a case."""

    jurisdiction: Literal["england-and-wales", "scotland", "northern-ireland"]
    site: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    pathway: str | None = Field(
        default=None, description="pathway profile; default follows the jurisdiction"
    )
    child: ChildIn
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

    @model_validator(mode="after")
    def _dates(self) -> Referral:
        dob = self.child.date_of_birth
        if self.referral < dob:
            raise ValueError(f"referral date {self.referral} is before the date of birth")
        if self.care_entry < dob:
            raise ValueError(f"care entry date {self.care_entry} is before the date of birth")
        if self.referral < self.care_entry:
            raise ValueError(
                f"referral date {self.referral} is before care entry {self.care_entry}; NIM "
                "takes children who are already in care"
            )
        age = months_between(dob, self.referral)
        if age >= MAX_AGE_MONTHS:
            raise ValueError(
                f"the child is {age} months old at referral; NIM is for children under "
                f"{MAX_AGE_MONTHS} months (aged 0-5)"
            )
        if self.placement and self.placement.start < self.care_entry:
            raise ValueError(f"placement start {self.placement.start} is before care entry "
                             f"{self.care_entry}")
        if self.la_referral and self.la_referral < dob:
            raise ValueError(f"LA referral date {self.la_referral} is before the date of birth")
        if self.final_hearing and self.proceedings_issued and (
            self.final_hearing < self.proceedings_issued
        ):
            raise ValueError("final hearing is before proceedings were issued")
        return self

    def default_pathway(self) -> str:
        """The profile a referral opens on unless it names one (Wales: `pathway: wales`, as
        Wales shares England's bank holidays)."""
        return self.pathway or {"scotland": "scotland", "northern-ireland": "northern-ireland"
                                }.get(self.jurisdiction, "england")


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
