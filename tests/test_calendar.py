"""Working-day calendars: properties, the official GOV.UK bank holidays, worked deadlines,
explanations, site closures and the `nim-pathway deadline` command.

The expected bank-holiday dates below are written out by hand from the official GOV.UK
calendars (https://www.gov.uk/bank-holidays), not computed from the `holidays` library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import (
    JURISDICTIONS,
    UNITS,
    CalendarError,
    WorkingCalendar,
    add_months,
    compute_due,
)

EW, SCT, NI = "england-and-wales", "scotland", "northern-ireland"
D = date.fromisoformat

# -- official GOV.UK bank holidays, written out by hand ---------------------------------------

OFFICIAL: dict[str, dict[int, dict[str, str]]] = {
    EW: {
        2025: {
            "2025-01-01": "New Year's Day",
            "2025-04-18": "Good Friday",
            "2025-04-21": "Easter Monday",
            "2025-05-05": "Early May bank holiday",
            "2025-05-26": "Spring bank holiday",
            "2025-08-25": "Summer bank holiday",
            "2025-12-25": "Christmas Day",
            "2025-12-26": "Boxing Day",
        },
        2026: {
            "2026-01-01": "New Year's Day",
            "2026-04-03": "Good Friday",
            "2026-04-06": "Easter Monday",
            "2026-05-04": "Early May bank holiday",
            "2026-05-25": "Spring bank holiday",
            "2026-08-31": "Summer bank holiday",
            "2026-12-25": "Christmas Day",
            "2026-12-28": "Boxing Day (substitute day)",
        },
    },
    SCT: {
        2025: {
            "2025-01-01": "New Year's Day",
            "2025-01-02": "2nd January",
            "2025-04-18": "Good Friday",
            "2025-05-05": "Early May bank holiday",
            "2025-05-26": "Spring bank holiday",
            "2025-08-04": "Summer bank holiday",
            "2025-12-01": "St Andrew's Day (substitute day)",
            "2025-12-25": "Christmas Day",
            "2025-12-26": "Boxing Day",
        },
        2026: {
            "2026-01-01": "New Year's Day",
            "2026-01-02": "2nd January",
            "2026-04-03": "Good Friday",
            "2026-05-04": "Early May bank holiday",
            "2026-05-25": "Spring bank holiday",
            "2026-08-03": "Summer bank holiday",
            "2026-11-30": "St Andrew's Day",
            "2026-12-25": "Christmas Day",
            "2026-12-28": "Boxing Day (substitute day)",
        },
    },
    NI: {
        2025: {
            "2025-01-01": "New Year's Day",
            "2025-03-17": "St Patrick's Day",
            "2025-04-18": "Good Friday",
            "2025-04-21": "Easter Monday",
            "2025-05-05": "Early May bank holiday",
            "2025-05-26": "Spring bank holiday",
            "2025-07-14": "Battle of the Boyne (substitute day)",
            "2025-08-25": "Summer bank holiday",
            "2025-12-25": "Christmas Day",
            "2025-12-26": "Boxing Day",
        },
        2026: {
            "2026-01-01": "New Year's Day",
            "2026-03-17": "St Patrick's Day",
            "2026-04-03": "Good Friday",
            "2026-04-06": "Easter Monday",
            "2026-05-04": "Early May bank holiday",
            "2026-05-25": "Spring bank holiday",
            "2026-07-13": "Battle of the Boyne (substitute day)",
            "2026-08-31": "Summer bank holiday",
            "2026-12-25": "Christmas Day",
            "2026-12-28": "Boxing Day (substitute day)",
        },
    },
}

# Days the `holidays` library may list that we could not confirm against GOV.UK; the tests
# assert nothing about them either way. (Scotland, Monday 15 June 2026: a one-off holiday
# for the FIFA World Cup in the library.)
UNCONFIRMED: dict[str, set[date]] = {SCT: {D("2026-06-15")}}

OFFICIAL_CASES = [
    pytest.param(j, D(day), name, id=f"{j}-{day}")
    for j, years in OFFICIAL.items()
    for year in years.values()
    for day, name in year.items()
]


@pytest.mark.parametrize(("jurisdiction", "day", "name"), OFFICIAL_CASES)
def test_official_bank_holiday_is_not_a_working_day(jurisdiction, day, name):
    assert day.weekday() < 5, f"expected data: {day} ({name}) should be a weekday"
    cal = WorkingCalendar(jurisdiction)
    assert not cal.is_working_day(day)
    assert (cal.why_not_working(day) or "").startswith("bank holiday: "), name


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
@pytest.mark.parametrize("year", [2025, 2026])
def test_every_other_weekday_is_a_working_day(jurisdiction, year):
    """The official list is complete: no other weekday of the year is a holiday."""
    cal = WorkingCalendar(jurisdiction)
    official = {D(d) for d in OFFICIAL[jurisdiction][year]}
    unexpected = []
    day = date(year, 1, 1)
    while day.year == year:
        if day.weekday() < 5 and day not in official and day not in UNCONFIRMED.get(
            jurisdiction, set()
        ):
            if not cal.is_working_day(day):
                unexpected.append((day.isoformat(), cal.why_not_working(day)))
        day += timedelta(days=1)
    assert unexpected == []


@pytest.mark.parametrize(
    ("jurisdiction", "day", "why"),
    [
        (SCT, "2025-04-21", "no Easter Monday in Scotland"),
        (SCT, "2026-04-06", "no Easter Monday in Scotland"),
        (SCT, "2026-08-31", "Scotland's summer holiday is the first Monday of August"),
        (SCT, "2026-03-17", "St Patrick's Day is Northern Ireland only"),
        (SCT, "2026-07-13", "the Boyne is Northern Ireland only"),
        (EW, "2026-03-17", "St Patrick's Day is Northern Ireland only"),
        (EW, "2025-03-17", "St Patrick's Day is Northern Ireland only"),
        (EW, "2026-07-13", "the Boyne is Northern Ireland only"),
        (EW, "2025-07-14", "the Boyne is Northern Ireland only"),
        (EW, "2026-01-02", "2 January is Scotland only"),
        (EW, "2026-08-03", "England's summer holiday is the last Monday of August"),
        (EW, "2026-11-30", "St Andrew's Day is Scotland only"),
        (EW, "2025-12-01", "St Andrew's Day is Scotland only"),
        (NI, "2026-01-02", "2 January is Scotland only"),
        (NI, "2026-11-30", "St Andrew's Day is Scotland only"),
        (NI, "2026-08-03", "NI's summer holiday is the last Monday of August"),
    ],
)
def test_holiday_elsewhere_is_a_working_day_here(jurisdiction, day, why):
    assert WorkingCalendar(jurisdiction).is_working_day(D(day)), why


def test_weekend_takes_precedence_in_reason():
    cal = WorkingCalendar(EW)
    assert cal.why_not_working(D("2026-12-26")) == "weekend"  # Boxing Day on a Saturday
    assert cal.why_not_working(D("2026-12-28")).startswith("bank holiday: ")
    assert cal.why_not_working(D("2026-12-29")) is None


# -- worked deadlines across Christmas, Easter and the regional holidays -----------------------

WORKED = [
    # Christmas 2026: Fri 25 Dec, Sat 26, Sun 27, Mon 28 (substitute), Fri 1 Jan 2027;
    # Scotland also Mon 4 Jan 2027 (substitute for Sat 2 Jan).
    (EW, "2026-12-22", 5, "2026-12-31"),  # 23, 24, 29, 30, 31
    (EW, "2026-12-22", 6, "2027-01-04"),
    (NI, "2026-12-22", 5, "2026-12-31"),
    (NI, "2026-12-22", 6, "2027-01-04"),
    (SCT, "2026-12-22", 5, "2026-12-31"),
    (SCT, "2026-12-22", 6, "2027-01-05"),
    # Christmas 2025: Thu 25, Fri 26 Dec, Thu 1 Jan 2026 (+ Fri 2 Jan in Scotland).
    (EW, "2025-12-24", 2, "2025-12-30"),
    (EW, "2025-12-24", 5, "2026-01-05"),  # 29, 30, 31, 2, 5
    (NI, "2025-12-24", 5, "2026-01-05"),
    (SCT, "2025-12-24", 2, "2025-12-30"),
    (SCT, "2025-12-24", 5, "2026-01-06"),  # 29, 30, 31, 5, 6
    # Easter 2026: Good Friday 3 Apr, Easter Monday 6 Apr (not in Scotland).
    (EW, "2026-04-01", 3, "2026-04-08"),  # 2, 7, 8
    (NI, "2026-04-01", 3, "2026-04-08"),
    (SCT, "2026-04-01", 3, "2026-04-07"),  # 2, 6, 7
    # Easter 2025: Good Friday 18 Apr, Easter Monday 21 Apr.
    (EW, "2025-04-17", 1, "2025-04-22"),
    (NI, "2025-04-17", 1, "2025-04-22"),
    (SCT, "2025-04-17", 1, "2025-04-21"),
    # Regional days.
    (SCT, "2026-11-27", 1, "2026-12-01"),  # St Andrew's Day, Mon 30 Nov 2026
    (EW, "2026-11-27", 1, "2026-11-30"),
    (SCT, "2025-11-28", 1, "2025-12-02"),  # St Andrew's Day substitute, Mon 1 Dec 2025
    (NI, "2026-03-16", 1, "2026-03-18"),  # St Patrick's Day, Tue 17 Mar 2026
    (EW, "2026-03-16", 1, "2026-03-17"),
    (NI, "2026-07-10", 1, "2026-07-14"),  # Boyne substitute, Mon 13 Jul 2026
    (EW, "2026-07-10", 1, "2026-07-13"),
    (NI, "2025-07-11", 1, "2025-07-15"),  # Boyne substitute, Mon 14 Jul 2025
    (SCT, "2026-07-31", 1, "2026-08-04"),  # Scottish summer holiday, Mon 3 Aug 2026
    (EW, "2026-07-31", 1, "2026-08-03"),
    (EW, "2026-08-28", 1, "2026-09-01"),  # English summer holiday, Mon 31 Aug 2026
    (SCT, "2026-08-28", 1, "2026-08-31"),
    # Backwards.
    (SCT, "2026-01-05", -1, "2025-12-31"),
    (EW, "2026-01-05", -1, "2026-01-02"),
    (EW, "2026-04-07", -1, "2026-04-02"),
    (SCT, "2026-04-07", -1, "2026-04-06"),
    # Zero is the anchor itself.
    (EW, "2026-12-25", 0, "2026-12-25"),
]


@pytest.mark.parametrize(("jurisdiction", "anchor", "n", "expected"), WORKED)
def test_worked_deadline(jurisdiction, anchor, n, expected):
    cal = WorkingCalendar(jurisdiction)
    due, _ = cal.add_working_days(D(anchor), n)
    assert due == D(expected)
    assert compute_due(cal, D(anchor), n, "working_days").due == D(expected)
    if n > 0:
        assert cal.working_days_between(D(anchor), D(expected)) == n


# -- explanations -----------------------------------------------------------------------------


def test_working_day_explanation_names_skipped_bank_holidays():
    result = compute_due(WorkingCalendar(EW), D("2026-12-22"), 5, "working_days", "referral")
    assert result.due == D("2026-12-31")
    text = result.explanation
    assert "5 working days after referral 2026-12-22 in england-and-wales" in text
    assert "2 weekend days" in text
    assert "2026-12-25 (bank holiday: Christmas Day)" in text
    assert "2026-12-28 (bank holiday: Boxing Day" in text
    assert "2026-12-26 (" not in text  # a Saturday: counted as a weekend day, not twice


def test_working_day_explanation_regional_holiday():
    result = compute_due(WorkingCalendar(SCT), D("2026-11-27"), 1, "working_days")
    assert result.due == D("2026-12-01")
    assert "1 working day after anchor 2026-11-27 in scotland" in result.explanation
    assert "2026-11-30 (bank holiday: " in result.explanation
    assert "andrew" in result.explanation.lower()


def test_working_day_explanation_without_holidays():
    result = compute_due(WorkingCalendar(EW), D("2026-01-12"), 5, "working_days")
    assert result.due == D("2026-01-19")
    assert "skipped 2 weekend days; no bank holidays or closures" in result.explanation


def test_weeks_landing_on_weekend_rolls_forward_and_says_so():
    cal = WorkingCalendar(EW)
    exact = compute_due(cal, D("2026-01-03"), 1, "weeks")
    assert exact.due == D("2026-01-10")
    assert "falls on a non-working day: weekend" in exact.explanation
    rolled = compute_due(cal, D("2026-01-03"), 1, "weeks", roll_forward=True)
    assert rolled.due == D("2026-01-12")
    assert "2026-01-10 is not a working day (weekend), so the next one" in rolled.explanation


def test_months_landing_on_christmas_rolls_past_the_holidays():
    cal = WorkingCalendar(EW)
    exact = compute_due(cal, D("2026-11-25"), 1, "months")
    assert exact.due == D("2026-12-25")  # statutory limits stay exact
    assert "falls on a non-working day: bank holiday: Christmas Day" in exact.explanation
    rolled = compute_due(cal, D("2026-11-25"), 1, "months", roll_forward=True)
    assert rolled.due == D("2026-12-29")  # Fri 25, weekend, Mon 28 substitute
    assert "2026-12-25 is not a working day (bank holiday: Christmas Day)" in rolled.explanation
    assert "so the next one" in rolled.explanation


@pytest.mark.parametrize(
    ("jurisdiction", "expected"),
    [(EW, "2026-04-07"), (NI, "2026-04-07"), (SCT, "2026-04-06")],
)
def test_weeks_landing_on_good_friday_roll_forward(jurisdiction, expected):
    result = compute_due(
        WorkingCalendar(jurisdiction), D("2026-03-27"), 1, "weeks", roll_forward=True
    )
    assert result.due == D(expected)
    assert "2026-04-03 is not a working day (bank holiday: " in result.explanation


def test_calendar_days_stay_exact_and_working_landing_is_not_rolled():
    cal = WorkingCalendar(EW)
    result = compute_due(cal, D("2026-03-25"), 12, "days")
    assert result.due == D("2026-04-06")  # Easter Monday: a calendar-day limit stays put
    assert "12 calendar days after anchor 2026-03-25" in result.explanation
    assert "falls on a non-working day: bank holiday: " in result.explanation
    plain = compute_due(cal, D("2026-01-12"), 2, "weeks", roll_forward=True)
    assert plain.due == D("2026-01-26")
    assert "not a working day" not in plain.explanation
    assert "non-working" not in plain.explanation


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),
        ("2027-01-31", 1, "2027-02-28"),
        ("2028-01-31", 1, "2028-02-29"),  # leap year
        ("2024-01-31", 1, "2024-02-29"),  # leap year
        ("2026-03-31", -1, "2026-02-28"),
        ("2026-08-31", 1, "2026-09-30"),
        ("2026-01-31", 13, "2027-02-28"),
        ("2028-02-29", 12, "2029-02-28"),
        ("2026-11-15", 3, "2027-02-15"),
        ("2026-05-31", -12, "2025-05-31"),
        ("2026-12-31", 0, "2026-12-31"),
    ],
)
def test_add_months_clamps_to_month_end(anchor, months, expected):
    assert add_months(D(anchor), months) == D(expected)


def test_compute_due_months_clamps():
    result = compute_due(WorkingCalendar(SCT), D("2028-01-31"), 1, "months")
    assert result.due == D("2028-02-29")


def test_unknown_unit_is_refused():
    with pytest.raises(CalendarError) as err:
        compute_due(WorkingCalendar(EW), D("2026-01-12"), 1, "fortnights")
    for unit in UNITS:
        assert unit in str(err.value)


# -- site closures and jurisdictions ----------------------------------------------------------


def test_site_closure_days_are_skipped_and_explained():
    closures = frozenset({D("2026-12-29"), D("2026-12-30")})
    cal = WorkingCalendar(EW, closures)
    assert cal.why_not_working(D("2026-12-29")) == "site closure"
    assert not cal.is_working_day(D("2026-12-30"))
    assert cal.is_working_day(D("2026-12-31"))
    assert WorkingCalendar(EW).is_working_day(D("2026-12-29"))
    due, skipped = cal.add_working_days(D("2026-12-24"), 1)
    assert due == D("2026-12-31")
    assert (D("2026-12-29"), "site closure") in skipped
    result = compute_due(cal, D("2026-12-24"), 1, "working_days")
    assert result.due == D("2026-12-31")
    assert "2026-12-29 (site closure)" in result.explanation
    assert "2026-12-30 (site closure)" in result.explanation
    assert cal.working_days_between(D("2026-12-24"), D("2027-01-04")) == 2  # 31 Dec, 4 Jan


def test_roll_forward_skips_site_closure():
    cal = WorkingCalendar(NI, frozenset({D("2026-01-26")}))
    result = compute_due(cal, D("2026-01-17"), 1, "weeks", roll_forward=True)
    assert result.due == D("2026-01-27")  # Sat 24 -> Mon 26 closed -> Tue 27


@pytest.mark.parametrize("bad", ["wales", "england", "England-and-Wales", "", "ENG"])
def test_unknown_jurisdiction_names_the_valid_ones(bad):
    with pytest.raises(CalendarError) as err:
        WorkingCalendar(bad)
    for valid in JURISDICTIONS:
        assert valid in str(err.value)


def test_calendar_error_is_a_value_error():
    assert issubclass(CalendarError, ValueError)


# -- properties -------------------------------------------------------------------------------

PROPS = settings(max_examples=200, deadline=None, database=None)
DATES = st.dates(min_value=date(2020, 1, 1), max_value=date(2032, 12, 31))
STEPS = st.integers(min_value=0, max_value=60)


@st.composite
def calendars_and_anchors(draw):
    """A calendar (sometimes with closure days near the anchor) and an anchor date."""
    anchor = draw(DATES)
    offsets = draw(st.frozensets(st.integers(min_value=-40, max_value=100), max_size=8))
    closures = frozenset(anchor + timedelta(days=k) for k in offsets)
    return WorkingCalendar(draw(st.sampled_from(JURISDICTIONS)), closures), anchor


def _working_anchor(cal: WorkingCalendar, anchor: date) -> date:
    return anchor if cal.is_working_day(anchor) else cal.add_working_days(anchor, 1)[0]


@PROPS
@given(calendars_and_anchors(), st.integers(min_value=1, max_value=60))
def test_prop_lands_on_a_working_day(case, n):
    cal, anchor = case
    due, skipped = cal.add_working_days(anchor, n)
    assert due > anchor
    assert cal.is_working_day(due)
    expected_skips = [
        (anchor + timedelta(days=k), cal.why_not_working(anchor + timedelta(days=k)))
        for k in range(1, (due - anchor).days + 1)
        if not cal.is_working_day(anchor + timedelta(days=k))
    ]
    assert skipped == expected_skips


@PROPS
@given(calendars_and_anchors(), STEPS, STEPS)
def test_prop_n_then_m_equals_n_plus_m(case, n, m):
    cal, anchor = case
    first, _ = cal.add_working_days(anchor, n)
    second, _ = cal.add_working_days(first, m)
    assert second == cal.add_working_days(anchor, n + m)[0]


@PROPS
@given(calendars_and_anchors(), STEPS, STEPS)
def test_prop_monotonic_in_n(case, n, m):
    cal, anchor = case
    a, _ = cal.add_working_days(anchor, n)
    b, _ = cal.add_working_days(anchor, m)
    assert (n < m) == (a < b)
    assert (n == m) == (a == b)


@PROPS
@given(calendars_and_anchors(), STEPS)
def test_prop_negative_inverts_positive_from_a_working_day(case, n):
    cal, anchor = case
    start = _working_anchor(cal, anchor)
    forward, _ = cal.add_working_days(start, n)
    assert cal.add_working_days(forward, -n)[0] == start
    backward, _ = cal.add_working_days(start, -n)
    assert cal.add_working_days(backward, n)[0] == start


@PROPS
@given(calendars_and_anchors(), STEPS)
def test_prop_working_days_between_counts_the_steps(case, n):
    cal, anchor = case
    due, _ = cal.add_working_days(anchor, n)
    assert cal.working_days_between(anchor, due) == n
    assert cal.working_days_between(due, anchor) == -n
    start = _working_anchor(cal, anchor)
    back, _ = cal.add_working_days(start, -n)
    assert cal.working_days_between(start, back) == -n


@PROPS
@given(calendars_and_anchors(), st.integers(min_value=-40, max_value=40))
def test_prop_working_days_to_due_is_late_exactly_when_the_date_has_passed(case, days):
    """The board's and `task list`'s count: negative exactly when overdue, 0 when due today."""
    cal, today = case
    due = today + timedelta(days=days)
    wd = cal.working_days_to_due(today, due)
    assert (wd < 0) == (due < today) and (wd == 0 or due != today)
    if due < today:
        assert wd == -max(1, cal.working_days_between(due, today))


def test_working_days_to_due_around_a_weekend():
    cal = WorkingCalendar(EW)
    friday = D("2026-01-16")
    # Thu 1; Fri 0; Sat -1 (late, though no working day has passed); Mon -1; Tue -2
    assert [cal.working_days_to_due(D(f"2026-01-{d}"), friday)
            for d in (15, 16, 17, 19, 20)] == [1, 0, -1, -1, -2]


@PROPS
@given(DATES, st.integers(min_value=-60, max_value=60))
def test_prop_add_months(anchor, months):
    result = add_months(anchor, months)
    assert (result.year * 12 + result.month) - (anchor.year * 12 + anchor.month) == months
    assert result.day == anchor.day or (result.day < anchor.day and (
        result + timedelta(days=1)).month != result.month)


# -- the command line -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "nim-pathway"


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NIM_")}
    environ.update({"NIM_DATA_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [str(CLI), "deadline", *args],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )


def test_cli_prints_iso_due_date_last(tmp_path):
    proc = _run(tmp_path, "--jurisdiction", "scotland", "--from", "2026-11-27",
                "--working-days", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2026-12-01"


def test_cli_explain_prints_explanation_before_date(tmp_path):
    proc = _run(tmp_path, "--jurisdiction", "scotland", "--from", "2026-11-27",
                "--working-days", "1", "--explain")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "2026-12-01"
    assert len(lines) >= 2
    explanation = "\n".join(lines[:-1])
    assert "2026-11-30 (bank holiday: " in explanation
    assert "scotland" in explanation


def test_cli_other_units_and_closures(tmp_path):
    proc = _run(tmp_path, "--jurisdiction", "england-and-wales", "--from", "2026-01-31",
                "--months", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2026-02-28"
    proc = _run(tmp_path, "--jurisdiction", "scotland", "--from", "2026-11-27",
                "--working-days", "1", NIM_CLOSURE_DAYS="2026-12-01")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2026-12-02"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--jurisdiction", "wales", "--from", "2026-11-27", "--working-days", "1"],
         "england-and-wales"),
        (["--jurisdiction", "scotland", "--from", "2026-11-27", "--working-days", "1",
          "--days", "2"], "exactly one"),
    ],
    ids=["unknown-jurisdiction", "two-units"],
)
def test_cli_refusals_are_one_line_exit_2(tmp_path, args, needle):
    proc = _run(tmp_path, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bank_holidays_come_from_the_generated_table_inside_its_years_and_the_library_outside():
    """The table (tools/gen_bank_holidays.py) spares each CLI process the `holidays` library
    (~0.2 s); a year past it still works, from the library. 25 Dec 2050 is a Sunday, so
    Boxing Day is Mon 26 and Christmas is observed on Tue 27 (Banking and Financial Dealings
    Act 1971 Sch 1 para 1: substitute days)."""
    from models import bank_holidays

    probe = ("import sys; from datetime import date; from models.calendar import WorkingCalendar;"
             "c = WorkingCalendar('scotland'); print(c.why_not_working(date(2026, 8, 3)));"
             "print('holidays' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split("\n")
    assert out[:2] == ["bank holiday: Summer Bank Holiday", "False"]
    assert bank_holidays.LAST_YEAR < 2050
    calendar = WorkingCalendar("england-and-wales")
    assert calendar.why_not_working(date(2050, 12, 26)) == "bank holiday: Boxing Day"
    assert calendar.why_not_working(date(2050, 12, 27)) == "bank holiday: Christmas Day (observed)"


def test_working_days_between_counts_as_stepping_day_by_day():
    """The count by whole weeks less holidays and closures (the board reads it for every open
    item) agrees with stepping over each day, in every nation, across years and closures."""
    import random
    from datetime import timedelta

    from models.calendar import JURISDICTIONS, WorkingCalendar

    def stepped(cal, start, end):
        lo, hi = sorted((start, end))
        count = sum(cal.is_working_day(lo + timedelta(days=k))
                    for k in range(1, (hi - lo).days + 1))
        return count if end >= start else -count

    rnd = random.Random(29)
    for nation in JURISDICTIONS:
        cal = WorkingCalendar(nation, frozenset({date(2026, 3, 3), date(2026, 3, 7),
                                                 date(2025, 12, 25)}))
        for _ in range(400):
            a = date(2024, 1, 1) + timedelta(days=rnd.randrange(1500))
            b = a + timedelta(days=rnd.randrange(-400, 400))
            assert cal.working_days_between(a, b) == stepped(cal, a, b), (nation, a, b)
