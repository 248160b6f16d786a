"""Settings from the environment, read in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from models.clock import Clock, FileClock, SystemClock, VirtualClock, parse_instant
from models.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACK_URL = "http://127.0.0.1:4200/api"  # the local stack's Prefect server (`nim-pathway up`)
KEY_FILES = ("audit.key", "secret.key", "totp.key")  # made once, for a new site, in the data folder
# a data folder holding any of these is a site already: a missing key is not made again
SITE_FILES = (*KEY_FILES, "nim.db", "keys.db", "audit.checkpoint")


def _data_dir_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("NIM_DATA_DIR") or PROJECT_DIR / ".nim")  # empty: unset


def process_environment() -> dict[str, str]:
    """This process's environment as it is (the launcher hands it to the preloaded CLI)."""
    return dict(os.environ)


def adopt_environment(env: Mapping[str, str]) -> None:
    """A preloaded CLI's forked child runs one command for a client process: it takes that
    process's environment whole, as exec would, before the command reads its settings."""
    os.environ.clear()
    os.environ.update(env)


@dataclass(frozen=True)
class Settings:
    """Every setting, from one snapshot of the environment. Built once by the composition
    root (`Settings.from_env()`, the only reader of `os.environ`) and carried by the service;
    nothing else reads the environment. Each value is parsed when first asked for, so a bad
    variable is refused (one line naming it) only by the commands that need it."""

    env: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return cls(MappingProxyType(dict(os.environ if env is None else env)))

    @cached_property
    def data_dir(self) -> Path:
        """Where the embedded database, the local stack's state and reports live (made 0700 when
        missing; an existing folder is used as it is, never chmodded)."""
        from store.files import private_dir

        return private_dir(_data_dir_path(self.env))

    @property
    def preload_socket(self) -> Path:
        """The preloaded CLI's socket (nim_pathway/preload.py) in the data folder. Not made
        here: a client asking where it is must not create the folder."""
        return _data_dir_path(self.env) / "cli.sock"

    @cached_property
    def database_url(self) -> str:
        """NIM_DATABASE_URL: a SQLite file by default, PostgreSQL in production."""
        url = self.env.get("NIM_DATABASE_URL")
        if not url:
            return f"sqlite:///{self.data_dir / 'nim.db'}"
        return _checked_db_url("NIM_DATABASE_URL", url)

    @cached_property
    def clock(self) -> Clock:
        """NIM_CLOCK freezes time (an ISO instant); NIM_CLOCK_FILE shares a movable virtual time
        between processes (demo stack, integration tests). Otherwise the system clock."""
        shared = self.env.get("NIM_CLOCK_FILE")
        if shared:
            return FileClock(shared)
        frozen = self.env.get("NIM_CLOCK")
        try:
            return VirtualClock(parse_instant(frozen)) if frozen else SystemClock()
        except ValueError as exc:
            raise ConfigError(f"NIM_CLOCK must be an ISO instant like 2026-01-12T09:00 (or unset "
                              f"for the real time): {exc}") from None

    @cached_property
    def closure_days(self) -> frozenset[date]:
        """NIM_CLOSURE_DAYS: the site's extra non-working days, comma-separated ISO dates."""
        raw = self.env.get("NIM_CLOSURE_DAYS", "")
        try:
            return frozenset(date.fromisoformat(d.strip()) for d in raw.split(",") if d.strip())
        except ValueError as exc:
            raise ConfigError(f"NIM_CLOSURE_DAYS must be ISO dates separated by commas, e.g. "
                              f"2026-12-29,2026-12-30: {exc}") from None

    @cached_property
    def rag_amber_working_days(self) -> int:
        """NIM_RAG_AMBER_WORKING_DAYS: work due within this many working days shows amber (5)."""
        return self._whole("NIM_RAG_AMBER_WORKING_DAYS", "5", 0, 60)

    def _whole(self, env: str, default: str, lo: int, hi: int) -> int:
        """A whole-number setting within its range, or a refusal naming it."""
        raw = self.env.get(env, default)
        if not (raw.isascii() and raw.isdigit() and len(raw) < 10 and lo <= int(raw) <= hi):
            raise ConfigError(f"{env} must be a whole number {lo}-{hi}, got {raw[:40]!r}")
        return int(raw)

    @cached_property
    def audit_key(self) -> bytes:
        """The key the audit chain is signed with, held outside the database: NIM_AUDIT_KEY_FILE
        (a file readable by the service only), else NIM_AUDIT_KEY, else a key made once in the
        data folder (the embedded default: whoever owns that folder holds it)."""
        return self._key("NIM_AUDIT_KEY", "audit.key", "the audit key")

    @cached_property
    def keystore_url(self) -> str:
        """Where the per-case data keys live (store/keystore.py): NIM_KEYSTORE_URL, else
        `keys.db` in the data folder. Never the case store's own database: its backups must not
        hold the keys that erasure destroys."""
        url = self.env.get("NIM_KEYSTORE_URL")
        if not url:
            return f"sqlite:///{self.data_dir / 'keys.db'}"
        if url == self.database_url:
            raise ConfigError("NIM_KEYSTORE_URL must not be the case store's database: its backups "
                              "would keep the keys that erasure destroys")
        return _checked_db_url("NIM_KEYSTORE_URL", url)

    @cached_property
    def secret_key(self) -> bytes:
        """The key practitioners' one-time-code secrets are encrypted with (Fernet), held outside
        the database like the audit key: NIM_SECRET_KEY_FILE, else NIM_SECRET_KEY, else a key
        made once in the data folder. Losing it means re-enrolling everyone."""
        import base64
        import hashlib

        return base64.urlsafe_b64encode(hashlib.sha256(
            self._key("NIM_SECRET_KEY", "secret.key", "the secret key")).digest())

    @cached_property
    def totp_key(self) -> bytes:
        """The key practitioners' one-time-code secrets are encrypted with (Fernet), apart from
        the secret key: NIM_TOTP_KEY_FILE, else NIM_TOTP_KEY, else `totp.key` in the data
        folder. Only the processes that check codes hold it (the workbench and the worker:
        docs/DEPLOY.md); an operator's CLI without it runs every command that checks no code.
        A site from before this key makes it once with `nim-pathway keys split-totp`."""
        import base64
        import hashlib

        return base64.urlsafe_b64encode(hashlib.sha256(
            self._key("NIM_TOTP_KEY", "totp.key", "the TOTP key",
                      "; a site from before the TOTP key runs `nim-pathway keys split-totp` "
                      "once on the service's host")).digest())

    @cached_property
    def totp_key_path(self) -> Path:
        """Where the TOTP key is (or is made by `keys split-totp`): NIM_TOTP_KEY_FILE, else
        `totp.key` in the data folder."""
        return Path(self.env.get("NIM_TOTP_KEY_FILE") or self.data_dir / "totp.key")

    def make_totp_key(self) -> bool:
        """Make the TOTP key file (0600) where `totp_key_path` says, unless it exists or the
        key is given inline (NIM_TOTP_KEY); True if it was made now."""
        import secrets

        if self.env.get("NIM_TOTP_KEY") and not self.env.get("NIM_TOTP_KEY_FILE"):
            return False
        try:
            fd = os.open(self.totp_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
        except FileExistsError:
            return False
        except OSError as exc:
            raise ConfigError(f"the TOTP key {self.totp_key_path} cannot be made "
                              f"({exc.strerror}); set NIM_TOTP_KEY_FILE to a path the service "
                              "account may write") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        return True

    def _key(self, env: str, default_name: str, what: str, missing_hint: str = "") -> bytes:
        """A key from `{env}_FILE`, else `{env}`, else the file in the data folder. Both keys
        are made (0600) only for a new site, a data folder holding none of a site's files;
        a key missing or empty beside the others stops the service: a new key would leave
        every seal, code secret and audit row unverifiable, so it is restored, never remade."""
        from store.files import read_bounded

        named = self.env.get(f"{env}_FILE")
        if named:
            key = read_bounded(named, f"{env}_FILE", limit=4096).strip()
            if not key:
                raise ConfigError(f"{env}_FILE {named} is empty: restore {what} from its "
                                  "backup; the service does not start without it")
            return key
        if self.env.get(env):
            return self.env[env].encode()
        path = self.data_dir / default_name
        if not path.exists():
            found = [n for n in SITE_FILES if (self.data_dir / n).exists()]
            if found:
                self._wait_for(path)  # another process may be making the keys right now
            if not path.exists() and found:
                raise ConfigError(
                    f"{what} {path} is missing, but this data folder holds a site "
                    f"({', '.join(found)}): restore the key from its backup (or set "
                    f"{env}_FILE); a new one would make every sealed value unreadable"
                    f"{missing_hint}")
            self._make_keys()
        key = read_bounded(path, f"{what} file", limit=4096).strip()
        if not key:
            self._wait_for(path, filled=True)
            key = read_bounded(path, f"{what} file", limit=4096).strip()
        if not key:
            raise ConfigError(f"{what} {path} is empty: restore it from its backup; the service "
                              "does not start without it")
        return key

    def _make_keys(self) -> None:
        """A new site's keys, both at once (several processes may start together: the first
        one writes each)."""
        import secrets

        for name in KEY_FILES:
            try:
                fd = os.open(self.data_dir / name,
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))

    @staticmethod
    def _wait_for(path: Path, filled: bool = False) -> None:
        import time

        for _ in range(50):  # a process making the keys writes them within milliseconds
            if path.exists() and (not filled or path.stat().st_size):
                return
            time.sleep(0.02)

    @cached_property
    def intake_days(self) -> int:
        """NIM_INTAKE_DAYS: a staged referral never opened is deleted after this many days (14)."""
        return self._whole("NIM_INTAKE_DAYS", "14", 1, 365)

    @cached_property
    def prefect_history_days(self) -> int:
        """NIM_PREFECT_HISTORY_DAYS: finished flow runs (with their logs and artifacts) are deleted
        from Prefect this many days after they ended (30). The case store and its audit are the
        record; Prefect's history is for watching work, and a month covers the monthly review of
        a caseload while keeping the run table, which every run query scans, small."""
        return self._whole("NIM_PREFECT_HISTORY_DAYS", "30", 1, 3650)

    @cached_property
    def prefect_server_env(self) -> dict[str, str]:
        """Settings for a Prefect server running this workload (the local stack sets them; an
        operator's server should too, see the README):

        - no pause-expiration service: our runs wait for people with no timeout, so no pause ever
          expires, and the service reads every paused run every 5 seconds (a core at ~30,000);
        - Prefect's database vacuum deletes finished runs, their logs and artifacts after
          NIM_PREFECT_HISTORY_DAYS (bounded history; suspended runs are never finished)."""
        return {
            "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
            "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(self.prefect_history_days * 86400),
        }

    @cached_property
    def work_pool(self) -> str:
        """NIM_WORK_POOL: the Prefect work pool the deployments run on (prefect.yaml names it as
        `{{ $NIM_WORK_POOL }}`; the stack, `status` and `doctor` read it here). Default nim-process."""
        import re

        name = self.env.get("NIM_WORK_POOL") or "nim-process"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
            raise ConfigError(f"NIM_WORK_POOL must be a work pool name (letters, digits, - _ .), got "
                              f"{name[:40]!r}")
        return name

    @cached_property
    def session_file(self) -> Path:
        """NIM_SESSION_FILE: where `nim-pathway login` keeps this user's session token (default:
        ~/.config/nim-pathway/session, 0600; one per person, like their home folder)."""
        named = self.env.get("NIM_SESSION_FILE")
        if named:
            return Path(named)
        base = Path(self.env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return base / "nim-pathway" / "session"

    @cached_property
    def session_minutes(self) -> int:
        """NIM_SESSION_MINUTES: how long a CLI login lasts (60; at most a working day, 600)."""
        return self._whole("NIM_SESSION_MINUTES", "60", 1, 600)

    @cached_property
    def audit_checkpoint(self) -> Path:
        """NIM_AUDIT_CHECKPOINT: where the chain's head is written after each write (default: the
        data folder; in production, storage the database owner cannot write)."""
        return Path(self.env.get("NIM_AUDIT_CHECKPOINT") or self.data_dir / "audit.checkpoint")

    @cached_property
    def sync_service_health_file(self) -> Path:
        """Where the sync service reports its counts and last error for `status` (data folder)."""
        return self.data_dir / "sync-service.json"

    @cached_property
    def sync_wait(self) -> float:
        """NIM_SYNC_WAIT: seconds a command waits for a running sync service to apply its change
        before it syncs the case itself (default 5; 0 syncs at once)."""
        return float(self._whole("NIM_SYNC_WAIT", "5", 0, 120))

    @cached_property
    def inbox_ports(self) -> tuple[int, int]:
        """NIM_INBOX_PORT (4225) and NIM_INBOX_WEB_PORT (4280): the local inbox's SMTP receiver
        and its web page, on 127.0.0.1, where the demo and the local stack send messages."""
        return (self._whole("NIM_INBOX_PORT", "4225", 1, 65535),
                self._whole("NIM_INBOX_WEB_PORT", "4280", 1, 65535))

    @cached_property
    def web_port(self) -> int:
        """NIM_WEB_PORT: the workbench's port on 127.0.0.1 (`nim-pathway web`; default 4300)."""
        return self._whole("NIM_WEB_PORT", "4300", 1, 65535)

    @cached_property
    def web_session_minutes(self) -> int:
        """NIM_WEB_SESSION_MINUTES: how long a workbench sign-in lasts (480; at most 600)."""
        return self._whole("NIM_WEB_SESSION_MINUTES", "480", 1, 600)

    @cached_property
    def notify_config_path(self) -> str | None:
        """NIM_NOTIFY_CONFIG: the notification targets file (notifications/config.py)."""
        return self.env.get("NIM_NOTIFY_CONFIG") or None

    @cached_property
    def notify_env(self) -> dict[str, str]:
        """The notification settings given as variables: NIM_TARGET_<SCHEME>, NIM_ADMIN_TARGETS
        and NIM_UI_URL (they override the config file's)."""
        return {k: v for k, v in self.env.items()
                if k.startswith("NIM_") and "TARGET" in k or k == "NIM_UI_URL"}

    @cached_property
    def prefect_api_url(self) -> str | None:
        """PREFECT_API_URL, else the local stack's server while `nim-pathway up` runs it, else
        None: orchestration is off and the case store alone is used."""
        return self.env.get("PREFECT_API_URL") or (
            STACK_URL if self.stack_pid("server") is not None else None)

    @cached_property
    def prefect_auth(self) -> str | None:
        """NIM_PREFECT_AUTH (or Prefect's own PREFECT_API_AUTH_STRING): the basic-auth secret
        of a Prefect server behind one."""
        return self.env.get("PREFECT_API_AUTH_STRING") or self.env.get("NIM_PREFECT_AUTH") or None

    def stack_pid(self, name: str) -> int | None:
        """A local stack process (`server`, `worker`, `sync`, `preload`, `inbox`: nim_pathway/stack.py),
        if its pid file names a live process (a stale pid file is removed). Read each time:
        the stack starts and stops under a running process."""
        from store.files import read_bounded

        path = self.data_dir / "stack" / f"{name}.pid"
        if not path.exists():
            return None
        try:
            pid = int(read_bounded(path, "a stack pid file", limit=32))
            os.kill(pid, 0)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None
        return pid

    @cached_property
    def project_dir(self) -> Path:
        """NIM_PROJECT_DIR: the checkout a worker runs flows from (default: this package's)."""
        named = self.env.get("NIM_PROJECT_DIR")
        return Path(named) if named else PROJECT_DIR

    @cached_property
    def fault(self) -> str | None:
        """NIM_FAULT: the crash tests' fault point (store/faults.py); unset in production."""
        return self.env.get("NIM_FAULT") or None

    @cached_property
    def inbox_dir(self) -> Path:
        """Where the local inbox keeps the messages it received (the data folder's `inbox`, 0700)."""
        from store.files import private_dir

        return private_dir(self.data_dir / "inbox", "the local inbox folder")


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
