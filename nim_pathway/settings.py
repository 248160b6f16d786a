"""Settings from the environment, read in one place."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from models.clock import Clock, FileClock, SystemClock, VirtualClock, parse_instant
from models.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the embedded database, the local stack's state and reports live (made 0700 when
    missing; an existing folder is used as it is, never chmodded)."""
    from store.files import private_dir

    return private_dir(Path(os.environ.get("NIM_DATA_DIR") or PROJECT_DIR / ".nim"))  # empty: unset


def database_url() -> str:
    """NIM_DATABASE_URL: a SQLite file by default, PostgreSQL in production."""
    url = os.environ.get("NIM_DATABASE_URL")
    if not url:
        return f"sqlite:///{data_dir() / 'nim.db'}"
    return _checked_db_url("NIM_DATABASE_URL", url)


def _checked_db_url(variable: str, url: str) -> str:
    """A database URL the store can use, or a ConfigError naming the variable (never the URL
    itself: it may hold a password)."""
    import re
    from urllib.parse import urlsplit

    scheme = re.match(r"^([A-Za-z][\w+.-]*):", url)
    how = (f"{variable} must be sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE "
           f"(a password in {variable} or ~/.pgpass)")
    if scheme is None or scheme.group(1) not in ("sqlite", "postgresql", "postgresql+psycopg"):
        raise ConfigError(f"{how}; got {'a ' + repr(scheme.group(1)) if scheme else 'no'} "
                          "scheme")
    if scheme.group(1) == "sqlite" and not re.match(r"^sqlite:///[^\x00]+$", url):
        raise ConfigError(f"{how}; a sqlite URL needs three slashes and a file path")
    try:
        urlsplit(url).port  # noqa: B018 - parses the port: a non-number is refused here
    except ValueError:
        raise ConfigError(f"{how}; its port is not a number from 1 to 65535") from None
    return url


def clock() -> Clock:
    """NIM_CLOCK freezes time (an ISO instant); NIM_CLOCK_FILE shares a movable virtual time
    between processes (demo stack, integration tests). Otherwise the system clock."""
    shared = os.environ.get("NIM_CLOCK_FILE")
    if shared:
        return FileClock(shared)
    frozen = os.environ.get("NIM_CLOCK")
    try:
        return VirtualClock(parse_instant(frozen)) if frozen else SystemClock()
    except ValueError as exc:
        raise ConfigError(f"NIM_CLOCK must be an ISO instant like 2026-01-12T09:00 (or unset "
                          f"for the real time): {exc}") from None


def closure_days() -> frozenset[date]:
    """NIM_CLOSURE_DAYS: the site's extra non-working days, comma-separated ISO dates."""
    raw = os.environ.get("NIM_CLOSURE_DAYS", "")
    try:
        return frozenset(date.fromisoformat(d.strip()) for d in raw.split(",") if d.strip())
    except ValueError as exc:
        raise ConfigError(f"NIM_CLOSURE_DAYS must be ISO dates separated by commas, e.g. "
                          f"2026-12-29,2026-12-30: {exc}") from None


def rag_amber_working_days() -> int:
    """NIM_RAG_AMBER_WORKING_DAYS: work due within this many working days shows amber (5)."""
    return _whole("NIM_RAG_AMBER_WORKING_DAYS", "5", 0, 60)


def _whole(env: str, default: str, lo: int, hi: int) -> int:
    """A whole-number setting within its range, or a refusal naming it."""
    raw = os.environ.get(env, default)
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10 and lo <= int(raw) <= hi):
        raise ConfigError(f"{env} must be a whole number {lo}-{hi}, got {raw[:40]!r}")
    return int(raw)


def audit_key() -> bytes:
    """The key the audit chain is signed with, held outside the database: NIM_AUDIT_KEY_FILE
    (a file readable by the service only), else NIM_AUDIT_KEY, else a key made once in the
    data folder (the embedded default: whoever owns that folder holds it)."""
    return _key("NIM_AUDIT_KEY", "audit.key", "the audit key")


def keystore_url() -> str:
    """Where the per-case data keys live (store/keystore.py): NIM_KEYSTORE_URL, else
    `keys.db` in the data folder. Never the case store's own database: its backups must not
    hold the keys that erasure destroys."""
    url = os.environ.get("NIM_KEYSTORE_URL")
    if not url:
        return f"sqlite:///{data_dir() / 'keys.db'}"
    if url == database_url():
        raise ConfigError("NIM_KEYSTORE_URL must not be the case store's database: its backups "
                          "would keep the keys that erasure destroys")
    return _checked_db_url("NIM_KEYSTORE_URL", url)


