"""Working-day calendars for the UK jurisdictions and due-date arithmetic.

Pure functions: no clock, no I/O. Bank holidays come from the maintained `holidays`
library (UK subdivisions ENG, SCT, NIR); site closure days are added by configuration.

Convention: "N working days after an anchor" is the N-th working day after the anchor
date; the anchor day itself is never counted. Calendar-day, week and month offsets land
where they land (statutory calendar-day limits are not rolled to a working day).
"""

from __future__ import annotations

import calendar as _stdcal
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

Jurisdiction = Literal["england-and-wales", "scotland", "northern-ireland"]
JURISDICTIONS: tuple[str, ...] = ("england-and-wales", "scotland", "northern-ireland")
_SUBDIVISION = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}

Unit = Literal["working_days", "days", "weeks", "months"]
UNITS: tuple[str, ...] = ("working_days", "days", "weeks", "months")


class CalendarError(ValueError):
    """A jurisdiction or offset the calendar cannot work with."""


@lru_cache(maxsize=64)
def _bank_holidays(jurisdiction: str, year: int) -> dict[date, str]:
    import holidays  # imported lazily: it costs ~0.1 s and most CLI paths never need it

    if jurisdiction not in _SUBDIVISION:
        raise CalendarError(
            f"unknown jurisdiction {jurisdiction!r}; use one of {', '.join(JURISDICTIONS)}"
        )
    found = holidays.country_holidays("GB", subdiv=_SUBDIVISION[jurisdiction], years=year)
    return {day: str(name) for day, name in found.items()}


@dataclass(frozen=True)
class WorkingCalendar:
    """Weekends, the jurisdiction's bank holidays and the site's closure days."""

    jurisdiction: str
    closures: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.jurisdiction not in _SUBDIVISION:
            raise CalendarError(
                f"unknown jurisdiction {self.jurisdiction!r}; "
                f"use one of {', '.join(JURISDICTIONS)}"
            )

    def why_not_working(self, day: date) -> str | None:
        """The reason `day` is not a working day, or None if it is one."""
        if day.weekday() >= 5:
            return "weekend"
        holiday = _bank_holidays(self.jurisdiction, day.year).get(day)
        if holiday:
            return f"bank holiday: {holiday}"
        if day in self.closures:
            return "site closure"
        return None

    def is_working_day(self, day: date) -> bool:
        return self.why_not_working(day) is None

    def add_working_days(self, anchor: date, n: int) -> tuple[date, list[tuple[date, str]]]:
        """The n-th working day after `anchor` (before it for negative n), and the
        non-working days stepped over on the way with their reasons."""
        step = 1 if n >= 0 else -1
        remaining = abs(n)
        day = anchor
        skipped: list[tuple[date, str]] = []
        while remaining:
            day += timedelta(days=step)
            reason = self.why_not_working(day)
            if reason is None:
                remaining -= 1
            else:
                skipped.append((day, reason))
        return day, skipped

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (negative if end < start)."""
        if end == start:
            return 0
        sign = 1 if end > start else -1
        lo, hi = (start, end) if sign == 1 else (end, start)
        count = 0
        day = lo
        while day < hi:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return sign * count


def add_months(anchor: date, months: int) -> date:
    """Calendar months, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(index, 12)
    last = _stdcal.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(anchor.day, last))


@dataclass(frozen=True)
class DueDate:
    """A due date together with the explanation a practitioner or a court can check."""

    due: date
    explanation: str


def _plural(amount: int, unit: str) -> str:
    return f"{amount} {unit}{'' if abs(amount) == 1 else 's'}"


def _describe_skips(skipped: Iterable[tuple[date, str]]) -> str:
    skipped = list(skipped)
    weekends = sum(1 for _, why in skipped if why == "weekend")
    others = [f"{day.isoformat()} ({why})" for day, why in skipped if why != "weekend"]
    parts = [f"{weekends} weekend day{'s' if weekends != 1 else ''}"]
    if others:
        parts.append(", ".join(others))
    else:
        parts.append("no bank holidays or closures")
    return "skipped " + "; ".join(parts)


def compute_due(
    calendar: WorkingCalendar,
    anchor: date,
    amount: int,
    unit: str,
    anchor_name: str = "anchor",
    roll_forward: bool = False,
) -> DueDate:
    """Apply one offset rule to an anchor date and explain the result.

    With `roll_forward`, a calendar-day, week or month result that lands on a non-working
    day moves to the next working day (for work people do; statutory limits stay exact)."""
    if unit == "working_days":
        due, skipped = calendar.add_working_days(anchor, amount)
        how = (
            f"{_plural(amount, 'working day')} after {anchor_name} "
            f"{anchor.isoformat()} in {calendar.jurisdiction}; {_describe_skips(skipped)}"
        )
    elif unit == "days":
        due = anchor + timedelta(days=amount)
        how = f"{_plural(amount, 'calendar day')} after {anchor_name} {anchor.isoformat()}"
    elif unit == "weeks":
        due = anchor + timedelta(weeks=amount)
        how = f"{_plural(amount, 'week')} after {anchor_name} {anchor.isoformat()}"
    elif unit == "months":
        due = add_months(anchor, amount)
        how = f"{_plural(amount, 'calendar month')} after {anchor_name} {anchor.isoformat()}"
    else:
        raise CalendarError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    if unit != "working_days":
        reason = calendar.why_not_working(due)
        if reason and roll_forward:
            landed = due
            while not calendar.is_working_day(due):
                due += timedelta(days=1)
            how += f"; {landed.isoformat()} is not a working day ({reason}), so the next one"
        elif reason:
            how += f" (falls on a non-working day: {reason})"
    return DueDate(due=due, explanation=how)
