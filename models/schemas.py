"""Validated inputs: a referral (the only input that carries identity) and practitioners."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.calendar import JURISDICTIONS, add_months
from models.engine import RELATIONSHIPS, child_anchor
from models.pathway import PathwaySpec
from models.redaction import carries_credentials, mask_url

PLACEMENT_KINDS = ("foster", "kinship", "mother-and-baby", "residential", "home")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _printable_text(cls, value: object) -> object:
        """Names, addresses and free text hold printable characters, newlines and tabs only:
        a NUL or another control character is refused here, not by the database."""
        bad = next((c for c in value if unicodedata.category(c) == "Cc" and c not in "\n\t"),
                   None) if isinstance(value, str) else None
        if bad is not None:
            raise ValueError(f"must not contain control characters (found U+{ord(bad):04X}); "
                             "use printable text, newlines and tabs only")
        return value


# Free text people type (handover notes, reasons, causes, rationales, outcome notes): a page
# or two at most; more is refused, never cut. Names are one line of letters people read.
MAX_FREE_TEXT = 4000
_HIDDEN = {"Cc": "a control character", "Cf": "an invisible formatting character (a "
           "right-to-left override, a zero-width space or joiner)",
           "Zl": "a line separator", "Zp": "a paragraph separator"}


def check_name(value: str | None) -> str | None:
    """A person's or child's name as typed, or ValueError: one line, no control, bidi-override
    or zero-width characters (they make a name read as another, or hide text in it)."""
    if value is None:
        return value
    bad = next((c for c in value if unicodedata.category(c) in _HIDDEN), None)
    if bad is not None:
        raise ValueError(f"must be one line of visible characters; found U+{ord(bad):04X}, "
                         f"{_HIDDEN[unicodedata.category(bad)]}")
    return value


def check_free_text(what: str, value: str, limit: int = MAX_FREE_TEXT) -> str:
    """Free text as typed, or ValueError: at most `limit` characters, no control characters
    but newlines and tabs, no bidi overrides (U+202A-202E, U+2066-2069)."""
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters; at most {limit} are kept (write "
                         "the rest in the case file and refer to it)")
    bad = next((c for c in value if (unicodedata.category(c) == "Cc" and c not in "\n\t")
                or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"), None)
    if bad is not None:
        raise ValueError(f"{what} must not contain U+{ord(bad):04X} (a control or "
                         "right-to-left override character); use plain text, newlines and tabs")
    return value


class PlacementIn(_Input):
    kind: Literal["foster", "kinship", "mother-and-baby", "residential", "home"]
    start: date


PLACED_WITH_PARENT = ("home", "mother-and-baby")


# A family episode's size: the largest sibling group, and the most caregivers, one referral
# (or one case) takes; each adds work per child and per caregiver.
MAX_CHILDREN = 12
MAX_CAREGIVERS = 12


class ChildIn(_Input):
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    address: str | None = Field(default=None, max_length=500)
    placement: PlacementIn | None = None  # this child's placement, if not the family's
    # the day this child became looked after, if not the family's care entry (a sibling born
    # or removed later): their first review counts from it
    looked_after_from: date | None = None
    # this child's own application, if the court issued one apart from the family's (a
    # newborn's, in proceedings already running): its own 26 weeks and hearing window
    proceedings_issued: date | None = None

    @model_validator(mode="after")
    def _own_dates(self) -> ChildIn:
        for name in ("looked_after_from", "proceedings_issued"):
            day = getattr(self, name)
            if day is not None and day < self.date_of_birth:
                raise ValueError(f"{name.replace('_', ' ')} {day} is before the child's date "
                                 "of birth")
        if self.placement and self.looked_after_from and \
                self.placement.start < self.looked_after_from:
            raise ValueError(f"placement start {self.placement.start} is before the child was "
                             f"looked after ({self.looked_after_from})")
        return self

    @field_validator("given_name", "family_name")
    @classmethod
    def _one_visible_line(cls, value: str) -> str:
        return check_name(value)

    @field_validator("address")
    @classmethod
    def _no_hidden_text(cls, value: str | None) -> str | None:
        return None if value is None else check_free_text("address", value, 500)


class CaregiverIn(_Input):
    relationship: Literal["mother", "father", "parent", "foster-carer", "kinship-carer"]
    name: str | None = Field(default=None, max_length=200)

    @field_validator("name")
    @classmethod
    def _one_visible_line(cls, value: str | None) -> str | None:
        return check_name(value)

    # the children (child-1, child-2, ... in referral order) this person cares for; all if empty
    children: list[str] = Field(default=[], max_length=MAX_CHILDREN)


# The rules every case's key dates keep, when a referral is read and whenever one of its dates
# moves (`case move-date`): in one place, so a moved date cannot break what a referral may not.
CASE_SPAN_YEARS = 5  # no key date lies further after the referral; no referral is older
CHILD_AGE_YEARS = 18  # a looked-after child is under 18 (Children Act 1989 s105(1))
_NOT_BEFORE_BIRTH = {"referral": "referral date", "care_entry": "care entry date",
                     "la_referral": "LA referral date"}


def _years_on(day: date, years: int) -> date:
    try:
        return add_months(day, 12 * years)
    except OverflowError:
        return date.max if years > 0 else date.min


def case_date_problems(dates: dict[str, date], births: dict[str, date],
                       today: date | None = None) -> list[str]:
    """Why a case's key dates cannot stand together (none if they can). `dates` are named as
    the engine's anchors (referral, care_entry, placement_start, final_hearing, stage:<id>,
    ...); `births` are the children's dates of birth by how a message names each child. With
    `today`, the referral is neither in the future nor more than CASE_SPAN_YEARS back."""
    problems = []
    referral, care_entry = dates.get("referral"), dates.get("care_entry")
    for who, dob in births.items():
        problems += [f"{what} {dates[name]} is before the date of birth of {who}"
                     for name, what in _NOT_BEFORE_BIRTH.items()
                     if dates.get(name) is not None and dates[name] < dob]
        if referral is not None and _years_on(dob, CHILD_AGE_YEARS) <= referral:
            problems.append(f"{who}, born {dob}, would be {CHILD_AGE_YEARS} or older at referral "
                            f"{referral}; a looked-after child is under {CHILD_AGE_YEARS}: check "
                            "the date of birth")
    for name, day in dates.items():
        base, _, child = name.partition("@")
        entry = dates.get(f"care_entry@{child}", care_entry) if child else care_entry
        if base == "placement_start" and entry is not None and day < entry:
            problems.append(f"placement start {day} is before care entry {entry}")
        if child and child in births and day < births[child]:
            problems.append(f"{base.replace('_', ' ')} {day} is before the date of birth of "
                            f"{child}")
    if referral is not None and care_entry is not None and referral < care_entry:
        problems.append(f"referral date {referral} is before care entry {care_entry}; a case "
                        "is for a child already in care (the engine's subject): check both dates")
    issued, hearing = dates.get("proceedings_issued"), dates.get("final_hearing")
    if issued is not None and hearing is not None and hearing < issued:
        problems.append(f"final hearing {hearing} is before proceedings were issued ({issued})")
    eldest = min(births.items(), key=lambda item: item[1], default=None)
    latest = _years_on(referral, CASE_SPAN_YEARS) if referral is not None else None
    for name, day in dates.items():
        what = name.replace("_", " ")
        if name.startswith("stage:") and referral is not None and day < referral:
            problems.append(f"{name} {day} is before the referral ({referral})")
        if eldest is not None and name not in _NOT_BEFORE_BIRTH and day < eldest[1]:
            problems.append(f"{what} {day} is before the date of birth of {eldest[0]}")
        if latest is not None and day > latest:
            problems.append(f"{what} {day} is more than {CASE_SPAN_YEARS} years after the "
                            f"referral ({referral}): check the year")
    if today is not None and referral is not None:
        if referral > today:
            problems.append(f"referral date {referral} is in the future (today {today})")
        elif referral < _years_on(today, -CASE_SPAN_YEARS):
            problems.append(f"referral date {referral} is more than {CASE_SPAN_YEARS} years ago "
                            f"(today {today}): check the year")
    return list(dict.fromkeys(problems))


def months_between(start: date, end: date) -> int:
    """Whole months from start to end (age in months on a date)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)


