"""Figures 11 to 16: keeping Prefect in step at 10,000 open cases (~100,000 runs in Prefect),
once with Prefect's own database on SQLite and once on PostgreSQL.

A driver process starts `prefect server start` (no runner) with the pathway's deployments,
opens 100 cases in a SQLite case store through the domain commands and syncs them through
Prefect's API (their runs are real). The quiet sweep and the queue query are measured at that
size. Then, with the server stopped, both stores grow to 10,000 open cases by cloning those
cases row by row: every case-scoped table of the case store (sealed values keep naming their
template case, whose key opens them), and in Prefect each clone's runs under new ids recorded
in the store, as Suspended (as waiting task runs are), plus six finished runs of history per
case. The server restarts on the grown database and, with nothing to change:

11. the quiet sweep's sync (an empty journal) at 10,000 cases against the same at 100;
12. the nightly audit (`reconcile`: one pass over the live runs, a diff in memory);
13. draining a journal of 1,000 changes (one per case, each a full sync that finds nothing);
14. one CLI write's sync (a task completed: its run resumed, the next tasks' runs started),
    against the same write synced the old way (the case's runs read by tag);
15. a practitioner's queue (role tag + Suspended, 200 rows, soonest first) against the same
    query at 100 cases;
16. the idle server's CPU, against the same server with Prefect's pause-expiration service on.

A CLI write in a fresh process (figure 17) is bench/cli_write.py: it reads a case's runs by id,
so it does not depend on how many runs Prefect holds.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    PrefectServer,
    Row,
    deployed_server,
    run_worker,
    throwaway_pg,
    timed,
    tree_cpu,
)
from bench.common import worker_main as _worker_main

TEMPLATE_CASES = 100
HISTORY_RUNS = 6  # finished runs per case (a case's earlier tasks and stages)
IDLE_SETTLE_S, IDLE_WINDOW_S = 60, 30  # the restarted server's first loops settle


def idle_cpu(server: PrefectServer) -> float:
    """Cores the server uses with nothing to do (after its start-up settles)."""
    assert server.proc
    time.sleep(IDLE_SETTLE_S)
    c0 = tree_cpu(server.proc.pid)
    time.sleep(IDLE_WINDOW_S)
    return (tree_cpu(server.proc.pid) - c0) / IDLE_WINDOW_S


def _median_s(fn: Any, times: int = 3) -> float:  # noqa: ANN401
    return statistics.median(timed(fn)[1] for _ in range(times))


def driver(args: dict[str, Any]) -> dict[str, Any]:
    tmp, backend = Path(args["tmp"]), args["backend"]
    with throwaway_pg("nim_bench_prefect") if backend == "postgresql" else nullcontext() as pg:
        db_url = "postgresql+asyncpg://" + pg.split("://", 1)[1] if pg else None
        with deployed_server(tmp, db_url) as server:
            return _measure(tmp, server, args["copies"], pg)


def _measure(tmp: Path, server: PrefectServer, copies: int, pg: str | None) -> dict[str, Any]:
    from models.clock import VirtualClock
    from models.refs import TaskRef
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from orchestration.drain import drain_journal
    from orchestration.prefect_api import read_case_runs
    from orchestration.reconcile import reconcile
    from orchestration.sync import orchestrate_after, sync_case
    from store.db import get_engine, migrate, session_scope
    from store.journal import note_change

    url = f"sqlite:///{tmp}/store.db"
    migrate(url)
    clock = VirtualClock(datetime(2026, 1, 12, 10, tzinfo=UTC))
    svc = build_service(url, clock, migrate=False)
    seed_team(svc)
    for _ in range(TEMPLATE_CASES):
        svc.cases.open_case(_referral(), "coord.ali")
    drain_journal(svc, limit=500)  # every case gets its runs, through the API
    out: dict[str, Any] = {"template_cases": TEMPLATE_CASES}
    role = _busiest_role(svc)
    out["small_runs"] = _count_runs()
    out["small_drain_s"] = _median_s(lambda: drain_journal(svc))
    out["small_queue_s"] = _median_s(lambda: _queue(role), 5)

    server.stop()
    get_engine(url).dispose()
    t0 = time.perf_counter()
    runs = _clone_store(tmp / "store.db", copies)
    prefect_rows = _clone_prefect(tmp / "prefect" / "prefect.db", pg, runs)
    out["clone_s"] = time.perf_counter() - t0
    out["cases"] = len(svc.queries.open_work())
    server.start()
    out["runs"], out["suspended"] = _count_runs(), _count_runs("Suspended")
    out["prefect_rows_inserted"] = prefect_rows

    out["drain_s"] = _median_s(lambda: drain_journal(svc))
    audited, out["audit_s"], out["audit_cpu_s"] = timed(lambda: reconcile(svc))
    out["audit_repaired"] = len(audited)

    refs = sorted(svc.queries.open_work())
    changed = refs[TEMPLATE_CASES::max(1, len(refs) // 1000)][:1000]
    with session_scope(url) as session:
        for ref in changed:
            note_change(session, ref, clock.now())
    drained, out["journal_s"], out["journal_cpu_s"] = timed(lambda: drain_journal(svc))
    out["journal_applied"], out["journal_failed"] = drained.applied, drained.failed

    writes, before = [], []  # one CLI write: complete triage, then sync as the CLI does
    for i, ref in enumerate(refs[-12:]):
        svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
        if i % 2:
            _, wall, _ = timed(lambda ref=ref: orchestrate_after(svc, ref))
            writes.append(wall)
        else:  # the old path: the case's runs read by its tag (a scan of every run)
            from prefect.client.orchestration import get_client

            def old(ref: str = ref) -> Any:  # noqa: ANN401
                with get_client(sync_client=True) as client:
                    return sync_case(svc, ref, client=client, runs=read_case_runs(client, ref))
            report, wall, _ = timed(old)
            before.append(wall)
    out["write_sync_s"], out["write_sync_before_s"] = writes, before
    out["queue_role"], out["queue_s"] = role, _median_s(lambda: _queue(role), 5)

    out["idle_cores"] = idle_cpu(server)
    server.stop()
    server.start(PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED="true")
    out["idle_cores_pause_expiry"] = idle_cpu(server)
    return out


def _referral() -> Any:  # noqa: ANN401
    from models.schemas import Referral

    return Referral(
        jurisdiction="england-and-wales", site="bench", new_episode=True,
        child={"given_name": "Juno", "family_name": "Ashdown", "date_of_birth": "2025-06-01"},
        care_entry="2026-01-05", referral="2026-01-12", proceedings_issued="2026-01-08",
        caregivers=[{"relationship": "mother"}, {"relationship": "foster-carer"}],
        placement={"kind": "foster", "start": "2026-01-05"})


def _busiest_role(svc: Any) -> str:  # noqa: ANN401
    from collections import Counter

    return Counter(t.role for t in svc.queries.tasks()).most_common(1)[0][0]


def _count_runs(state_name: str | None = None) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    flt = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(
        any_=[state_name]))) if state_name else None
    with get_client(sync_client=True) as client:
        return client.count_flow_runs(flow_run_filter=flt)


def _queue(role: str) -> int:
    """A practitioner's queue as the UI's filtered run list asks for it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"role:{role}"]),
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Suspended"]))),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200))


