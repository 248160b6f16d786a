"""Integration: a real Prefect server, the deployments served, the case store shared.

A case runs referral → recommendation with half its tasks completed through the CLI path and
half through `resume_flow_run` exactly as the UI's Resume form does. Then Prefect's database
is thrown away and `reconcile` restores every waiting run. Runs once on SQLite and once in
the production profile (Prefect and the case store on PostgreSQL).
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from models.clock import FileClock
from models.refs import TaskRef
from models.schemas import Referral
from models.simulate import sample_outcome
from nim_pathway.app import Service
from nim_pathway.demo import DEMO_TEAM, current_code
from orchestration.prefect_api import LIVE
from store.db import session_scope
from store.tables import AuditEvent, Outbox, Timer
from tests.conftest import PG_ADMIN_URL, referral_data
from tests.prefect_stack import running_stack, wait_for

pytestmark = pytest.mark.slow

SENTINELS = ("Sentinel-Given", "Sentinel-Family", "Sentinel-Mother", "Sentinel Address",
             "2025-06-01")
HANDLES = {role: handle for handle, _, role, _ in DEMO_TEAM}
DECISIONS = {"d1": "no_treatment", "d2": "adoption"}


def _pg_database(name: str) -> str:
    admin = create_engine("postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1],
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                               marks=pytest.mark.postgres)])
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    if request.param == "sqlite":
        case_url, prefect_db = f"sqlite:///{tmp / 'cases.db'}", None
    else:
        request.getfixturevalue("pg_url")  # skips (or fails in CI) without PostgreSQL
        suffix = uuid.uuid4().hex[:8]
        case_url = _pg_database(f"nim_cases_{suffix}")
        prefect_url = _pg_database(f"nim_prefect_{suffix}")
        admin = create_engine("postgresql+psycopg://" + prefect_url.split("://", 1)[1])
        with admin.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        admin.dispose()
        prefect_db = "postgresql+asyncpg://" + prefect_url.split("://", 1)[1]
    with running_stack(tmp, case_url, prefect_db) as s:
        yield s


# -- helpers ------------------------------------------------------------------------------


def case_runs(ref: str) -> list:
    from prefect.client.orchestration import get_client

    from orchestration.prefect_api import read_case_runs

    with get_client(sync_client=True) as client:
        return read_case_runs(client, ref)


def task_run(ref: str, key: str, state: str = "Suspended"):
    def find():
        runs = [r for r in case_runs(ref) if f"task:{key}" in r.tags]
        return next((r for r in runs if r.state.name == state), None)

    return wait_for(find, f"{ref}/{key} to be {state}")


def next_code(store: Service, actor: str) -> str:
    """The actor's authenticator code, 30 s on (each code works once)."""
    store.clock.set(store.clock.now() + timedelta(seconds=30))
    return current_code(store, actor)


def complete_ui(store: Service, ref: str, key: str, actor: str, outcome: dict,
                code: str | None = None) -> None:
    """What the Resume form does: resume the suspended run with the form's input, the
    person's one-time code included."""
    from prefect.flow_runs import resume_flow_run

    run = task_run(ref, key)
    asked = run.state.state_details.run_input_keyset["response"]
    resume_flow_run(run.id, run_input={"completed_by": actor, **outcome,
                                       "code": code or next_code(store, actor)})
    if code is None:  # judged before the clock moves on: a code is valid one step either side

        def judged() -> bool:  # recorded, or refused and the form asked again
            if next(t for t in store.queries.tasks(case=ref, state=None) if t.key == key
                    ).state == "done":
                return True
            again = [r for r in case_runs(ref) if f"task:{key}" in r.tags
                     and r.state.name == "Suspended"]
            return bool(again) and again[0].state.state_details.run_input_keyset[
                "response"] != asked

        wait_for(judged, f"{ref}/{key}'s form to be judged")