def secret_key() -> bytes:
    """The key practitioners' one-time-code secrets are encrypted with (Fernet), held outside
    the database like the audit key: NIM_SECRET_KEY_FILE, else NIM_SECRET_KEY, else a key
    made once in the data folder. Losing it means re-enrolling everyone."""
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(
        _key("NIM_SECRET_KEY", "secret.key", "the secret key")).digest())


def _key(env: str, default_name: str, what: str) -> bytes:
    """A key from `{env}_FILE`, else `{env}`, else a file made once (0600) in the data folder."""
    from store.files import read_bounded

    named = os.environ.get(f"{env}_FILE")
    if named:
        return read_bounded(named, f"{env}_FILE", limit=4096).strip()
    if os.environ.get(env):
        return os.environ[env].encode()
    path = data_dir() / default_name
    if not path.exists():
        import secrets

        try:  # several processes may start at once (flow runs): the first one writes it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    for _ in range(50):  # another process may still be writing it
        key = read_bounded(path, f"{what} file", limit=4096).strip()
        if key:
            return key
        import time

        time.sleep(0.02)
    raise ConfigError(f"{what} {path} is empty; remove it to have a new one made")


def intake_days() -> int:
    """NIM_INTAKE_DAYS: a staged referral never opened is deleted after this many days (14)."""
    return _whole("NIM_INTAKE_DAYS", "14", 1, 365)


def prefect_history_days() -> int:
    """NIM_PREFECT_HISTORY_DAYS: finished flow runs (with their logs and artifacts) are deleted
    from Prefect this many days after they ended (30). The case store and its audit are the
    record; Prefect's history is for watching work, and a month covers the monthly review of
    a caseload while keeping the run table, which every run query scans, small."""
    return _whole("NIM_PREFECT_HISTORY_DAYS", "30", 1, 3650)


def prefect_server_env() -> dict[str, str]:
    """Settings for a Prefect server running this workload (the local stack sets them; an
    operator's server should too, see the README):

    - no pause-expiration service: our runs wait for people with no timeout, so no pause ever
      expires, and the service reads every paused run every 5 seconds (a core at ~30,000);
    - Prefect's database vacuum deletes finished runs, their logs and artifacts after
      NIM_PREFECT_HISTORY_DAYS (bounded history; suspended runs are never finished)."""
    return {
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(prefect_history_days() * 86400),
    }


def work_pool() -> str:
    """NIM_WORK_POOL: the Prefect work pool the deployments run on (prefect.yaml names it as
    `{{ $NIM_WORK_POOL }}`; the stack, `status` and `doctor` read it here). Default nim-process."""
    import re

    name = os.environ.get("NIM_WORK_POOL") or "nim-process"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise ConfigError(f"NIM_WORK_POOL must be a work pool name (letters, digits, - _ .), got "
                          f"{name[:40]!r}")
    return name


def session_file() -> Path:
    """NIM_SESSION_FILE: where `nim-pathway login` keeps this user's session token (default:
    ~/.config/nim-pathway/session, 0600; one per person, like their home folder)."""
    named = os.environ.get("NIM_SESSION_FILE")
    if named:
        return Path(named)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "nim-pathway" / "session"


def session_minutes() -> int:
    """NIM_SESSION_MINUTES: how long a CLI login lasts (60; at most a working day, 600)."""
    return _whole("NIM_SESSION_MINUTES", "60", 1, 600)


def audit_checkpoint() -> Path:
    """NIM_AUDIT_CHECKPOINT: where the chain's head is written after each write (default: the
    data folder; in production, storage the database owner cannot write)."""
    return Path(os.environ.get("NIM_AUDIT_CHECKPOINT") or data_dir() / "audit.checkpoint")


def sync_service_health_file() -> Path:
    """Where the sync service reports its counts and last error for `status` (data folder)."""
    return data_dir() / "sync-service.json"


def sync_wait() -> float:
    """NIM_SYNC_WAIT: seconds a command waits for a running sync service to apply its change
    before it syncs the case itself (default 5; 0 syncs at once)."""
    return float(_whole("NIM_SYNC_WAIT", "5", 0, 120))


def inbox_ports() -> tuple[int, int]:
    """NIM_INBOX_PORT (4225) and NIM_INBOX_WEB_PORT (4280): the local inbox's SMTP receiver
    and its web page, on 127.0.0.1, where the demo and the local stack send messages."""
    return (_whole("NIM_INBOX_PORT", "4225", 1, 65535),
            _whole("NIM_INBOX_WEB_PORT", "4280", 1, 65535))


def inbox_dir() -> Path:
    """Where the local inbox keeps the messages it received (the data folder's `inbox`, 0700)."""
    from store.files import private_dir

    return private_dir(data_dir() / "inbox", "the local inbox folder")
