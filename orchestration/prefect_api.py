"""Prefect's API as the engine uses it: where it is, whether it answers, and reading and
starting runs in pages. Prefect is imported inside the functions that call it: a command
that finds the sync service running never imports it (~1.5 s)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nim_pathway.settings import Settings

TASK_DEPLOYMENT = "human-task/human-task"


STAGE_DEPLOYMENT = "stage/stage"


LIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED"}


WAITING = {"SCHEDULED", "PAUSED"}  # live runs no process is working on




class OrchestrationUnavailable(RuntimeError):
    """Prefect cannot be reached: the case store change stands, orchestration is pending."""


@contextmanager
def prefect_client(settings: Settings, url: str | None = None) -> Iterator[Any]:
    """A synchronous Prefect client for `url` or the API the settings name (`prefect_api_url`),
    with its basic-auth secret: given explicitly, never through the process environment."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: url or settings.prefect_api_url}
    if settings.prefect_auth:
        updates[PREFECT_API_AUTH_STRING] = settings.prefect_auth
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        yield client


def live_workers(client: Any, pool: str) -> list[Any]:  # noqa: ANN401 - Prefect's client
    """The pool's workers Prefect counts as online (heartbeat within its window)."""
    return [w for w in client.read_workers_for_work_pool(pool)
            if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]


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


# deployment ids per client: read once, not per run started
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


def published_checkpoints(settings: Settings, limit: int = 20) -> list[str]:
    """The texts of Prefect's newest `audit-checkpoint` artifacts (the sweep's copies of the
    audit log's signed head, which the case store's owner cannot change), newest first."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    url = settings.prefect_api_url
    if not url:
        raise OrchestrationUnavailable("no Prefect server is configured (PREFECT_API_URL): "
                                       "its audit-checkpoint artifacts cannot be read")
    try:
        check_reachable(url)
    except OrchestrationUnavailable:
        raise OrchestrationUnavailable(f"Prefect at {url} is unreachable: its audit-checkpoint "
                                       "artifacts cannot be read; try again when it is up, or "
                                       "pass a saved copy with --checkpoint") from None
    with prefect_client(settings) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["audit-checkpoint"])), sort=ArtifactSort.CREATED_DESC,
            limit=limit)
    return [a.data for a in found if isinstance(a.data, str)]
