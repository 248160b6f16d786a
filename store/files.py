"""Files that hold case data or secrets are the service user's alone: folders 0700, files 0600.

The data folder, the SQLite case store (and its -wal/-shm, which SQLite creates with the
database file's mode), report packs and the error log are created private, and tightened
when they already exist looser. Standard library only: settings and the CLI import it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def _tighten(path: Path, mode: int) -> None:
    """Drop group and other permissions from a path this user owns (never a shared folder
    such as /tmp: sticky folders and other users' paths are left alone)."""
    try:
        st = path.stat()
    except OSError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX:
        try:
            path.chmod(stat.S_IMODE(st.st_mode) & mode)
        except OSError:
            pass


def private_dir(path: Path) -> Path:
    """Create the folder (and missing parents) 0700, or tighten it if it is looser."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create an empty file 0600 if missing, or tighten it if it exists looser."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE))
    except OSError:
        return path  # an unwritable place: whoever opens it next says why
    _tighten(path, PRIVATE_FILE)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write bytes to a file readable by this user only (replacing its content)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as fh:
        try:
            os.fchmod(fh.fileno(), PRIVATE_FILE)  # an existing looser file is tightened too
        except OSError:
            pass
        fh.write(data)
    return path


def append_private(path: Path, text: str) -> Path:
    """Append text to a file readable by this user only (a log)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        _tighten(path, PRIVATE_FILE)
        fh.write(text)
    return path


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another backend)."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:" or rest.startswith("file::memory:"):
        return None
    return Path(rest.removeprefix("file:"))


def private_sqlite(url: str) -> None:
    """Make the SQLite case store's file (and any -wal/-shm beside it) 0600 before SQLite
    opens it: SQLite gives its -wal and -shm files the database file's mode."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        _tighten(Path(f"{path}{suffix}"), PRIVATE_FILE)
