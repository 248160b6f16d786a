"""The composition root: the one place the service is built from settings (CLI, Prefect
tasks, demo, stack, benchmarks and tests all come through here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from models.clock import Clock
from nim_pathway.commands import command_group
from nim_pathway.settings import Settings
from store.context import StoreContext
from store.keystore import Keystore
from store.queries import Queries

if TYPE_CHECKING:
    from nim_pathway.commands.admin import AdminCommands
    from nim_pathway.commands.cases import CaseCommands
    from nim_pathway.commands.court import CourtCommands
    from nim_pathway.commands.family import FamilyCommands
    from nim_pathway.commands.identity import IdentityCommands
    from nim_pathway.commands.tasks import TaskCommands
    from nim_pathway.commands.timers import TimerCommands
    from notifications.config import NotifyConfig
    from notifications.dispatcher import Dispatcher


@dataclass(frozen=True)
class Service:
    """Command groups to change cases, queries to read them (the orchestration journal's
    included), over one store context."""

    settings: Settings
    ctx: StoreContext
    queries: Queries
    notify_config: Callable[[], NotifyConfig]  # loaded when first needed, then kept
    # the command groups, each built on first use (nim_pathway.commands.GROUPS)
    _groups: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _group(self, name: str) -> Any:  # noqa: ANN401 - one of the groups below
        found = self._groups.get(name)
        if found is None:
            found = self._groups[name] = command_group(name, self.ctx, self.queries,
                                                       self.notify_config)
        return found

    @property
    def cases(self) -> CaseCommands:
        return self._group("cases")

    @property
    def family(self) -> FamilyCommands:
        return self._group("family")

    @property
    def court(self) -> CourtCommands:
        return self._group("court")

    @property
    def tasks(self) -> TaskCommands:
        return self._group("tasks")

    @property
    def timers(self) -> TimerCommands:
        return self._group("timers")

    @property
    def admin(self) -> AdminCommands:
        return self._group("admin")

    @property
    def identity(self) -> IdentityCommands:
        return self._group("identity")

    @property
    def url(self) -> str:
        return self.ctx.url

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    def dispatcher(self, clock: Clock | None = None) -> Dispatcher:
        """The outbox dispatcher over this service's store and notification settings."""
        from nim_pathway.commands.people import open_code
        from notifications.dispatcher import Dispatcher

        key = self.ctx.secret_key
        return Dispatcher(self.url, clock or self.clock, self.notify_config(),
                          open_sealed=lambda sealed: open_code(key, sealed))


def build_service(url: str | None = None, clock: Clock | None = None,
                  closures: frozenset[date] | None = None, migrate: bool = True,
                  settings: Settings | None = None) -> Service:
    """The service from `settings` (default: read once from the environment); `url`, `clock`
    and `closures` override NIM_DATABASE_URL, NIM_CLOCK / NIM_CLOCK_FILE and NIM_CLOSURE_DAYS.
    Migrated to the newest schema unless `migrate` is False."""
    from store import faults
    from store.db import migrate as migrate_schema

    settings = settings or Settings.from_env()
    faults.arm(settings.fault)
    ctx = StoreContext(url or settings.database_url, clock or settings.clock,
                       settings.closure_days if closures is None else closures,
                       settings.audit_key, settings.audit_checkpoint, settings.secret_key,
                       Keystore(settings.keystore_url), totp_key=lambda: settings.totp_key)
    if migrate:
        migrate_schema(ctx.url)
    queries = Queries(ctx)
    notify = notify_loader(settings)
    return Service(settings, ctx, queries, notify)


def notify_loader(settings: Settings) -> Callable[[], NotifyConfig]:
    """The notification config of these settings, loaded on first use (a bad config file is
    refused only by the commands that send messages), then kept."""

    @cache
    def load() -> NotifyConfig:
        from notifications.config import load_config

        return load_config(settings.notify_config_path, settings.notify_env)

    return load
