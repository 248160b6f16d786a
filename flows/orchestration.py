"""Keep Prefect's picture equal to the case store.

The case store decides; Prefect shows and waits. `sync_case` starts the stage run and one
suspended run per open task, resumes runs whose task or stage is finished, and cancels runs
that no longer stand for open work. It is idempotent. Sync follows change, not the caseload:
every command journals its case (store/journal.py) in its own transaction; the sync service
(`serve_journal`, `nim-pathway drain --follow`) applies it at once and the CLI waits for its
outcome, or, with no service running, the CLI syncs the case right after its commit; each
sweep drains what is left (`drain_journal`). The
nightly `reconcile` audits all of Prefect's live runs against the store in one pass and
syncs only the cases that differ (after a lost Prefect database: all of them).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nim_pathway.app import Service

TASK_DEPLOYMENT = "human-task/human-task"
STAGE_DEPLOYMENT = "stage/stage"
LIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED"}
WAITING = {"SCHEDULED", "PAUSED"}  # live runs no process is working on
STACK_URL = "http://127.0.0.1:4200/api"
IN_STORE = "(recorded in the case store)"  # a typed field's value, in a run input


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
            "change is saved and orchestration is pending: the next sweep applies it, or run "
            "`nim-pathway drain` when Prefect is back"
        ) from None


def run_name(ref: str, stage: str, task: str | None = None, due: date | None = None) -> str:
    """A task run's name leads with its due date, so Prefect's run list sorted by name
    (A to Z) is a queue, soonest first: `due 2026-03-02 · NIM-2026-0001 · referral · triage`."""
    return " · ".join(p for p in (f"due {due}" if due else None, ref, stage, task) if p)


def shown_tags(assignee: str | None, due: date) -> set[str]:
    """What a task run's form shows that can change while it waits: the owner (`assignee:`,
    which also makes each practitioner's queue a tag filter) and the due date."""
    return {f"due:{due}"} | ({f"assignee:{assignee}"} if assignee else set())


def case_tags(ref: str, stage: str, jurisdiction: str, role: str | None = None,
              child: str | None = None, programme: str | None = None) -> list[str]:
    """Tags of a case's runs: case, programme (nim, fdac), stage, nation, role, and the child
    key of per-child work (a sibling group's runs filter by child-2, never by a name)."""
    tags = [f"case:{ref}"] + ([f"programme:{programme}"] if programme else [])
    tags += [f"stage:{stage}", f"jurisdiction:{jurisdiction}"]
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


def read_all_runs(client: Any, flow_run_filter: Any,
                  progress: Callable[[int], None] | None = None, parse: bool = True) -> list[Any]:
    """Every matching flow run, 200 a page, each page starting at the expected start time
    where the last one ended (an OFFSET makes the server walk past every earlier row again:
    at 40,000 live runs the last pages cost 5x the first). Runs sharing the boundary instant
    are read again and deduplicated; a page all at one instant is stepped through by offset.
    If the keyed walk finds fewer runs than Prefect counts, it reads them by offset.
    `parse=False` returns the runs as plain dicts: the audit reads tens of thousands and
    needs only their ids, tags and states (pydantic models cost more than the HTTP)."""
    import orjson
    from prefect.client.schemas.filters import FlowRunFilterExpectedStartTime
    from prefect.client.schemas.objects import FlowRun

    def page_of(flt: Any, offset: int, keyed: bool) -> list[dict[str, Any]]:
        body = {"flow_runs": flt.model_dump(mode="json"), "limit": 200, "offset": offset,
                "sort": "EXPECTED_START_TIME_ASC" if keyed else "ID_DESC"}
        return orjson.loads(client.request("POST", "/flow_runs/filter", json=body).content)

    found: dict[str, dict[str, Any]] = {}
    after, skip = None, 0
    while True:
        flt = flow_run_filter if after is None else flow_run_filter.model_copy(
            update={"expected_start_time": FlowRunFilterExpectedStartTime(after_=after)})
        page = page_of(flt, skip, keyed=True)
        found.update((run["id"], run) for run in page)
        if progress:
            progress(len(found))
        if len(page) < 200:
            break
        last = page[-1]["expected_start_time"]
        after, skip = last, skip + len(page) if last == after else 0
    if len(found) < client.count_flow_runs(flow_run_filter=flow_run_filter):
        found = {}  # runs without an expected start time: the slow, sure way
        while len(page := page_of(flow_run_filter, len(found), keyed=False)) == 200:
            found.update((run["id"], run) for run in page)
        found.update((run["id"], run) for run in page)
    runs = list(found.values())
    return FlowRun.model_validate_list(runs) if parse else runs


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


