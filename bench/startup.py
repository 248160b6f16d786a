"""Figure 7: CLI start-up, `nim-pathway --help` and `nim-pathway task list --json`.

Each command runs against a small migrated SQLite store (a few open cases) in a temporary data
folder; the median wall-clock of several runs is reported. Baseline: `python -c pass`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import PY, Row, clean_env, median_wall, run_worker, worker_main


def seed(args: dict[str, Any]) -> dict[str, Any]:
    """In a worker process: a small store with a few open cases (domain commands)."""
    from models.clock import UK, VirtualClock
    from models.schemas import Referral
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from store.db import migrate

    migrate(args["url"])
    store = build_service(args["url"], VirtualClock(datetime(2026, 1, 12, 9, tzinfo=UK)),
                          migrate=False)
    seed_team(store)
    for i in range(args["cases"]):
        store.cases.open_case(Referral(
            jurisdiction="england-and-wales", site="bench", new_episode=True,
            child={"given_name": "Kit", "family_name": "Lowther",
                   "date_of_birth": f"2025-0{i % 9 + 1}-01"},
            care_entry="2026-01-05", referral="2026-01-12", proceedings_issued="2026-01-08",
            caregivers=[{"relationship": "mother"}, {"relationship": "father"}],
            placement={"kind": "foster", "start": "2026-01-05"}), "coord.ali")
    return {"tasks": len(store.queries.tasks())}


def figure(ctx: Any) -> list[Row]:
    data = ctx.tmp / "cli"
    data.mkdir(exist_ok=True)
    url = f"sqlite:///{data / 'nim.db'}"
    seeded = run_worker("bench.startup", {"url": url, "cases": 5})
    env = clean_env(NIM_DATA_DIR=str(data), NIM_DATABASE_URL=url,
                    NIM_CLOCK="2026-01-12T09:00")
    cli, runs = str(Path(PY).parent / "nim-pathway"), ctx.sizes["startup_runs"]
    base, base_all = median_wall([PY, "-c", "pass"], runs, env)
    rows = []
    for label, args in (("--help", ["--help"]), ("task list --json", ["task", "list", "--json"])):
        median_wall([cli, *args], 1, env)  # warm the page cache and bytecode
        value, times = median_wall([cli, *args], runs, env)
        rows.append(Row(
            figure=f"7. start-up: nim-pathway {label}", value=value, unit="s",
            target="≤0.5 s", met=value <= 0.5, baseline=base, baseline_label="python -c pass",
            ratio=value / base, note=f"median of {runs} runs",
            details={"runs_s": times, "baseline_runs_s": base_all, "open_tasks": seeded["tasks"]}))
    return rows


if __name__ == "__main__":
    worker_main(seed)
