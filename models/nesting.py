"""How deeply a YAML or JSON text nests its flow collections (`[...]`, `{...}`), measured
before it is parsed: PyYAML's scanner slows quadratically with that depth (6,000 `[` take
seconds, a megabyte of them hours) and its parser recurses once per level. Every file from
outside (referral, outcome, pathway, notification config) is measured first."""

from __future__ import annotations

import re

MAX_FLOW_NESTING = 64  # a referral nests 4 levels, a pathway file 6
_BRACKETS = re.compile(r"[\[\]{}]")


def too_deeply_nested(text: str, limit: int = MAX_FLOW_NESTING) -> bool:
    """Whether a run of open brackets goes deeper than `limit` (stops at the first that
    does). Every bracket counts, inside quotes too: no real file nests 64 in a string."""
    depth = 0
    for bracket in _BRACKETS.finditer(text):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False