def read_runs_by_id(client: Any, ids: list[str]) -> list[Any]:  # noqa: ANN401
    """The runs with these ids (primary-key reads, 200 a call); ids Prefect no longer has
    (its database was lost) are simply absent."""
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    for i in range(0, len(ids), 200):
        batch = [UUID(x) for x in ids[i:i + 200]]
        runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=batch)), limit=len(batch))
    return runs


_deployment_ids: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def start_run(client: Any, deployment: str, **run: Any) -> Any:  # noqa: ANN401
    """Create a flow run of `deployment` with one round trip on the caller's client.

    `run_deployment` opens a client of its own and reads the deployment by name for every
    run (three round trips and an SSL context each); the id is read once per client here.
    A lost Prefect database comes with a new client and so a fresh read."""
    ids = _deployment_ids.setdefault(client, {})
    if deployment not in ids:
        ids[deployment] = client.read_deployment_by_name(deployment).id
    return client.create_flow_run_from_deployment(ids[deployment], **run)


FIRST_ASK = "outcome-1"  # the pause key of a task's first form (flows/pathway_flows.py asks it)


def start_task_run(client: Any, ref: str, task: Any, spec: Any, **run: Any) -> Any:  # noqa: ANN401
    """A task's run, created already Suspended with its form: no process starts until someone
    answers it (a run that started only to suspend cost a process, ~3-5 CPU-s, per task; and
    a Scheduled run shows Prefect's "late" start delay). Resumed, the flow reads the answer
    before it would ask (flows/pathway_flows.py `suspend_for`). The form is what the flow
    itself would save: the pathway's outcome model and the task's description."""
    import orjson
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Suspended

    from flows.pathway_flows import form_model
    from tasks.case_tasks import task_description

    state = Suspended(pause_key=FIRST_ASK)
    keyset = state.state_details.run_input_keyset = keyset_from_paused_state(state)
    created = start_run(client, TASK_DEPLOYMENT, state=state, **run)
    form = form_model(spec, task.spec_id)
    inputs = {keyset["schema"]: create_v2_schema(form.__name__, model_base=form),
              keyset["description"]: task_description(ref, task)}
    for key, value in inputs.items():
        try:  # a racing sync (the same idempotency key) may have written them first
            client.create_flow_run_input(created.id, key, orjson.dumps(value).decode())
        except PrefectHTTPStatusError as exc:  # the sync client raises 409 as this, not as
            if exc.response.status_code != 409:  # ObjectAlreadyExists
                raise
    return created


def sync_case(svc: Service, ref: str, today: date | None = None, client: Any = None,
              runs: list[Any] | None = None) -> SyncReport:  # noqa: ANN401 - Prefect's client
    """Make Prefect's runs for one case match the case store (idempotent). Its runs are read
    by the ids the store recorded (or passed in `runs` by the audit, which read them all).
    Pass `client` to reuse one Prefect client across cases (each costs an SSL context)."""
    from prefect.client.orchestration import get_client

    if client is None:
        with get_client(sync_client=True) as client:
            return _sync_case(svc, ref, today, client, runs)
    return _sync_case(svc, ref, today, client, runs)


def _sync_case(svc: Service, ref: str, today: date | None, client: Any,  # noqa: ANN401
               runs: list[Any] | None) -> SyncReport:
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
        if t.state == "open" and not live(group):
            started = start_task_run(
                client, ref, t, spec, parameters={"ref": ref, "task_key": key},
                name=run_name(ref, t.stage, key, t.due),
                tags=case_tags(ref, t.stage, jurisdiction, t.role, t.child, show.programme)
                + [f"task:{key}", "kind:task", *sorted(shown)],
                idempotency_key=next_key(key),
            )
            report.started.append(key)
            report.runs[key] = str(started.id)
        elif t.state == "done":
            for run in live(group):  # what was typed stays in the case store
                typed = spec.free_text_fields(t.spec_id)
                outcome = {k: IN_STORE if k in typed and v else v  # empty fields absent,
                           for k, v in (t.outcome or {}).items() if v is not None}  # as a form
                resume(run, {**outcome, "completed_by": t.completed_by}, key)
        elif t.state == "cancelled":
            for run in live(group):
                cancel(run, "task cancelled in the case store", key)

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
                resume(run, {"closed_on": str(today)}, f"stage:{stage}")
    if report.runs:
        svc.commands.record_flow_runs(ref, report.runs)
    return report


