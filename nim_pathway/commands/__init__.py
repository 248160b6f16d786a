"""Domain commands: the one path every change takes (CLI, Prefect UI resume, API).

Each command is one transaction on the case store: it loads the case, asks the access
policy, calls the pure engine with today's date from the injected clock, writes the new
state, re-plans the case's timers and appends hash-chained audit rows. If anything fails,
nothing is written (a refusal's audit row aside). The service holds one object per group,
split by what the commands act on (reads, the journal's included, are `store.queries`):

- `cases.py`     stage a referral, open, decide, move a date, pause, resume, exit, transfer
- `family.py`    children, caregivers, consent, placement, referrals on, contact, sessions
- `court.py`     the court's timetable: extensions, directions, final order; looked-after status
- `tasks.py`     complete, reassign, delay cause
- `timers.py`    sweep due timers, digests, audit checkpoint, flow run ids, journal writes
- `admin.py`     practitioners, outbox retry, report packs, expired referrals, erasure
- `identity.py`  the first admin, sign-in, one-time codes, sessions, pathway install

What the groups share is in `base.py` (context, policy check, engine event, the write path)
and `people.py` (a practitioner row's seal, second factor and sessions).
"""

from __future__ import annotations

from collections.abc import Callable

from nim_pathway.commands.admin import AdminCommands
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.commands.cases import CaseCommands
from nim_pathway.commands.court import CourtCommands
from nim_pathway.commands.family import FamilyCommands
from nim_pathway.commands.identity import IdentityCommands
from nim_pathway.commands.tasks import TaskCommands
from nim_pathway.commands.timers import TimerCommands
from notifications.config import NotifyConfig
from store.context import StoreContext
from store.queries import Queries

GROUPS: dict[str, type[CommandBase]] = {
    "cases": CaseCommands, "family": FamilyCommands, "court": CourtCommands,
    "tasks": TaskCommands, "timers": TimerCommands, "admin": AdminCommands,
    "identity": IdentityCommands,
}


def command_groups(ctx: StoreContext, queries: Queries,
                   notify: Callable[[], NotifyConfig]) -> dict[str, CommandBase]:
    """One object per command group, by name, over one store context, its queries and the
    notification settings."""
    return {name: group(ctx, queries, notify) for name, group in GROUPS.items()}


__all__ = ["AdminCommands", "CaseCommands", "CourtCommands", "FamilyCommands",
           "IdentityCommands", "TaskCommands", "TimerCommands", "Result", "command_groups"]