# -- growing the stores ----------------------------------------------------------------------


def _clone_store(path: Path, copies: int) -> dict[str, tuple[str, str]]:
    """Clone every case `copies` times in every case-scoped table; returns each new run id
    -> (template run id, the clone's case ref)."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    scoped = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
              if t != "nim_case" and "case_id" in _columns(db, t)]
    cases = [dict(r) for r in db.execute("SELECT * FROM nim_case ORDER BY id")]
    keys = {r["case_ref"]: dict(r) for r in db.execute("SELECT * FROM case_key")}
    rows = {t: [dict(r) for r in db.execute(f"SELECT * FROM {t}")] for t in scoped}
    top = max(c["id"] for c in cases)
    runs: dict[str, tuple[str, str]] = {}
    new: dict[str, list[dict[str, Any]]] = {"nim_case": [], "case_key": []}
    for k in range(1, copies + 1):
        for case in cases:
            cid, old = case["id"] + k * top, case["ref"]
            ref = f"NIM-2030-{cid:06d}"
            stage_runs = {}
            for stage, run in json.loads(case["stage_runs"] or "{}").items():
                stage_runs[stage] = fresh = str(uuid.uuid4())
                runs[fresh] = (run, ref)
            new["nim_case"].append({**_swap(case, old, ref), "id": cid,
                                    "stage_runs": json.dumps(stage_runs)})
            new["case_key"].append({**keys[old], "id": None, "case_ref": ref})
            for table in scoped:
                for row in rows[table]:
                    if row["case_id"] != case["id"]:
                        continue
                    row = {**_swap(row, old, ref), "id": None, "case_id": cid}
                    if row.get("flow_run_id"):
                        fresh = str(uuid.uuid4())
                        runs[fresh] = (row["flow_run_id"], ref)
                        row["flow_run_id"] = fresh
                    new.setdefault(table, []).append(row)
    for table, items in new.items():
        cols = [c for c in items[0] if c != "id" or items[0]["id"] is not None]
        db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})", [[r[c] for c in cols] for r in items])
    db.commit()
    db.close()
    return runs


def _columns(db: Any, table: str) -> list[str]:  # noqa: ANN401
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _swap(row: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The row with the template's ref replaced, except inside sealed values (a sealed value
    names the case whose key opens it: the template's)."""
    return {c: v.replace(old, new) if isinstance(v, str) and old in v
            and not v.startswith("nim1:") else v for c, v in row.items()}