def complete_cli(store: Service, ref: str, key: str, actor: str, outcome: dict) -> None:
    """What `nim-pathway task complete` does: the domain command, then sync Prefect."""
    from orchestration.sync import orchestrate_after

    task_run(ref, key)  # let the run reach its suspend first, as a person would
    store.tasks.complete_task(TaskRef(ref, key), actor, outcome)
    orchestrate_after(store, ref)


def open_tasks(store: Service, ref: str) -> list[dict]:
    return [t for t in store.queries.tasks(case=ref) if t.stage != "statutory"]


# -- tests --------------------------------------------------------------------------------


def test_case_runs_from_referral_to_recommendation(stack):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    store: Service = stack.store
    referral = Referral.model_validate(referral_data(
        caregivers=[{"relationship": "mother", "name": "Sentinel-Mother"}],
        settings={"contact_observations_per_parent": 1}))
    handle = store.cases.stage_intake(referral, "coord.ali")
    opener = run_deployment("open-case/open-case", timeout=0,
                            parameters={"form": {"intake": handle, "coordinator": "coord.ali",
                                                 "code": next_code(store, "coord.ali")}})
    ref = wait_for(lambda: next((c.ref for c in store.queries.cases()), None), "the case to open")
    with get_client(sync_client=True) as client:  # the coordinator reads the new reference
        # on the run: its name, its result and an artifact
        opened = wait_for(lambda: (r := client.read_flow_run(opener.id)).state.is_completed()
                          and r, "the open-case run to finish")
        assert opened.name == f"open-case · {ref}"
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        shown = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[opener.id])))
        assert [a.key for a in shown if ref in (a.data or "")] == ["opened-case"]

    # a refused form asks again instead of completing: the wrong role with a good code, then
    # the manager's handle typed with a code that is not theirs (impersonation)
    complete_ui(store, ref, "triage", "la.patel", {"accepted": True})
    refused = wait_for(lambda: (r := task_run(ref, "triage")).state.state_details
                       .run_input_keyset["response"].startswith("suspended-outcome-2") and r,
                       "the triage form to be asked again")
    assert refused and store.queries.tasks(case=ref)[0].state == "open"
    complete_ui(store, ref, "triage", "mgr.okafor", {"accepted": True},
                code=current_code(store, "la.patel"))
    again = wait_for(lambda: (r := task_run(ref, "triage")).state.state_details
                     .run_input_keyset["response"].startswith("suspended-outcome-3") and r,
                     "the impersonated form to be asked again")
    assert store.queries.tasks(case=ref)[0].state == "open"
    # the form asked again leads with why, plainly, where the person typed the code
    with get_client(sync_client=True) as client:
        shown = json.loads(client.read_flow_run_input(
            again.id, again.state.state_details.run_input_keyset["description"]))
        first = json.loads(client.read_flow_run_input(
            refused.id, refused.state.state_details.run_input_keyset["description"]))
    assert shown.splitlines()[0].startswith(
        "> **Not recorded.** The code you entered was wrong — nothing was saved; enter the "
        "current code from your authenticator app."), shown
    assert first.splitlines()[0].startswith("> **Not recorded.** Nothing was saved: "), first
    with session_scope(store.url) as s:
        assert [a.actor for a in s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused-code"))] == ["mgr.okafor"]

    spec = store.queries.pathway(ref)
    via_ui = True
    while store.queries.show(ref).stage not in ("closure", None):
        tasks = open_tasks(store, ref)
        assert tasks, store.queries.show(ref)
        for t in tasks:
            outcome = sample_outcome(spec, t.spec_id, DECISIONS)
            complete = complete_ui if via_ui else complete_cli
            complete(store, ref, t.key, HANDLES[t.role], outcome)
            via_ui = not via_ui
        asked = {t.key for t in tasks}
        wait_for(lambda asked=asked: not asked & {t.key for t in open_tasks(store, ref)},
                 "the completions to be recorded")

    assert store.queries.show(ref).decisions == DECISIONS
    # every completed task's run ends Completed; the case's waiting work is Suspended
    done = [t for t in store.queries.tasks(case=ref, state="done")]
    for t in done:
        task_run(ref, t.key, "Completed")
    wait_for(lambda: all(task_run(ref, t.key) for t in store.queries.tasks(case=ref)),
             "runs for every open task")
    runs = case_runs(ref)
    # a task re-dated while it waited had its run replaced (cancelled): count the others
    task_runs = [r for r in runs if "kind:task" in r.tags and r.state.name != "Cancelled"]
    keys = [next(t[5:] for t in r.tags if t.startswith("task:")) for r in task_runs]
    twice = {k for k in keys if keys.count(k) > 1}
    assert not twice, ("a replay started a second run for a task: " + "; ".join(
        f"{r.name} {r.state.name} ({r.state.message})" for r in task_runs
        if any(f"task:{k}" in r.tags for k in twice)))
    for r in task_runs:
        key = keys[task_runs.index(r)]
        row = next(t for t in store.queries.tasks(case=ref, state=None) if t.key == key)
        assert r.name == f"due {row.due} · {ref} · {row.stage} · {key}"
        assert {f"case:{ref}", f"stage:{row.stage}", f"role:{row.role}",
                "jurisdiction:england-and-wales", "programme:nim"} <= set(r.tags)
    stages = {r.name: r.state for r in runs if "kind:stage" in r.tags}
    assert stages[f"{ref} · assessment"].name == "Completed"
    # live by state type, as the sync judges it: a runner starting the run shows "Submitting"
    # (a Pending-type state), a moment later "Running", then "Suspended"
    assert stages[f"{ref} · closure"].type.value in LIVE, stages[f"{ref} · closure"]
    assert f"{ref} · treatment" not in stages  # D1 said no treatment

    # replays created no duplicate task or timer
    with session_scope(store.url) as s:
        created = [a.detail["task"] for a in s.exec(select(AuditEvent).where(
            AuditEvent.action == "task-created"))]
        refusals = s.exec(select(AuditEvent).where(AuditEvent.action == "refused")).all()
        timer_keys = list(s.exec(select(Timer.key)))
    assert len(created) == len(set(created)) and len(refusals) == 1
    assert len(timer_keys) == len(set(timer_keys))

    # the sweep fires what is due in virtual time, and reconciles
    FileClock(str(stack.clock_file)).set(datetime(2026, 1, 12, 10, tzinfo=UTC) + timedelta(weeks=6))
    result = run_deployment("sweep/sweep", timeout=120)
    # this team has no contacts and no admin target: the sweep does all its work, and ends
    # Failed (which the dashboard counts) because its messages could not be delivered
    assert result.state.is_failed(), result.state
    assert "nim-pathway outbox list --failed" in result.state.message
    with get_client(sync_client=True) as client:  # the sweep saved each person's and role's
        # run-list view (the UI's own format, as tests/test_browser.py reads it back)
        views = {v["name"]: v["filters"] for v in client.request(
            "POST", "/saved_searches/filter", json={}).json()}
    assert views["My queue: mgr.okafor"][0]["value"] == ["assignee:mgr.okafor"]
    assert views["Queue: nim-service-manager"][0]["value"] == ["role:nim-service-manager"]
    with session_scope(store.url) as s:
        fired = s.exec(select(Timer).where(Timer.fired_at.is_not(None))).all()
    assert fired and all(t.due_at <= datetime(2026, 2, 23, 10, tzinfo=UTC) for t in fired)
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["caseload-board", "nim-kpis", "breach-report",
                                        f"timeline-{ref.lower()}", "pathway-england"])))}
    assert keys == {"caseload-board", "nim-kpis", "breach-report", f"timeline-{ref.lower()}",
                    "pathway-england"}
    runs = case_runs(ref)

    # nothing Prefect holds names the child or the family
    with get_client(sync_client=True) as client:
        everything = [opener.model_dump_json()] + [r.model_dump_json() for r in runs]
        ids = [r.id for r in runs] + [opener.id]
        for offset in range(0, 2000, 200):
            page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=ids)), limit=200, offset=offset)
            everything += [log.message for log in page]
            if len(page) < 200:
                break
        for r in runs:
            everything += [i.value for i in client.filter_flow_run_input(
                r.id, key_prefix="", limit=100, exclude_keys=set())]
        everything += [a.model_dump_json() for a in client.read_artifacts()]
        import httpx

        events = httpx.post(f"{stack.api}/events/filter", timeout=30, json={
            "filter": {"event": {"prefix": ["nim."]}}, "limit": 50}).raise_for_status().json()
        assert {e["event"] for e in events["events"]} >= {"nim.case.opened",
                                                           "nim.task.completed",
                                                           "nim.decision.recorded"}
        everything.append(json.dumps(events))
    with session_scope(store.url) as s:  # and every message the outbox holds
        everything += [o.subject + o.body_text + o.body_html + (o.ics or "") + json.dumps(o.meta)
                       for o in s.exec(select(Outbox))]
    blob = json.dumps(everything)
    assert not [s for s in SENTINELS if s in blob]


