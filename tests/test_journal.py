"""The orchestration journal: every change to a case is journalled in its own transaction,
claimed under a lease, applied once per lease, taken over when a drainer dies. Prefect's side
(the syncs a drainer runs, a drainer killed mid-batch) is in tests/test_orchestration.py."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.app import build_service
from store.db import session_scope
from store.journal import LEASE
from store.tables import OrchestrationChange
from tests.conftest import referral_data


def pending(url: str) -> list[tuple[str, str | None]]:
    with session_scope(url, read_only=True) as s:
        return [(c.case_ref, c.claim_token) for c in s.exec(
            select(OrchestrationChange).where(OrchestrationChange.applied_at.is_(None))
            .order_by(OrchestrationChange.id))]


def test_changes_are_journalled_once_per_case_until_claimed(store, db_url):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    assert pending(db_url) == [(ref, None)]
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert pending(db_url) == [(ref, None)]  # one entry covers both changes
    last = store.queries.last_change(ref)
    claimed = store.timers.claim_changes("drainer-1", 10)
    assert claimed == {ref: [last]}
    store.cases.pause(ref, "family holiday", "coord.ali")  # a change after the claim
    assert [r for r, _ in pending(db_url)] == [ref, ref]  # ... gets its own entry
    assert store.timers.settle_changes(claimed[ref], "drainer-1") == 1
    assert pending(db_url) == [(ref, None)]


def test_the_cli_marks_only_what_its_sync_covered(store, db_url):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    covered = store.queries.last_change(ref)
    other = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.timers.changes_applied(ref, covered)
    assert pending(db_url) == [(other, None)]
    store.timers.changes_applied(other, 0)  # nothing was pending when its sync began
    assert pending(db_url) == [(other, None)]


def test_a_lease_is_exclusive_until_it_runs_out(store, db_url, clock):
    refs = [store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
            for _ in range(3)]
    first = store.timers.claim_changes("a", 2)
    assert sorted(first) == refs[:2]
    second = store.timers.claim_changes("b", 10)
    assert list(second) == refs[2:]  # the leased ones are not offered again
    assert store.timers.claim_changes("c", 10) == {}
    assert store.timers.settle_changes(second[refs[2]], "b",
                                       error="ConnectError: Prefect down") == 1
    with session_scope(db_url, read_only=True) as s:
        row = s.exec(select(OrchestrationChange).where(
            OrchestrationChange.case_ref == refs[2])).one()
    assert row.claim_token is None and row.last_error.startswith("ConnectError")  # released
    clock.set(clock.now() + LEASE + timedelta(seconds=1))  # drainer "a" died holding its lease
    taken = store.timers.claim_changes("c", 10)
    assert sorted(taken) == refs
    late = [i for ids in first.values() for i in ids]
    assert store.timers.settle_changes(late, "a") == 0  # "a" no longer holds them
    assert store.timers.settle_changes([i for ids in taken.values() for i in ids], "c") == 3
    assert pending(db_url) == []


@pytest.mark.postgres
def test_concurrent_drainers_never_claim_the_same_change(store, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the race is run on PostgreSQL (SKIP LOCKED); SQLite has one writer")
    for _ in range(40):
        store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali")
    start, results = threading.Barrier(4), {}

    def drainer(token: str) -> None:
        start.wait()
        got: list[int] = []
        while claimed := store.timers.claim_changes(token, 3):
            got += [i for ids in claimed.values() for i in ids]
        results[token] = got

    threads = [threading.Thread(target=drainer, args=(f"d{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for got in results.values() for i in got]
    assert len(everything) == len(set(everything)) == 40


def test_applied_entries_are_forgotten_after_a_week(store, db_url, clock):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.timers.changes_applied(ref, store.queries.last_change(ref))
    clock.set(clock.now() + timedelta(days=6))
    assert store.timers.forget_applied_changes() == 0  # applied 6 days ago: kept
    store.cases.pause(ref, "family holiday", "coord.ali")  # pending: never forgotten
    clock.set(clock.now() + timedelta(days=2))
    assert store.timers.forget_applied_changes() == 1  # 8 days: gone
    assert pending(db_url) == [(ref, None)]


def test_open_work_lists_each_case_stage_and_open_tasks(store):
    """What the nightly audit compares Prefect's live runs with: labels only (no sealed
    value opened), the same work `sync_case` starts runs for."""
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    want = {f"stage:{store.queries.show(ref).stage}"} | {
        f"task:{t.key}" for t in store.queries.tasks(case=ref)}
    assert store.queries.open_work()[ref] == want
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    after = store.queries.open_work()[ref]
    assert "task:triage" not in after
    assert after == {f"stage:{store.queries.show(ref).stage}"} | {
        f"task:{t.key}" for t in store.queries.tasks(case=ref)}
    store.cases.exit_case(ref, "disengaged", "", "coord.ali")
    # leaving NIM ends its stage and its work; the local authority's statutory duties to a
    # looked-after child (visits, reviews) stay open, so their runs stay too
    assert store.queries.show(ref).stage is None
    assert store.queries.open_work()[ref] == {f"task:{t.key}"
                                              for t in store.queries.tasks(case=ref)}


def test_a_case_whose_sync_fails_is_tried_once_per_drain(store, monkeypatch):
    """A sync that fails for a reason other than Prefect being down (a bug, a bad pathway)
    releases its entries with the error for the next sweep; the same drain must not claim
    them again round after round (it once re-synced such a case 50 times per sweep)."""
    import orchestration.drain as orchestration
    from orchestration.sync import SyncReport

    refs = [store.cases.open_case(Referral.model_validate(referral_data()),
                                  "coord.ali").ref for _ in range(2)]
    attempts: list[str] = []

    def sync(svc, ref, client=None):  # the first case's sync fails, the second's works
        attempts.append(ref)
        if ref == refs[0]:
            raise ValueError("pathway spec has no stage 'x'")
        return SyncReport(ref)

    monkeypatch.setattr(orchestration, "sync_case", sync)
    # the sync is replaced, so no Prefect client is needed: one that is never used (the
    # test once set PREFECT_API_URL after the service had read its settings, so the drain
    # started Prefect's ephemeral server, and timed out under load)
    report = orchestration.drain_journal(store, limit=1, client=object())
    assert attempts == refs and (report.applied, report.failed) == (1, 1)
    assert report.errors == [f"{refs[0]}: ValueError: pathway spec has no stage 'x'"]
    with session_scope(store.url, read_only=True) as s:
        left = s.exec(select(OrchestrationChange).where(
            OrchestrationChange.applied_at.is_(None))).all()
    assert [(c.case_ref, c.claim_token, c.last_error) for c in left] == [
        (refs[0], None, "ValueError: pathway spec has no stage 'x'")]


def test_a_sync_service_that_cannot_reach_prefect_says_so_to_the_waiting_command(
        store, monkeypatch):
    """The service meets a Prefect that is down: it releases the change with the error and
    waits for Prefect's health check; the command waiting on it reports the error at once
    (not after its full wait), and the change stays pending for the service or a sweep."""
    import contextvars

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from orchestration.drain import serve_journal
    from orchestration.prefect_api import OrchestrationUnavailable
    from orchestration.sync import orchestrate_after
    from store.journal import service_running

    dead = "http://127.0.0.1:9/api"  # the discard port: nothing listens
    monkeypatch.setenv("PREFECT_API_URL", dead)
    store = build_service(store.url, store.clock, migrate=False)  # settings with that Prefect
    logged: list[str] = []
    stop = threading.Event()
    with temporary_settings(updates={PREFECT_API_URL: dead}):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(
            serve_journal, store, stop), kwargs={"poll_s": 0.05, "log": logged.append})
        thread.start()
        try:
            ref = store.cases.open_case(Referral.model_validate(referral_data()),
                                        "coord.ali").ref
            deadline = threading.Event()
            while not service_running(store.url) and not deadline.wait(0.05):
                pass
            with pytest.raises(OrchestrationUnavailable,
                               match=r"sync service could not update Prefect \(Connect"):
                orchestrate_after(store, ref, 0, wait_s=60)
        finally:
            stop.set()
            thread.join(30)
    assert not thread.is_alive()
    assert [c for c, _ in pending(store.url)] == [ref]
    assert any(line.startswith(f"sync service: waiting: {ref}: Connect") for line in logged), \
        logged


def test_one_sync_service_per_case_store(db_url):
    from store.journal import ServiceRunning, service_lock, service_running

    assert not service_running(db_url)
    with service_lock(db_url):
        assert service_running(db_url)
        with pytest.raises(ServiceRunning, match="already running"), service_lock(db_url):
            pass
        assert service_running(db_url)
    assert not service_running(db_url)
