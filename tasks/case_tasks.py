"""Prefect tasks: the units of work flows call. Each wraps one domain command or read; flows
reach the case store only through these.

Pre-suspend work is idempotent in the case store; tasks whose result may be reused on a
replay persist it under a cache key of their inputs and the flow run (not their source, so
a redeploy between suspend and resume does not re-run them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID

from models.errors import AlreadyDone, CommandError, WrongCode
from models.pathway import PathwaySpec
from models.refs import TaskRef
from nim_pathway.app import Service, build_service
from orchestration.forms import WRONG_CODE, task_description
from store.views import FiredTimer, OpenTask, TaskView, jsonable

REPLAY_SAFE = INPUTS + RUN_ID
EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4f7e-9a51-6c1f0e6b8a11")


@dataclass(frozen=True)
class StageView:
    """What a stage run shows while it waits."""

    ref: str
    stage: str | None
    first_stage: str
    jurisdiction: str
    pathway: str
    today: date
    open_tasks: tuple[OpenTask, ...]


@lru_cache(maxsize=1)
def service() -> Service:
    """The service for this worker process (built from settings and migrated once)."""
    return build_service()


@task(name="open-from-intake", cache_policy=NO_CACHE)
def open_from_intake(intake: str, coordinator: str, code: str) -> str:
    """Open the case for a staged referral (the same command as `case open`), once the
    coordinator's one-time code checks out."""
    svc = service()
    result = svc.cases.open_from_intake(intake, svc.identity.authenticate(coordinator, code))
    get_run_logger().info("%s", result.message)
    return result.ref


@task(name="load-stage", cache_policy=NO_CACHE)
def load_stage(ref: str) -> StageView:
    """The case's current stage and open work, as the case store has it now."""
    svc = service()
    shown = svc.queries.show(ref)
    return StageView(ref, shown.stage, svc.queries.pathway(ref).stages[0].id,
                     shown.jurisdiction, shown.pathway, svc.queries.today(), shown.open_tasks)


@task(name="load-pathway", cache_policy=NO_CACHE, persist_result=False)
def load_case_pathway(ref: str) -> PathwaySpec:
    """The pathway version the case started on (its forms come from it)."""
    return service().queries.pathway(ref)


@task(name="load-task", cache_policy=NO_CACHE)
def load_task(ref: str, key: str) -> TaskView:
    """The task as the case store has it now (never cached: a replay must see the truth)."""
    return service().queries.task(ref, key)


@dataclass(frozen=True)
class Recorded:
    """What became of a submitted form: done, done already (a replay), or refused."""

    status: Literal["done", "already", "refused"]
    message: str


@task(name="record-outcome", cache_policy=NO_CACHE)
def record_outcome(ref: str, key: str, form: dict[str, Any], via: str) -> Recorded:
    """The same domain command the CLI uses, once the one-time code proves who is submitting;
    a refusal asks the form again. A task done already (by the CLI, whose sync then resumes
    this run) needs no code: nothing is recorded."""
    actor, code = form.pop("completed_by", ""), form.pop("code", "")
    svc = service()
    try:
        if svc.queries.task(ref, key).state == "done":
            raise AlreadyDone(f"{ref}/{key} was completed already")
        svc.identity.authenticate(actor, code, ref, via)
        result = svc.tasks.complete_task(TaskRef(ref, key), actor, form, via=via)
    except AlreadyDone as exc:
        return Recorded("already", str(exc))
    except WrongCode as exc:  # said plainly, first on the form asked again
        return Recorded("refused", f"{WRONG_CODE} ({exc})")
    except CommandError as exc:
        return Recorded("refused", str(exc))
    return Recorded("done", result.message)


@task(name="sync-case", cache_policy=REPLAY_SAFE, persist_result=True, retries=2,
      retry_delay_seconds=3)
def sync_case_runs(ref: str) -> str:
    """Start, resume or cancel this case's runs to match the case store."""
    from prefect.runtime import flow_run

    from orchestration.sync import sync_now

    # the flow this runs in reads the store next: the sync must not wait for it to pause
    return sync_now(service(), ref, running_in=flow_run.id).summary()