def test_a_reassigned_task_gets_a_run_with_the_current_form(stack):
    """The waiting run's form names the owner; after a reassignment one sync replaces it:
    the old run is cancelled, the new one waits with the new owner's form and tag, and the
    store records it (so messages link to it)."""
    from prefect.client.orchestration import get_client

    from models.schemas import PractitionerIn
    from nim_pathway.demo import DEMO_ADMIN
    from orchestration.sync import orchestrate_after

    store: Service = stack.store
    store.admin.add_practitioner(PractitionerIn(
        handle="mgr.rowe", display_name="M Rowe", role="nim-service-manager", team="nim"),
        DEMO_ADMIN.handle)
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    orchestrate_after(store, ref)
    first = task_run(ref, "triage")
    store.tasks.reassign(TaskRef(ref, "triage"), "mgr.rowe", "mgr.okafor", "")
    assert "1 cancelled" in orchestrate_after(store, ref)
    new = task_run(ref, "triage")  # the replacement, once it has suspended with its form
    assert new.id != first.id and "assignee:mgr.rowe" in new.tags
    assert [r.state.name for r in case_runs(ref) if r.id == first.id] == ["Cancelled"]
    assert store.queries.run_ids(ref)["triage"] == str(new.id)
    with get_client(sync_client=True) as client:
        form = client.read_flow_run_input(
            new.id, new.state.state_details.run_input_keyset["description"])
    assert "assigned: mgr.rowe" in form and "mgr.okafor" not in form
    assert "0 cancelled" in orchestrate_after(store, ref)  # one sync was enough


