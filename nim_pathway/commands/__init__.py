"""Domain commands: the one path every change takes (CLI, Prefect UI resume, API).

Each command is one transaction on the case store: it loads the case, asks the access
policy, calls the pure engine with today's date from the injected clock, writes the new
state, re-plans the case's timers and appends hash-chained audit rows. If anything fails,
nothing is written (a refusal's audit row aside). Split by what they act on:

- `cases.py`   stage a referral, open, decide, move a date, court timetable, placement
- `tasks.py`   complete, reassign, delay cause
- `timers.py`  sweep due timers, digests, flow run ids from Prefect
- `admin.py`   practitioners, outbox retry, report packs, erasure
"""

from __future__ import annotations

from nim_pathway.commands.admin import AdminCommands
from nim_pathway.commands.base import Result
from nim_pathway.commands.cases import CaseCommands
from nim_pathway.commands.identity import IdentityCommands
from nim_pathway.commands.tasks import TaskCommands
from nim_pathway.commands.timers import TimerCommands


class Commands(CaseCommands, TaskCommands, TimerCommands, AdminCommands, IdentityCommands):
    """Every write command, sharing one store context and its queries."""


__all__ = ["Commands", "Result"]
