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

    Lets a test or a demo move time for the CLI, the worker and its flow runs at once. `set`
    writes a new file beside it and renames it over the old one, so a reader in another
    process or thread sees the old instant or the new, never a half-written file."""

    LIMIT = 200  # an ISO instant is ~32 bytes; a longer file is not a clock

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> datetime:
        import os
        import stat

        from models.errors import ConfigError

        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/zero, a FIFO: never read
                    raise ValueError("it is not a regular file")
                raw = os.read(fd, self.LIMIT + 1)
            finally:
                os.close(fd)
            if len(raw) > self.LIMIT:
                raise ValueError(f"it holds more than {self.LIMIT} bytes")
            return parse_instant(raw.decode("utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"NIM_CLOCK_FILE {self.path} cannot be read ({exc.strerror}); "
                              "point it at a file holding an ISO instant") from None
        except ValueError as exc:  # not UTF-8, not an instant, not a file
            raise ConfigError(f"NIM_CLOCK_FILE {self.path} must hold an ISO instant like "
                              f"2026-01-12T09:00 ({str(exc)[:120]})") from None

    def set(self, instant: datetime) -> None:
        import os
        import stat
        import threading

        from models.errors import ConfigError

        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):  # never replace a device, a FIFO or a link
            raise ConfigError(f"NIM_CLOCK_FILE {self.path} is not a regular file; point it at "
                              "a file of the project's own. Nothing was changed")
        tmp = f"{self.path}.{os.getpid()}-{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(instant.astimezone(UTC).isoformat())
            os.replace(tmp, self.path)  # atomic: the file always holds a whole instant
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise


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
