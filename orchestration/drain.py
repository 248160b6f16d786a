"""Sync follows change, not the caseload: every command journals its case (store/journal.py)
in its own transaction; `drain_journal` applies the journal in leased batches (each sweep
drains what is left) and `serve_journal` is the sync service (`nim-pathway drain --follow`)
that applies each entry as soon as it is written."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nim_pathway.settings import STACK_URL
from orchestration.prefect_api import OrchestrationUnavailable, check_reachable, prefect_client
from orchestration.sync import explained_sync, sync_case

if TYPE_CHECKING:
    from nim_pathway.app import Service


@dataclass
class DrainReport:
    claimed: int = 0
    applied: int = 0
    failed: int = 0
    cases: int = 0
    errors: list[str] = field(default_factory=list)
    failed_ids: set[int] = field(default_factory=set)
    unreachable: bool = False  # Prefect could not be reached: draining stopped


def drain_journal(svc: Service, limit: int = 200, rounds: int = 50, client: Any = None,  # noqa: ANN401
                  explain: bool = False, skip: Collection[int] = ()) -> DrainReport:
    """Apply the orchestration journal: sync exactly the cases that changed, in batches, with
    one Prefect client. Entries are leased, so two drainers never sync the same change; a
    drainer killed mid-batch leaves its entries to the next one once the lease runs out, and
    applying one twice is harmless (a sync is idempotent). When Prefect is unreachable the
    batch is released with the error and draining stops until the next sweep.

    Each applied entry keeps what its sync did; with `explain` (the sync service, whose
    outcomes a waiting CLI prints) also the warnings `orchestrate_after` would give."""
    import uuid

    from store import faults

    if client is None:
        with prefect_client(svc.settings) as own:
            return drain_journal(svc, limit, rounds, own, explain, skip)
    report, token = DrainReport(), uuid.uuid4().hex
    failed = report.failed_ids  # released with an error: not again in this drain (a case
    failed.update(skip)  # that fails would fail every round), the next sweep retries them
    for _ in range(rounds):
        claimed = svc.timers.claim_changes(token, limit, skip=failed)
        if not claimed:
            break
        report.claimed += sum(len(ids) for ids in claimed.values())
        faults.reached("drain-claimed")  # crash tests: leased, nothing synced yet
        for n, (ref, ids) in enumerate(claimed.items()):
            try:
                outcome = explained_sync(svc, ref, client, sync_case) if explain else \
                    "orchestration: " + sync_case(svc, ref, client=client).summary()
            except Exception as exc:  # noqa: BLE001 - released for the next drainer
                from models.redaction import scrub_text

                why = f"{type(exc).__name__}: {scrub_text(str(exc))[:200]}"
                rest = [i for _, more in list(claimed.items())[n:] for i in more]
                report.unreachable = _unreachable(exc)
                give_back = rest if report.unreachable else ids  # unreachable: all of it
                svc.timers.settle_changes(give_back, token, error=why)
                failed.update(give_back)
                report.failed += len(give_back)
                report.errors.append(f"{ref}: {why}")
                if report.unreachable:
                    return report
                continue
            faults.reached("drain-synced")  # crash tests: synced, not yet recorded
            report.applied += svc.timers.settle_changes(ids, token, outcome=outcome)
            report.cases += 1
    return report


def _unreachable(exc: Exception) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | OrchestrationUnavailable)


@dataclass
class ServiceStats:
    batches: int = 0
    applied: int = 0
    failed: int = 0
    round_errors: int = 0  # rounds that failed as a whole (store or clock unreadable), retried
    last_error: str | None = None


RETRY_S = 30.0  # a change the service failed to apply waits this long before it tries again


ROUND_BACKOFF_S = (0.5, 30.0)  # after a failed round: first wait, longest wait


def _round_failed(stats: ServiceStats, exc: Exception, streak: int,
                  log: Callable[[str], None]) -> float:
    """Count and log a failed round (type and a scrubbed message: no identity, no URL) and
    say how long to wait before the next, doubling while rounds keep failing."""
    from models.redaction import scrub_text

    stats.round_errors += 1
    stats.last_error = f"{type(exc).__name__}: {scrub_text(str(exc))[:200]}"
    log(f"sync service: a round failed and will be retried ({stats.last_error})")
    first, longest = ROUND_BACKOFF_S
    return min(longest, first * 2 ** min(streak, 10))


def write_service_health(path: Path, stats: ServiceStats, state: str) -> None:
    """What `status` shows of the sync service: its counts and last error, in the data folder
    (a new 0600 file each time, so a reader never sees half of it)."""
    import json

    from store.files import write_private

    write_private(path, json.dumps(
        {"state": state, **asdict(stats)}).encode(), "the sync service's health file")


def serve_journal(svc: Service, stop: Any, poll_s: float = 0.2,  # noqa: ANN401 - an Event
                  log: Callable[[str], None] = print) -> ServiceStats:
    """The sync service: apply each journal entry as soon as it is written, until `stop`
    (a threading.Event) is set, holding the service lock so commands wait for it instead of
    syncing themselves. Polls with a read (no write lock) and claims only when something is
    pending; when Prefect is unreachable it waits for Prefect's health check to pass; an
    entry that failed waits RETRY_S before its next try."""
    import time

    from store.journal import service_lock

    stats, failed_at, streak = ServiceStats(), {}, 0
    url = svc.settings.prefect_api_url or STACK_URL
    health = svc.settings.sync_service_health_file
    with service_lock(svc.url), prefect_client(svc.settings, url) as client:
        from models.redaction import mask_url

        log(f"sync service: applying the orchestration journal to {mask_url(url)}")
        write_service_health(health, stats, "running")
        while not stop.is_set():
            try:  # one round: a failure here (store or clock unreadable) must not end the service
                if not svc.queries.changes_pending():
                    stop.wait(poll_s)
                    streak = 0
                    continue
                now = time.monotonic()
                failed_at = {i: t for i, t in failed_at.items() if now - t < RETRY_S}
                report = drain_journal(svc, client=client, explain=True, skip=failed_at)
            except Exception as exc:  # noqa: BLE001 - logged, counted, retried with back-off
                pause = _round_failed(stats, exc, streak, log)
                _health_quietly(health, stats, "running", log)
                streak += 1
                stop.wait(pause)
                continue
            streak = 0
            stats.batches += 1
            stats.applied += report.applied
            stats.failed += report.failed
            for error in report.errors:
                log(f"sync service: waiting: {error}")
            _health_quietly(health, stats, "running", log)
            if report.unreachable:  # the wait for Prefect is the back-off: no retry delay
                _await_health(url, stop, log)
                continue
            failed_at.update({i: now for i in report.failed_ids - set(failed_at)})
            if not report.claimed:
                stop.wait(poll_s)  # only entries waiting for a retry
    _health_quietly(health, stats, "stopped", log)
    log(f"sync service stopped: {stats.applied} change(s) applied, {stats.failed} failed, "
        f"{stats.round_errors} round(s) failed and retried")
    return stats


def _health_quietly(path: Path, stats: ServiceStats, state: str,
                    log: Callable[[str], None]) -> None:
    try:
        write_service_health(path, stats, state)
    except Exception as exc:  # noqa: BLE001 - the health file is a report, not the work
        log(f"sync service: its health file cannot be written ({type(exc).__name__})")


def _await_health(url: str, stop: Any, log: Callable[[str], None]) -> None:  # noqa: ANN401
    while not stop.wait(2.0):
        try:
            check_reachable(url)
        except OrchestrationUnavailable:
            continue
        log("sync service: Prefect is reachable again")
        return
