"""Files the project owns, and only those: created private (folders 0700, files 0600), never a
path it did not make or was not named.

Run as root (CI, servers, containers) a careless chmod breaks the host: `chmod 600 /dev/null`
stops every other user from opening it. So, whoever runs it, the project:

- never changes the mode of, writes through or follows a device node, FIFO, socket or symlink
  (`lstat`, `O_NOFOLLOW`, `fstat` on the opened descriptor);
- changes the mode only of a regular file it may write (owned by this user, one link), and of
  a folder only when it made that folder itself;
- replaces a file it rewrites (report packs, the session token, the shared clock) with a new
  0600 file in the same folder (`os.replace`), so a reader never sees half a file and a loose
  or linked old file is never written through;
- reads a setting's file with a size bound, refusing a device such as /dev/zero.

An unusable path raises `ConfigError` naming the setting, with the path left as it was.
Standard library and models.errors only: settings and the CLI import it.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from models.errors import ConfigError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SETTING_FILE_LIMIT = 1 << 20  # a key, a token, an instant or a config: 1 MB is plenty

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(setting: str, path: Path, why: str, fix: str = "") -> ConfigError:
    return ConfigError(f"{setting} {path} cannot be used: {why}; "
                       f"{fix or 'point it at a regular file nim-pathway may create'}. "
                       "Nothing was changed")


def _lstat(path: Path, setting: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. a component is a file (/dev/null/x) or not searchable
        raise _refuse(setting, path, exc.strerror or "it cannot be reached") from None


def _tighten_fd(fd: int, mode: int) -> None:
    """Drop group and other bits from an open regular file or folder of this user's."""
    st = os.fstat(fd)
    if st.st_mode & 0o077 and st.st_uid == os.geteuid() and (
            stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)):
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)


def private_dir(path: Path, setting: str = "NIM_DATA_DIR") -> Path:
    """The folder, made 0700 (with any missing parents) if it does not exist. An existing
    folder is the user's: used as it is, never chmodded; a symlink or a non-folder is refused."""
    path = Path(path)
    st = _lstat(path, setting)
    if st is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path, PRIVATE_DIR)
        except FileExistsError:
            pass  # another process made it first
        except OSError as exc:
            raise _refuse(setting, path, exc.strerror or "it cannot be made",
                          "point it at a folder the service may create and write") from None
        st = _lstat(path, setting)
    if st is None or not stat.S_ISDIR(st.st_mode):
        what = "it vanished" if st is None else f"it is {_kind(st.st_mode)}"
        raise _refuse(setting, path, what, "point it at a real folder (not a link)")
    return path


def open_private(path: Path, flags: int, setting: str) -> tuple[int, bool]:
    """Open (creating 0600 if missing) a regular file without following a link; returns the
    descriptor and whether this call created it."""
    nofollow = flags | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang us
    try:
        return os.open(path, nofollow | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), True
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refuse(setting, path, exc.strerror or "it cannot be made") from None
    st = _lstat(path, setting)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _refuse(setting, path, f"it is {_kind(st.st_mode)}")
    try:
        fd = os.open(path, nofollow)
    except OSError as exc:  # ELOOP: swapped for a link since the lstat
        raise _refuse(setting, path, exc.strerror or "it cannot be opened") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refuse(setting, path, "it is not a regular file")
    return fd, False


def private_file(path: Path, setting: str) -> Path:
    """Make an empty 0600 file if missing; an existing regular file of this user's is
    tightened through its own descriptor. Anything else is refused, untouched."""
    fd, _ = open_private(Path(path), os.O_RDONLY, setting)
    try:
        _tighten_fd(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return Path(path)


def append_private(path: Path, text: str, setting: str = "the error log") -> Path:
    """Append text to a private regular file (a log), never through a link or to a device."""
    fd, _ = open_private(Path(path), os.O_WRONLY | os.O_APPEND, setting)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        os.set_blocking(fd, True)
        _tighten_fd(fd, PRIVATE_FILE)
        fh.write(text)
    return Path(path)


def write_private(path: Path, data: bytes, setting: str = "the output file") -> Path:
    """Replace the file's content atomically with a new 0600 file: written beside it under a
    temporary name, then renamed over it. A reader sees the old content or the new, never
    half; an old file that was loose, or a link, is replaced, never written through. A device,
    FIFO, socket or folder at the path is refused and left alone."""
    path = Path(path)
    st = _lstat(path, setting)
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise _refuse(setting, path, f"it is {_kind(st.st_mode)}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:  # a crashed writer's leftover with our own name: ours to remove
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except OSError as exc:
        raise _refuse(setting, path, exc.strerror or "its folder cannot be written",
                      "point it at a folder the service may write") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_bounded(path: Path | str, setting: str, limit: int = SETTING_FILE_LIMIT) -> bytes:
    """A setting's file, whole, if it is a regular file of at most `limit` bytes. A link is
    followed (secrets are often mounted as links) but what it reaches must be a regular file:
    /dev/zero or a FIFO is refused, never read until memory runs out."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{setting} {path} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(setting, path, f"it is {_kind(st.st_mode)}",
                          "point it at a regular file")
        os.set_blocking(fd, True)
        data = os.read(fd, limit + 1)
        while len(data) <= limit:
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{setting} {path} is larger than {limit:,} bytes; point it at the "
                          "right file")
    return data


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another backend)."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:" or rest.startswith("file::memory:"):
        return None
    return Path(rest.removeprefix("file:"))


SQLITE_HEADER = b"SQLite format 3\x00"


def private_sqlite(url: str, setting: str = "NIM_DATABASE_URL") -> None:
    """Make the SQLite file 0600 before SQLite opens it (SQLite gives its -wal and -shm files
    the database file's mode). An existing file is tightened only if it is a SQLite database
    (or empty) of this user's: a path that is not one is refused or left for SQLite to reject,
    its mode untouched."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return
    fd, created = open_private(path, os.O_RDONLY, setting)
    try:
        if not created and os.pread(fd, len(SQLITE_HEADER), 0) not in (b"", SQLITE_HEADER):
            return  # not a database: SQLite says so, and the file is left as it was
        _tighten_fd(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        st = _lstat(side, setting)
        if st is None:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(setting, side, f"it is {_kind(st.st_mode)}",
                          "remove it: SQLite makes it")
        private_file(side, setting)
