"""Keep Prefect's picture equal to the case store.

The case store decides; Prefect shows and waits. `sync_case` starts the stage run and one
suspended run per open task, resumes runs whose task or stage is finished, and cancels runs
that no longer stand for open work. It is idempotent, so it runs after every command, in
every stage flow, and for every open case in `reconcile` (which also rebuilds everything
after Prefect's database is lost).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nim_pathway.app import Service

TASK_DEPLOYMENT = "human-task/human-task"
STAGE_DEPLOYMENT = "stage/stage"
LIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED"}
STACK_URL = "http://127.0.0.1:4200/api"


class OrchestrationUnavailable(RuntimeError):
    """Prefect cannot be reached: the case store change stands, orchestration is pending."""


def api_url() -> str | None:
    """PREFECT_API_URL, or the local stack's server when `nim-pathway up` is running."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    from nim_pathway.stack import stack_running

    return STACK_URL if stack_running() else None


def check_reachable(url: str, timeout: float = 3.0) -> None:
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise OrchestrationUnavailable(
            f"Prefect at {url} is unreachable ({exc.__class__.__name__}); the case store "
            "change is saved and orchestration is pending: run `nim-pathway reconcile` when "
            "Prefect is back (every sweep also does this)"
        ) from None


def run_name(ref: str, stage: str, task: str | None = None) -> str:
    return " · ".join(p for p in (ref, stage, task) if p)


def case_tags(ref: str, stage: str, jurisdiction: str, role: str | None = None,
              child: str | None = None) -> list[str]:
    """Tags of a case's runs: case, stage, nation, role, and the child key of per-child work
    (a sibling group's runs filter by child-2, never by a name)."""
    tags = [f"case:{ref}", f"stage:{stage}", f"jurisdiction:{jurisdiction}"]
    return tags + ([f"role:{role}"] if role else []) + ([f"child:{child}"] if child else [])


def _tag(run: Any, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in run.tags if t.startswith(prefix)), None)


@dataclass
class SyncReport:
    ref: str
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # task key -> flow run id started

    def summary(self) -> str:
        parts = [f"{len(self.started)} started", f"{len(self.resumed)} resumed",
                 f"{len(self.cancelled)} cancelled"]
        return f"{self.ref}: " + ", ".join(parts)


def read_all_runs(client: Any, flow_run_filter: Any) -> list[Any]:
    """Every matching flow run (the API pages at 200)."""
    runs: list[Any] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=flow_run_filter, limit=200,
                                     offset=len(runs))
        runs += page
        if len(page) < 200:
            return runs


def read_case_runs(client: Any, ref: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    return read_all_runs(client, FlowRunFilter(tags=FlowRunFilterTags(all_=[f"case:{ref}"])))


def resume_paused(client: Any, run: Any, run_input: dict[str, Any]) -> bool:
    """Resume a run read as paused; False if it was not paused or another sync got there first.

    A 409 means a concurrent sync (e.g. the finishing task's own run) resumed it first: the
    server stores the input and the new state in one transaction, so the run is resumed exactly
    once either way. Any other error is a real one."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import PrefectHTTPStatusError

    if run.state is None or run.state.type != StateType.PAUSED:
        return False
    try:
        result = client.resume_flow_run(run.id, run_input=run_input)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise
        return False
    return result.status == SetStateStatus.ACCEPT  # ABORT: no longer paused when it arrived


def sync_case(svc: Service, ref: str, today: date | None = None) -> SyncReport:
    """Make Prefect's runs for one case match the case store (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    report = SyncReport(ref)
    with get_client(sync_client=True) as client:
        # Prefect first, the case store second: the store view is never the older one.
        # Every action below is monotonic (start open work under an idempotency key, resume
        # finished work, cancel cancelled work), so a sync racing another cannot undo it.
        runs = read_case_runs(client, ref)
        show = svc.queries.show(ref)
        jurisdiction = show.jurisdiction
        tasks = svc.queries.tasks(case=ref, state=None)
        today = today or svc.queries.today()
        by_task: dict[str, list[Any]] = {}
        by_stage: dict[str, list[Any]] = {}
        for run in runs:
            if "kind:task" in run.tags:
                by_task.setdefault(_tag(run, "task:") or "", []).append(run)
            elif "kind:stage" in run.tags:
                by_stage.setdefault(_tag(run, "stage:") or "", []).append(run)

        def live(group: list[Any]) -> list[Any]:
            return [r for r in group if r.state and r.state.type.value in LIVE]

        def resume(run: Any, run_input: dict[str, Any], label: str) -> None:
            if resume_paused(client, run, run_input):
                report.resumed.append(label)

        def cancel(run: Any, why: str, label: str) -> None:
            client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
            report.cancelled.append(label)

        for t in tasks:
            key, group = t.key, by_task.get(t.key, [])
            if t.state == "open" and not live(group):
                started = run_deployment(
                    TASK_DEPLOYMENT, parameters={"ref": ref, "task_key": key}, timeout=0,
                    as_subflow=False, flow_run_name=run_name(ref, t.stage, key),
                    tags=case_tags(ref, t.stage, jurisdiction, t.role, t.child)
                    + [f"task:{key}", "kind:task"],
                    idempotency_key=f"{ref}/{key}#{len(group) + 1}",
                )
                report.started.append(key)
                report.runs[key] = str(started.id)
            elif t.state == "done":
                for run in live(group):
                    resume(run, {**(t.outcome or {}), "completed_by": t.completed_by}, key)
            elif t.state == "cancelled":
                for run in live(group):
                    cancel(run, "task cancelled in the case store", key)

        current = show.stage
        if current and not live(by_stage.get(current, [])):
            group = by_stage.get(current, [])
            run_deployment(
                STAGE_DEPLOYMENT, parameters={"ref": ref, "stage": current}, timeout=0,
                as_subflow=False, flow_run_name=run_name(ref, current),
                tags=case_tags(ref, current, jurisdiction) + ["kind:stage"],
                idempotency_key=f"{ref}/stage:{current}#{len(group) + 1}",
            )
            report.started.append(f"stage:{current}")
        for stage, group in by_stage.items():
            if stage != current:
                for run in live(group):
                    resume(run, {"closed_on": str(today)}, f"stage:{stage}")
    if report.runs:
        svc.commands.record_flow_runs(ref, report.runs)
    return report


def reconcile(svc: Service, refs: list[str] | None = None) -> list[SyncReport]:
    """Sync every open case (and any closed case that still has live runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    if refs is None:
        refs = [c.ref for c in svc.queries.cases() if not c.closed_on]
        with get_client(sync_client=True) as client:
            live_runs = read_all_runs(client, FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=sorted(LIVE)))))
        refs += sorted({t[5:] for r in live_runs for t in r.tags if t.startswith("case:")}
                       - set(refs))
    return [sync_case(svc, ref) for ref in refs]


def orchestrate_after(svc: Service, ref: str) -> str:
    """Called after a command: sync the case if Prefect is configured, say what happened."""
    url = api_url()
    if url is None:
        return "orchestration off (no PREFECT_API_URL and no local stack running)"
    os.environ.setdefault("PREFECT_API_URL", url)
    check_reachable(url)
    return "orchestration: " + sync_case(svc, ref).summary()
