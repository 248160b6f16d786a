"""Figures 5 and 6: what a human task and a timer cost on a real local Prefect server.

A driver process starts `prefect server start` on a free port with a temporary PREFECT_HOME
and a `serve` process for the pathway's deployments plus a no-op flow (as tests/prefect_stack.py
does), then measures. CPU-s is read from /proc for the server and serve process trees (each
flow run is a subprocess of `serve`, counted once reaped) plus the driver's own client calls.

5. One human task (`human-task` deployment, triage of a fresh case): start (created → Running),
   suspend (Running → Suspended), resume (Resume form input → Completed). So that the flow's
   closing sync starts no runs for the next tasks (which would run inside the measurement),
   their runs exist beforehand as runs scheduled for tomorrow. Baseline: a bare flow run.
6. 1,000 timers: 1,000 case-store timers written and fired by one sweep, against one Prefect
   scheduled run per timer; a sample of scheduled no-op runs is executed and extrapolated.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, Row, clean_env, cpu_seconds, free_port, run_worker, tree_cpu
from bench.common import worker_main as _worker_main

NOOP = "bench-noop/noop"
TRIAGE = {"completed_by": "mgr.okafor", "accepted": True}
DONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Stack:
    """A Prefect server and a `serve` process in a temporary PREFECT_HOME."""

    def __init__(self, tmp: Path, store_url: str, clock_file: Path) -> None:
        self.tmp = tmp
        self.api = f"http://127.0.0.1:{free_port()}/api"
        self.env = clean_env(
            PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=self.api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
            PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_SERVER_DATABASE_TIMEOUT="60",
            PREFECT_LOGGING_LEVEL="WARNING", NIM_DATABASE_URL=store_url,
            NIM_DATA_DIR=str(tmp / "data"), NIM_CLOCK_FILE=str(clock_file))
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        import httpx

        from bench.noop_flow import SERVE

        port = self.api.rsplit(":", 1)[1].split("/")[0]
        self.server = self._spawn("server", [str(Path(PY).parent / "prefect"), "server",
                                             "start", "--host", "127.0.0.1", "--port", port])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"Prefect server did not start; see {self.tmp}/server.log")
        self.serve = self._spawn("serve", [PY, "-c", SERVE])

    def cpu(self) -> float:
        return tree_cpu(self.server.pid, self.serve.pid)

    def stop(self) -> None:
        from nim_pathway.stack import stop_group

        for proc in reversed(self.procs):  # serve before server: the other order hangs
            stop_group(proc)


# -- the driver (a worker process with PREFECT_API_URL set) ---------------------------------


class Meter:
    """Wall-clock and CPU-s (server + serve trees, driver) at marks."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def mark(self) -> tuple[float, float, float]:
        return time.perf_counter(), self.stack.cpu(), cpu_seconds()

    @staticmethod
    def delta(a: tuple[float, float, float], b: tuple[float, float, float]) -> dict[str, float]:
        return {"wall_s": b[0] - a[0], "stack_cpu_s": b[1] - a[1], "driver_cpu_s": b[2] - a[2],
                "cpu_s": (b[1] - a[1]) + (b[2] - a[2])}


