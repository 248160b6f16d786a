"""The shape of the code, checked: one reader of the environment, one service per command,
no module too big to hold in a head. (The layers and the absence of import cycles are
import-linter contracts in pyproject.toml, run by `make test`.)"""

from __future__ import annotations

import ast
import contextlib
import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nim_pathway", "flows", "tasks", "orchestration", "models", "store", "notifications",
            "reports")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def test_only_the_settings_read_or_write_the_environment():
    """`Settings.from_env()` is the one reader of os.environ; everything else is handed the
    settings (or a service carrying them). Checked on the syntax tree, imports in functions
    included: `os.environ`, `os.getenv`, `os.putenv`, `from os import environ`."""
    offenders = []
    for path in _sources():
        if path == ROOT / "nim_pathway" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "os" and node.attr in ("environ", "getenv", "putenv")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                    a.name in ("environ", "getenv", "putenv") for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} from os import")
    assert offenders == []


def test_no_module_is_over_500_lines():
    """Outside tests and migrations, a module fits in a head (the issue's bound: ~500)."""
    long = {str(p.relative_to(ROOT)): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}


def test_a_cli_write_builds_its_settings_and_service_once(cli_store_env, monkeypatch):
    """A write read the environment and built the service twice (once to authenticate,
    once to act); now each command builds both once."""
    import nim_pathway.app as app
    import nim_pathway.settings as settings_module
    from nim_pathway.cli import main

    built = {"settings": 0, "service": 0}
    real_build, real_from_env = app.build_service, settings_module.Settings.from_env.__func__

    def counting_build(*a, **k):
        built["service"] += 1
        return real_build(*a, **k)

    def counting_from_env(cls, env=None):
        built["settings"] += 1
        return real_from_env(cls, env)

    monkeypatch.setattr(app, "build_service", counting_build)
    monkeypatch.setattr(settings_module.Settings, "from_env", classmethod(counting_from_env))
    old, sys.argv = sys.argv, ["nim-pathway", "--code", cli_store_env, "practitioner", "add",
                               "sw.new", "--role", "nim-social-worker", "--name", "N",
                               "--as", "admin.demo"]
    out, code = io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = old
    assert code in (0, None) and "added sw.new" in out.getvalue()
    assert built == {"settings": 1, "service": 1}


@pytest.fixture
def cli_store_env(tmp_path, monkeypatch) -> str:
    """A fresh demo site in this process's environment; returns the admin's current code."""
    from models.clock import VirtualClock, parse_instant
    from nim_pathway.app import build_service
    from nim_pathway.demo import DEMO_ADMIN, current_code, ensure_admin

    monkeypatch.setenv("NIM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NIM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("NIM_CLOCK", "2026-01-12T10:00")
    for name in ("NIM_SESSION_FILE", "NIM_ACTOR", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    svc = build_service(clock=VirtualClock(parse_instant("2026-01-12T10:00")))
    ensure_admin(svc)
    return current_code(svc, DEMO_ADMIN.handle)


def test_each_in_process_invocation_reads_its_own_settings(tmp_path, monkeypatch):
    """The app invoked twice in one process (tests, CliRunner) must not reuse the first
    invocation's settings: a stale session file would be taken for the second's."""
    from typer.testing import CliRunner

    from nim_pathway.cli import app
    from nim_pathway.cli.io import settings

    runner = CliRunner()
    seen = []
    for name in ("first", "second"):
        monkeypatch.setenv("NIM_DATA_DIR", str(tmp_path / name))
        runner.invoke(app, ["deadline", "--jurisdiction", "scotland", "--from", "2026-01-12",
                            "--working-days", "3"])
        seen.append(settings().data_dir)
    assert seen == [tmp_path / "first", tmp_path / "second"]
