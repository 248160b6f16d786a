"""Shared fixtures: a migrated case store on SQLite and on PostgreSQL, a virtual clock."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from models.clock import UK, VirtualClock
from models.pathway import load_pathway
from nim_pathway.app import Service, build_service  # noqa: F401
from store.db import get_engine, migrate

PG_ADMIN_URL = os.environ.get(
    "NIM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_admin():
    url = "postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1]
    return create_engine(url, isolation_level="AUTOCOMMIT")


@contextmanager
def _new_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards (skips without a server)."""
    try:
        admin = _pg_admin()
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("NIM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (NIM_REQUIRE_POSTGRES) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    name = f"nim_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with _new_database() as url:
        yield url


@pytest.fixture
def own_pg_url():
    """A PostgreSQL database of this test's own, for a test that creates tables the case
    store does not have (a key store): the session's database stays the case store's alone."""
    with _new_database() as url:
        yield url


def _truncate(url: str) -> None:
    from sqlmodel import SQLModel

    engine = get_engine(url)
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch):
    """A migrated, empty case store on each backend (with its own audit checkpoint file: the
    PostgreSQL database is emptied between tests, which a checkpoint would rightly flag)."""
    monkeypatch.setenv("NIM_AUDIT_CHECKPOINT", str(tmp_path / "audit.checkpoint"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nim.db'}"
        migrate(url)
        yield url
        get_engine(url).dispose()
    else:
        url = request.getfixturevalue("pg_url")
        _truncate(url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'nim.db'}"
    migrate(url)
    yield url
    get_engine(url).dispose()


@pytest.fixture
def clock():
    return VirtualClock(datetime(2026, 1, 12, 9, 0, tzinfo=UK))


@pytest.fixture
def england():
    return load_pathway("england")


@pytest.fixture
def scotland():
    return load_pathway("scotland")


@pytest.fixture
def store(db_url, clock):
    from nim_pathway.demo import seed_team

    s = build_service(db_url, clock, migrate=False)
    seed_team(s)
    return s


def referral_data(**over) -> dict:
    """A valid England referral with fictional identity; override any field."""
    data = {
        "jurisdiction": "england-and-wales",
        "site": "test",
        "child": {"given_name": "Sentinel-Given", "family_name": "Sentinel-Family",
                  "date_of_birth": "2025-06-01", "address": "Sentinel Address 1"},
        "care_entry": "2026-01-05",
        "referral": "2026-01-12",
        "proceedings_issued": "2026-01-08",
        "caregivers": [{"relationship": "mother", "name": "Sentinel-Mother"},
                       {"relationship": "father", "name": "Sentinel-Father"},
                       {"relationship": "foster-carer", "name": "Sentinel-Carer"}],
        "placement": {"kind": "foster", "start": "2026-01-05"},
        # tests open many families that share this one fictional child: each is confirmed a
        # new episode (tests/test_referral_checks.py turns this off to test the refusal)
        "new_episode": True,
    }
    data.update(over)
    return data


TWINS = [{"given_name": "Sentinel-Given", "family_name": "Sentinel-Family",
          "date_of_birth": "2025-06-01"},
         {"given_name": "Sentinel-Twin", "family_name": "Sentinel-Family",
          "date_of_birth": "2025-06-01"}]


def open_referral(store, **over) -> str:  # noqa: ANN001 - a Service
    """Open a case from `referral_data(**over)` (`children=` replaces the one child)."""
    from models.schemas import Referral

    data = referral_data(**over)
    if "children" in over:
        data.pop("child")
    return store.cases.open_case(Referral.model_validate(data), "coord.ali").ref


TODAY = date(2026, 1, 12)


@pytest.fixture
def cli_env(tmp_path):
    """The environment of a CLI process: its own store and data folder, a frozen clock, no
    session or actor inherited from the shell."""
    env = {**os.environ, "NIM_DATA_DIR": str(tmp_path / "data"),
           "NIM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "NIM_AUDIT_CHECKPOINT": str(tmp_path / "data" / "audit.checkpoint"),
           "NIM_CLOCK": "2026-01-12T10:00", "COLUMNS": "200"}
    for name in ("NIM_ACTOR", "NIM_CODE", "NIM_SESSION_FILE"):
        env.pop(name, None)
    return env


CLI = str(Path(sys.executable).parent / "nim-pathway")


@pytest.fixture
def run(cli_env, tmp_path):
    """Run the CLI as the person its --as names (their session under tmp_path/sessions, once
    they logged in), optionally at another clock; asserts the exit code and no traceback."""
    from tests.cli_team import as_person

    sessions = tmp_path / "sessions"

    def _run(*args, code=0, clock=None):
        env = {**cli_env, **({"NIM_CLOCK": clock} if clock else {})}
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                              env=as_person(env, args, sessions), stdin=subprocess.DEVNULL)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    return _run


# -- the host's shared files: no test may change them ------------------------------------------

HOST_FILES = ("/dev/null", "/dev/zero", "/dev/full")


def _host_modes() -> dict[str, int]:
    modes = {}
    for path in HOST_FILES:
        try:
            modes[path] = os.lstat(path).st_mode
        except OSError:
            continue
    return modes


_HOST_MODES_AT_START = _host_modes()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """Fail the test after which /dev/null, /dev/zero or /dev/full changed mode (run as root,
    a stray chmod breaks every other service on the machine). With xdist a test on another
    worker may be the culprit: the message says so. NIM_HOST_GUARD_LOG (set by .ci/run)
    collects the suspects for the run's summary."""
    changed = {path: (_HOST_MODES_AT_START[path], mode) for path, mode in _host_modes().items()
               if _HOST_MODES_AT_START.get(path) != mode}
    if not changed:
        return
    what = ", ".join(f"{p} {o & 0o7777:04o} -> {n & 0o7777:04o}" for p, (o, n) in changed.items())
    log = os.environ.get("NIM_HOST_GUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{item.nodeid}: {what}\n")
    _HOST_MODES_AT_START.update({p: n for p, (_, n) in changed.items()})  # report once
    pytest.fail(f"host files changed mode during {item.nodeid} (or a test running beside it "
                f"on another worker): {what}", pytrace=False)


def special_files(folder: Path) -> dict[str, Path]:
    """Paths of every kind the project must never write, chmod or follow, made in the test's
    own folder (never the host's /dev): a symlink to a file, a FIFO, and, as root, character
    devices equal to /dev/null and /dev/zero (os.mknod needs root; without it they are left
    out and the tests that need them skip with the reason)."""
    import stat

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "link-target"
    if not target.exists():
        target.write_text("untouched\n")
        target.chmod(0o644)
    made = {"symlink": folder / "link", "fifo": folder / "fifo", "file-as-folder": target / "x"}
    if not made["symlink"].is_symlink():
        made["symlink"].symlink_to(target)
    if not made["fifo"].exists():
        os.mkfifo(made["fifo"], 0o666)
    if os.geteuid() == 0:
        for name, minor in (("null-device", 3), ("zero-device", 5)):
            path = folder / name
            if not path.exists():
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
                path.chmod(0o666)
            made[name] = path
    return made