def test_two_syncs_resuming_the_same_run_do_not_fail(stack):
    """The CLI's sync and the finishing task's own sync can both read a run as paused and both
    resume it at once; Prefect lets one through and refuses the rest (409 Conflict, or ABORT
    when the run is no longer paused): none of them may fail the command."""
    from prefect.client.orchestration import get_client

    from orchestration.prefect_api import resume_paused
    from orchestration.sync import orchestrate_after

    store: Service = stack.store
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    orchestrate_after(store, ref)
    # the stage run syncs the case when it starts: let it finish and suspend first, so the
    # six syncs below are the only ones (another sync winning would also be correct)
    wait_for(lambda: [r for r in case_runs(ref) if "kind:stage" in r.tags
                      and r.state.name == "Suspended"], f"{ref}'s stage run to suspend")
    stale = task_run(ref, "triage")  # every sync below read this snapshot: paused
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    answer = {"accepted": True, "completed_by": "mgr.okafor", "code": ""}  # as sync_case's
    start = threading.Barrier(6)

    def one_sync() -> bool:
        with get_client(sync_client=True) as client:
            start.wait()
            return resume_paused(client, stale, answer)

    with ThreadPoolExecutor(6) as pool:  # each thread gets the test's Prefect settings
        futures = [pool.submit(contextvars.copy_context().run, one_sync) for _ in range(6)]
        outcomes = [f.result() for f in futures]
    assert outcomes.count(True) <= 1, outcomes  # and none raised
    assert task_run(ref, "triage", "Completed")
    with session_scope(store.url) as s:
        done = [a for a in s.exec(select(AuditEvent).where(
            AuditEvent.case_ref == ref, AuditEvent.action.in_(["task-completed", "refused"])))]
    assert [(a.action, a.detail.get("task")) for a in done] == [("task-completed", "triage")]


