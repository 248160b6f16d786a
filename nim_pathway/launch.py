"""`nim-pathway`'s entry point. When a preloaded CLI serves this data folder
(nim_pathway/preload.py: the imports done once, each command run in a fresh fork of it), the
command is handed to it with this process's terminal, environment, folder and umask, and this
process waits for its exit code; otherwise the command runs here. Either way a person sees the
same output, prompts, refusals and exit code: only the start-up differs (~0.5 s of imports).

This module imports nothing heavy: it is the start-up of every command."""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import sys

# Commands that run for long or manage the stack (and so the preloader) run here, as before;
# so does every command with NIM_PRELOAD=off (an operator's choice, and the bench's baseline).
NOT_PRELOADED = frozenset({"up", "down", "drain", "web", "inbox", "demo"})
# request: its length, with the client's stdin, stdout and stderr as SCM_RIGHTS; then the JSON
HEADER = struct.Struct("!I")
# replies: b"P" + the command's pid once it starts, b"X" + its exit code when it ends,
# b"S" when the preloader's code is older than the installed code (it restarts itself), b"N"
# when the client is another install's (another checkout or environment on the same folder)
REPLY = struct.Struct("!ci")


def main() -> None:
    """Run the command through the preloaded CLI if one is serving, else in this process."""
    code = run_preloaded(sys.argv)
    if code is None:
        from nim_pathway.cli import main as run_here

        run_here()
        return
    sys.exit(code)


def read_reply(sock: socket.socket) -> tuple[bytes, int]:
    """One reply; EOFError if the other side closed first."""
    data = b""
    while len(data) < REPLY.size:
        chunk = sock.recv(REPLY.size - len(data))
        if not chunk:
            raise EOFError("the preloaded command's process closed the connection")
        data += chunk
    kind, value = REPLY.unpack(data)
    return kind, value


def run_preloaded(argv: list[str]) -> int | None:
    """The command's exit code, run by the preloaded CLI; None when none could take it (no
    preloader, a stale one, or a command that runs here), so it runs in this process."""
    from nim_pathway.settings import PROJECT_DIR, Settings, process_environment

    env = process_environment()
    if (len(argv) > 1 and argv[1] in NOT_PRELOADED) or env.get("NIM_PRELOAD") == "off":
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(Settings.from_env(env).preload_socket))
        umask = os.umask(0o077)
        os.umask(umask)
        request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd(), "umask": umask,
                              "code": [str(PROJECT_DIR), sys.prefix]}).encode()
        sock.sendmsg([HEADER.pack(len(request))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                    array.array("i", [0, 1, 2]))])
        sock.sendall(request)
        kind, pid = read_reply(sock)
    except (OSError, EOFError, ValueError):  # none serving, gone, or this folder unreadable
        sock.close()
        return None
    with sock:
        if kind != b"P":
            return None  # stale (it restarts) or another install's: this one runs here

        def forward(signum: int, _frame: object) -> None:  # Ctrl-C reaches the command
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        try:
            kind, code = read_reply(sock)
        except (OSError, EOFError):
            kind, code = b"?", 1
        if kind != b"X":
            print("nim-pathway: the command's process was stopped before it finished; "
                  "`nim-pathway status` shows what was recorded", file=sys.stderr)
        return code
