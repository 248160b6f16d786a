"""The preloaded CLI (nim_pathway/preload.py): a command handed to it by `nim-pathway` (the
launcher) prints, refuses and exits exactly as the same command run in its own process; only
the service's own user is served; a change to the code is noticed."""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml

from nim_pathway.launch import HEADER
from nim_pathway.preload import fingerprint
from tests.cli_team import as_person, log_in_team
from tests.conftest import CLI, referral_data

IN_PROCESS = ("import sys; sys.argv[0] = 'nim-pathway'; from nim_pathway.cli import main; "
              "main()")


def wait_for(condition, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def site(cli_env, tmp_path):
    """The demo team on a CLI site whose data folder is short enough for a Unix socket."""
    data = Path(tempfile.mkdtemp(prefix="nim-preload-"))
    env = {**cli_env, "NIM_DATA_DIR": str(data),
           "NIM_AUDIT_CHECKPOINT": str(data / "audit.checkpoint")}
    log_in_team(env, tmp_path / "sessions")
    yield env, tmp_path / "sessions", data
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def preloader(site, tmp_path):
    env, _, data = site
    log = open(tmp_path / "preload.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen([sys.executable, "-m", "nim_pathway.preload"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (data / "cli.sock").exists() or proc.poll() is not None,
                 "the preloader's socket")
        assert proc.poll() is None, (tmp_path / "preload.log").read_text()
        yield proc, tmp_path / "preload.log"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def served(log: Path) -> int:
    return log.read_text().count("started a command")


def test_a_command_through_the_preloader_prints_refuses_and_exits_as_one_run_here(
        site, preloader):
    env, sessions, data = site
    _, log = preloader

    def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        person = as_person(env, args, sessions)
        before = served(log)
        via = subprocess.run([CLI, *args], env=person, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert served(log) == before + 1, (args, log.read_text())  # the preloader ran it
        here = subprocess.run([sys.executable, "-c", IN_PROCESS, *args], env=person,
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        return via, here

    referral = data / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    opened, _ = both("case", "open", "--file", str(referral), "--as", "coord.ali")
    assert opened.returncode == 0 and opened.stdout.startswith("opened NIM-2026-0001"), opened
    ref = "NIM-2026-0001"
    for args in (("--help",), ("case", "list"), ("case", "show", ref),
                 ("task", "list", "--case", ref),
                 ("case", "show", "NIM-2026-9999"),  # a refusal: one line, exit 2
                 ("case", "nope"),  # a typo: Click's own message, exit 2
                 ("case",),  # a bare group: its help, exit 2
                 ("task", "complete", f"{ref}/triage", "--as", "la.patel",  # the wrong role
                  "--field", "accepted=true")):
        via, here = both(*args)
        assert (via.returncode, via.stdout, via.stderr) == (here.returncode, here.stdout,
                                                            here.stderr), args
    # a write through the preloader is recorded once; the same again is refused as done
    done, twice = both("task", "complete", f"{ref}/triage", "--as", "mgr.okafor",
                       "--field", "accepted=true")
    assert done.returncode == 0 and "stage=consent" in done.stdout, done
    assert twice.returncode == 2 and "already completed" in twice.stderr, twice


def test_the_socket_answers_only_its_own_user(site, preloader):
    """The attack: another local user (nobody) connects to the socket and asks for a command.
    The folder and the 0600 socket stop them; with both opened up, the peer check still does."""
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    python = "/usr/bin/python3"  # the project's interpreter may sit in a folder nobody can read
    if not Path(python).exists():
        pytest.skip(f"needs {python} for the other user's client")
    env, _, data = site
    proc, log = preloader
    sock_path = data / "cli.sock"
    assert (sock_path.stat().st_mode & 0o777) == 0o600
    attempt = (
        "import array, json, socket, struct, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(sock_path)!r})\n"
        "except PermissionError:\n"
        "    print('denied'); sys.exit(0)\n"
        "body = json.dumps({'argv': ['nim-pathway', 'case', 'list'], 'env': {}, 'cwd': '/',"
        " 'umask': 0}).encode()\n"
        "try:  # the preloader may hang up before the request is even sent\n"
        f"    s.sendmsg([struct.pack('!I', len(body))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,"
        " array.array('i', [0, 1, 2]))])\n"
        "    s.sendall(body)\n"
        "    print('answered' if s.recv(8) else 'closed')\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    print('closed')\n")

    def as_nobody() -> str:
        return subprocess.run([python, "-c", attempt], user=65534, group=65534,
                              capture_output=True, text=True, timeout=30, cwd="/").stdout.strip()

    try:
        assert as_nobody() == "denied"  # the data folder and the socket are the service's
        os.chmod(data, 0o711)  # the test's own folder and socket, opened up for the attack
        os.chmod(sock_path, 0o666)
        before = served(log)
        assert as_nobody() == "closed"
        assert served(log) == before and "refused a connection from uid 65534" in log.read_text()
    finally:
        os.chmod(data, 0o700)
    assert proc.poll() is None  # and it goes on serving its own user


def test_a_changed_module_is_noticed(tmp_path, monkeypatch):
    """The preloader compares the loaded modules' files at every command: an upgrade or an
    edit makes it restart with the new code instead of running the old."""
    module = tmp_path / "nim_fingerprint_probe.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nim_fingerprint_probe  # noqa: F401

    try:
        before = fingerprint((str(tmp_path),))
        assert str(module) in before
        assert fingerprint((str(tmp_path),)) == before
        module.write_text("X = 22\n")  # a different size, whatever the clock's resolution
        assert fingerprint((str(tmp_path),)) != before
    finally:
        sys.modules.pop("nim_fingerprint_probe", None)


def test_a_killed_preloader_leaves_commands_running_here_and_is_replaced(site, tmp_path):
    """kill -9 leaves its socket behind: commands run in their own process meanwhile, and the
    next preloader replaces the dead socket (its own, nobody answering) and serves."""
    env, _, data = site
    dead = subprocess.Popen([sys.executable, "-m", "nim_pathway.preload"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (data / "cli.sock").exists(), "the first preloader's socket")
    dead.kill()
    dead.wait(30)
    assert (data / "cli.sock").exists()
    alone = subprocess.run([CLI, "case", "list"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert alone.returncode == 0 and "Traceback" not in alone.stderr, alone
    log = tmp_path / "second.log"
    with open(log, "wb") as out:
        second = subprocess.Popen([sys.executable, "-m", "nim_pathway.preload"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "serving commands" in log.read_text() or second.poll() is not None,
                     "the second preloader")
            assert second.poll() is None, log.read_text()
            again = subprocess.run([CLI, "case", "list"], env=env, capture_output=True,
                                   text=True, timeout=60)
            assert again.stdout == alone.stdout and served(log) == 1
        finally:
            second.terminate()
            second.wait(30)


def test_a_bad_request_is_refused_and_the_preloader_goes_on(site, preloader):
    """Garbage on the socket (no descriptors, not JSON) is refused; the next command runs."""
    env, sessions, data = site
    _, log = preloader
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(data / "cli.sock"))
        s.sendmsg([HEADER.pack(5)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [0, 1, 2]))])
        s.sendall(b"nope!")
        assert s.recv(8) == b""
    wait_for(lambda: "refused a request" in log.read_text(), "the refusal in the log")
    ok = subprocess.run([CLI, "case", "list"], env=env, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_the_local_stack_starts_and_stops_the_preloader(site):
    """`nim-pathway up` starts it with the rest of the stack (here on its own), `status`
    lists it and `down` stops it; the commands meanwhile are served by it."""
    from nim_pathway.settings import Settings
    from nim_pathway.stack import LocalStack

    env, _, data = site
    stack = LocalStack(Settings.from_env(env))
    try:
        stack.start_preload(env)
        assert stack.status()["preload"].startswith("running")
        listed = subprocess.run([CLI, "case", "list"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert listed.returncode == 0
        assert served(stack.folder / "preload.log") == 1
    finally:
        assert stack.down() == ["preload"]
    assert stack.status()["preload"] == "stopped" and not (data / "cli.sock").exists()


def test_something_else_at_the_socket_path_is_left_alone(site):
    """A file (or a link) where the socket goes is not the preloader's: it refuses to start,
    says why, and leaves it as it was."""
    env, _, data = site
    squatter = data / "cli.sock"
    squatter.write_text("not a socket")
    started = subprocess.run([sys.executable, "-m", "nim_pathway.preload"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and "is not this user's socket" in started.stderr
    assert "Traceback" not in started.stderr
    assert squatter.read_text() == "not a socket"
    listed = subprocess.run([CLI, "case", "list"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0  # the commands run in their own process meanwhile


def test_another_installs_command_is_left_to_run_itself(site, preloader):
    """A client from another checkout or interpreter sharing the data folder is told so (b"N")
    and runs the command in its own process: never with the preloader's code."""
    from nim_pathway.launch import REPLY, read_reply

    env, _, data = site
    _, log = preloader
    body = json.dumps({"argv": ["nim-pathway", "case", "list"], "env": env, "cwd": "/",
                       "umask": 0o077, "code": ["/elsewhere/nim-pathway", sys.prefix]})
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(data / "cli.sock"))
        s.sendmsg([HEADER.pack(len(body))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", [0, 1, 2]))])
        s.sendall(body.encode())
        assert read_reply(s) == (b"N", 0) and REPLY.size == 5
    assert served(log) == 0


def test_a_code_is_asked_on_the_persons_own_terminal_and_not_echoed(site, preloader):
    """An interactive command through the preloader: the code prompt appears on the terminal
    the person typed the command in (a pseudo-terminal here), with echo off, and the answer
    reaches the command."""
    import pty
    import select

    from nim_pathway.app import build_service
    from nim_pathway.demo import current_code

    env, _, data = site
    _, log = preloader
    referral = data / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    # no login, so a code is asked; a minute on, so the code is not the one login used
    nobody = {**env, "NIM_SESSION_FILE": str(data / "no-session"), "NIM_CLOCK": "2026-01-12T10:01"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([CLI, "case", "open", "--file", str(referral), "--as", "coord.ali"],
                            env=nobody, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_until(needle: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while needle not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
        assert needle in seen, seen

    try:
        # click prints the question, then getpass turns echo off and prints its own " ": type
        # only after that space, as a person would, or the terminal may still echo the code
        read_until(b"one-time code for coord.ali: ")
        with mock.patch.dict(os.environ, nobody):
            code = current_code(build_service(), "coord.ali")
        os.write(master, code.encode() + b"\n")
        read_until(b"opened NIM-2026-0001")
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        os.close(master)
    assert code.encode() not in seen  # echo was off on the person's terminal
    assert served(log) == 1