def test_a_drainer_killed_mid_batch_loses_nothing_and_starts_nothing_twice(stack):
    """Commands journal their cases; a drainer syncs them. One killed after syncing the first
    case, before recording it, leaves its lease to run out; the next drainer syncs both cases
    again, and Prefect still holds exactly one run per open task."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from orchestration.drain import drain_journal
    from store.journal import LEASE
    from store.tables import OrchestrationChange

    store: Service = stack.store
    refs = [store.cases.open_case(Referral.model_validate(referral_data(
        caregivers=[{"relationship": "father"}])), "coord.ali").ref for _ in range(2)]
    nim = str(Path(sys.executable).parent / "nim-pathway")
    killed = subprocess.run([nim, "drain"], env={**stack.env, "NIM_FAULT": "drain-synced:1"},
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with session_scope(store.url) as s:
        held = s.exec(select(OrchestrationChange).where(
            OrchestrationChange.case_ref.in_(refs))).all()
    assert {c.case_ref for c in held if c.applied_at is None and c.claim_token} == set(refs)
    first = next(r for r in refs if task_run(r, "triage"))  # synced before the kill

    clock = FileClock(str(stack.clock_file))
    clock.set(clock.now() + LEASE + timedelta(seconds=1))
    report = drain_journal(store)
    assert report.failed == 0 and report.applied >= 2, report
    with session_scope(store.url) as s:
        assert not s.exec(select(OrchestrationChange).where(
            OrchestrationChange.applied_at.is_(None))).all()
    for ref in refs:
        wanted = {t.key for t in store.queries.tasks(case=ref)}
        for key in wanted:
            task_run(ref, key)
        task_runs = [r for r in case_runs(ref) if "kind:task" in r.tags]
        keys = [next(t[5:] for t in r.tags if t.startswith("task:")) for r in task_runs]
        assert sorted(keys) == sorted(wanted), (ref, keys)  # one run each: none twice
    assert first in refs
    assert drain_journal(store).claimed == 0


def test_prefect_down_then_database_lost_reconcile_restores(stack):
    from orchestration.drain import drain_journal
    from orchestration.prefect_api import OrchestrationUnavailable
    from orchestration.reconcile import reconcile
    from orchestration.sync import orchestrate_after
    from store.tables import OrchestrationChange

    store: Service = stack.store
    FileClock(str(stack.clock_file)).set(datetime(2026, 1, 12, 10, tzinfo=UTC))
    ref = store.cases.open_case(Referral.model_validate(referral_data(
        caregivers=[{"relationship": "father"}])), "coord.ali").ref
    orchestrate_after(store, ref)
    task_run(ref, "triage")

    stack.stop()  # Prefect goes away entirely, database included
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    with pytest.raises(OrchestrationUnavailable, match="orchestration is pending"):
        orchestrate_after(store, ref)
    assert store.queries.show(ref).stage == "consent"  # the change is kept
    with session_scope(store.url) as s:  # ... and waits in the journal for the next sweep
        assert s.exec(select(OrchestrationChange).where(
            OrchestrationChange.case_ref == ref,
            OrchestrationChange.applied_at.is_(None))).all()

    if "PREFECT_SERVER_DATABASE_CONNECTION_URL" in stack.env:
        url = stack.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
        engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
                              "CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        engine.dispose()
    else:
        for f in (stack.tmp / "prefect").glob("prefect.db*"):
            f.unlink()
    stack.start_server()
    stack.start_serving()
    assert case_runs(ref) == []
    heard: list[tuple[str, int, int]] = []
    reports = reconcile(store, progress=lambda *p: heard.append(p))
    assert any(r.ref == ref and r.started for r in reports)
    syncing = [(done, total) for phase, done, total in heard if phase.startswith("syncing")]
    assert syncing[0] == (0, len(reports)) and syncing[-1] == (len(reports), len(reports))
    for t in store.queries.tasks(case=ref):
        task_run(ref, t.key)
    assert {r.name for r in case_runs(ref) if "kind:stage" in r.tags} >= {f"{ref} · consent"}
    again = reconcile(store, [ref])[0]
    assert again.started == [] and again.cancelled == []
    reconcile(store)  # the full audit: the module's other cases lost their runs too
    wait_for(lambda: reconcile(store) == [], "the audit to find nothing left to repair", 120)
    assert drain_journal(store).failed == 0  # the waiting change applies without a duplicate
    for t in store.queries.tasks(case=ref):
        assert len([r for r in case_runs(ref) if f"task:{t.key}" in r.tags]) == 1


def test_two_syncs_creating_the_same_task_run_make_one_with_its_form(stack):
    """The CLI's sync and a flow's closing sync can both create a task's run (one idempotency
    key: one run) and both write its form; the second finds the form there (a 409 from the
    sync client) and carries on."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from orchestration.sync import start_task_run

    store: Service = stack.store
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    triage = store.queries.task(ref, "triage")
    with get_client(sync_client=True) as client:
        runs = [start_task_run(client, ref, triage, store.queries.pathway(ref),
                               parameters={"ref": ref, "task_key": "triage"},
                               name=f"{ref} · race", tags=[f"case:{ref}"],
                               idempotency_key=f"{ref}/triage#race") for _ in range(2)]
        assert runs[0].id == runs[1].id
        keyset = runs[0].state.state_details.run_input_keyset
        assert "Triage the referral" in client.read_flow_run_input(runs[0].id,
                                                                   keyset["description"])
        client.set_flow_run_state(runs[0].id, Cancelled(), force=True)  # nobody answers it


