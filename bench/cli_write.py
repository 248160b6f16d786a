"""Figures 17 and 18: a CLI write with Prefect up, and what the sync service costs at rest.

A driver process starts `prefect server start` (no runner) with the pathway's deployments and
opens cases in a SQLite case store through the domain commands, synced through Prefect's API.
Then `nim-pathway task complete` runs as a person runs it (logged in, a fresh process), in
turn: with orchestration off (the baseline: the same write, nothing to sync), with Prefect up
and no sync service (the command imports Prefect and syncs the case itself), and with the sync
service running (`nim-pathway drain --follow`: the command waits for it to apply the change).
The service's idle CPU is read from /proc over a window with nothing to apply. With the
service up, `case open` (a referral file) and `case show` are timed the same way. The targets
are read with the preloaded CLI up (nim_pathway/preload.py, part of `nim-pathway up`), each
against the same command in its own process (NIM_PRELOAD=off) in the same run.

The project's modules are byte-compiled first, as an installed deployment has them (`make`'s
install step and the Dockerfile run `compileall`): the machine sets PYTHONDONTWRITEBYTECODE, so
otherwise every process would compile ~70 of its own modules from source (~0.13 s).

The write's own sync at 100,000 runs is figure 14 (bench/sync_scale.py): the command and the
service read a case's runs by id, so the number of runs in Prefect does not enter here.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PY, REFERRAL, ROOT, Row, clean_env, deployed_server, run_worker, tree_cpu
from bench.common import worker_main as _worker_main
from nim_pathway.settings import Settings

IDLE_WINDOW_S = 10
NIM = str(Path(PY).parent / "nim-pathway")
PACKAGES = ("nim_pathway", "models", "store", "orchestration", "notifications", "reports",
            "flows", "tasks")


def compile_project() -> None:
    """Byte-compile the project as an install does (see the module's docstring)."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def driver(args: dict[str, Any]) -> dict[str, Any]:
    from models.clock import VirtualClock
    from models.schemas import Referral
    from nim_pathway.app import build_service
    from nim_pathway.demo import current_code, seed_team
    from orchestration.drain import drain_journal
    from store.db import migrate
    from store.files import write_private
    from store.journal import service_running

    tmp, writes = Path(args["tmp"]), args["writes"]
    tmp.mkdir(parents=True, exist_ok=True)
    with deployed_server(tmp) as server:
        url = f"sqlite:///{tmp}/store.db"
        migrate(url)
        svc = build_service(url, VirtualClock(datetime(2026, 1, 12, 10, tzinfo=UTC)),
                            migrate=False)
        seed_team(svc)
        referral = Referral.model_validate(REFERRAL)
        referral_file = tmp / "referral.json"
        write_private(referral_file, json.dumps(REFERRAL).encode())
        opened = [svc.cases.open_case(referral, "coord.ali").ref for _ in range(5 * writes)]
        refs, shown = iter(opened), opened[0]
        drain_journal(svc)
        session = tmp / "session"
        write_private(session, svc.identity.login(
            "mgr.okafor", current_code(svc, "mgr.okafor"), 3600).token.encode())
        env = clean_env(**{k: v for k, v in os.environ.items() if k.startswith("NIM_")},
                        NIM_DATABASE_URL=url, NIM_SESSION_FILE=str(session),
                        NIM_CLOCK=svc.clock.now().isoformat(timespec="minutes"))
        online = {**env, "PREFECT_API_URL": server.api}

        def timed_cli(run_env: dict[str, str], *args: str, expect: str) -> float:
            t0 = time.perf_counter()
            done = subprocess.run([NIM, *args], env=run_env, cwd=ROOT, capture_output=True,
                                  text=True, check=True)
            wall = time.perf_counter() - t0
            assert expect in done.stdout, done.stdout
            return wall

        def write(run_env: dict[str, str]) -> float:
            return timed_cli(run_env, "task", "complete", f"{next(refs)}/triage", "--as",
                             "mgr.okafor", "--field", "accepted=true", expect="orchestration")

        compile_project()
        times: dict[str, list[float]] = {k: [] for k in (
            "offline_s", "inline_s", "served_s", "open_s", "show_s", "pre_offline_s",
            "pre_served_s", "pre_open_s", "pre_show_s")}
        for _ in range(writes):  # interleaved, so a slower minute of the machine hits both
            times["offline_s"].append(write(env))
            times["inline_s"].append(write(online))
        log = open(tmp / "sync-service.log", "ab")  # noqa: SIM115 - the child keeps it open
        service = subprocess.Popen([NIM, "drain", "--follow"], env=online, cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        preloader = subprocess.Popen([PY, "-m", "nim_pathway.preload"], env=online, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        socket_path = Settings.from_env(online).preload_socket
        try:
            deadline = time.monotonic() + 60
            while not (service_running(url) and not svc.queries.changes_pending()
                       and socket_path.exists()):
                if time.monotonic() > deadline or service.poll() is not None \
                        or preloader.poll() is not None:
                    raise RuntimeError(f"the sync service or the preloader did not start; see "
                                       f"{log.name}")
                time.sleep(0.2)
            c0 = tree_cpu(service.pid)  # at rest: it polls the journal, nothing to apply
            time.sleep(IDLE_WINDOW_S)
            out: dict[str, Any] = {"service_idle_cores": (tree_cpu(service.pid) - c0)
                                   / IDLE_WINDOW_S}
            # each command in its own process (NIM_PRELOAD=off), then the same handed to the
            # preloaded CLI, interleaved
            alone, alone_online = {**env, "NIM_PRELOAD": "off"}, {**online, "NIM_PRELOAD": "off"}
            for _ in range(writes):
                for prefix, run_off, run_on in (("", alone, alone_online), ("pre_", env, online)):
                    if prefix:
                        times["pre_offline_s"].append(write(run_off))
                    times[f"{prefix}served_s"].append(write(run_on))
                    times[f"{prefix}open_s"].append(timed_cli(
                        run_on, "case", "open", "--file", str(referral_file), "--as",
                        "mgr.okafor", expect="NIM-"))
                    times[f"{prefix}show_s"].append(timed_cli(run_on, "case", "show", shown,
                                                              expect=shown))
        finally:
            for proc in (preloader, service):
                proc.terminate()
                proc.wait(30)
        out.update(times, cases=5 * writes)
        return out


def figure(ctx: Any) -> list[Row]:  # noqa: ANN401
    writes = 3 if ctx.quick else 8
    tmp = ctx.tmp / "cli-write"
    r = run_worker("bench.cli_write", {"tmp": str(tmp), "writes": writes},
                   env=clean_env(NIM_DATA_DIR=str(tmp / "data")))  # never the project's .nim
    m = {k: statistics.median(v) for k, v in r.items() if k.endswith("_s")}
    how = (f"median of {writes} fresh `nim-pathway` processes each way, logged in, "
           f"interleaved; {r['cases']} cases, Prefect on SQLite")
    pre = "handed to the preloaded CLI (nim_pathway/preload.py, started by `nim-pathway up`)"

    def row(figure: str, key: str, target: float, note: str) -> Row:
        value, alone = m[f"pre_{key}"], m[key]
        return Row(figure=figure, value=value, unit="s", target=f"<= {target} s",
                   met=value <= target, baseline=alone,
                   baseline_label="the same command in its own process (NIM_PRELOAD=off)",
                   ratio=value / alone, note=f"{how}; {pre}; {note}")

    return [
        row("17. a CLI write, orchestration off (`task complete`)", "offline_s", 0.5,
            "nothing to sync"),
        row("17a. a CLI write with Prefect up (`task complete`, sync service running)",
            "served_s", 1.0, "the service applies the change after the commit, the command "
                             "waits for its outcome without importing Prefect"),
        row("17c. `case open` (a referral file) with Prefect and the sync service up", "open_s",
            1.5, "the service starts the case's runs after the commit"),
        row("17d. `case show` with Prefect and the sync service up", "show_s", 0.5,
            "a read: nothing to sync"),
        Row(figure="17b. the same write with no sync service (the command syncs itself)",
            value=m["inline_s"], unit="s", target="report", met=None, baseline=m["offline_s"],
            baseline_label="the same command with orchestration off, in its own process",
            ratio=m["inline_s"] / m["offline_s"],
            note=f"{how}; imports Prefect (~1.5 s) and syncs after the commit", details=r),
        Row(figure="18. the sync service at rest", value=r["service_idle_cores"], unit="cores",
            target="<= 0.02 core", met=r["service_idle_cores"] <= 0.02, baseline=None,
            baseline_label="none", ratio=None,
            note=f"{IDLE_WINDOW_S} s window, polling the journal every 0.2 s with a read"),
    ]


if __name__ == "__main__":
    _worker_main(driver)
