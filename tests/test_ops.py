"""Operator checks without a server: `status` masks every URL, the pull step names what a
worker lacks (the end-to-end versions are in tests/test_operator_deploy.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nim_pathway import worker
from tests.prefect_stack import free_port

CLI = str(Path(sys.executable).parent / "nim-pathway")


@pytest.mark.parametrize("as_json", [False, True])
def test_status_never_prints_a_password(tmp_path, as_json):
    """The case store and Prefect both unreachable, both URLs holding a password: status
    names them masked and says what to fix, exit 1."""
    port = free_port()  # nothing listens there
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("NIM_", "PREFECT_"))},
           "NIM_DATA_DIR": str(tmp_path / "data"),
           "NIM_DATABASE_URL": f"postgresql://nimapp:s3cretPW@127.0.0.1:{port}/cases",
           "PREFECT_API_URL": f"http://admin:pr3fectPW@127.0.0.1:{port}/api"}
    proc = subprocess.run([CLI, "status", *(["--json"] if as_json else [])], env=env,
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "s3cretPW" not in out and "pr3fectPW" not in out and "Traceback" not in out
    assert f"postgresql://nimapp:***@127.0.0.1:{port}/cases" in out
    assert f"http://admin:***@127.0.0.1:{port}/api" in out
    if as_json:
        shown = json.loads(proc.stdout)
        assert shown["prefect"]["state"].startswith("unreachable")
        assert shown["case store"]["state"] == "unreachable"
        assert len(shown["problems"]) == 2


def _worker_env(monkeypatch, tmp_path, **over: str | None) -> None:
    values = {"NIM_DATABASE_URL": f"sqlite:///{tmp_path / 'nim.db'}",
              "NIM_DATA_DIR": str(tmp_path / "data"),
              "PREFECT_API_URL": "http://127.0.0.1:1/api",
              "NIM_PROJECT_DIR": None, "NIM_NOTIFY_CONFIG": None, "PREFECT__FLOW_RUN_ID": None,
              **over}
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize("missing", sorted(worker.REQUIRED))
def test_pull_step_names_the_missing_variable(monkeypatch, tmp_path, missing):
    _worker_env(monkeypatch, tmp_path, **{missing: None})
    with pytest.raises(worker.WorkerMisconfigured, match=f"^{missing} is not set on this worker"):
        worker.prepare_flow_run()


def test_pull_step_names_a_bad_setting_and_a_wrong_code_folder(monkeypatch, tmp_path):
    _worker_env(monkeypatch, tmp_path, NIM_DATABASE_URL="mysql://nim@db/nim")
    with pytest.raises(Exception, match="^NIM_DATABASE_URL must be"):
        worker.prepare_flow_run()
    _worker_env(monkeypatch, tmp_path, NIM_PROJECT_DIR=str(tmp_path))
    with pytest.raises(worker.WorkerMisconfigured, match="^NIM_PROJECT_DIR .* has no flows"):
        worker.prepare_flow_run()


def test_pull_step_enters_the_code_folder(monkeypatch, tmp_path):
    _worker_env(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    from nim_pathway.settings import PROJECT_DIR

    assert worker.prepare_flow_run() == {"directory": str(PROJECT_DIR)}
    assert Path.cwd() == PROJECT_DIR


def test_work_pool_setting(monkeypatch):
    from models.errors import ConfigError
    from nim_pathway.settings import Settings

    monkeypatch.delenv("NIM_WORK_POOL", raising=False)
    assert Settings.from_env().work_pool == "nim-process"
    monkeypatch.setenv("NIM_WORK_POOL", "site-a")
    assert Settings.from_env().work_pool == "site-a"
    monkeypatch.setenv("NIM_WORK_POOL", "bad name;")
    with pytest.raises(ConfigError, match="^NIM_WORK_POOL"):
        _ = Settings.from_env().work_pool
