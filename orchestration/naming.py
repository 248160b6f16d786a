"""How runs are named and tagged: a task run's name leads with its due date (a queue sorted
A to Z is soonest first) and its tags make each practitioner's queue and each stage's board a
tag filter. Case reference only, never a name. No Prefect import: the CLI uses it."""

from __future__ import annotations

from datetime import date
from typing import Any


def run_name(ref: str, stage: str, task: str | None = None, due: date | None = None) -> str:
    """A task run's name leads with its due date, so Prefect's run list sorted by name
    (A to Z) is a queue, soonest first: `due 2026-03-02 · NIM-2026-0001 · referral · triage`."""
    return " · ".join(p for p in (f"due {due}" if due else None, ref, stage, task) if p)


def shown_tags(assignee: str | None, due: date) -> set[str]:
    """What a task run's form shows that can change while it waits: the owner (`assignee:`,
    which also makes each practitioner's queue a tag filter) and the due date."""
    return {f"due:{due}"} | ({f"assignee:{assignee}"} if assignee else set())


def case_tags(ref: str, stage: str, jurisdiction: str, role: str | None = None,
              child: str | None = None, programme: str | None = None) -> list[str]:
    """Tags of a case's runs: case, programme (nim, fdac), stage, nation, role, and the child
    key of per-child work (a sibling group's runs filter by child-2, never by a name)."""
    tags = [f"case:{ref}"] + ([f"programme:{programme}"] if programme else [])
    tags += [f"stage:{stage}", f"jurisdiction:{jurisdiction}"]
    return tags + ([f"role:{role}"] if role else []) + ([f"child:{child}"] if child else [])


def _tag(run: Any, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in run.tags if t.startswith(prefix)), None)


OVERDUE = "overdue"  # the tag of a waiting task run past its due date (the "Overdue" view)


FIRST_ASK = "outcome-1"  # the pause key of a task's first form (flows/pathway_flows.py asks it)


IN_STORE = "(recorded in the case store)"  # a typed field's value, in a run input