def _clone_prefect(sqlite_path: Path, pg: str | None, runs: dict[str, tuple[str, str]]) -> int:
    """Insert each clone's runs (Suspended) and its history (Completed) into Prefect's own
    database, copying the template runs' rows so every column is what Prefect wrote."""
    if pg:
        import psycopg

        conn: Any = psycopg.connect(pg)
        cur = conn.cursor()
        cur.execute("SELECT * FROM flow_run")
        names = [d.name for d in cur.description]
        templates = {str(r[names.index("id")]): dict(zip(names, r, strict=True))
                     for r in cur.fetchall()}
    else:
        conn = sqlite3.connect(sqlite_path)
        conn.row_factory = sqlite3.Row
        templates = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM flow_run")}
    now = datetime.now(UTC)
    flow_runs, states = [], []
    # the templates' own runs, never run (no worker here), become Suspended as waiting task
    # runs are: a Scheduled run past its start is rewritten Late by the server every few seconds
    suspend = {t: (t, _tag_value(tpl["tags"], "case:")) for t, tpl in templates.items()}
    ids = ", ".join(f"'{t}'" for t in templates)  # uuids Prefect wrote: safe to inline
    conn.execute(f"DELETE FROM flow_run WHERE id IN ({ids})")  # re-inserted, Suspended
    for fresh, (template_id, ref) in [*suspend.items(), *runs.items()]:
        tpl = templates[template_id]
        old = _tag_value(tpl["tags"], "case:")
        copies = [(fresh, "PAUSED", "Suspended")]
        if "kind:stage" in _tags(tpl["tags"]):  # one stage run per case: add its history
            copies += [(str(uuid.uuid4()), "COMPLETED", "Completed")
                       for _ in range(HISTORY_RUNS)]
        for run_id, state_type, state_name in copies:
            state_id = str(uuid.uuid4())
            row = _swap_json(tpl, old, ref)
            created = now - timedelta(days=2, microseconds=len(flow_runs))  # each its instant
            row.update(id=run_id, state_id=state_id, state_type=state_type,
                       state_name=state_name, run_count=1,
                       expected_start_time=_when(created, pg),
                       idempotency_key=None if state_type == "COMPLETED"
                       else row["idempotency_key"],
                       start_time=_when(now - timedelta(days=2), pg),
                       end_time=_when(now - timedelta(days=1), pg)
                       if state_type == "COMPLETED" else None,
                       state_timestamp=_when(now - timedelta(days=1), pg))
            flow_runs.append(row)
            details = {"pause_reschedule": True, "pause_key": "1"} \
                if state_type == "PAUSED" else {}
            states.append({"id": state_id, "type": state_type, "name": state_name,
                           "timestamp": row["state_timestamp"],
                           "created": row["state_timestamp"],
                           "updated": row["state_timestamp"], "message": None,
                           "state_details": json.dumps(details), "data": None,
                           "flow_run_id": run_id, "result_artifact_id": None})
    # each table points at the other: runs first without their state, then the states
    _insert(conn, pg, "flow_run", [{**r, "state_id": None} for r in flow_runs])
    _insert(conn, pg, "flow_run_state", states)
    conn.execute("UPDATE flow_run SET state_id = s.id FROM flow_run_state s "
                 "WHERE s.flow_run_id = flow_run.id AND flow_run.state_id IS NULL")
    conn.commit()
    if pg:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE flow_run")  # as autovacuum would after a bulk load
    conn.close()
    return len(flow_runs)


def _when(moment: datetime, pg: str | None) -> Any:  # noqa: ANN401
    return moment if pg else moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _tags(value: Any) -> list[str]:  # noqa: ANN401
    return json.loads(value) if isinstance(value, str) else list(value)


def _tag_value(value: Any, prefix: str) -> str:  # noqa: ANN401
    return next(t[len(prefix):] for t in _tags(value) if t.startswith(prefix))


