"""The virtual demo as a newcomer runs it twice: its cases have their own reference series
(DEMO-0001, never a live case's NIM-YYYY-NNNN), and each run starts the local inbox afresh
(a second run does not duplicate the first's messages). Real SMTP to a real local inbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nim_pathway.demo import DEMO_SERIES
from nim_pathway.settings import Settings
from notifications.inbox import InboxStore, free_port

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "nim-pathway")


def test_demo_refs_are_their_own_series_and_the_inbox_is_reset(tmp_path):
    env = {"NIM_DATA_DIR": str(tmp_path / "data"), "NIM_INBOX_PORT": str(free_port()),
           "NIM_INBOX_WEB_PORT": str(free_port()),
           "NIM_DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"}
    settings = Settings.from_env(env)

    def demo() -> str:  # as `make demo` runs it (without the stack): its own process
        drop = ("PREFECT_API_URL", "NIM_DATABASE_URL", "NIM_ADMIN_TARGETS", "NIM_CLOCK")
        proc = subprocess.run([CLI, "demo"], capture_output=True, text=True, timeout=300,
                              env={**{k: v for k, v in os.environ.items() if k not in drop},
                                   **env, "COLUMNS": "200"}, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = demo()
    assert "Opened DEMO-0001" in first and "NIM-20" not in first
    store = InboxStore(settings.inbox_dir)
    received = store.messages()
    assert len(received) > 20
    refs = {r for m in received for r in re.findall(r"\b[A-Z]+-[0-9]{4}(?:-[0-9]{4})?\b",
                                                     m.subject + m.body)}
    assert refs and all(r.startswith(f"{DEMO_SERIES}-") for r in refs), refs

    second = demo()  # again: the same messages, once
    assert f"emptied ({len(received)} messages" in second
    assert "Opened DEMO-0001" in second  # the demo's own database starts afresh too
    again = store.messages()
    assert len(again) == len(received)
    assert sorted(m.subject for m in again) == sorted(m.subject for m in received)
