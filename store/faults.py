"""Fault injection for the crash tests: `NIM_FAULT=<point>:<n>` kills the process with SIGKILL
the n-th time it reaches <point>. Unset in production, where `reached` is a dictionary look-up."""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def reached(point: str) -> None:
    spec = os.environ.get("NIM_FAULT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
