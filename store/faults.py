"""Fault injection for the crash tests: with NIM_FAULT=<point>:<n> (armed by the composition
root from the settings) the process kills itself with SIGKILL the n-th time it reaches
<point>. Unarmed in production, where `reached` is one comparison."""

from __future__ import annotations

import os
import signal

_armed: list[str] = []  # at most one "<point>:<n>"
_hits: dict[str, int] = {}


def arm(spec: str | None) -> None:
    """Set (or, with None, clear) the fault point for this process."""
    _armed[:] = [spec] if spec else []


def reached(point: str) -> None:
    if not _armed:
        return
    name, _, count = _armed[0].partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
