"""Prefect flows: open a case, a run per stage, a suspended run per human task, the sweep and
reconcile. Flows orchestrate; every decision is taken by the domain commands, which flows
reach only through the Prefect tasks of tasks/case_tasks.py. Parameters, names, tags, logs and
events carry the case reference only.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.input import RunInput
from prefect.runtime import flow_run

from notifications.kinds import KINDS
from orchestration.forms import OpenCaseForm, StageClosed, form_model, task_description
from tasks.case_tasks import (
    dispatch_outbox,
    drain_changes,
    emit_case_event,
    fire_due_timers,
    forget_form_responses,
    load_case_pathway,
    load_stage,
    load_task,
    open_from_intake,
    publish_audit_checkpoint,
    publish_oversight,
    publish_task_card,
    publish_timeline,
    publish_views,
    reconcile_cases,
    record_outcome,
    sync_case_runs,
)

REF_PATTERN = r"^NIM-\d{4}-\d{4,}$"


def _open_case_run_name() -> str:
    form = flow_run.parameters.get("form") or {}
    handle = form.get("intake") if isinstance(form, dict) else getattr(form, "intake", "")
    return f"open-case · {handle}"


@flow(name="open-case", flow_run_name=_open_case_run_name, persist_result=True)
def open_case_flow(form: OpenCaseForm) -> str:
    """Open the case for a staged referral and start its stage and task runs. The run is
    renamed after the new case and shows its reference as its result and an artifact, so the
    coordinator who opened it from the UI reads the reference on the run page."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client

    ref = open_from_intake(form.intake, form.coordinator, form.code)
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=f"open-case · {ref}")
    create_markdown_artifact(key="opened-case", markdown=f"## Opened {ref}\n\nFrom intake "
                             f"{form.intake} by {form.coordinator}. Its runs carry the tag "
                             f"`case:{ref}`.", description=f"opened {ref}")
    get_run_logger().info("opened %s from %s (by %s)", ref, form.intake, form.coordinator)
    sync_case_runs(ref)
    return ref


@flow(name="stage", persist_result=True)
def stage_flow(ref: str, stage: str) -> str:
    """One run per case stage: starts the stage's task runs, then waits until the case store
    says the stage is finished (resumed by sync, or asks again if resumed too early)."""
    sync_case_runs(ref)
    publish_timeline(ref)  # the case changed stage
    attempt = 1
    while True:
        shown = load_stage(ref)
        if shown.stage != stage:
            return f"{ref} finished stage {stage}"
        if attempt == 1 and stage == shown.first_stage:
            emit_case_event("nim.case.opened", ref, {"jurisdiction": shown.jurisdiction,
                                                     "pathway": shown.pathway},
                            f"{ref}/opened")
        waiting = [t for t in shown.open_tasks if t.state == "open"]
        lines = [f"## {ref} · stage {stage}", "Closes by itself when the stage's tasks are done.",
                 "**Open work:**"] + [f"- {t.task} ({t.role}), due {t.due}" for t in waiting]
        if attempt > 1:
            lines.insert(1, "> Resumed before the stage was finished; still waiting.")
        suspend_for(StageClosed, "\n".join(lines), f"stage-closed-{attempt}",
                    closed_on=shown.today)
        attempt += 1


def suspend_for(model: type[RunInput], description: str, key: str, **defaults: Any) -> Any:
    """Ask with the form under `key` and wait; or, if this run was created already waiting
    (orchestration/sync.py `start_task_run`) and answered before any process ran, take that
    answer. (Asking again would discard it: Prefect clears a key's input when it pauses.)"""
    from prefect.flow_runs import suspend_flow_run
    from prefect.input.actions import read_flow_run_input

    answered = read_flow_run_input(f"suspended-{key}-response")
    if answered is not None:
        return model(**answered)
    return suspend_flow_run(wait_for_input=model.with_initial_data(description=description,
                                                                   **defaults),
                            key=key, timeout=None)


