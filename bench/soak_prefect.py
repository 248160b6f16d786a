"""Prefect under the chaos soak (`python -m bench.soak --prefect`): a Prefect server, a
worker (a `serve` process running the project's deployments) and the sync service
(`nim-pathway drain --follow`) follow the chaos run's case store, and the fault injector
kills each of them with SIGKILL and starts it again. At the end the sync service drains the
orchestration journal and `reconcile` must find no case to repair."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, PrefectServer

CLI = str(Path(PY).parent / "nim-pathway")
SERVE = (  # the worker: every deployment of the project, served (as tests/prefect_stack.py)
    "from prefect import serve\n"
    "from flows.pathway_flows import ALL_FLOWS\n"
    "serve(*[f.to_deployment(name=n) for n, f in ALL_FLOWS.items()])\n"
)


class PrefectChaos:
    """The Prefect side of the stack for one chaos run; `env` is the run's (case store,
    clock file, data folder)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.server = PrefectServer(folder)
        self.server.start()
        self.env = {**env, **{k: v for k, v in self.server.env.items()
                              if k.startswith("PREFECT_") or k == "DO_NOT_TRACK"},
                    "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.start("worker")
        self.wait_for_deployments()
        self.start("sync")

    @property
    def api(self) -> str:
        return self.server.api

    def start(self, name: str) -> None:
        args = {"worker": [PY, "-c", SERVE], "sync": [CLI, "drain", "--follow"]}[name]
        with open(self.folder / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=ROOT,
                                                start_new_session=True)

    def wait_for_deployments(self, timeout: float = 180) -> None:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        deadline = time.monotonic() + timeout
        with temporary_settings(updates={PREFECT_API_URL: self.api}), \
                get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                if {"human-task", "stage"} <= {d.name for d in client.read_deployments()}:
                    return
                time.sleep(0.5)
        raise RuntimeError(f"deployments not served; see {self.folder / 'worker.log'}")

    def kill(self, name: str) -> None:
        proc = self.server.proc if name == "server" else self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def fault(self, rng: random.Random) -> tuple[str, str]:
        """Kill the server, the worker or the sync service (each in turn, from a seeded
        start) with SIGKILL and start it again; returns the fault's kind and what was done."""
        names = ("prefect-server", "prefect-worker", "sync-service")
        self.turn = getattr(self, "turn", rng.randrange(3)) + 1
        name = names[self.turn % 3]
        proc = {"prefect-server": "server", "prefect-worker": "worker", "sync-service": "sync"}
        self.kill(proc[name])
        if name == "prefect-server":
            self.server.start()  # the same database: its runs survive
        else:
            self.start(proc[name])
        return f"{name}-killed", f"{name} kill -9, started again"

    def keep_alive(self) -> list[str]:
        """Start again whatever died by itself (a sync service that found the old one's lock
        not yet released exits; its next start takes the lock)."""
        restarted = []
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.start(name)
                restarted.append(f"{name} (exit {proc.returncode})")
        return restarted

    def finish(self, svc_factory: Any, timeout: float = 900) -> list[str]:  # noqa: ANN401
        """Wait for the sync service to apply the whole journal, then reconcile; returns what
        reconcile had to repair (nothing, if the sync service lost nothing)."""
        from datetime import timedelta

        from orchestration.reconcile import reconcile

        os.environ["PREFECT_API_URL"] = self.api
        svc = svc_factory()
        deadline, stalled = time.monotonic() + timeout, time.monotonic()
        while svc.queries.changes_pending():
            if self.keep_alive():
                stalled = time.monotonic()
            if time.monotonic() - stalled > 10:  # a killed drainer's lease ends (virtual time)
                svc.clock.set(svc.clock.now() + timedelta(minutes=6))
                stalled = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sync service left changes pending after {timeout} s")
            time.sleep(0.5)
        repaired = [r for r in reconcile(svc) if r.started or r.resumed or r.cancelled]
        return [f"{r.summary()} ({self.runs_of(svc, r.ref)})" for r in repaired]

    def runs_of(self, svc: Any, ref: str) -> str:  # noqa: ANN401 - a Service
        """A case's runs as Prefect has them (label, state), to show what reconcile found."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

        from orchestration.prefect_api import prefect_client

        with prefect_client(svc.settings) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"case:{ref}"])))
        return "; ".join(sorted(
            f"{next((t for t in r.tags if t.startswith(('task:', 'stage:'))), '?')} "
            f"{r.state.name if r.state else '-'} {r.state.message or '' if r.state else ''}"[:160]
            for r in runs))

    def stop(self) -> None:
        for name in ("worker", "sync"):  # the worker before the server: the other order hangs
            self.kill(name)
        self.server.stop()
