"""The project touches only what it owns: never a device node, FIFO, socket or symlink, never
a file it was not told to use, whoever runs it (CI and servers run as root).

Every special file here is made in the test's own temp folder (`special_files`): a symlink, a
FIFO and, as root, character devices equal to /dev/null and /dev/zero. Each attack checks that
the path is left exactly as it was (type, mode, owner, inode, content) and that the command
says, in one line naming the setting, what was wrong.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.clock import FileClock
from models.errors import ConfigError
from store.files import append_private, private_dir, private_sqlite, read_bounded, write_private
from tests.conftest import CLI, special_files

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="os.mknod needs root: device nodes "
                               "can only be made by root, and only root can chmod one")


def _fingerprint(path: Path) -> tuple:
    """What must not change: type, mode, owner, inode, and a regular file's content."""
    st = os.lstat(path)
    content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_ino, content)


@pytest.fixture
def special(tmp_path):
    made = special_files(tmp_path / "special")
    before = {name: _fingerprint(p) for name, p in made.items() if name != "file-as-folder"}
    target = _fingerprint(made["symlink"].resolve())
    yield made
    after = {name: _fingerprint(made[name]) for name in before}
    assert after == before, "a special file was changed"
    assert _fingerprint(made["symlink"].resolve()) == target, "a symlink was written through"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # a FIFO read without a bound would hang: the timeout turns that into a failure
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def _one_line_refusal(proc: subprocess.CompletedProcess, setting: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert setting in proc.stderr, proc.stderr


# -- the report's reproduction: the case store pointed at /dev/null -----------------------------

@ROOT_ONLY
def test_a_device_as_the_case_store_is_refused_and_left_as_it_was(cli_env, special):
    """`NIM_DATABASE_URL=sqlite:////dev/null nim-pathway task list` made /dev/null 0600 as root.
    Worked on a device equal to /dev/null (major 1, minor 3) in the test's own folder."""
    device = special["null-device"]
    proc = _cli({**cli_env, "NIM_DATABASE_URL": f"sqlite:///{device}"}, "task", "list")
    _one_line_refusal(proc, "NIM_DATABASE_URL")
    assert "character device" in proc.stderr
    assert stat.S_IMODE(os.lstat(device).st_mode) == 0o666  # the fixture checks the rest


@pytest.mark.parametrize("kind", ["fifo", "symlink", "null-device", "zero-device"])
@pytest.mark.parametrize(("setting", "argv"), [
    ("NIM_DATABASE_URL", ["case", "list"]),
    ("NIM_DATA_DIR", ["case", "list"]),
    ("NIM_CLOCK_FILE", ["task", "list"]),
    ("NIM_SECRET_KEY_FILE", ["case", "list"]),
    ("NIM_AUDIT_KEY_FILE", ["case", "list"]),
    ("NIM_NOTIFY_CONFIG", ["outbox", "dispatch"]),
    ("NIM_SESSION_FILE", ["whoami"]),
])
def test_every_path_setting_refuses_what_it_must_not_touch(cli_env, special, kind, setting, argv):
    if kind not in special:
        pytest.skip("device nodes need root (os.mknod)")
    path = special[kind]
    if kind == "symlink" and setting in ("NIM_CLOCK_FILE", "NIM_SECRET_KEY_FILE",
                                         "NIM_AUDIT_KEY_FILE", "NIM_NOTIFY_CONFIG"):
        pytest.skip("read-only settings may follow a link to a regular file (secrets are "
                    "mounted as links); what it reaches is checked instead")
    value = f"sqlite:///{path}" if setting == "NIM_DATABASE_URL" else str(path)
    proc = _cli({**cli_env, setting: value}, *argv)
    names = {"NIM_SESSION_FILE": "session file"}
    _one_line_refusal(proc, names.get(setting, setting))


def test_a_symlinked_case_store_is_refused_not_followed(cli_env, special, tmp_path):
    """The link points at a real SQLite file of the project's: still refused, never opened
    through the link (a link planted in a shared folder would redirect writes)."""
    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    proc = _cli({**cli_env, "NIM_DATABASE_URL": f"sqlite:///{link}"}, "case", "list")
    _one_line_refusal(proc, "NIM_DATABASE_URL")
    assert "symbolic link" in proc.stderr and not real.exists()


# -- the file helpers, attacked directly -------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "null-device", "zero-device"])
def test_write_and_append_refuse_special_files(special, kind):
    if kind not in special:
        pytest.skip("device nodes need root (os.mknod)")
    with pytest.raises(ConfigError, match=r"the output file .* cannot be used: it is a"):
        write_private(special[kind], b"secret")
    with pytest.raises(ConfigError, match=r"the error log .* cannot be used: it is a"):
        append_private(special[kind], "secret")


def test_a_symlink_is_replaced_never_written_through(special, tmp_path):
    target = tmp_path / "precious"
    target.write_text("precious\n")
    link = tmp_path / "report.html"
    link.symlink_to(target)
    write_private(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert stat.S_IMODE(link.stat().st_mode) == 0o600 and target.read_text() == "precious\n"
    with pytest.raises(ConfigError, match="symbolic link"):
        append_private(special["symlink"], "x")  # the fixture checks its target is untouched


def test_a_loose_file_is_replaced_by_a_new_private_one(tmp_path):
    """A session file that pre-exists 0666 (someone made it so) is not rewritten in place:
    a new 0600 file takes its name, so no reader holding the old one sees the new secret."""
    path = tmp_path / "session"
    path.write_text("old")
    path.chmod(0o666)
    old_inode = path.stat().st_ino
    with open(path) as held:
        write_private(path, b"token")
        assert held.read() == "old"
    assert path.stat().st_ino != old_inode and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_folders_are_made_private_but_an_existing_one_is_never_chmodded(special, tmp_path):
    made = private_dir(tmp_path / "new" / "data")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o755)
    private_dir(theirs)
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755
    folder_link = tmp_path / "folder-link"
    folder_link.symlink_to(theirs)
    for bad in (folder_link, special["fifo"], special["file-as-folder"]):
        with pytest.raises(ConfigError, match="NIM_DATA_DIR"):
            private_dir(bad)


@pytest.mark.parametrize("kind", ["fifo", "zero-device"])
def test_reading_a_setting_file_is_bounded(special, kind, tmp_path):
    """/dev/zero as a key file was read until memory ran out; a FIFO with no writer hung."""
    if kind not in special:
        pytest.skip("device nodes need root (os.mknod)")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="NIM_SECRET_KEY_FILE .* cannot be used: it is a"):
        read_bounded(special[kind], "NIM_SECRET_KEY_FILE")
    assert time.monotonic() - started < 5, "the read was not bounded"
    big = tmp_path / "big"
    big.write_bytes(b"k" * 5000)
    with pytest.raises(ConfigError, match="larger than 4,096 bytes"):
        read_bounded(big, "NIM_SECRET_KEY_FILE", limit=4096)
    assert read_bounded(special["symlink"], "x") == b"untouched\n"  # a link to a file: read


