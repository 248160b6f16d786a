"""Prefect tasks: the units of work flows call. Each wraps one domain command or read.

Pre-suspend work is idempotent in the case store; tasks whose result may be reused on a
replay persist it under a cache key of their inputs and the flow run (not their source, so
a redeploy between suspend and resume does not re-run them).
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID

from nim_pathway.commands import CaseStore, CommandError

REPLAY_SAFE = INPUTS + RUN_ID
EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4f7e-9a51-6c1f0e6b8a11")


@lru_cache(maxsize=1)
def store() -> CaseStore:
    """The case store for this worker process, migrated once."""
    from nim_pathway import settings
    from nim_pathway.db import migrate

    url = settings.database_url()
    migrate(url)
    return CaseStore(url, settings.clock(), settings.closure_days())


def task_view(ref: str, key: str) -> dict[str, Any]:
    rows = [t for t in store().tasks(case=ref, state=None) if t["key"] == key]
    if not rows:
        raise CommandError(f"case {ref} has no task {key!r}")
    return rows[0]


@task(name="load-task", cache_policy=NO_CACHE)
def load_task(ref: str, key: str) -> dict[str, Any]:
    """The task as the case store has it now (never cached: a replay must see the truth)."""
    return task_view(ref, key)


@task(name="record-outcome", cache_policy=NO_CACHE)
def record_outcome(ref: str, key: str, form: dict[str, Any], via: str) -> dict[str, str]:
    """The same domain command the CLI uses; a refusal asks the form again."""
    actor = form.pop("completed_by", "")
    try:
        result = store().complete_task(f"{ref}/{key}", actor, form, via=via)
    except CommandError as exc:
        status = "already" if "already completed" in str(exc) else "refused"
        return {"status": status, "message": str(exc)}
    return {"status": "done", "message": result.message}


@task(name="sync-case", cache_policy=REPLAY_SAFE, persist_result=True, retries=2,
      retry_delay_seconds=3)
def sync_case_runs(ref: str) -> str:
    """Start, resume or cancel this case's runs to match the case store."""
    from nim_pathway.orchestration import sync_case

    return sync_case(store(), ref).summary()


@task(name="publish-task-card", cache_policy=REPLAY_SAFE, persist_result=True)
def publish_task_card(ref: str, view: dict[str, Any]) -> str:
    """A keyed markdown artifact: what is awaited, from whom, by when and why that date."""
    from prefect.artifacts import create_markdown_artifact

    key = f"task-{ref.lower()}-{view['key']}"
    create_markdown_artifact(key=key, markdown=task_description(ref, view),
                             description=f"{ref} · {view['key']}")
    return key


def task_description(ref: str, view: dict[str, Any], note: str = "") -> str:
    """Markdown for the Resume form and the task card. Case reference only, no identity."""
    who = f" ({view['caregiver']})" if view.get("caregiver") else ""
    lines = [
        f"## {ref} · {view['title']}{who}",
        f"**Awaiting:** {view['role']}" + (f" (assigned: {view['assignee']})"
                                           if view.get("assignee") else ""),
        f"**Due:** {view['due']} ({view['due_explanation']})",
        f"**Stage:** {view['stage']}",
    ]
    if view.get("handover_note"):
        lines.append(f"**Handover note:** {view['handover_note']}")
    lines.append("Enter your practitioner handle in *completed_by*; the engine checks your role.")
    if note:
        lines.insert(1, f"> **Not recorded:** {note}")
    return "\n\n".join(lines)


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
def fire_due_timers() -> list[dict[str, Any]]:
    return store().fire_due_timers()


@task(name="reconcile-cases", cache_policy=NO_CACHE)
def reconcile_cases() -> list[str]:
    from nim_pathway.orchestration import reconcile

    return [r.summary() for r in reconcile(store())]


@task(name="dispatch-outbox", cache_policy=NO_CACHE)
def dispatch_outbox() -> dict[str, int]:
    """Queue the daily digests when due, then deliver what the outbox holds."""
    from models.clock import UK
    from notifications.dispatcher import Dispatcher

    s = store()
    if s.clock.now().astimezone(UK).hour >= 8:
        s.queue_digests()
    report = Dispatcher(s.url, s.clock).run_until_idle()
    return {"sent": report.sent, "failed": report.failed, "dead": report.dead}


@task(name="publish-oversight", cache_policy=NO_CACHE)
def publish_oversight() -> int:
    """Refresh the managers' artifacts: caseload board, KPIs, breaches, timelines, diagram."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from reports.diagram import mermaid
    from reports.oversight import (
        breach_report_markdown,
        breaches,
        caseload_board,
        kpi_markdown,
        kpis,
        timeline_markdown,
    )

    s = store()
    board = caseload_board(s)
    create_table_artifact(key="caseload-board", table=board or [{"case": "no open cases"}],
                          description="Open cases by urgency (RAG by working days to due)")
    create_markdown_artifact(key="nim-kpis", markdown=kpi_markdown(kpis(s)),
                             description="NIM KPIs")
    create_markdown_artifact(key="breach-report", markdown=breach_report_markdown(breaches(s)),
                             description="Breaches by team with their cause")
    for row in board:
        create_markdown_artifact(key=f"timeline-{row['case'].lower()}",
                                 markdown=timeline_markdown(s, row["case"]),
                                 description=f"{row['case']} planned against actual")
    profiles = sorted({s.pathway(row["case"]).profile for row in board}) or ["england"]
    for profile in profiles:
        from models.pathway import load_pathway

        create_markdown_artifact(key=f"pathway-{profile}",
                                 markdown=f"```mermaid\n{mermaid(load_pathway(profile))}\n```",
                                 description=f"The {profile} pathway")
    return len(board)