@flow(name="human-task", persist_result=True)
def human_task_flow(ref: str, task_key: str) -> str:
    """One run per human task: record it, show it, suspend until someone completes it.

    Completion from the UI (Resume form) and from the CLI end in the same domain command. A
    refused form (wrong role, invalid outcome) is not an error: the run asks again."""
    view = load_task(ref, task_key)
    if view.state in ("open", "blocked"):  # blocked: the form explains what it waits for
        publish_task_card(ref, view)
        form_cls = form_model(load_case_pathway(ref), view.spec_id)
        note, attempt = "", 1
        while True:
            form = suspend_for(form_cls, task_description(ref, view, note), f"outcome-{attempt}")
            result = record_outcome(ref, task_key, form.model_dump(mode="json"),
                                    via=f"{flow_run.id}/{attempt}")
            if result.status != "refused":
                get_run_logger().info("%s/%s completed by %s", ref, task_key,
                                      form.completed_by)
                break
            get_run_logger().warning("form %s not recorded: %s", attempt, result.message)
            note, attempt = result.message, attempt + 1
        view = load_task(ref, task_key)
    if view.state != "done":
        return f"{view.task} is {view.state}"
    forget_form_responses(str(flow_run.id))  # what was typed, codes too, leaves Prefect now;
    # not per attempt: a resumed run replays its earlier suspends, which read their responses
    emit_case_event("nim.task.completed", ref, {"task": task_key, "role": view.role,
                                                "completed_on": str(view.completed_on)},
                    f"{view.task}/completed")
    if "decision" in (view.outcome or {}):
        emit_case_event("nim.decision.recorded", ref,
                        {"task": task_key, "outcome": view.outcome["decision"]},
                        f"{view.task}/decision")
    sync_case_runs(ref)
    publish_timeline(ref)
    return f"{view.task} completed by {view.completed_by}"


@flow(name="sweep", flow_run_name="sweep", persist_result=False)
def sweep_flow() -> Any:  # its summary, or Failed when messages could not be delivered
    """Fire due timers from the case store, deliver messages, then sync the cases that
    changed (the orchestration journal). The full audit is the nightly `reconcile`."""
    fired = fire_due_timers()
    for timer in fired:
        if KINDS[timer.kind].breach:  # escalation, clock-breach
            emit_case_event("nim.deadline.breached", timer.ref,
                            {"kind": timer.kind, "task": timer.task, "role": timer.role,
                             **(timer.detail or {})},
                            f"timer/{timer.key}")
    publish_audit_checkpoint()
    delivered = dispatch_outbox()
    publish_oversight()
    publish_views()
    synced = drain_changes()
    get_run_logger().info("fired %d timers; delivered %s; synced %d changed cases", len(fired),
                          delivered, synced["cases"])
    summary = {"fired": len(fired), "sent": delivered["sent"], "cases": synced["cases"]}
    if delivered["failed"] or delivered["dead"]:  # counted on the dashboard, not just logged
        from prefect.states import Failed

        return Failed(message=f"{delivered['failed']} message(s) failing, {delivered['dead']} "
                      "dead-lettered: `nim-pathway outbox list --failed` says why; everything "
                      f"else was done ({summary})", data=summary)
    return summary


@flow(name="reconcile", flow_run_name="reconcile", persist_result=False)
def reconcile_flow() -> list[str]:
    """Audit Prefect's live runs against the case store in one pass and repair the cases
    that differ (nightly, and after an outage or a lost Prefect database)."""
    return reconcile_cases()


@flow(name="check", flow_run_name="check", persist_result=False)
def check_flow() -> str:
    """`nim-pathway doctor`'s probe: a worker picked the run up, its settings passed the pull
    step, the code loaded and the case store answers from where the worker runs."""
    from sqlalchemy import text

    from nim_pathway.settings import Settings
    from store.db import get_engine

    with get_engine(Settings.from_env().database_url).connect() as conn:
        conn.execute(text("select 1"))
    return "ok"


ALL_FLOWS = {
    "open-case": open_case_flow,
    "stage": stage_flow,
    "human-task": human_task_flow,
    "sweep": sweep_flow,
    "reconcile": reconcile_flow,
    "check": check_flow,
}