def _wait(client: Any, run_id: Any, states: set[str], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        name = run.state.type.value if run.state else ""
        if name in states:
            return run
        if name in DONE:
            raise RuntimeError(f"run {run.name} ended {run.state.name}: {run.state.message}")
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {run_id} to be {states}")


def _open_cases(url: str, clock: Any, n: int, complete_triage: bool) -> list[dict[str, Any]]:
    """n fresh cases (fictional referral); with complete_triage, the open work after triage."""
    from models.refs import TaskRef
    from models.schemas import Referral
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from store.db import migrate

    migrate(url)
    store = build_service(url, clock, migrate=False)
    seed_team(store)
    out = []
    for i in range(n):
        ref = store.cases.open_case(Referral(
            jurisdiction="england-and-wales", site="bench", new_episode=True,
            child={"given_name": "Juno", "family_name": "Ashdown",
                   "date_of_birth": f"2025-0{i % 9 + 1}-01"},
            care_entry="2026-01-05", referral="2026-01-12", proceedings_issued="2026-01-08",
            caregivers=[{"relationship": "mother"}, {"relationship": "foster-carer"}],
            placement={"kind": "foster", "start": "2026-01-05"}), "coord.ali").ref
        if complete_triage:
            store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
        out.append({"ref": ref, "stage": store.queries.show(ref).stage,
                    "tasks": store.queries.tasks(case=ref), "spec": store.queries.pathway(ref)})
    return out


def _placeholders(store: Any, cases: list[dict[str, Any]], tomorrow: datetime) -> None:  # noqa: ANN401
    """Runs scheduled for tomorrow for each stage the triage sync would start, recorded in the
    store (so its closing sync starts no stage process inside the measurement); the runs of
    the next tasks it creates as it always does: waiting, no process."""
    from prefect.deployments import run_deployment

    from orchestration.naming import case_tags, run_name
    from orchestration.prefect_api import STAGE_DEPLOYMENT

    for case in cases:
        ref = case["ref"]
        stages = {}
        for stage in case["stages"]:
            stages[f"stage:{stage}"] = str(run_deployment(
                STAGE_DEPLOYMENT, parameters={"ref": ref, "stage": stage}, timeout=0,
                as_subflow=False, scheduled_time=tomorrow, flow_run_name=run_name(ref, stage),
                tags=case_tags(ref, stage, "england-and-wales") + ["kind:stage"]).id)
        store.timers.record_flow_runs(ref, stages)  # the closing sync reads runs by id


def _human_task(client: Any, meter: Meter, case: dict[str, Any],
                waiting: bool) -> dict[str, Any]:
    """One triage from its run's creation to Completed. `waiting`: as the sync creates task
    runs now, already Suspended with the form (no process until answered); otherwise as
    before, a run that starts a process only to suspend."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    from orchestration.naming import case_tags, run_name
    from orchestration.prefect_api import TASK_DEPLOYMENT
    from orchestration.sync import start_task_run

    ref = case["ref"]
    triage = next(t for t in case["tasks"] if t.key == "triage")
    run = {"parameters": {"ref": ref, "task_key": "triage"},
           "tags": case_tags(ref, "referral", "england-and-wales", "nim-service-manager")
           + ["task:triage", "kind:task"]}
    m0 = meter.mark()
    if waiting:
        created = start_task_run(client, ref, triage, case["spec"], **run,
                                 name=run_name(ref, "referral", "triage", triage.due),
                                 idempotency_key=f"{ref}/triage#1")
        m1 = meter.mark()
    else:
        created = run_deployment(TASK_DEPLOYMENT, timeout=0, as_subflow=False,
                                 idempotency_key=f"{ref}/triage#1",
                                 flow_run_name=run_name(ref, "referral", "triage"), **run)
        _wait(client, created.id, {"RUNNING"})
        m1 = meter.mark()
    _wait(client, created.id, {"PAUSED"})
    code = _next_code(TRIAGE["completed_by"])  # as the manager's phone would show it
    m2 = meter.mark()
    resume_flow_run(created.id, run_input={**TRIAGE, "code": code})
    _wait(client, created.id, {"COMPLETED"})
    m3 = meter.mark()
    return {"start": meter.delta(m0, m1), "suspend": meter.delta(m1, m2),
            "resume": meter.delta(m2, m3), "total": meter.delta(m0, m3)}


def _next_code(handle: str) -> str:
    """The handle's one-time code 30 s on (a code works once) on the bench's shared clock."""
    from models.clock import FileClock
    from nim_pathway.app import build_service
    from nim_pathway.demo import current_code

    clock = FileClock(os.environ["NIM_CLOCK_FILE"])
    clock.set(clock.now() + timedelta(seconds=30))
    return current_code(build_service(os.environ["NIM_DATABASE_URL"], clock, migrate=False),
                        handle)


def _noop(client: Any, meter: Meter) -> dict[str, Any]:
    from prefect.deployments import run_deployment

    m0 = meter.mark()
    run = run_deployment(NOOP, timeout=0, as_subflow=False)
    _wait(client, run.id, {"COMPLETED"})
    return {"total": meter.delta(m0, meter.mark())}


def _scheduled_sample(client: Any, meter: Meter, n: int) -> dict[str, Any]:
    """n scheduled no-op runs created and executed by `serve`, measured whole."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    m0 = meter.mark()
    when = datetime.now(UTC) + timedelta(seconds=2)
    ids = [run_deployment(NOOP, timeout=0, as_subflow=False, scheduled_time=when).id
           for _ in range(n)]
    created = meter.mark()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        states = [r.state.type.value for r in runs]
        if sum(s in DONE for s in states) == n:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"scheduled runs did not finish: {states}")
    failed = sum(s != "COMPLETED" for s in states)
    return {"runs": n, "failed": failed, "create": meter.delta(m0, created),
            "total": meter.delta(m0, meter.mark())}


