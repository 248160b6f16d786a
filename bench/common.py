"""Shared plumbing: result rows, worker subprocesses, CPU of process trees, PostgreSQL, machine."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from notifications.inbox import free_port  # noqa: F401 - the benches import it from here

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN_URL = os.environ.get("NIM_BENCH_POSTGRES_URL",
                              os.environ.get("NIM_TEST_POSTGRES_URL",
                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The one fictional referral the CLI-write and workbench figures open their cases from
REFERRAL = {
    "jurisdiction": "england-and-wales", "site": "bench", "new_episode": True,
    "child": {"given_name": "Juno", "family_name": "Ashdown", "date_of_birth": "2025-06-01"},
    "care_entry": "2026-01-05", "referral": "2026-01-12", "proceedings_issued": "2026-01-08",
    "caregivers": [{"relationship": "mother"}, {"relationship": "foster-carer"}],
    "placement": {"kind": "foster", "start": "2026-01-05"}}


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    value: float | None
    unit: str
    target: str
    met: bool | None
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    note: str = ""  # the key numbers behind the value, shown in the table
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no case store, clock or Prefect settings leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NIM_", "PREFECT_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_worker(module: str, args: dict[str, Any], env: dict[str, str] | None = None,
               timeout: float = 900) -> dict[str, Any]:
    """`python -m module ARGS_JSON` in a fresh process; its last stdout line is its JSON result."""
    proc = subprocess.run([PY, "-m", module, json.dumps(args, default=str)], cwd=ROOT,
                          env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry point of a worker: JSON args in argv[1], JSON result (plus peak RSS) on stdout."""
    result = fn(json.loads(sys.argv[1]))
    result["max_rss_mb"] = peak_rss_mb()
    print(json.dumps(result, default=str), flush=True)


def peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM: unlike ru_maxrss it does not carry over the
    parent's RSS from before exec)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmHWM")) / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU-s of the process and its reaped children) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLK_TCK


def tree_cpu(*roots: int) -> float:
    """CPU-s used so far by the process trees under `roots`: each live process plus the children
    it has already reaped (which /proc counts in cutime/cstime)."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """`fn()`'s result, wall seconds and this process's CPU seconds."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, cpu_seconds() - c0


DEPLOY = (  # the deployments the sync creates runs of (no runner: nothing executes)
    "from flows.pathway_flows import ALL_FLOWS\n"
    "for name in ('stage', 'human-task'):\n"
    "    ALL_FLOWS[name].to_deployment(name=name).apply()\n"
)


class PrefectServer:
    """`prefect server start` on a free port in a temporary PREFECT_HOME, with the stack's
    settings for this workload; restartable on the same database."""

    def __init__(self, tmp: Path, db_url: str | None = None) -> None:
        from nim_pathway.settings import Settings

        self.tmp, self.port = tmp, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = clean_env(PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=self.api,
                             PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                             PREFECT_SERVER_DATABASE_TIMEOUT="60",
                             PREFECT_LOGGING_LEVEL="WARNING", **Settings.from_env().prefect_server_env,
                             NIM_DATA_DIR=str(tmp / "data"))
        if db_url:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db_url
        self.proc: subprocess.Popen | None = None

    def start(self, **overrides: str) -> None:
        from nim_pathway.stack import wait_healthy

        with open(self.tmp / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(PY).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.port)], env={**self.env, **overrides}, stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        wait_healthy(self.api, 300)

    def stop(self) -> None:
        from nim_pathway.stack import stop_group

        if self.proc:
            stop_group(self.proc)
            self.proc = None


@contextmanager
def deployed_server(tmp: Path, db_url: str | None = None) -> Iterator[PrefectServer]:
    """A started PrefectServer with the pathway's deployments, its settings exported to this
    (driver) process; stopped on the way out."""
    server = PrefectServer(tmp, db_url)
    os.environ.update({k: v for k, v in server.env.items()
                       if k.startswith(("PREFECT_", "NIM_"))})
    server.start()
    try:
        subprocess.run([PY, "-c", DEPLOY], env=server.env, cwd=ROOT, check=True,
                       capture_output=True)
        yield server
    finally:
        server.stop()


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, list[float]]:
    """Median wall-clock seconds of running `cmd` `runs` times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# -- PostgreSQL -------------------------------------------------------------------------------


def _pg_admin():  # noqa: ANN202 - SQLAlchemy engine, imported lazily
    from sqlalchemy import create_engine

    return create_engine("postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1],
                         isolation_level="AUTOCOMMIT")


def pg_available() -> str | None:
    """None if the PostgreSQL server answers, else why not."""
    from sqlalchemy import text

    try:
        with _pg_admin().connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "skip"
        return f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    return None


def pg_version() -> str:
    from sqlalchemy import text

    try:
        with _pg_admin().connect() as conn:
            return str(conn.execute(text("show server_version")).scalar())
    except Exception:  # noqa: BLE001
        return "unavailable"


@contextmanager
def throwaway_pg(prefix: str = "nim_bench") -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import sqlite3

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "postgresql": pg_version(), "os": platform.platform(), "load_average": load(),
            "code": code_version()}


def code_version() -> str:
    """The commit measured, and the application files changed since (bench/ aside)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.rstrip("\n")

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if not line[3:].startswith("bench/")]
    return git("rev-parse", "--short", "HEAD") + (
        f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def load() -> str:
    """1-, 5- and 15-minute load averages: other work on the machine skews the figures."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
