"""The local stack: a Prefect server on 127.0.0.1:4200, a process work pool, the deployments
from prefect.yaml, a worker, the sync service (`nim-pathway drain --follow`, which applies each
command's change so the command need not import Prefect), the preloaded CLI (commands start
without their imports) and the local inbox
(notifications/inbox.py) that the stack's admin target and the demo team's contacts point at.
State (SQLite, logs, pids, received messages) lives under the data folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nim_pathway.settings import PROJECT_DIR, Settings

HOST, PORT = "127.0.0.1", 4200


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class LocalStack:
    """The local stack of one site's settings: its processes' pids and logs live in the data
    folder's `stack/`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def folder(self) -> Path:
        from store.files import private_dir

        return private_dir(self.settings.data_dir / "stack", "the stack folder (NIM_DATA_DIR/stack)")

    def pid(self, name: str) -> int | None:
        """The live pid of a stack process (a stale pid file is removed)."""
        return self.settings.stack_pid(name)

    def running(self) -> bool:
        return self.pid("server") is not None

    def env(self, port: int = PORT) -> dict[str, str]:
        """The environment the server, the worker and the flows it starts share."""
        settings = self.settings
        env = dict(settings.env)
        env.update({
            "PREFECT_HOME": str(settings.data_dir / "prefect"),
            "PREFECT_API_URL": f"http://{HOST}:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",  # SQLite: wait for the writer, don't fail
            **settings.prefect_server_env,  # no pause expiry, bounded history
            "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "NIM_DATA_DIR": str(settings.data_dir),
            "NIM_PROJECT_DIR": str(PROJECT_DIR),
            "NIM_WORK_POOL": settings.work_pool,  # prefect.yaml names the pool by it
        })
        env["NIM_DATABASE_URL"] = settings.database_url
        if not self._admin_configured():  # dead-letter alerts go to the inbox, not nowhere
            from notifications.inbox import ADMIN_BOX, inbox_url

            env["NIM_ADMIN_TARGETS"] = inbox_url(ADMIN_BOX, settings.inbox_ports[0])
        if settings.env.get("NIM_PREFECT_AUTH"):  # basic auth for the server and its clients
            env["PREFECT_SERVER_API_AUTH_STRING"] = settings.env["NIM_PREFECT_AUTH"]
            env["PREFECT_API_AUTH_STRING"] = settings.env["NIM_PREFECT_AUTH"]
        return env

    def _admin_configured(self) -> bool:
        """Whether the operator set admin targets (NIM_ADMIN_TARGETS or the config file's
        `admin:`): those stay as they are."""
        from notifications.config import load_config

        settings = self.settings
        return bool(settings.env.get("NIM_ADMIN_TARGETS") or load_config(
            settings.notify_config_path, settings.notify_env).admin)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> int:
        from store.files import open_private, write_private

        log, _ = open_private(self.folder / f"{name}.log", os.O_WRONLY | os.O_APPEND,
                              "a stack log")
        os.set_blocking(log, True)
        try:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=PROJECT_DIR,
                                    start_new_session=True)
        finally:
            os.close(log)  # the child has its own copy
        write_private(self.folder / f"{name}.pid", str(proc.pid).encode(), "a stack pid file")
        return proc.pid

    def wait_listening(self, port: int, name: str, seconds: float = 20) -> None:
        """Wait until a stack process accepts connections on 127.0.0.1:`port`."""
        import socket

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.pid(name) is None:
                break  # it exited: its log says why (a port in use, most often)
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the {name} did not start on {HOST}:{port}; see "
                           f"{self.folder / f'{name}.log'}")

    def start_inbox(self, env: dict[str, str]) -> None:
        """Start (or reuse) the local inbox the stack's messages go to."""
        if self.pid("inbox") is None:
            self._spawn("inbox", [sys.executable, "-m", "notifications.inbox"], env)
        self.wait_listening(self.settings.inbox_ports[1], "inbox")

    def up(self, port: int = PORT) -> str:
        """Start (or reuse) server, pool, deployments and worker; return the UI URL."""
        env = self.env(port)
        self.start_inbox(env)
        if not self.running():
            self._spawn("server", [_bin("prefect"), "server", "start", "--host", HOST, "--port",
                                   str(port)], env)
        wait_healthy(env["PREFECT_API_URL"], log=self.folder / "server.log")
        from store.db import migrate

        migrate(env["NIM_DATABASE_URL"])
        pool = env["NIM_WORK_POOL"]
        proc = subprocess.run([_bin("prefect"), "work-pool", "inspect", pool], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            _run([_bin("prefect"), "work-pool", "create", pool, "--type", "process"], env,
                 "creating the work pool")
        _run([_bin("prefect"), "--no-prompt", "deploy", "--all"], env, "deploying prefect.yaml")
        if self.pid("worker") is None:
            self._spawn("worker", [_bin("prefect"), "worker", "start", "--pool", pool,
                                   "--limit", "50"], env)
        if self.pid("sync") is None:  # commands wait for it instead of importing Prefect
            self._spawn("sync", [_bin("nim-pathway"), "drain", "--follow"], env)
        self.start_preload(env)
        return f"http://{HOST}:{port}"

    def start_preload(self, env: dict[str, str]) -> None:
        """Start (or reuse) the preloaded CLI: commands skip their imports
        (nim_pathway/preload.py); wait until it serves."""
        if self.pid("preload") is None:
            self._spawn("preload", [sys.executable, "-m", "nim_pathway.preload"], env)
        deadline = time.monotonic() + 30
        while not self.settings.preload_socket.exists():
            if self.pid("preload") is None or time.monotonic() > deadline:
                raise RuntimeError(f"the preloaded CLI did not start; see "
                                   f"{self.folder / 'preload.log'}")
            time.sleep(0.1)

    def _stop(self, name: str, grace: float = 15) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.pid(name) is not None:
            time.sleep(0.2)
        if self.pid(name) is not None:
            os.killpg(pid, signal.SIGKILL)
        (self.folder / f"{name}.pid").unlink(missing_ok=True)
        return True

    def down(self) -> list[str]:
        """Stop the sync service and the worker first, then the server (the other order hangs
        on shutdown), then the inbox (last: the worker may still be delivering)."""
        return [name for name in ("preload", "sync", "worker", "server", "inbox")
                if self._stop(name)]

    def status(self) -> dict[str, str]:
        out = {name: (f"running (pid {pid})" if (pid := self.pid(name)) else "stopped")
               for name in ("server", "worker", "sync", "preload", "inbox")}
        out["ui"] = f"http://{HOST}:{PORT}" if self.running() else "-"
        out["inbox page"] = (f"http://{HOST}:{self.settings.inbox_ports[1]}/"
                             if self.pid("inbox") else "-")
        from models.redaction import mask_url

        out["case store"] = mask_url(self.settings.database_url)  # never its password
        return out


def wait_healthy(url: str, seconds: float = 120, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Prefect server at {url} did not become healthy in {seconds:.0f} s"
                       + (f"; see {log}" if log else ""))


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(args, env=env, cwd=PROJECT_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr.strip()[-800:] or proc.stdout[-800:]}")


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process started in its own session, with everything it spawned (a Prefect
    server's uvicorn, a runner's flow-run subprocesses): TERM, then KILL after `grace`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
