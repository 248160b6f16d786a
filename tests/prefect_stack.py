"""A real Prefect server and served deployments for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from nim_pathway.settings import Settings
from nim_pathway.stack import stop_group, wait_healthy
from notifications.inbox import free_port  # noqa: F401 - the tests import it from here

PREFECT = str(Path(sys.executable).parent / "prefect")
SERVE = (
    "from prefect import serve\n"
    "from flows.pathway_flows import ALL_FLOWS\n"
    "serve(*[f.to_deployment(name=n) for n, f in ALL_FLOWS.items()])\n"
)
ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate, what: str, timeout: float = 240):  # noqa: ANN001, ANN201
    """Poll until `predicate()` is truthy and return it; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    """Server + `serve` process sharing one environment (case store, clock file, Prefect)."""

    def __init__(self, tmp: Path, case_store_url: str, prefect_db_url: str | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.clock_file = tmp / "clock"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
            **Settings.from_env().prefect_server_env,  # as the stack: no pause expiry, bounded history
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "NIM_DATABASE_URL": case_store_url,
            "NIM_DATA_DIR": str(tmp / "data"),
            "NIM_CLOCK_FILE": str(self.clock_file),
        }
        if prefect_db_url:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db_url
        self.server: subprocess.Popen | None = None
        self.served: subprocess.Popen | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)

    def start_server(self) -> None:
        self.server = self._spawn("server", [PREFECT, "server", "start", "--host", "127.0.0.1",
                                             "--port", str(self.port)])
        wait_healthy(self.api, 180)

    def start_serving(self) -> None:
        self.served = self._spawn("serve", [sys.executable, "-c", SERVE])
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                names = {d.name for d in client.read_deployments()}
                if {"human-task", "stage", "open-case", "reconcile"} <= names:
                    return
                time.sleep(0.5)
        raise RuntimeError(f"deployments not served; see {self.tmp / 'serve.log'}")

    def stop_serving(self) -> None:
        if self.served is not None:
            stop_group(self.served)

    def stop_server(self) -> None:
        if self.server is not None:
            stop_group(self.server)

    def stop(self) -> None:
        self.stop_serving()  # serve before server: the other order hangs on shutdown
        self.stop_server()


@contextmanager
def running_stack(tmp: Path, case_url: str, prefect_db_url: str | None = None) -> Iterator[Stack]:
    """A started server and served deployments over a migrated case store with the demo team,
    the shared clock at Mon 12 Jan 2026 10:00, and this process pointed at them: Prefect's
    settings, and the flows' data folder (its secret key seals practitioners' records and
    their codes, so this process, which enrols the team and reads codes, must hold the same).
    The stack is at `.store` as a Service; everything is restored on the way out."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from models.clock import FileClock
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from store.db import migrate

    migrate(case_url)
    stack = Stack(tmp, case_url, prefect_db_url)
    FileClock(str(stack.clock_file)).set(datetime(2026, 1, 12, 10, tzinfo=UTC))
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "NIM_DATA_DIR")}
    try:
        stack.start_server()
        os.environ["PREFECT_API_URL"] = stack.api  # the CLI path reads it from the environment
        os.environ["NIM_DATA_DIR"] = stack.env["NIM_DATA_DIR"]
        with temporary_settings(updates={PREFECT_API_URL: stack.api}):
            stack.start_serving()
            stack.store = build_service(case_url, FileClock(str(stack.clock_file)),
                                        migrate=False)
            seed_team(stack.store)
            yield stack
    finally:
        stack.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
