"""What `nim-pathway status` and `doctor` say about the deployment the environment points at:
Prefect's API, the work pool and its workers, the deployments, the case store, the outbox and
the orchestration journal. Every URL is shown masked (`mask_url`): never a password.

Times shown are the servers' own (a worker's last heartbeat as Prefect recorded it): nothing
here reads the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.redaction import mask_url, scrub_text

if TYPE_CHECKING:
    from nim_pathway.settings import Settings

DEPLOYMENTS = ("open-case/open-case", "stage/stage", "human-task/human-task", "sweep/sweep",
               "reconcile/reconcile", "check/check")
CHECK_DEPLOYMENT = "check/check"


@dataclass
class Health:
    """Facts by section, and what is wrong with how to fix it."""

    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.facts, "problems": self.problems}


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {scrub_text(text)[:200]}" if text else type(exc).__name__


def _sync_service(settings: Settings) -> str:
    """'running', with what the service reported of itself: changes applied, rounds that
    failed and were retried, and the last such error (a problem while rounds keep failing)."""
    import json

    from store.files import read_bounded

    try:
        said = json.loads(read_bounded(settings.sync_service_health_file, "the sync service's health "
                                       "file", limit=8192))
    except (ValueError, OSError):
        return "running"
    line = (f"running ({said.get('applied', 0)} change(s) applied, "
            f"{said.get('round_errors', 0)} round(s) failed and retried)")
    if said.get("round_errors"):
        line += f"; last error: {said.get('last_error')}"
    return line


def gather(settings: Settings) -> Health:
    """Everything status shows; each part is read on its own, so one failing part is reported
    and the others still are."""
    health = Health()
    _prefect(health, settings)
    _case_store(health, settings)
    from nim_pathway.stack import LocalStack

    if settings.stack_pid("server") is not None:  # the `nim-pathway up` view, for its users
        health.facts["local stack"] = {k: v for k, v in LocalStack(settings).status().items()
                                       if k != "case store"}
    return health


def _prefect(health: Health, settings: Settings) -> None:
    url = settings.prefect_api_url
    pool_name = settings.work_pool
    if url is None:
        health.facts["prefect"] = {"api": None, "state": "not configured"}
        health.problems.append("no Prefect: set PREFECT_API_URL (docs/DEPLOY.md) or start the "
                               "local stack with `nim-pathway up`")
        return
    prefect: dict[str, Any] = {"api": mask_url(url)}
    health.facts["prefect"] = prefect
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        prefect["state"] = f"unreachable ({type(exc).__name__})"
        health.problems.append(f"Prefect at {mask_url(url)} is unreachable: check "
                               "PREFECT_API_URL and that the server runs")
        return
    prefect["state"] = "healthy"
    from orchestration.prefect_api import prefect_client

    try:
        with prefect_client(settings) as client:
            prefect["version"] = client.api_version()
            health.facts["work pool"] = _pool(client, pool_name, health)
            health.facts["deployments"] = _deployments(client, pool_name, health)
            health.facts["failed runs"] = _failed_runs(client)
    except Exception as exc:  # noqa: BLE001 - e.g. a wrong auth string: say so, go on
        health.problems.append(f"reading Prefect failed ({_why(exc)}): check "
                               "PREFECT_API_AUTH_STRING / NIM_PREFECT_AUTH")


def _pool(client: Any, name: str, health: Health) -> dict[str, Any]:  # noqa: ANN401
    from prefect.exceptions import ObjectNotFound

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        health.problems.append(f"work pool {name!r} does not exist: create it with `prefect "
                               f"work-pool create {name} --type process` (or set NIM_WORK_POOL "
                               "to the pool the deployments use)")
        return {"name": name, "exists": False}
    workers = client.read_workers_for_work_pool(name)
    shown = [{"name": w.name, "status": str(getattr(w.status, "value", w.status)),
              "last heartbeat": str(w.last_heartbeat_time)} for w in workers]
    online = [w for w in shown if w["status"].upper() == "ONLINE"]
    if not online:
        health.problems.append(f"no worker is online in pool {name!r}: runs wait until one "
                               f"starts (`prefect worker start --pool {name}`, docs/DEPLOY.md)")
    if pool.is_paused:
        health.problems.append(f"work pool {name!r} is paused: `prefect work-pool resume {name}`")
    return {"name": name, "type": pool.type, "paused": pool.is_paused,
            "workers online": len(online), "workers": shown}


def _deployments(client: Any, pool: str, health: Health) -> dict[str, str]:  # noqa: ANN401
    found = {f"{d.name}/{d.name}": d for d in client.read_deployments()}
    out: dict[str, str] = {}
    for name in DEPLOYMENTS:
        dep = found.get(name)
        if dep is None:
            out[name] = "missing"
        elif dep.work_pool_name and dep.work_pool_name != pool:
            out[name] = f"on pool {dep.work_pool_name!r}, not {pool!r}"
        else:
            out[name] = f"pool {dep.work_pool_name}" if dep.work_pool_name else "served"
    wrong = [n for n, v in out.items() if v == "missing" or v.startswith("on pool")]
    if wrong:
        health.problems.append(f"deployments missing or on another pool: {', '.join(wrong)}; "
                               "run `prefect --no-prompt deploy --all` with NIM_WORK_POOL set")
    return out


def _failed_runs(client: Any, limit: int = 5) -> list[dict[str, str]]:  # noqa: ANN401
    """The latest crashed or failed runs of ours, with Prefect's message (a crash's cause)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["CRASHED", "FAILED"])),
        tags=FlowRunFilterTags(all_=["nim"])), sort=FlowRunSort.START_TIME_DESC, limit=limit)
    return [{"run": r.name, "state": r.state.name if r.state else "?",
             "at": str(r.state.timestamp if r.state else ""),
             "message": scrub_text((r.state.message or "") if r.state else "")[:300]}
            for r in runs]


