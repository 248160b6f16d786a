"""Bounded Prefect history: the settings every Prefect server of ours runs with, as Prefect
itself reads them back. The deleting is Prefect's own database vacuum (finished top-level runs
whose end is older than the retention, with their logs and artifacts); it refuses a retention
under an hour, so it is not re-run here in real time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.errors import ConfigError
from nim_pathway.settings import Settings

READ = ("from prefect.settings import get_current_settings as s; v = s().server.services; "
        "print(v.db_vacuum.retention_period.total_seconds(), sorted(v.db_vacuum.enabled), "
        "v.pause_expirations.enabled)")


def test_history_days_become_prefects_retention(monkeypatch):
    monkeypatch.setenv("NIM_PREFECT_HISTORY_DAYS", "7")
    env = {**os.environ, **Settings.from_env().prefect_server_env}
    shown = subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    # 7 days = 7 × 86,400 s = 604,800 s, as Prefect reads it back
    assert shown == ["604800.0", "['events',", "'flow_runs']", "False"]
    monkeypatch.setenv("NIM_PREFECT_HISTORY_DAYS", "0")
    with pytest.raises(ConfigError, match="NIM_PREFECT_HISTORY_DAYS"):
        _ = Settings.from_env().prefect_server_env