def _serve(store: Service) -> tuple[threading.Event, threading.Thread]:
    """The sync service (`drain --follow`) in a thread with the test's Prefect settings."""
    from orchestration.drain import serve_journal
    from store.journal import service_running

    stop = threading.Event()
    thread = threading.Thread(target=contextvars.copy_context().run, daemon=True, args=(
        serve_journal, store, stop), kwargs={"poll_s": 0.05, "log": lambda line: None})
    thread.start()
    wait_for(lambda: service_running(store.url), "the sync service to hold its lock")
    return stop, thread


def test_a_running_sync_service_applies_the_change_and_the_command_prints_its_outcome(stack):
    """With the sync service up, a command waits for the service to apply its change and
    prints what the service did (a run resumed, the next ones started), read back from the
    journal; the entry was claimed by the service (the command's own sync claims nothing)."""
    from orchestration.sync import orchestrate_after
    from store.tables import OrchestrationChange

    store: Service = stack.store
    stop, thread = _serve(store)
    try:
        since = store.queries.newest_change()
        ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
        # waits for the service however slow the machine (after the default 5 s the command
        # syncs itself and finds the service's runs already made: "0 started")
        opened = orchestrate_after(store, ref, since, wait_s=120)
        assert re.match(rf"orchestration: {ref}: [1-9]\d* started", opened), opened
        task_run(ref, "triage")
        since = store.queries.newest_change()
        store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
        told = orchestrate_after(store, ref, since, wait_s=60)
        with session_scope(store.url) as s:
            mine = s.exec(select(OrchestrationChange).where(
                OrchestrationChange.case_ref == ref, OrchestrationChange.id > since)).all()
        assert [(c.attempts, c.applied_at is not None, c.outcome) for c in mine] == [
            (1, True, told)]
        # the stage run's own sync may resume triage first: the counts are whoever won's
        assert re.fullmatch(rf"orchestration: {ref}: [1-9]\d* started, \d+ resumed, "
                            r"\d+ cancelled", told), told
        task_run(ref, "triage", "Completed")
        for t in store.queries.tasks(case=ref):
            task_run(ref, t.key)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_a_cli_write_with_the_sync_service_up_does_not_import_prefect(stack):
    """`nim-pathway task complete` as a person runs it, in a fresh process: with the service
    up it never imports Prefect (a CLI's ~1.5 s), and still prints what Prefect now shows."""
    import subprocess
    import sys
    from pathlib import Path

    store: Service = stack.store
    # past every code used so far (an earlier test set the clock back after the first one's
    # sweep six weeks on): a one-time code never works twice
    clock = FileClock(str(stack.clock_file))
    clock.set(max(clock.now(), datetime(2026, 1, 12, 10, tzinfo=UTC) + timedelta(weeks=7)))
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    stop, thread = _serve(store)
    try:
        task_run(ref, "triage")
        nim = str(Path(sys.executable).parent / "nim-pathway")
        done = subprocess.run(
            [nim, "--code", next_code(store, "mgr.okafor"), "task", "complete", f"{ref}/triage",
             "--as", "mgr.okafor", "--field", "accepted=true"],
            env={**stack.env, "PYTHONPROFILEIMPORTTIME": "1", "NIM_SYNC_WAIT": "60"},
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "nim_pathway.cli" in imported and not [m for m in imported
                                                      if m.split(".")[0] == "prefect"]
        assert re.search(rf"orchestration: {ref}: [1-9]\d* started, \d+ resumed", done.stdout), \
            done.stdout
        task_run(ref, "triage", "Completed")
    finally:
        stop.set()
        thread.join(30)


def test_a_sync_service_that_does_not_apply_in_time_leaves_the_command_to_sync(stack):
    """A service that holds its lock but applies nothing (hung): the command waits its
    NIM_SYNC_WAIT, then syncs the case itself, as it would with no service at all."""
    from orchestration.sync import orchestrate_after
    from store.journal import ServiceRunning, service_lock, service_running

    store: Service = stack.store
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with service_lock(store.url):  # "running", but nobody drains
        assert service_running(store.url)
        with pytest.raises(ServiceRunning, match="already running"), service_lock(store.url):
            pass  # a second service is refused
        told = orchestrate_after(store, ref, 0, wait_s=0.3)
    assert not service_running(store.url)
    assert re.match(rf"orchestration: {ref}: [1-9]\d* started", told), told
    task_run(ref, "triage")
    assert store.queries.changes_covering(ref, 0)[-1][0]  # applied, by the command


def test_a_failed_round_is_logged_counted_and_the_service_goes_on(stack, tmp_path):
    """The sync service died when one round met an error (a clock file read half-written): it
    stopped applying the journal and every command fell back to syncing itself. Now the round
    is logged (no identity), counted in `status`, and the next change is applied. The cause
    here is the service's own clock file holding garbage for a while."""
    import json

    from nim_pathway.app import build_service
    from nim_pathway.health import _sync_service
    from orchestration.drain import serve_journal
    from store.journal import service_running

    store: Service = stack.store
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    own_clock = tmp_path / "service-clock"
    FileClock(str(own_clock)).set(store.clock.now())
    served = build_service(store.url, FileClock(str(own_clock)))
    own_clock.write_text("")  # the cause: what a reader saw between truncate and write
    lines: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=contextvars.copy_context().run, daemon=True, args=(
        serve_journal, served, stop), kwargs={"poll_s": 0.05, "log": lines.append})
    thread.start()
    try:
        wait_for(lambda: service_running(store.url), "the sync service to hold its lock")
        wait_for(lambda: any("a round failed" in line for line in lines)
                 and json.loads(served.settings.sync_service_health_file.read_text())["round_errors"],
                 "the service to log and count the failed round", timeout=60)
        assert thread.is_alive(), "the service stopped on a failed round"
        said = json.loads(served.settings.sync_service_health_file.read_text())
        assert said["round_errors"] >= 1 and "NIM_CLOCK_FILE" in said["last_error"]
        assert "round(s) failed and retried); last error: ConfigError" in _sync_service(served.settings)
        assert not any("Sentinel" in line for line in lines)  # no identity in the log
        FileClock(str(own_clock)).set(store.clock.now())  # the cause goes away
        wait_for(lambda: json.loads(served.settings.sync_service_health_file.read_text())["applied"] >= 1,
                 "the service to apply the change it failed on", timeout=120)
        assert store.queries.changes_covering(ref, 0)[-1][0]
        task_run(ref, "triage")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert json.loads(served.settings.sync_service_health_file.read_text())["state"] == "stopped"


