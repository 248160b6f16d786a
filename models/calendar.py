"""Working-day calendars for the UK jurisdictions and due-date arithmetic.

Pure functions: no clock, no I/O. Bank holidays come from the maintained `holidays`
library (UK subdivisions ENG, SCT, NIR), through a table generated from it for the years in
use (models/bank_holidays.py); site closure days are added by configuration.

Convention: "N working days after an anchor" is the N-th working day after the anchor
date; the anchor day itself is never counted. "N weeks beginning with" a day counts that day
as day 1 (Children Act 1989 s32(1)(a)(ii)), so the last day is one day earlier than "N weeks
after". A calendar-day, week or month result that is not a working day is then adjusted by the
deadline's kind: a legal **maximum** is pulled back to the previous working day (never later
than the law allows), a **target** for a piece of work rolls forward to the next one, an
**exact** date (a court-set date, an informational limit) stays where it lands.
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
# The largest offset (either way) the engine reckons with, per unit: about five years, longer
# than any pathway's span (the research follow-up at 30 months is the longest), so a typo or a
# hostile number is refused instead of creating work for centuries. Pathway files (offsets and
# each setting's range) and `nim-pathway deadline` are held to it.
MAX_AMOUNT: dict[str, int] = {"working_days": 1300, "days": 1830, "weeks": 260, "months": 60}
Adjust = Literal["back", "forward", "none"]
ADJUST_FOR_KIND: dict[str, Adjust] = {"maximum": "back", "target": "forward", "exact": "none"}


class CalendarError(ValueError):
    """A jurisdiction or offset the calendar cannot work with."""


@lru_cache(maxsize=64)
@lru_cache(maxsize=512)  # a year's table, read for every day a due date steps over
def _bank_holidays(jurisdiction: str, year: int) -> dict[date, str]:
    if jurisdiction not in _SUBDIVISION:
        raise CalendarError(
            f"unknown jurisdiction {jurisdiction!r}; use one of {', '.join(JURISDICTIONS)}"
        )
    from models import bank_holidays  # the generated table (tools/gen_bank_holidays.py)

    if bank_holidays.FIRST_YEAR <= year <= bank_holidays.LAST_YEAR:
        return {date(year, int(entry[:2]), int(entry[3:5])): entry[6:]
                for entry in bank_holidays.BANK_HOLIDAYS[jurisdiction][year]}
    import holidays  # outside the table's years only: it costs ~0.2 s per process

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
        """Working days after `start` up to and including `end` (negative if end < start):
        the weekdays counted by whole weeks, less the bank holidays and closures among them."""
        if end == start:
            return 0
        sign = 1 if end > start else -1
        lo, hi = (start, end) if sign == 1 else (end, start)
        weeks, rest = divmod((hi - lo).days, 7)
        count = 5 * weeks + sum((lo.weekday() + k) % 7 < 5 for k in range(1, rest + 1))
        off = set(self.closures)
        for year in range(lo.year, hi.year + 1):
            off.update(_bank_holidays(self.jurisdiction, year))
        count -= sum(1 for day in off if lo < day <= hi and day.weekday() < 5)
        return sign * count

    def working_days_to_due(self, today: date, due: date) -> int:
        """How far `due` is from `today` in working days: the one count the caseload board,
        `task list` and their RAG use, so they never disagree.

        Due today is 0; due later, the working days after today up to and including `due`
        (working_days_between). Overdue (`due` before today) is always negative: minus the
        working days after `due` up to and including today, but at least -1, so work due on
        Friday is -1 on the Saturday (late, though no working day has passed) and still -1
        on the Monday, -2 on the Tuesday."""
        if due < today:
            return -max(1, self.working_days_between(due, today))
        return self.working_days_between(today, due)


def add_months(anchor: date, months: int) -> date:
    """Calendar months, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date value out of range")
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
    adjust: Adjust | None = None,
    day_one: bool = False,
    fraction: float | None = None,
) -> DueDate:
    """Apply one offset rule to an anchor date and explain the result.

    `adjust` says what a non-working result does: "back" (a legal maximum: the previous
    working day), "forward" (a target: the next one) or "none" (exact); `roll_forward` is
    the older spelling of "forward". `day_one`: the anchor day is day 1 ("N weeks beginning
    with"), so the span ends a day earlier. `fraction`: that part of the span (half of the
    treatment months for a mid-way review), in whole days, rounded down."""
    try:
        return _compute_due(calendar, anchor, amount, unit, anchor_name, roll_forward, adjust,
                            day_one, fraction)
    except OverflowError:  # date arithmetic past year 9999 (or before year 1)
        raise CalendarError(f"{_plural(amount, unit.rstrip('s').replace('_', ' '))} from "
                            f"{anchor.isoformat()} falls outside the calendar; check the date "
                            "and the amount") from None


def _compute_due(calendar: WorkingCalendar, anchor: date, amount: int, unit: str,
                 anchor_name: str, roll_forward: bool, adjust: Adjust | None, day_one: bool,
                 fraction: float | None) -> DueDate:
    adjust = adjust or ("forward" if roll_forward else "none")
    if unit == "working_days":
        if fraction is not None:
            amount = int(amount * fraction)
        due, skipped = calendar.add_working_days(anchor, amount)
        how = (
            f"{_plural(amount, 'working day')} after {anchor_name} "
            f"{anchor.isoformat()} in {calendar.jurisdiction}; {_describe_skips(skipped)}"
        )
        return DueDate(due=due, explanation=how)
    if unit == "days":
        due = anchor + timedelta(days=amount)
        span = _plural(amount, "calendar day")
    elif unit == "weeks":
        due = anchor + timedelta(weeks=amount)
        span = _plural(amount, "week")
    elif unit == "months":
        due = add_months(anchor, amount)
        span = _plural(amount, "calendar month")
    else:
        raise CalendarError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    if fraction is not None:
        due = anchor + timedelta(days=int((due - anchor).days * fraction))
        span = f"{fraction:g} of {span}"
    if day_one:
        due -= timedelta(days=1 if amount >= 0 else -1)
        how = f"{span} beginning with {anchor_name} {anchor.isoformat()} (day 1)"
    else:
        how = f"{span} after {anchor_name} {anchor.isoformat()}"
    reason = calendar.why_not_working(due)
    if reason and adjust == "forward":
        landed = due
        while not calendar.is_working_day(due):
            due += timedelta(days=1)
        how += f"; {landed.isoformat()} is not a working day ({reason}), so the next one"
    elif reason and adjust == "back":
        landed = due
        skipped = []
        while not calendar.is_working_day(due):
            if due != landed:
                skipped.append(f"{due.isoformat()} ({calendar.why_not_working(due)})")
            due -= timedelta(days=1)
        how += (f"; the legal limit {landed.isoformat()} is not a working day ({reason}), so "
                "the working day before it" + (f", past {', '.join(skipped)}" if skipped else "")
                + " (a maximum is never moved later)")
    elif reason:
        how += f" (falls on a non-working day: {reason})"
    return DueDate(due=due, explanation=how)