@task(name="publish-task-card", cache_policy=REPLAY_SAFE, persist_result=True)
def publish_task_card(ref: str, view: TaskView) -> str:
    """A markdown artifact on the task's run: what is awaited, from whom, by when and why
    that date. Unkeyed, so the Artifacts page lists the board, KPIs, breaches and timelines
    rather than one key per task."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=task_description(ref, view),
                             description=f"{ref} · {view.key}")
    return f"{ref}/{view.key}"


@task(name="publish-timeline", cache_policy=NO_CACHE)
def publish_timeline(ref: str) -> str:
    """The case's planned-against-actual timeline, published when the case changes (a stage
    starts, a task is done), not by every sweep for every case."""
    from prefect.artifacts import create_markdown_artifact

    from reports.oversight import timeline_markdown

    key = f"timeline-{ref.lower()}"
    create_markdown_artifact(key=key, markdown=timeline_markdown(service().queries, ref),
                             description=f"{ref} planned against actual")
    return key


@task(name="emit-case-event", cache_policy=NO_CACHE)
def emit_case_event(event: str, ref: str, payload: dict[str, Any], once_key: str) -> None:
    """A Prefect event about a case; the id is derived from `once_key` so replays dedupe."""
    from prefect.events import emit_event

    emit_event(event=event, resource={"prefect.resource.id": f"nim.case.{ref}",
                                      "prefect.resource.name": ref},
               payload=payload, id=uuid.uuid5(EVENT_NAMESPACE, once_key))


@task(name="forget-form-responses", cache_policy=NO_CACHE)
def forget_form_responses(flow_run_id: str) -> int:
    """Delete what people typed into the Resume form from Prefect once the case store has it:
    free text stays in the case store only."""
    from prefect.client.orchestration import get_client

    removed = 0
    with get_client(sync_client=True) as client:
        for item in client.filter_flow_run_input(uuid.UUID(flow_run_id), key_prefix="",
                                                 limit=100, exclude_keys=set()):
            if item.key.endswith("response"):
                client.delete_flow_run_input(uuid.UUID(flow_run_id), item.key)
                removed += 1
    return removed


@task(name="fire-due-timers", cache_policy=NO_CACHE)
def fire_due_timers() -> list[FiredTimer]:
    """Due timers into the outbox; staged referrals never opened expire too."""
    svc = service()
    fired = svc.timers.fire_due_timers()
    svc.admin.expire_intakes(svc.settings.intake_days)
    return fired


@task(name="drain-orchestration-journal", cache_policy=NO_CACHE)
def drain_changes() -> dict[str, int]:
    """Sync the cases changed since the last sweep (the journal), not every case."""
    from orchestration.drain import drain_journal

    report = drain_journal(service())
    service().timers.forget_applied_changes()
    for error in report.errors[:20]:
        get_run_logger().warning("sync pending: %s", error)
    return {"changes": report.applied, "cases": report.cases, "failed": report.failed}


@task(name="reconcile-cases", cache_policy=NO_CACHE)
def reconcile_cases() -> list[str]:
    """The audit, with its progress shown on the run's Artifacts tab (updated each percent)."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from orchestration.reconcile import reconcile

    artifact = create_progress_artifact(0.0, key="reconcile-progress",
                                        description="reconcile: reading live runs")
    shown = [-1.0]

    def tell(phase: str, done: int, total: int) -> None:
        # each phase fills half the bar; one API call per percent, not per case
        pct = (0.0 if phase.startswith("reading") else 50.0) + 50.0 * done / max(total, 1)
        if pct - shown[0] >= 1.0 or done == total:
            shown[0] = pct
            update_progress_artifact(artifact, pct, description=f"reconcile: {phase} "
                                     f"({done:,} of {total:,})")

    return [r.summary() for r in reconcile(service(), progress=tell)]


@task(name="dispatch-outbox", cache_policy=NO_CACHE)
def dispatch_outbox() -> dict[str, int]:
    """Queue the daily digests when due, then deliver what the outbox holds."""

    svc = service()
    svc.timers.queue_digests(when_due=True)
    report = svc.dispatcher().run_until_idle()
    return {"sent": report.sent, "failed": report.failed, "dead": report.dead}


@task(name="publish-saved-views", cache_policy=NO_CACHE)
def publish_views() -> int:
    """The run-list views (overdue work, each practitioner's and each role's queue): saved
    on the server for whoever joined since, and as links into the v2 UI in the `run-views`
    artifact (the v2 UI keeps saved filters per browser)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client

    from orchestration.reconcile import publish_saved_views, saved_views, views_markdown

    svc = service()
    views = saved_views(svc)
    with get_client(sync_client=True) as client:
        written = publish_saved_views(client, views)
    create_markdown_artifact(markdown=views_markdown(svc.notify_config().ui_url, views),
                             key="run-views", description="Run views: links to waiting work")
    return written


@task(name="publish-oversight", cache_policy=NO_CACHE)
def publish_oversight() -> int:
    """Refresh the managers' site-wide artifacts: caseload board, KPIs, breaches and the
    installed pathways' diagrams (each case's timeline is published when it changes)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from reports.diagram import mermaid
    from reports.oversight import (
        board_table,
        breach_report_markdown,
        breaches,
        caseload_board,
        kpi_markdown,
        kpis,
    )

    svc = service()
    queries = svc.queries
    board = caseload_board(queries, amber=svc.settings.rag_amber_working_days)
    create_table_artifact(key="caseload-board",
                          table=jsonable(board_table(board)) or [{"case": "no open cases"}],
                          description="Open cases by urgency: RAG of each case's worst open "
                                      "task or clock (wd: working days to due; each case's "
                                      "timeline lists all its open work)")
    create_markdown_artifact(key="nim-kpis", markdown=kpi_markdown(kpis(queries)),
                             description="NIM KPIs")
    create_markdown_artifact(key="breach-report",
                             markdown=breach_report_markdown(breaches(queries)),
                             description="Breaches by team with their cause")
    for profile, spec in queries.installed_specs().items():
        create_markdown_artifact(key=f"pathway-{profile}",
                                 markdown=f"```mermaid\n{mermaid(spec)}\n```",
                                 description=f"The {profile} pathway")
    return len(board)


@task(name="publish-audit-checkpoint", cache_policy=NO_CACHE)
def publish_audit_checkpoint() -> dict[str, Any] | None:
    """The audit log's signed head to the admins (a queued message) and to a Prefect artifact:
    copies the database owner cannot change, to check the log against later. Nothing is
    published while the head has not moved since the last sweep."""
    import json

    from prefect.artifacts import create_markdown_artifact

    entry = service().timers.publish_checkpoint()
    if entry is not None:
        create_markdown_artifact(
            key="audit-checkpoint",
            markdown=(f"The audit log's signed head at row {entry['id']} ({entry['rows']} rows): "
                      "save the line below to a file and check the log against it with "
                      "`nim-pathway audit verify --checkpoint FILE`.\n\n"
                      f"```json\n{json.dumps(entry)}\n```"),
            description=f"Audit checkpoint: row {entry['id']}")
    return entry