def sync_now(svc: Service, ref: str, client: Any = None,  # noqa: ANN401
             runs: list[Any] | None = None) -> SyncReport:
    """Sync one case right after a command committed, and mark the journal entries written
    before this sync read the store as applied (later ones wait for the drainer)."""
    last = svc.commands.last_change(ref)
    report = sync_case(svc, ref, client=client, runs=runs)
    if last:
        svc.commands.changes_applied(ref, last)
    return report


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
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as own:
            return drain_journal(svc, limit, rounds, own, explain, skip)
    report, token = DrainReport(), uuid.uuid4().hex
    failed = report.failed_ids  # released with an error: not again in this drain (a case
    failed.update(skip)  # that fails would fail every round), the next sweep retries them
    for _ in range(rounds):
        claimed = svc.commands.claim_changes(token, limit, skip=failed)
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
                svc.commands.settle_changes(give_back, token, error=why)
                failed.update(give_back)
                report.failed += len(give_back)
                report.errors.append(f"{ref}: {why}")
                if report.unreachable:
                    return report
                continue
            faults.reached("drain-synced")  # crash tests: synced, not yet recorded
            report.applied += svc.commands.settle_changes(ids, token, outcome=outcome)
            report.cases += 1
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


def _unreachable(exc: Exception) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | OrchestrationUnavailable)


VIEW_SPAN_S = 2 * 365 * 86400  # a saved view's time range: NIM work can wait for months


def saved_views(svc: Service) -> dict[str, str]:
    """The run-list views a team needs, by name: each practitioner's own queue (their
    `assignee:` tag), each role's (`role:`) and, where a site runs several programmes, each
    programme's (`programme:`). Sort the list A to Z: names lead with the due date."""
    views = {}
    for p in svc.queries.practitioners():
        if p.active and p.kind == "person":
            views[f"My queue: {p.handle}"] = f"assignee:{p.handle}"
            views[f"Queue: {p.role}"] = f"role:{p.role}"
    programmes = {spec.programme for spec in svc.queries.installed_specs().values()}
    if len(programmes) > 1:
        views.update({f"Programme: {p}": f"programme:{p}" for p in programmes})
    return views


def publish_saved_views(client: Any, views: dict[str, str]) -> int:  # noqa: ANN401
    """Save the views Prefect's UI does not have yet (the UI's own format for a tag filter,
    as its Save View writes it); returns how many were added."""
    existing = {v["name"] for v in client.request("POST", "/saved_searches/filter",
                                                  json={}).json()}
    added = 0
    for name, tag in sorted(views.items()):
        if name not in existing:
            client.request("PUT", "/saved_searches/", json={"name": name, "filters": [
                {"object": "flowRun", "property": "tag", "type": "", "operation": "",
                 "value": [tag]},
                {"object": "flowRun", "property": "range", "type": "", "operation": "",
                 "value": {"type": "span", "seconds": -VIEW_SPAN_S}}]})
            added += 1
    return added


Progress = Callable[[str, int, int], None]  # (phase, done, total)


def reconcile(svc: Service, refs: list[str] | None = None,
              progress: Progress | None = None) -> list[SyncReport]:
    """Audit Prefect against the case store and repair the difference.

    With `refs`, those cases are synced. Otherwise one pass reads Prefect's live runs and the
    store's open work, computes in memory which cases differ (open work without a live run,
    a live run for work that is finished, cancelled or another stage) and syncs only those:
    after a lost Prefect database that is every open case; on a quiet night, none.
    `progress` hears each phase's count (the CLI draws a bar, the flow an artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import FlowRun

    tell = progress or (lambda phase, done, total: None)
    with get_client(sync_client=True) as client:
        if refs is None:
            live = FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=sorted(LIVE))))
            total = client.count_flow_runs(flow_run_filter=live)
            live_runs = read_all_runs(client, live,
                                      lambda n: tell("reading live runs", n, total), parse=False)
            by_case: dict[str, list[dict[str, Any]]] = {}
            for run in live_runs:  # the audit read them all: no per-case read
                ref = next((t[5:] for t in run["tags"] if t.startswith("case:")), "")
                by_case.setdefault(ref, []).append(run)
            refs = differing_cases(svc, by_case)
        else:
            by_case = {}
        reports = []
        tell("syncing cases that differ", 0, len(refs))
        for n, ref in enumerate(refs, start=1):
            # the audit's runs include any the store never recorded (a sync that died
            # between starting a run and recording it), so this sync sees those too
            runs = FlowRun.model_validate_list(by_case.get(ref, [])) if by_case else None
            reports.append(sync_case(svc, ref, client=client, runs=runs))
            tell("syncing cases that differ", n, len(refs))
        return reports


def differing_cases(svc: Service, live_by_case: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Cases whose live runs (as read by the audit: plain dicts) are not exactly their open
    tasks and their current stage."""
    shown: dict[str, set[str]] = {}
    for ref, runs in live_by_case.items():
        for run in runs:
            tags = run["tags"]
            kind = "task:" if "kind:task" in tags else "stage:" if "kind:stage" in tags \
                else None
            if kind and ref:
                label = next((t for t in tags if t.startswith(kind)), kind)
                shown.setdefault(ref, set()).add(label)
    wanted = svc.queries.open_work()  # as sync_case: every case in a stage has its run
    return sorted(ref for ref in set(shown) | set(wanted)
                  if shown.get(ref, set()) != wanted.get(ref, set()))


