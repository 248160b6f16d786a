"""The nightly audit: all of Prefect's live runs against the case store in one pass, syncing
only the cases that differ (after a lost Prefect database: all of them); and the saved run
views (queues by role and stage) the UI shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestration.naming import OVERDUE
from orchestration.prefect_api import LIVE, WAITING, prefect_client, read_all_runs
from orchestration.sync import SyncReport, sync_case

if TYPE_CHECKING:
    from nim_pathway.app import Service

Progress = Callable[[str, int, int], None]  # (phase, done, total)


# A saved view's time range: every run, past or to come. A task run's expected start is the
# end of its due day (orchestration/sync.py `expected_start`), months ahead for NIM work, so a
# span ending now ("past 2 years") would hide what is not due yet.
VIEW_RANGE = {"type": "range", "startDate": "2000-01-01T00:00:00.000Z",
              "endDate": "2100-01-01T00:00:00.000Z"}
WAITING_STATES = ["Suspended", "Paused"]  # a task run waiting for its form is Suspended
OVERDUE_VIEW = "Overdue"


def saved_views(svc: Service) -> dict[str, str]:
    """The run-list views a team needs, by name: overdue work (the `overdue` tag), each
    practitioner's own queue (their `assignee:` tag), each role's (`role:`) and, where a site
    runs several programmes, each programme's (`programme:`). Each lists waiting runs only."""
    views = {OVERDUE_VIEW: OVERDUE}
    for p in svc.queries.practitioners():
        if p.active and p.kind == "person":
            views[f"My queue: {p.handle}"] = f"assignee:{p.handle}"
            views[f"Queue: {p.role}"] = f"role:{p.role}"
    programmes = {spec.programme for spec in svc.queries.installed_specs().values()}
    if len(programmes) > 1:
        views.update({f"Programme: {p}": f"programme:{p}" for p in programmes})
    return views


def view_link(ui_url: str, tag: str) -> str:
    """A view as a link into the UI Prefect 3.9 opens by default (the v2 UI at /v2): runs
    with the tag, waiting (Suspended), soonest start first. A task run's start is the end of
    its due day, so that is soonest due first. The v2 UI keeps its own saved filters in each
    browser, not on the server: these links are how a team shares a view."""
    from urllib.parse import urlencode

    query = urlencode({"tags": tag, "state": "Suspended", "sort": "START_TIME_ASC"})
    return f"{ui_url.rstrip('/')}/v2/runs?{query}"


def views_markdown(ui_url: str, views: dict[str, str]) -> str:
    """The `run-views` artifact: each view as a link, overdue work first."""
    lines = ["# Run views", "",
             "Waiting work (Suspended task runs), soonest due first. Prefect's run list "
             "shows each run's due day as its start; \"late\" means overdue.", "",
             "| view | tag |", "|---|---|"]
    for name in sorted(views, key=lambda n: (n != OVERDUE_VIEW, n)):
        lines.append(f"| [{name}]({view_link(ui_url, views[name])}) | `{views[name]}` |")
    return "\n".join(lines)


def view_filters(tag: str) -> list[dict[str, Any]]:
    """A saved search's filters, in the format the server's saved searches take and its
    classic UI reads: one tag, the waiting states, every date. A saved search has no sort."""
    return [
        {"object": "flowRun", "property": "tag", "type": "", "operation": "", "value": [tag]},
        {"object": "flowRun", "property": "state", "type": "", "operation": "",
         "value": WAITING_STATES},
        {"object": "flowRun", "property": "range", "type": "", "operation": "",
         "value": VIEW_RANGE}]


def publish_saved_views(client: Any, views: dict[str, str]) -> int:  # noqa: ANN401
    """Save each view on the server (Prefect's saved searches) unless it is saved already
    as it should be (a view saved by an earlier version, without the state filter, is
    replaced: the server keeps one per name); returns how many were written."""
    existing = {v["name"]: v["filters"] for v in client.request(
        "POST", "/saved_searches/filter", json={}).json()}
    written = 0
    for name, tag in sorted(views.items()):
        filters = view_filters(tag)
        if existing.get(name) != filters:
            client.request("PUT", "/saved_searches/", json={"name": name, "filters": filters})
            written += 1
    return written


def reconcile(svc: Service, refs: list[str] | None = None,
              progress: Progress | None = None) -> list[SyncReport]:
    """Audit Prefect against the case store and repair the difference.

    With `refs`, those cases are synced. Otherwise one pass reads Prefect's live runs and the
    store's open work, computes in memory which cases differ (open work without a live run,
    a live run for work that is finished, cancelled or another stage) and syncs only those:
    after a lost Prefect database that is every open case; on a quiet night, none.
    `progress` hears each phase's count (the CLI draws a bar, the flow an artifact)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import FlowRun

    tell = progress or (lambda phase, done, total: None)
    with prefect_client(svc.settings) as client:
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
    tasks and their current stage, or whose waiting task runs' `overdue` tags are not exactly
    their overdue tasks (a due date passed since the case was last synced)."""
    shown: dict[str, set[str]] = {}
    tagged: dict[str, set[str]] = {}
    for ref, runs in live_by_case.items():
        for run in runs:
            tags = run["tags"]
            kind = "task:" if "kind:task" in tags else "stage:" if "kind:stage" in tags \
                else None
            if kind and ref:
                label = next((t for t in tags if t.startswith(kind)), kind)
                shown.setdefault(ref, set()).add(label)
                if OVERDUE in tags and run.get("state_type") in WAITING:
                    tagged.setdefault(ref, set()).add(label)
    wanted = svc.queries.open_work()  # as sync_case: every case in a stage has its run
    overdue = svc.queries.overdue_work()
    return sorted(ref for ref in set(shown) | set(wanted) | set(tagged) | set(overdue)
                  if shown.get(ref, set()) != wanted.get(ref, set())
                  or tagged.get(ref, set()) != overdue.get(ref, set()))
