"""The one source of time. Nothing else in the engine reads the wall clock.

`SystemClock` is the production clock; `VirtualClock` is set and moved by tests, the demo,
simulations and `NIM_CLOCK`. Dates that people see are local to the UK (Europe/London).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

UK = ZoneInfo("Europe/London")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


def today(clock: Clock) -> date:
    """The current UK calendar date."""
    return clock.now().astimezone(UK).date()


def uk_instant(day: date, at: time) -> datetime:
    """A UK wall-clock time on `day` as an aware UTC instant (handles BST/GMT)."""
    return datetime.combine(day, at, tzinfo=UK).astimezone(UTC)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UK)
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UK)
        self._now = instant.astimezone(UTC)


class FileClock:
    """A virtual clock shared by processes: the instant is read from a file on every call.

    Lets a test or a demo move time for the CLI, the worker and its flow runs at once."""

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> datetime:
        from models.errors import ConfigError

        try:
            with open(self.path, encoding="utf-8") as fh:
                return parse_instant(fh.read().strip())
        except OSError as exc:
            raise ConfigError(f"NIM_CLOCK_FILE {self.path} cannot be read ({exc.strerror}); "
                              "point it at a file holding an ISO instant") from None
        except ValueError as exc:  # not UTF-8, or not an instant
            raise ConfigError(f"NIM_CLOCK_FILE {self.path} must hold an ISO instant like "
                              f"2026-01-12T09:00 ({str(exc)[:120]})") from None

    def set(self, instant: datetime) -> None:
        with open(self.path, "w", encoding="utf-8") as fh:
            fh.write(instant.astimezone(UTC).isoformat())


def parse_instant(text: str) -> datetime:
    """An ISO date or date-time; naive values are UK local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not an ISO date or date-time (e.g. 2026-03-02 or 2026-03-02T09:00)"
        ) from exc
    if not 2000 <= value.year <= 2199:  # the engine's working years; anything else is a typo
        raise ValueError(f"{text!r} is outside the years 2000-2199; check the year")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UK)
    return value.astimezone(UTC)