def orchestrate_after(svc: Service, ref: str, since: int = 0,
                      wait_s: float | None = None) -> str:
    """Called after a command (which started after journal entry `since`): bring the case's
    runs up to date if Prefect is configured, and say what happened. When a sync service runs
    (`nim-pathway drain --follow`) it applies the change and this only waits for its outcome,
    without importing Prefect (a CLI's ~1.5 s); if it has not within `wait_s` (NIM_SYNC_WAIT,
    default 5 s) the case is synced here. If Prefect cannot be reached the change waits in the
    journal for the next sweep."""
    url = api_url()
    if url is None:  # before importing Prefect: that import alone costs a CLI ~1.7 s
        return "orchestration off (no PREFECT_API_URL and no local stack running)"
    from store.journal import service_running

    if service_running(svc.url):
        told = _await_service(svc, ref, since, _sync_wait() if wait_s is None else wait_s)
        if told is not None:
            return told
    os.environ.setdefault("PREFECT_API_URL", url)
    check_reachable(url)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return explained_sync(svc, ref, client, sync_now)


def _sync_wait() -> float:
    from nim_pathway.settings import sync_wait

    return sync_wait()


POLL_S = 0.05  # how often a waiting command reads the journal (a primary-key read)


def _await_service(svc: Service, ref: str, since: int, wait_s: float) -> str | None:
    """What the sync service did with the command's change, once it has; None if it has not
    within `wait_s` (the caller syncs the case itself). Raises OrchestrationUnavailable when
    the service could not apply it (the error it met)."""
    import time

    give_up = time.monotonic() + wait_s
    while True:
        entries = svc.commands.changes_covering(ref, since)
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


def write_service_health(stats: ServiceStats, state: str) -> None:
    """What `status` shows of the sync service: its counts and last error, in the data folder
    (a new 0600 file each time, so a reader never sees half of it)."""
    import json

    from nim_pathway.settings import sync_service_health_file
    from store.files import write_private

    write_private(sync_service_health_file(), json.dumps(
        {"state": state, **asdict(stats)}).encode(), "the sync service's health file")


def serve_journal(svc: Service, stop: Any, poll_s: float = 0.2,  # noqa: ANN401 - an Event
                  log: Callable[[str], None] = print) -> ServiceStats:
    """The sync service: apply each journal entry as soon as it is written, until `stop`
    (a threading.Event) is set, holding the service lock so commands wait for it instead of
    syncing themselves. Polls with a read (no write lock) and claims only when something is
    pending; when Prefect is unreachable it waits for Prefect's health check to pass; an
    entry that failed waits RETRY_S before its next try."""
    import time

    from prefect.client.orchestration import get_client

    from store.journal import service_lock

    stats, failed_at, streak = ServiceStats(), {}, 0
    url = api_url() or STACK_URL
    with service_lock(svc.url), get_client(sync_client=True) as client:
        from models.redaction import mask_url

        log(f"sync service: applying the orchestration journal to {mask_url(url)}")
        write_service_health(stats, "running")
        while not stop.is_set():
            try:  # one round: a failure here (store or clock unreadable) must not end the service
                if not svc.commands.changes_pending():
                    stop.wait(poll_s)
                    streak = 0
                    continue
                now = time.monotonic()
                failed_at = {i: t for i, t in failed_at.items() if now - t < RETRY_S}
                report = drain_journal(svc, client=client, explain=True, skip=failed_at)
            except Exception as exc:  # noqa: BLE001 - logged, counted, retried with back-off
                pause = _round_failed(stats, exc, streak, log)
                _health_quietly(stats, "running", log)
                streak += 1
                stop.wait(pause)
                continue
            streak = 0
            stats.batches += 1
            stats.applied += report.applied
            stats.failed += report.failed
            for error in report.errors:
                log(f"sync service: waiting: {error}")
            _health_quietly(stats, "running", log)
            if report.unreachable:  # the wait for Prefect is the back-off: no retry delay
                _await_health(url, stop, log)
                continue
            failed_at.update({i: now for i in report.failed_ids - set(failed_at)})
            if not report.claimed:
                stop.wait(poll_s)  # only entries waiting for a retry
    _health_quietly(stats, "stopped", log)
    log(f"sync service stopped: {stats.applied} change(s) applied, {stats.failed} failed, "
        f"{stats.round_errors} round(s) failed and retried")
    return stats


def _health_quietly(stats: ServiceStats, state: str, log: Callable[[str], None]) -> None:
    try:
        write_service_health(stats, state)
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

    from nim_pathway.health import live_workers

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
