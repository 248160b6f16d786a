"""The chaos soak (bench/soak.py, issue 30), short: 20 cases for 3 virtual months through the
commands on PostgreSQL under a few faults equal the pure engine, and deliver the messages a
fault-free run delivers. `make soak` runs the full size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bench.soak_script import START, build, first_difference, snapshot, specs
from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent


def test_the_script_follows_the_simulation_and_the_check_sees_a_difference():
    script, reference = build(20, 91, seed=3)
    kinds = {a["kind"] for day in script for a in day}
    assert {"open", "complete", "pause", "resume", "placement", "direction"} <= kinds
    assert len([a for day in script for a in day if a["kind"] == "open"]) == 20
    case = next(c for c in reference.values() if c.jurisdiction == "england-and-wales")
    spec = specs()["england-and-wales"]
    on = START + timedelta(days=91)
    want = snapshot(spec, case, on)
    assert first_difference(want, snapshot(spec, case, on)) is None
    done = next(k for k, t in case.tasks.items() if t.state == "done")
    case.tasks[done].state = "open"
    assert first_difference(want, snapshot(spec, case, on)).startswith(f"tasks[{done}]")


@pytest.mark.slow
@pytest.mark.postgres
def test_short_chaos_soak_loses_nothing_and_equals_the_pure_engine(tmp_path):
    from bench.common import pg_available

    why = pg_available()
    if why:
        if os.environ.get("NIM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (NIM_REQUIRE_POSTGRES): {why}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {why}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIM_", "PREFECT_"))}
    env["NIM_BENCH_POSTGRES_URL"] = PG_ADMIN_URL
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--cases", "20", "--months", "3",
                           "--seed", "20261206", "--fault-every", "4",
                           "--workdir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["differences"] == 0
    assert result["messages"] > 0 and result["distinct_messages"] == result["control_messages"]
    # each message kept once: a send repeated after a kill mid-send carries its key and is
    # answered without being kept (explained by a reclaim, or it is a difference above)
    assert result["messages"] == result["distinct_messages"] and result["repeats_after_kill"] == 0
    faults = result["faults"]
    assert sum(n for kind, n in faults.items() if not kind.endswith("not-reached")) >= 5, faults
    assert "fault " in proc.stdout and "soak seed 20261206" in proc.stdout  # seed and faults logged