def _swap_json(row: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    out = {}
    for col, value in row.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        out[col] = value.replace(old, new) if isinstance(value, str) and old in value \
            else value
    return out


def _insert(conn: Any, pg: str | None, table: str, rows: list[dict[str, Any]]) -> None:  # noqa: ANN401
    cols = list(rows[0])
    if pg:
        with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r[c] for c in cols])
    else:
        conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})", [[r[c] for c in cols] for r in rows])


def work(args: dict[str, Any]) -> dict[str, Any]:
    return driver(args)


# -- figures (in the bench process) -----------------------------------------------------------


def _results(ctx: Any, backend: str) -> dict[str, Any]:
    key = f"scale-{backend}"
    if key not in ctx.cache:
        tmp = ctx.tmp / key
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        copies = 4 if ctx.quick else 99  # 500 or 10,000 open cases
        ctx.cache[key] = run_worker("bench.sync_scale", {"tmp": str(tmp), "copies": copies,
                                                         "backend": backend}, timeout=3600)
    return ctx.cache[key]


def figure(ctx: Any) -> list[Row]:
    from bench.common import pg_available

    rows: list[Row] = []
    for backend in ("sqlite", "postgresql"):
        if backend == "postgresql" and pg_available():
            continue
        r = _results(ctx, backend)
        db = "SQLite" if backend == "sqlite" else "PostgreSQL"
        scale = (f"{r['cases']:,} open cases, {r['runs']:,} runs in Prefect ({db}), "
                 f"{r['suspended']:,} suspended")
        small = f"{TEMPLATE_CASES} open cases, {r['small_runs']} runs"
        write, before = statistics.median(r["write_sync_s"]), \
            statistics.median(r["write_sync_before_s"])
        rate = r["journal_applied"] / r["journal_s"]
        rows += [
            Row(figure=f"11. {db}: a quiet sweep's sync at {r['cases']:,} cases",
                value=r["drain_s"], unit="s", target="<= 5 s and <= 2x the same at 100 cases",
                met=r["drain_s"] <= 5 and r["drain_s"] <= 2 * max(r["small_drain_s"], 0.01),
                baseline=r["small_drain_s"], baseline_label=f"the same sync at {small}",
                ratio=r["drain_s"] / r["small_drain_s"], note=scale, details=r),
            Row(figure=f"12. {db}: reconcile audit at {r['cases']:,} cases", value=r["audit_s"],
                unit="s", target="<= 60 s", met=r["audit_s"] <= 60 and r["audit_repaired"] == 0,
                baseline=None, baseline_label="none (the old sweep: ~1.75 h at 10,000 cases, "
                "issue 16)", ratio=None,
                note=f"{scale}; {r['audit_cpu_s']:.1f} CPU-s in the auditing process; cases "
                     f"repaired: {r['audit_repaired']}"),
            Row(figure=f"13. {db}: draining 1,000 changes", value=rate, unit="changes/s",
                target=">= 20 changes/s", met=rate >= 20 and r["journal_failed"] == 0,
                baseline=None, baseline_label="none", ratio=None,
                note=f"{r['journal_applied']} changes in {r['journal_s']:.1f} s "
                     f"({r['journal_cpu_s']:.1f} CPU-s); {scale}"),
            Row(figure=f"14. {db}: one CLI write's sync", value=write, unit="s",
                target="<= 0.5 s", met=write <= 0.5, baseline=before,
                baseline_label="the same write, the case's runs read by tag (before)",
                ratio=write / before,
                note=f"median of {len(r['write_sync_s'])} writes (triage completed: its run "
                     f"resumed, the next tasks' runs started); {scale}"),
            Row(figure=f"15. {db}: a practitioner's queue (200 rows)", value=r["queue_s"],
                unit="s", target="report", met=None, baseline=r["small_queue_s"],
                baseline_label=f"the same query at {small}",
                ratio=r["queue_s"] / r["small_queue_s"],
                note=f"role:{r['queue_role']} + Suspended, soonest first; {scale}"),
            Row(figure=f"16. {db}: idle Prefect server", value=r["idle_cores"], unit="cores",
                target="<= 0.1 core", met=r["idle_cores"] <= 0.1,
                baseline=r["idle_cores_pause_expiry"],
                baseline_label="the same server with the pause-expiration service on",
                ratio=r["idle_cores"] / max(r["idle_cores_pause_expiry"], 1e-6),
                note=f"{IDLE_WINDOW_S} s window after {IDLE_SETTLE_S} s; {scale}"),
        ]
    return rows


if __name__ == "__main__":
    _worker_main(work)