def _case_store(health: Health, settings: Settings) -> None:
    from sqlalchemy import func, select

    from store.db import get_engine
    from store.tables import OrchestrationChange, Outbox

    try:
        url = settings.database_url
    except Exception as exc:  # noqa: BLE001 - a ConfigError names the variable
        health.problems.append(str(exc))
        return
    store: dict[str, Any] = {"url": mask_url(url)}
    health.facts["case store"] = store
    try:
        with get_engine(url).connect() as conn:
            by_status = dict(conn.execute(select(Outbox.status, func.count())
                                          .group_by(Outbox.status)).all())
            failing = conn.execute(select(func.count()).where(
                Outbox.status == "pending", Outbox.attempts > 0)).scalar_one()
            waiting = OrchestrationChange.applied_at.is_(None)  # type: ignore[union-attr]
            backlog, oldest, erring = conn.execute(select(
                func.count(), func.min(OrchestrationChange.created_at),
                func.count(OrchestrationChange.last_error)).where(waiting)).one()
    except Exception as exc:  # noqa: BLE001 - unreachable, or not migrated
        store["state"] = "unreachable"
        health.problems.append(f"the case store at {mask_url(url)} is unavailable "
                               f"({_why(exc)}): check NIM_DATABASE_URL and the database")
        return
    store["state"] = "reachable"
    health.facts["outbox"] = {"queued": by_status.get("pending", 0), "failing": failing,
                              "dead": by_status.get("dead", 0)}
    from store.journal import service_running

    health.facts["orchestration journal"] = {
        "waiting": backlog, "oldest": str(oldest) if oldest else None, "with errors": erring,
        "sync service": _sync_service(settings) if service_running(url) else
        "not running (each command syncs its case itself, ~1.5 s slower: `nim-pathway drain "
        "--follow`)"}
    if by_status.get("dead"):
        health.problems.append(f"{by_status['dead']} dead-lettered message(s): `nim-pathway "
                               "outbox list --failed`, then `outbox retry ID`")
    if erring:
        health.problems.append(f"{erring} orchestration change(s) failed to sync: the next "
                               "sweep retries (`nim-pathway drain` now)")


def probe_run(settings: Settings, timeout: float) -> tuple[bool, str]:
    """Start a run of the `check` deployment and wait (polling, with a deadline) for a worker
    to finish it; a run nobody picks up is cancelled. (ok, what happened)."""
    import time

    from prefect.exceptions import ObjectNotFound
    from prefect.states import Cancelled

    from orchestration.prefect_api import prefect_client

    with prefect_client(settings) as client:
        try:
            deployment = client.read_deployment_by_name(CHECK_DEPLOYMENT)
        except ObjectNotFound:
            return False, (f"no {CHECK_DEPLOYMENT} deployment: run `prefect --no-prompt deploy "
                           "--all` from the checkout with NIM_WORK_POOL set")
        run = client.create_flow_run_from_deployment(deployment.id, name="check",
                                                     tags=["nim", "kind:check"])
        deadline = time.monotonic() + timeout  # a timer, not the time of day
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state and run.state.is_final():
                break
            time.sleep(1)
        state = run.state
        if state and state.is_completed():
            return True, f"probe run completed through pool {deployment.work_pool_name or '-'}"
        if state and state.is_final():
            return False, (f"probe run {state.name.lower()}: "
                           f"{scrub_text(state.message or 'no message')[:300]}")
        client.set_flow_run_state(run.id, Cancelled(message="doctor: timed out"), force=True)
        if state and state.type.value in ("SCHEDULED", "PENDING"):
            return False, (f"no worker picked up the probe run in {timeout:.0f} s: start one "
                           f"with `prefect worker start --pool {deployment.work_pool_name}`")
        return False, f"probe run still {state.name if state else '?'} after {timeout:.0f} s"


def notify_admins(settings: Settings) -> tuple[bool, str]:
    """A test message to the admin target (where dead letters and audit checkpoints go),
    through the same rendering and sending as every message. (ok, what happened)."""
    from notifications.config import load_config
    from notifications.dispatcher import apprise_send
    from notifications.render import fit_for_channel, is_email, render_message

    try:
        config = load_config(settings.notify_config_path, settings.notify_env)
    except Exception as exc:  # noqa: BLE001 - a NotifyConfigError names the file or variable
        return False, str(exc)
    if not config.admin:
        return False, ("no admin target (NIM_ADMIN_TARGETS or admin: in NIM_NOTIFY_CONFIG): "
                       "dead letters and audit checkpoints would reach nobody")
    url = config.admin[0]  # the dispatcher sends admin messages there
    msg = render_message("test", {"case_ref": "TEST", "link": config.ui_url,
                                  "recipient": "admin", "dedupe_key": "doctor"})
    title, body = fit_for_channel(url, msg)
    error = apprise_send(url, title, body, is_email(url), None)
    scheme = url.split("://", 1)[0]
    if error:
        return False, f"test message to the admin target ({scheme}) failed: {error}"
    return True, f"test message delivered to the admin target ({scheme})"