def _close_first_stage_while_its_run_starts(store: Service):
    """A case whose first stage closes while its stage run is Running (forced: the instant
    between the flow's read of the case store and its suspend). Returns the case reference,
    the stage and the run as it waited."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from orchestration.sync import orchestrate_after

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    orchestrate_after(store, ref)
    first = store.queries.show(ref).stage
    waiting = wait_for(lambda: _stage_run(ref, first, "Suspended"),
                       f"{ref}'s {first} stage run to wait")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(waiting.id, Running(), force=True)
    spec = store.queries.pathway(ref)
    while store.queries.show(ref).stage == first:  # the stage's work is done: it closes
        for t in open_tasks(store, ref):
            if t.stage == first:
                store.tasks.complete_task(TaskRef(ref, t.key), HANDLES[t.role],
                                          sample_outcome(spec, t.spec_id, DECISIONS))
    return ref, first, waiting


def _stage_run(ref: str, stage: str, state: str):
    return next((r for r in case_runs(ref) if "kind:stage" in r.tags
                 and f"stage:{stage}" in r.tags and r.state.name == state), None)


def test_a_stage_closing_while_its_run_starts_is_resumed_once_the_run_waits(stack, monkeypatch):
    """Found by the soak (reconcile repaired one stage run): a stage run reads the case store,
    finds its stage open, then suspends. If the stage closed in between, the sync found the run
    Running, not paused, resumed nothing and marked the change applied: the run then waited
    for ever. Now the sync waits for it to pause, then resumes it."""
    from prefect.client.orchestration import get_client

    from orchestration import sync
    from orchestration.drain import drain_journal

    monkeypatch.setattr(sync, "STAGE_SETTLE_S", 60.0)
    store: Service = stack.store
    ref, first, waiting = _close_first_stage_while_its_run_starts(store)

    def suspends() -> None:  # as its process would, a moment later
        import time

        time.sleep(1.0)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(waiting.id, waiting.state.fresh_copy(), force=True)

    later = threading.Thread(target=contextvars.copy_context().run, args=(suspends,))
    later.start()
    report = drain_journal(store)
    later.join()
    assert report.failed == 0, report.errors
    assert all(applied for applied, _, _ in store.queries.changes_covering(ref, 0))
    wait_for(lambda: _stage_run(ref, first, "Completed"),
             f"the closed {first} stage run to complete", timeout=120)


def test_a_closed_stage_whose_run_never_waits_is_cancelled(stack, monkeypatch):
    """A stage run left Running by a process that died (a worker killed mid-run) will never
    pause: once the sync has waited for it, it is cancelled with the reason, the change is
    applied and nothing is retried for ever."""
    from orchestration import sync
    from orchestration.drain import drain_journal

    monkeypatch.setattr(sync, "STAGE_SETTLE_S", 1.0)
    store: Service = stack.store
    ref, first, _ = _close_first_stage_while_its_run_starts(store)
    report = drain_journal(store)
    assert report.failed == 0, report.errors
    assert all(applied for applied, _, _ in store.queries.changes_covering(ref, 0))
    cancelled = wait_for(lambda: _stage_run(ref, first, "Cancelled"),
                         f"the {first} stage run to be cancelled", timeout=60)
    assert "closed while this run was starting" in cancelled.state.message
    assert not drain_journal(store).claimed
