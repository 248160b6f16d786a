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
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nim_pathway.commands.base import CommandBase
    from notifications.config import NotifyConfig
    from store.context import StoreContext
    from store.queries import Queries

# Each group's module is imported when the group is first used: a CLI command loads the one
# group it runs (and identity, to sign in), not all seven with what they import (~0.1 s).
GROUPS: dict[str, str] = {
    "cases": "cases:CaseCommands", "family": "family:FamilyCommands",
    "court": "court:CourtCommands", "tasks": "tasks:TaskCommands",
    "timers": "timers:TimerCommands", "admin": "admin:AdminCommands",
    "identity": "identity:IdentityCommands",
}
_EXPORTS = {cls: module for module, _, cls in (v.partition(":") for v in GROUPS.values())}
_EXPORTS |= {"CommandBase": "base", "Result": "base"}


def command_group(name: str, ctx: StoreContext, queries: Queries,
                  notify: Callable[[], NotifyConfig]) -> CommandBase:
    """The command group `name` over one store context, its queries and the notification
    settings (its module imported now)."""
    module, _, cls = GROUPS[name].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)(ctx, queries, notify)


def __getattr__(name: str) -> Any:  # noqa: ANN401 - a command class, imported on first use
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AdminCommands", "CaseCommands", "CourtCommands", "FamilyCommands",  # noqa: F822
           "IdentityCommands", "TaskCommands", "TimerCommands", "Result", "command_group"]