def driver(args: dict[str, Any]) -> dict[str, Any]:
    """In the driver process: start the stack, measure what `args["parts"]` asks for, stop."""
    tmp = Path(args["tmp"])
    store_url, clock_file = f"sqlite:///{tmp}/store.db", tmp / "clock"
    stack = Stack(tmp, store_url, clock_file)
    os.environ.update({k: v for k, v in stack.env.items() if k.startswith(("PREFECT_", "NIM_"))})
    from models.clock import FileClock

    clock = FileClock(str(clock_file))
    clock.set(datetime(2026, 1, 12, 10, tzinfo=UTC))
    reps = args["reps"]
    cases = _open_cases(store_url, clock, 2 * reps, False)  # now, then before
    after = _open_cases(f"sqlite:///{tmp}/twin.db", clock, 2 * reps, True)  # triage leads to
    for case, twin in zip(cases, after, strict=True):
        case["tasks"] = case["tasks"] + [t for t in twin["tasks"]
                                         if t.key not in {c.key for c in case["tasks"]}]
        case["stages"] = sorted({case["stage"], twin["stage"]})
    from prefect.client.orchestration import get_client

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    stack.start()
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while not {"human-task", "noop"} <= {d.name for d in client.read_deployments()}:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"deployments not served; see {tmp}/serve.log")
                time.sleep(0.5)
            meter = Meter(stack)
            _noop(client, meter)  # warm-up: the first run pays the server's lazy start-up
            out["startup_s"] = time.perf_counter() - t0
            if "human-task" in args["parts"]:
                from nim_pathway.app import build_service

                _placeholders(build_service(store_url, clock, migrate=False), cases,
                              datetime.now(UTC) + timedelta(days=1))
                out["noop"] = [_noop(client, meter) for _ in range(reps)]
                out["human_task"] = [_human_task(client, meter, c, True)
                                     for c in cases[:reps]]
                out["human_task_before"] = [_human_task(client, meter, c, False)
                                            for c in cases[reps:]]
                refs = {f"case:{c['ref']}" for c in cases}
                runs = [r for r in client.read_flow_runs(limit=200) if refs & set(r.tags)]
                expected = sum(len(c["tasks"]) + len(c["stages"]) for c in cases)
                out["unexpected_runs"] = len(runs) - expected
            if "timers" in args["parts"]:
                out["scheduled"] = _scheduled_sample(client, meter, args["sample"])
    finally:
        stack.stop()
    return out


def casestore_timers(args: dict[str, Any]) -> dict[str, Any]:
    """In a worker process: write 1,000 timers through the ORM and fire them in one sweep."""
    from models.clock import VirtualClock
    from nim_pathway.app import build_service
    from store.db import session_scope
    from store.tables import Timer

    at = datetime.fromisoformat(args["at"])
    rows = json.loads(Path(args["timers"]).read_text())
    store = build_service(args["url"], VirtualClock(at), migrate=False)
    c0, t0 = cpu_seconds(), time.perf_counter()
    with session_scope(args["url"]) as session:
        for key, case_id, task_key, kind, role, _due, detail, _, _ in rows:
            session.add(Timer(key=key, case_id=case_id, task_key=task_key, kind=kind, role=role,
                              due_at=at, detail=json.loads(detail)))
    c1 = cpu_seconds()
    fired = len(store.timers.fire_due_timers(at=at))
    return {"timers": len(rows), "fired": fired, "write_cpu_s": c1 - c0,
            "sweep_cpu_s": cpu_seconds() - c1, "cpu_s": cpu_seconds() - c0,
            "wall_s": time.perf_counter() - t0}


def work(args: dict[str, Any]) -> dict[str, Any]:
    return driver(args) if args["role"] == "driver" else casestore_timers(args)


# -- figures (in the bench process) -----------------------------------------------------------


def _driver_results(ctx: Any) -> dict[str, Any]:
    if "prefect" not in ctx.cache:
        parts = [p for p in ("human-task", "timers") if p in ctx.selected]
        tmp = ctx.tmp / "prefect-stack"
        tmp.mkdir(exist_ok=True)
        ctx.cache["prefect"] = run_worker("bench.prefect_runs", {
            "role": "driver", "tmp": str(tmp), "parts": parts, "reps": ctx.sizes["reps"],
            "sample": ctx.sizes["prefect_sample"]}, timeout=1200)
    return ctx.cache["prefect"]


