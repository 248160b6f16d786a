"""The preloaded CLI: one resident process that has imported the CLI and what its commands
use (SQLAlchemy, SQLModel, the tables, the domain, Typer, Pydantic: ~0.5 s a command) and forks
a fresh child for each command a `nim-pathway` process hands it (nim_pathway/launch.py). The
child takes that process's stdin, stdout and stderr, environment, folder and umask, runs the
command exactly as the CLI runs it, and reports its exit code. Each command is its own process
forked from a process that has run none: nothing of one command is left for the next.

Only its own user is served: the socket is made 0600 in the data folder and each connection's
peer is checked (SO_PEERCRED). Whoever can run it can already read the service's keys.

Run by the local stack (`nim-pathway up`), or as a service: `python -m nim_pathway.preload`.
A change to the installed code is noticed at the next command, which then runs in its own
process while the preloader restarts itself with the new code."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import pkgutil
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from nim_pathway.launch import HEADER, REPLY
from nim_pathway.settings import PROJECT_DIR, Settings, adopt_environment

log = logging.getLogger("nim.preload")

# What a command imports, in the order the CLI would; never Prefect (a command that needs it
# imports it in its own child) and nothing that starts a thread (forking a threaded process is
# unsafe), both checked at start.
PRELOAD_PACKAGES = ("nim_pathway.cli", "nim_pathway.commands", "store", "models", "notifications",
                    "reports")
PRELOAD = ("nim_pathway.app", "nim_pathway.policy", "sqlalchemy.dialects.sqlite",
           "sqlalchemy.dialects.postgresql", "psycopg")
MAX_REQUEST = 1 << 20  # an environment and a command line, never near this
UNIX_PATH_MAX = 107


def preload() -> None:
    """Import what the commands use; refuse to serve if that started a thread or Prefect."""
    for package in PRELOAD_PACKAGES:
        found = pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")
        for module in found:
            importlib.import_module(module.name)
    for name in PRELOAD:
        with contextlib.suppress(ModuleNotFoundError):  # psycopg: only with PostgreSQL
            importlib.import_module(name)
    if threading.active_count() != 1 or "prefect" in sys.modules:
        raise RuntimeError("preloading started a thread or imported Prefect: forking it would "
                           "be unsafe; remove that module from nim_pathway.preload.PRELOAD")


def fingerprint(roots: tuple[str, ...] = (str(PROJECT_DIR), sys.prefix)
                ) -> dict[str, tuple[int, int]]:
    """Size and change time of every loaded module file of the project and its environment:
    a different answer means the installed code changed under the preloader."""
    out = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.startswith(roots):
            try:
                st = os.stat(path)
            except OSError:
                st = None
            out[path] = (st.st_mtime_ns, st.st_size) if st else (0, -1)
    return out


def listen(path: Path) -> socket.socket:
    """The socket at `path`, made 0600. An old socket of ours nobody answers on is replaced;
    anything else at that path is refused, never removed."""
    if len(os.fsencode(path)) + 12 > UNIX_PATH_MAX:  # room for the name it is built under
        raise RuntimeError(f"{path} is too long for a Unix socket ({UNIX_PATH_MAX} bytes): "
                           "set NIM_DATA_DIR to a shorter folder")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
            raise RuntimeError(f"{path} exists and is not this user's socket: it was left as "
                               "it is; move it away to start the preloader")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # ours, and nobody serves it: left by a preloader that was killed
        else:
            raise RuntimeError(f"a preloader already serves {path.parent}")
        finally:
            probe.close()
    # bound and listening under a temporary name, then renamed: a client never finds a socket
    # that refuses it because it is not listening yet
    building = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(building)  # our own, left by a process of this pid that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(building))
    finally:
        os.umask(old)
    listener.listen(64)
    os.rename(building, path)
    return listener


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


def receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A request: its JSON and the client's three descriptors."""
    conn.settimeout(10)  # a client that connects and says nothing does not hold the loop
    data, ancillary, _, _ = conn.recvmsg(HEADER.size, socket.CMSG_SPACE(3 * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder)
                    for i in range(0, len(payload) - len(payload) % 4, 4)]
    try:
        if len(data) != HEADER.size or len(fds) != 3:
            raise ValueError("not a nim-pathway request")
        (size,) = HEADER.unpack(data)
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("the client went away")
            body += chunk
        request = json.loads(body)
        if not (isinstance(request.get("argv"), list) and isinstance(request.get("env"), dict)
                and isinstance(request.get("cwd"), str) and isinstance(request.get("umask"), int)):
            raise ValueError("malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return request, fds


def run_command(conn: socket.socket, listener: socket.socket, request: dict[str, Any],
                fds: list[int]) -> NoReturn:
    """In the forked child: become the client's command, run it, report its exit code."""
    code = 1
    try:
        listener.close()
        log.handlers.clear()
        # its own session, with no controlling terminal: a prompt for a code reads the
        # client's terminal (stdin), never one the preloader was started from
        os.setsid()
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        adopt_environment(request["env"])
        time.tzset()  # the client's TZ, if it set one
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False,  # noqa: SIM115
                          buffering=1 if os.isatty(1) else -1)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                          closefd=False, buffering=1)
        sys.argv = list(request["argv"])
        conn.sendall(REPLY.pack(b"P", os.getpid()))
        from nim_pathway.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exit_code(exc)
        except KeyboardInterrupt:
            code = 130
    except BaseException:  # noqa: BLE001 - the client is told the command failed, not why here
        code = 1
    finally:
        with contextlib.suppress(BaseException):  # what a process does at exit (temporary
            atexit._run_exitfuncs()  # folders, logging), as the command's own process would
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(REPLY.pack(b"X", code))
        os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """A process's exit status for sys.exit(value), as the interpreter makes it."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def serve(settings: Settings) -> None:
    """Serve commands until stopped (SIGTERM or SIGINT); restart when the code changed."""
    preload()
    loaded = fingerprint()
    path = settings.preload_socket
    listener = listen(path)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished commands

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info("serving commands on %s (pid %d)", path, os.getpid())
    try:
        while True:
            conn, _ = listener.accept()
            with conn:
                try:
                    handle(conn, listener, loaded, path)
                except OSError as exc:  # this client went away or a fork failed: the next
                    log.warning("a command could not be started: %s", exc)  # one is served
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def handle(conn: socket.socket, listener: socket.socket, loaded: dict[str, tuple[int, int]],
           path: Path) -> None:
    """One connection: check who asks and what, then fork the command (or say why not)."""
    uid = peer_uid(conn)
    if uid != os.getuid():
        log.warning("refused a connection from uid %d (serves uid %d only)", uid, os.getuid())
        return
    try:
        request, fds = receive(conn)
    except (OSError, ValueError) as exc:
        log.warning("refused a request: %s", exc)
        return
    try:
        if request.get("code") != [str(PROJECT_DIR), sys.prefix]:
            conn.sendall(REPLY.pack(b"N", 0))  # another install: it runs its own
            return
        if fingerprint() != loaded:
            conn.sendall(REPLY.pack(b"S", 0))
            log.info("the installed code changed: restarting")
            listener.close()
            os.unlink(path)
            os.execv(sys.executable, [sys.executable, "-m", "nim_pathway.preload"])
        started = time.monotonic()
        if os.fork() == 0:
            run_command(conn, listener, request, fds)
        log.info("started a command in %.3f s", time.monotonic() - started)
    finally:
        for fd in fds:  # the child has its own copies
            os.close(fd)


if __name__ == "__main__":
    # its own logger only: the commands it forks start with logging as a fresh process has it
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        serve(Settings.from_env())
    except RuntimeError as exc:  # one line, as the CLI refuses
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
