"""The nightly audit: all of Prefect's live runs against the case store in one pass, syncing
only the cases that differ (after a lost Prefect database: all of them); and the saved run
views (queues by role and stage) the UI shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestration.prefect_api import LIVE, prefect_client, read_all_runs
from orchestration.sync import SyncReport, sync_case

if TYPE_CHECKING:
    from nim_pathway.app import Service

Progress = Callable[[str, int, int], None]  # (phase, done, total)


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
