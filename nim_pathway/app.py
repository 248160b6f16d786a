"""The composition root: the one place the service is built from settings (CLI, Prefect
tasks, demo, stack, benchmarks and tests all come through here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from models.clock import Clock
from nim_pathway.commands import (
    AdminCommands,
    CaseCommands,
    CourtCommands,
    FamilyCommands,
    IdentityCommands,
    TaskCommands,
    TimerCommands,
    command_groups,
)
from store.context import StoreContext
from store.keystore import Keystore
from store.queries import Queries


@dataclass(frozen=True)
class Service:
    """Command groups to change cases, queries to read them (the orchestration journal's
    included), over one store context."""

    ctx: StoreContext
    queries: Queries
    cases: CaseCommands
    family: FamilyCommands
    court: CourtCommands
    tasks: TaskCommands
    timers: TimerCommands
    admin: AdminCommands
    identity: IdentityCommands

    @property
    def url(self) -> str:
        return self.ctx.url

    @property
    def clock(self) -> Clock:
        return self.ctx.clock


def build_service(url: str | None = None, clock: Clock | None = None,
                  closures: frozenset[date] | None = None, migrate: bool = True) -> Service:
    """The service over the configured case store (each argument defaults to its setting:
    NIM_DATABASE_URL, NIM_CLOCK / NIM_CLOCK_FILE, NIM_CLOSURE_DAYS); migrated to the newest
    schema unless `migrate` is False."""
    from nim_pathway import settings
    from store.db import migrate as migrate_schema

    ctx = StoreContext(url or settings.database_url(), clock or settings.clock(),
                       settings.closure_days() if closures is None else closures,
                       settings.audit_key(), settings.audit_checkpoint(), settings.secret_key(),
                       Keystore(settings.keystore_url()))
    if migrate:
        migrate_schema(ctx.url)
    queries = Queries(ctx)
    return Service(ctx, queries, **command_groups(ctx, queries))