def test_a_file_that_is_not_a_database_keeps_its_mode(tmp_path):
    """Named as the case store, a loose file that is not SQLite (say /etc/passwd) is left for
    SQLite to reject, its mode untouched; a loose SQLite file of ours is tightened."""
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0::/root:/bin/sh\n")
    other.chmod(0o644)
    private_sqlite(f"sqlite:///{other}")
    assert stat.S_IMODE(other.stat().st_mode) == 0o644


# -- the shared clock file (issue: read half-written) -------------------------------------------

def test_the_clock_file_is_never_read_half_written(tmp_path):
    """`set` wrote in place ("w" truncates first): a reader between the truncate and the
    write saw an empty file and raised. Now it writes a new file and renames it over the old:
    4 threads read while the clock moves 2,000 times, and every read parses."""
    path = tmp_path / "clock"
    clock = FileClock(str(path))
    start = datetime(2026, 1, 12, 9, tzinfo=UTC)
    clock.set(start)
    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert clock.now() >= start
            except Exception as exc:  # noqa: BLE001 - any failure to read is the bug
                failures.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for minute in range(2000):
        clock.set(start + timedelta(minutes=minute))
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert clock.now() == start + timedelta(minutes=1999)
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]  # no temporary files left


def test_the_clock_file_is_never_read_half_written_across_processes(tmp_path):
    """The sync service, the worker and the CLI are separate processes: a child process reads
    the clock in a loop while this one moves it; the child reports every failure."""
    import sys

    path = tmp_path / "clock"
    clock = FileClock(str(path))
    start = datetime(2026, 1, 12, 9, tzinfo=UTC)
    clock.set(start)
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom models.clock import FileClock\nc = FileClock(sys.argv[1])\n"
         "bad = reads = 0\n"
         "while not __import__('os').path.exists(sys.argv[1] + '.stop'):\n"
         "    reads += 1\n"
         "    try:\n        c.now()\n    except Exception:\n        bad += 1\n"
         "print(reads, bad)\n", str(path)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    for minute in range(3000):
        clock.set(start + timedelta(minutes=minute))
    (tmp_path / "clock.stop").touch()
    out, _ = reader.communicate(timeout=60)
    reads, bad = map(int, out.split())
    assert reads > 0 and bad == 0, f"{bad} of {reads} reads failed"


@ROOT_ONLY
def test_the_clock_never_replaces_a_device(special):
    with pytest.raises(ConfigError, match="NIM_CLOCK_FILE .* not a regular file"):
        FileClock(str(special["null-device"])).set(datetime(2026, 1, 12, tzinfo=UTC))
    assert not any(re.search(r"\.tmp$", p.name) for p in special["fifo"].parent.iterdir())