def child_identity(given_name: str, family_name: str, born: date) -> str:
    """A child's identity as compared for duplicates: names case-, accent-form- and
    whitespace-insensitively (NFKC, casefolded, runs of spaces as one), with the date of birth."""
    def norm(name: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", name).casefold().split())

    return f"{norm(given_name)}\x1f{norm(family_name)}\x1f{born.isoformat()}"


def duplicate_children(children: list[ChildIn]) -> list[list[int]]:
    """The positions (1-based) of children listed more than once, in groups; never names."""
    seen: dict[str, list[int]] = {}
    for n, child in enumerate(children, start=1):
        seen.setdefault(child_identity(child.given_name, child.family_name,
                                       child.date_of_birth), []).append(n)
    return [group for group in seen.values() if len(group) > 1]


class Referral(_Input):
    """What a coordinator enters to open a case."""

    jurisdiction: Literal["england-and-wales", "scotland", "northern-ireland"]
    site: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    # the programme the case is on (nim, fdac): its pathway follows the jurisdiction
    programme: str = Field(default="nim", pattern=r"^[a-z][a-z0-9-]*$",
                           description="programme: nim (default) or fdac")
    # a profile name, never a file: a case opens only on a pathway shipped with the engine
    # (a forged copy of a pathway file cannot grant its author another role)
    pathway: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9-]*$",
        description="pathway profile (england, wales, scotland, northern-ireland, "
                    "fdac-england); default follows the programme and the jurisdiction")
    child: ChildIn | None = None  # one child; or `children` for a sibling group
    children: list[ChildIn] = Field(default=[], max_length=MAX_CHILDREN)
    care_entry: date
    referral: date
    la_referral: date | None = Field(
        default=None, description="referral to the LA's children's social care (its 45 days)")
    proceedings_issued: date | None = None
    final_hearing: date | None = None
    legal_status: str | None = Field(default=None, max_length=100)
    caregivers: list[CaregiverIn] = Field(min_length=1, max_length=MAX_CAREGIVERS)
    placement: PlacementIn | None = None
    settings: dict[str, int] = {}
    first_entry_to_care: bool | None = None  # asked by programmes for a first entry only
    previous_episode: str | None = Field(default=None, pattern=r"^NIM-[0-9]{4}-[0-9]{4,6}$",
                                         description="an earlier episode of this family")
    # the coordinator confirms a new episode for a child who is on an open case
    new_episode: bool = Field(default=False, description="confirm a new episode for a child "
                              "already on an open case")

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
        first = self.all_children[0]
        if first.looked_after_from or first.proceedings_issued:
            raise ValueError("the first child's dates are the referral's own (care_entry, "
                             "proceedings_issued); give looked_after_from or proceedings_issued "
                             "only for a later child whose dates differ")
        twice = duplicate_children(self.all_children)
        if twice:
            raise ValueError("the same child is listed more than once (same given name, family "
                             "name and date of birth): " + "; ".join(
                                 " and ".join(f"child {n}" for n in group) for group in twice)
                             + "; list each child once")
        keys = {f"child-{i}" for i in range(1, len(self.all_children) + 1)}
        for c in self.caregivers:
            unknown = sorted(set(c.children) - keys)
            if unknown:
                raise ValueError(f"caregiver {c.relationship} cares for {', '.join(unknown)}, "
                                 f"but the referral's children are {', '.join(sorted(keys))}")
        problems = case_date_problems(self.case_dates(), self.births())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def births(self) -> dict[str, date]:
        """Each child's date of birth, by how messages name them."""
        return {f"child-{n}" if self.children else "the child": child.date_of_birth
                for n, child in enumerate(self.all_children, start=1)}

    def case_dates(self) -> dict[str, date]:
        """The key dates this referral gives, named as the case's anchors."""
        dates = {"care_entry": self.care_entry, "referral": self.referral}
        for name in ("la_referral", "proceedings_issued", "final_hearing"):
            if getattr(self, name) is not None:
                dates[name] = getattr(self, name)
        for n, child in enumerate(self.all_children, start=1):
            placement = self.placement_of(child)
            if placement:
                dates[child_anchor("placement_start", f"child-{n}")] = placement.start
            if n > 1:  # child-1's own dates are the family's (the referral's)
                for name in ("looked_after_from", "proceedings_issued"):
                    if getattr(child, name) is not None:
                        anchor = "care_entry" if name == "looked_after_from" else name
                        dates[child_anchor(anchor, f"child-{n}")] = getattr(child, name)
        return dates

    def default_pathway(self) -> str:
        """The profile a referral opens on unless it names one: NIM's by nation (Wales:
        `pathway: wales`, as Wales shares England's bank holidays), another programme's as
        `<programme>-<nation>` (fdac-england)."""
        nation = {"scotland": "scotland", "northern-ireland": "northern-ireland"
                  }.get(self.jurisdiction, "england")
        if self.pathway:
            return self.pathway
        return nation if self.programme == "nim" else f"{self.programme}-{nation}"


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
        if rule.min_age_months is not None and age < rule.min_age_months:
            problems.append(f"{who} is {age} months old at referral; {spec.title} is for "
                            f"children of {rule.min_age_months} months or more")
        placement = referral.placement_of(child)
        if rule.not_placed_with_parent and placement and placement.kind in PLACED_WITH_PARENT:
            problems.append(f"{who} is placed with a parent ({placement.kind}); {spec.title} "
                            "is for families where no child is placed with a parent")
    given = referral.case_dates()
    problems += [f"{spec.title} needs the referral's {name.replace('_', ' ')} date ({name}): "
                 f"{rule.needs_dates[name]}" for name in rule.needs_dates if name not in given]
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
        return check_contact(value)

    @field_validator("display_name", "team")
    @classmethod
    def _one_visible_line(cls, value: str) -> str:
        return check_name(value)


class ContactIn(_Input):
    """A new contact for `practitioner update`, held to the rules `practitioner add` keeps."""

    contact: str | None = Field(default=None, max_length=500)

    @field_validator("contact")
    @classmethod
    def _contact_is_target(cls, value: str | None) -> str | None:
        return check_contact(value)


def check_contact(value: str | None) -> str | None:
    """A practitioner's contact as given, or ValueError saying what is wrong with it (the
    value is quoted masked: it may hold a secret)."""
    if value and not re.match(r"^[a-z][a-z0-9+.-]*:(//)?\S+$", value):
        raise ValueError("contact must be a named target with an address (email:you@nhs.net)"
                         " or an Apprise URL without secrets (json://host/path)")
    if value and (re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", value)
                  or carries_credentials(value)):
        raise ValueError("contact must not hold a password, token or key (in the user "
                         "part, a query parameter or a token in the path, here "
                         f"{mask_url(value)}): put credentials in the notification config "
                         "(NIM_NOTIFY_CONFIG) and use a named target (email:you@nhs.net)")
    return value


__all__ = ["JURISDICTIONS", "RELATIONSHIPS", "PLACEMENT_KINDS", "Referral", "PractitionerIn",
           "ContactIn"]