def _median(items: list[dict[str, Any]], phase: str, what: str) -> float:
    return statistics.median(i[phase][what] for i in items)


def figure_human_task(ctx: Any) -> list[Row]:
    r = _driver_results(ctx)
    noop = r["noop"]

    def phases(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
        return {p: {"wall_s": _median(items, p, "wall_s"), "cpu_s": _median(items, p, "cpu_s")}
                for p in ("start", "suspend", "resume", "total")}

    now, before = phases(r["human_task"]), phases(r["human_task_before"])
    cpu, base_cpu = now["total"]["cpu_s"], _median(noop, "total", "cpu_s")
    was = before["total"]["cpu_s"]
    return [Row(
        figure="5. human task on Prefect: created waiting + resume", value=cpu, unit="CPU-s",
        target="<= half of the run that starts only to suspend", met=cpu <= was / 2,
        baseline=base_cpu, baseline_label="bare no-op flow run", ratio=cpu / base_cpu,
        note=f"before (a process to start and suspend, one to resume): {was:.2f} CPU-s, "
             f"{before['total']['wall_s']:.2f} s; now: created Suspended with its form "
             f"{now['start']['wall_s']:.2f} s / {now['start']['cpu_s']:.2f} CPU-s, resume "
             f"{now['resume']['wall_s']:.2f} s / {now['resume']['cpu_s']:.2f} CPU-s "
             f"(baseline {_median(noop, 'total', 'wall_s'):.2f} s wall)",
        details={"phases_median": now, "before_phases_median": before,
                 "wall_s": now["total"]["wall_s"],
                 "baseline_wall_s": _median(noop, "total", "wall_s"),
                 "repetitions": len(r["human_task"]),
                 "unexpected_runs": r["unexpected_runs"],
                 "stack_startup_s": r["startup_s"],
                 "note": "CPU-s = server + serve process trees + driver client; runner poll 1 s"})]


def figure_timers(ctx: Any) -> list[Row]:
    from bench.cohort import Cohort, Rows, populate
    from bench.sweep import WINDOW_END

    templates = ctx.templates()
    url = f"sqlite:///{ctx.tmp / 'timers-1000.db'}"
    cohort = Cohort(60, WINDOW_END, all_due=True, max_timers=1000)
    populate(url, templates, replace(cohort, max_timers=0))
    timers = ctx.tmp / "timers-1000.json"
    timers.write_text(json.dumps(list(Rows(templates, cohort).timers()), default=str))
    store = run_worker("bench.prefect_runs", {"role": "casestore", "url": url,
                                              "timers": str(timers),
                                              "at": WINDOW_END.isoformat()})
    sample = _driver_results(ctx)["scheduled"]
    per_run = sample["total"]["cpu_s"] / sample["runs"]
    prefect_cpu = per_run * 1000
    ratio = prefect_cpu / store["cpu_s"]
    return [Row(
        figure="6. 1,000 timers: case store (write + sweep)", value=store["cpu_s"],
        unit="CPU-s", target="≥100× cheaper than Prefect", met=ratio >= 100,
        baseline=prefect_cpu,
        baseline_label=f"1,000 Prefect scheduled runs (extrapolated ×{1000 // sample['runs']} "
                       f"from {sample['runs']} executed)",
        ratio=ratio,
        note=f"case store {store['fired']:,} timers in {store['wall_s']:.2f} s wall; Prefect "
             f"{per_run:.2f} CPU-s per run ({sample['runs']} runs executed, "
             f"{sample['failed']} failed)",
        details={"timers_fired": store["fired"], "write_cpu_s": store["write_cpu_s"],
                 "sweep_cpu_s": store["sweep_cpu_s"], "casestore_wall_s": store["wall_s"],
                 "prefect_sample_runs": sample["runs"], "prefect_sample_failed": sample["failed"],
                 "prefect_sample_cpu_s": sample["total"]["cpu_s"],
                 "prefect_sample_wall_s": sample["total"]["wall_s"],
                 "prefect_cpu_s_per_run": per_run,
                 "prefect_create_cpu_s_per_run": sample["create"]["cpu_s"] / sample["runs"],
                 "prefect_wall_s_1000_extrapolated": sample["total"]["wall_s"] / sample["runs"]
                 * 1000,
                 "note": "ratio = Prefect CPU-s / case-store CPU-s (extrapolated linearly)"})]


if __name__ == "__main__":
    _worker_main(work)
