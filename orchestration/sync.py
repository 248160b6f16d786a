"""Keep Prefect's picture of one case equal to the case store.

The case store decides; Prefect shows and waits. `sync_case` starts the stage run and one
suspended run per open task, resumes runs whose task or stage is finished, and cancels runs
that no longer stand for open work. It is idempotent. After a command: `orchestrate_after`
waits for the sync service (orchestration/drain.py) to apply the command's journal entry and
prints its outcome, or, with no service running, syncs the case itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from orchestration.naming import (
    FIRST_ASK,
    IN_STORE,
    OVERDUE,
    _tag,
    case_tags,
    run_name,
    shown_tags,
)
from orchestration.prefect_api import (
    LIVE,
    STAGE_DEPLOYMENT,
    TASK_DEPLOYMENT,
    WAITING,
    OrchestrationUnavailable,
    check_reachable,
    prefect_client,
    read_runs_by_id,
    resume_paused,
    start_run,
)

if TYPE_CHECKING:
    from nim_pathway.app import Service


@dataclass
class SyncReport:
    ref: str
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    retagged: list[str] = field(default_factory=list)  # `overdue` added or taken away
    runs: dict[str, str] = field(default_factory=dict)  # task key -> flow run id started

    def summary(self) -> str:
        parts = [f"{len(self.started)} started", f"{len(self.resumed)} resumed",
                 f"{len(self.cancelled)} cancelled"]
        if self.retagged:
            parts.append(f"{len(self.retagged)} retagged overdue")
        return f"{self.ref}: " + ", ".join(parts)


HOLD_S = 600  # a run created for work already past its due day waits this long as Scheduled


def expected_start(due: date, now: datetime) -> datetime:
    """When Prefect should think a task run "starts": the end of its due day (UK). Prefect
    counts a run "late" from its expected start while no process has started it, and a task
    run starts only when answered, so a waiting run shows "(… late)" only once its task is
    overdue (never from the moment it was made). Work past its due day already when its run is
    made (re-dated into the past, or restored after a lost database) gets `now` + HOLD_S, so
    the Scheduled moment below never offers it to a worker."""
    from models.clock import UK

    end_of_day = datetime.combine(due, time(23, 59), tzinfo=UK)
    return max(end_of_day, now + timedelta(seconds=HOLD_S))


def start_task_run(client: Any, ref: str, task: Any, spec: Any, **run: Any) -> Any:  # noqa: ANN401
    """A task's run, waiting (Suspended) with its form: no process starts until someone
    answers it (a run that started only to suspend cost a process, ~3-5 CPU-s, per task).
    It is created Scheduled for the end of its due day and suspended at once (`ask`):
    Prefect sets a run's expected start time from its first state only, a Scheduled one's to
    its scheduled time, so the run lists under its due date, sorts by it, and shows Prefect's
    "late" only when overdue (created Suspended it would show "late" from the minute after it
    was made). Resumed, the flow reads the answer before it would ask (flows/pathway_flows.py
    `suspend_for`)."""
    from prefect.states import Scheduled

    when = expected_start(task.due, datetime.now(UTC))  # Prefect's clock, not the case's
    created = start_run(client, TASK_DEPLOYMENT, state=Scheduled(scheduled_time=when), **run)
    return ask(client, ref, task, spec, created)


def unasked(run: Any) -> bool:  # noqa: ANN401
    """A task run made but not yet suspended with its form (a sync stopped between the two
    steps, or a racing one's run a moment old): Scheduled, never started. Not one answered
    and resuming: Prefect names that state "Resuming"."""
    return run.state is not None and run.state.type.value == "SCHEDULED" \
        and run.state.name in ("Scheduled", "Late")


def ask(client: Any, ref: str, task: Any, spec: Any, run: Any) -> Any:  # noqa: ANN401
    """Suspend a task run with its form, unless it is suspended or answered already, and
    write the form: what the flow itself would save (the pathway's outcome model and the
    task's description). Idempotent: a racing sync (the same run) does the same."""
    import orjson
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Suspended

    from orchestration.forms import form_model, task_description

    state = Suspended(pause_key=FIRST_ASK)
    keyset = state.state_details.run_input_keyset = keyset_from_paused_state(state)
    if unasked(run):
        now = client.set_flow_run_state(run.id, state, force=True).state or state
        run = run.model_copy(update={"state": now, "state_type": now.type,
                                     "state_name": now.name})
    form = form_model(spec, task.spec_id)
    inputs = {keyset["schema"]: create_v2_schema(form.__name__, model_base=form),
              keyset["description"]: task_description(ref, task)}
    for key, value in inputs.items():
        try:  # a racing sync (the same idempotency key) may have written them first
            client.create_flow_run_input(run.id, key, orjson.dumps(value).decode())
        except PrefectHTTPStatusError as exc:  # the sync client raises 409 as this, not as
            if exc.response.status_code != 409:  # ObjectAlreadyExists
                raise
    return run


def overdue_tags(client: Any, run: Any, overdue: bool) -> bool:  # noqa: ANN401
    """Give a run the `overdue` tag, or take it away; True if its tags changed. The tag makes
    overdue work a filter (and the "Overdue" view) in Prefect's UI."""
    if (OVERDUE in run.tags) == overdue:
        return False
    tags = [t for t in run.tags if t != OVERDUE] + ([OVERDUE] if overdue else [])
    client.update_flow_run(run.id, tags=tags)
    run.tags = tags
    return True


def sync_case(svc: Service, ref: str, today: date | None = None, client: Any = None,
              runs: list[Any] | None = None,
              running_in: str | None = None) -> SyncReport:  # noqa: ANN401 - Prefect's client
    """Make Prefect's runs for one case match the case store (idempotent). Its runs are read
    by the ids the store recorded (or passed in `runs` by the audit, which read them all).
    Pass `client` to reuse one Prefect client across cases (each costs an SSL context), and
    `running_in`, the id of the flow run this sync runs inside (it reads the store after)."""
    if client is None:
        with prefect_client(svc.settings) as client:
            return _sync_case(svc, ref, today, client, runs, running_in)
    return _sync_case(svc, ref, today, client, runs, running_in)


def _sync_case(svc: Service, ref: str, today: date | None, client: Any,  # noqa: ANN401
               runs: list[Any] | None, running_in: str | None = None) -> SyncReport:
    from prefect.states import Cancelled

    report = SyncReport(ref)
    # Prefect first, the case store second: the store view is never the older one.
    # Every action below is monotonic (start open work under an idempotency key, resume
    # finished work, cancel cancelled work), so a sync racing another cannot undo it.
    recorded = svc.queries.run_ids(ref)
    if runs is None:
        runs = read_runs_by_id(client, sorted(set(recorded.values())))
    show = svc.queries.show(ref)
    jurisdiction = show.jurisdiction
    tasks = svc.queries.tasks(case=ref, state=None)
    spec = svc.queries.pathway(ref)
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

    def next_key(label: str) -> str:
        """The first run's key, or "the run after the one recorded" (which is not live):
        two syncs racing to replace the same run make one."""
        return f"{ref}/{label}@{recorded[label]}" if label in recorded else f"{ref}/{label}#1"

    for t in tasks:
        key, group = t.key, by_task.get(t.key, [])
        if t.state == "open":
            # a waiting run whose form names another owner or due date is replaced: the new
            # run asks with the current text (a run being completed right now is left alone)
            shown = shown_tags(t.assignee, t.due)
            for run in live(group):
                if run.state.type.value in WAITING and not shown <= set(run.tags):
                    cancel(run, "replaced: the task was reassigned or re-dated", key)
                    group = [r for r in group if r.id != run.id]
        overdue = t.state == "open" and t.due < today
        for run in live(group) if t.state == "open" else []:
            if unasked(run):  # made, but its sync stopped before it was suspended
                ask(client, ref, t, spec, run)
        if t.state == "open" and not live(group):
            started = start_task_run(
                client, ref, t, spec, parameters={"ref": ref, "task_key": key},
                name=run_name(ref, t.stage, key, t.due),
                tags=case_tags(ref, t.stage, jurisdiction, t.role, t.child, show.programme)
                + [f"task:{key}", "kind:task", *sorted(shown)]
                + ([OVERDUE] if overdue else []),
                idempotency_key=next_key(key),
            )
            report.started.append(key)
            report.runs[key] = str(started.id)
        elif t.state == "done":
            for run in live(group):  # what was typed stays in the case store
                typed = spec.free_text_fields(t.spec_id)
                outcome = {k: IN_STORE if k in typed and v else v  # empty fields absent,
                           for k, v in (t.outcome or {}).items() if v is not None}  # as a form
                # the form's required code, empty: the flow finds the task done and records
                # nothing (a code proves a person at a form; this is the case store's word)
                resume(run, {**outcome, "completed_by": t.completed_by, "code": ""}, key)
        elif t.state == "cancelled":
            for run in live(group):
                cancel(run, "task cancelled in the case store", key)
        # overdue while it waits; a run done, cancelled or replaced no longer is
        for run in group:
            waiting = run.state is not None and run.state.type.value in WAITING
            if overdue_tags(client, run, overdue and waiting):
                report.retagged.append(key)

    current = show.stage
    if current and not live(by_stage.get(current, [])):
        started = start_run(
            client, STAGE_DEPLOYMENT, parameters={"ref": ref, "stage": current},
            name=run_name(ref, current),
            tags=case_tags(ref, current, jurisdiction, programme=show.programme)
            + ["kind:stage"],
            idempotency_key=next_key(f"stage:{current}"),
        )
        report.started.append(f"stage:{current}")
        report.runs[f"stage:{current}"] = str(started.id)
    for stage, group in by_stage.items():
        if stage != current:
            for run in live(group):
                if str(run.id) == running_in:  # this very run: it reads the store next
                    continue
                run = _past_running(client, run)
                if run.state and run.state.type.value == "RUNNING":  # its process died (a
                    cancel(run, "the stage closed while this run was starting",  # worker
                           f"stage:{stage}")  # killed) or is stuck: it would wait for ever
                else:  # paused: resumed; scheduled or pending: it has not read the store
                    resume(run, {"closed_on": str(today)}, f"stage:{stage}")  # yet: it ends
    if report.runs:
        svc.timers.record_flow_runs(ref, report.runs)
    return report


# how long a sync waits for a closed stage's running run to pause: a loaded machine's start-up
# (the run syncs its case and publishes a timeline before it reads the stage) fits well inside
STAGE_SETTLE_S = 30.0


def _past_running(client: Any, run: Any) -> Any:  # noqa: ANN401 - Prefect's client and run
    """The run once it is no longer Running, or as last read after STAGE_SETTLE_S. A stage
    run reads the case store and then suspends: if its stage closes in between, a sync finds
    nothing paused to resume, and the run then waited for ever (the soak found one; only
    `reconcile` repaired it). Waiting here lets it pause and be resumed. (A Scheduled or
    Pending run has not read the store yet: it will find its stage closed and end.)"""
    import time

    give_up = time.monotonic() + STAGE_SETTLE_S
    while run.state and run.state.type.value == "RUNNING" and time.monotonic() < give_up:
        time.sleep(0.2)
        run = client.read_flow_run(run.id)
    return run


def sync_now(svc: Service, ref: str, client: Any = None,  # noqa: ANN401
             runs: list[Any] | None = None, running_in: str | None = None) -> SyncReport:
    """Sync one case right after a command committed, and mark the journal entries written
    before this sync read the store as applied (later ones wait for the drainer)."""
    last = svc.queries.last_change(ref)
    report = sync_case(svc, ref, client=client, runs=runs, running_in=running_in)
    if last:
        svc.timers.changes_applied(ref, last)
    return report


def explained_sync(svc: Service, ref: str, client: Any,  # noqa: ANN401 - Prefect's client
                   sync: Callable[..., SyncReport]) -> str:
    """Sync a case with `sync` and say what happened, as a person reads it after a command:
    "started" alone would hide a broken deployment, so this also says when the case's earlier
    runs crashed or failed (a misconfigured worker fails every run) and when no worker is
    online in the deployments' pool (the runs just started would wait)."""
    # the runs read once, before the store (as sync_case would), and also judged here
    earlier = read_runs_by_id(client, sorted(set(svc.queries.run_ids(ref).values())))
    report = sync(svc, ref, client=client, runs=earlier)
    warnings = crashed_warning(earlier)
    if report.started or report.resumed:
        warnings += worker_warning(client)
    return "\n".join(["orchestration: " + report.summary()] + [f"warning: {w}" for w in warnings])


def crashed_warning(runs: list[Any]) -> list[str]:
    """One line if any of these runs crashed or failed, with the first one's cause."""
    from models.redaction import scrub_text

    bad = [r for r in runs if r.state and r.state.type.value in ("CRASHED", "FAILED")]
    if not bad:
        return []
    why = scrub_text(bad[0].state.message or "no message")[:300]
    return [f"{len(bad)} earlier run(s) of this case {bad[0].state.name.lower()} ({why}); "
            "open work was started again, but check the workers: `nim-pathway status`"]


def worker_warning(client: Any) -> list[str]:  # noqa: ANN401 - Prefect's client
    """One line if the deployments' work pool is missing or has no live worker (served
    deployments have no pool: nothing to say)."""
    from prefect.exceptions import ObjectNotFound

    from orchestration.prefect_api import live_workers

    pool = client.read_deployment_by_name(TASK_DEPLOYMENT).work_pool_name
    if not pool:
        return []
    try:
        if live_workers(client, pool):
            return []
    except ObjectNotFound:
        return [f"work pool {pool!r} does not exist: the runs cannot start (docs/DEPLOY.md)"]
    return [f"no worker is online in work pool {pool!r}: the runs wait until one starts "
            f"(`prefect worker start --pool {pool}`)"]


def orchestrate_after(svc: Service, ref: str, since: int = 0,
                      wait_s: float | None = None) -> str:
    """Called after a command (which started after journal entry `since`): bring the case's
    runs up to date if Prefect is configured, and say what happened. When a sync service runs
    (`nim-pathway drain --follow`) it applies the change and this only waits for its outcome,
    without importing Prefect (a CLI's ~1.5 s); if it has not within `wait_s` (NIM_SYNC_WAIT,
    default 5 s) the case is synced here. If Prefect cannot be reached the change waits in the
    journal for the next sweep."""
    url = svc.settings.prefect_api_url
    if url is None:  # before importing Prefect: that import alone costs a CLI ~1.7 s
        return "orchestration off (no PREFECT_API_URL and no local stack running)"
    from store.journal import service_running

    if service_running(svc.url):
        told = _await_service(svc, ref, since,
                              svc.settings.sync_wait if wait_s is None else wait_s)
        if told is not None:
            return told
    check_reachable(url)
    with prefect_client(svc.settings) as client:
        return explained_sync(svc, ref, client, sync_now)


POLL_S = 0.05  # how often a waiting command reads the journal (a primary-key read)


def _await_service(svc: Service, ref: str, since: int, wait_s: float) -> str | None:
    """What the sync service did with the command's change, once it has; None if it has not
    within `wait_s` (the caller syncs the case itself). Raises OrchestrationUnavailable when
    the service could not apply it (the error it met)."""
    import time

    give_up = time.monotonic() + wait_s
    while True:
        entries = svc.queries.changes_covering(ref, since)
        if not entries:  # nothing journalled, or an earlier entry it joined already applied
            return "orchestration: up to date (the sync service has applied every change)"
        failing = [error for applied, _, error in entries if not applied and error]
        if failing:
            raise OrchestrationUnavailable(
                f"saved in the case store, but the sync service could not update Prefect "
                f"({failing[-1]}); it retries, and each sweep does (`nim-pathway status`)")
        if all(applied for applied, _, _ in entries):
            return entries[-1][1] or "orchestration: applied by the sync service"
        if time.monotonic() >= give_up:
            return None
        time.sleep(POLL_S)
