"""`python -m bench [--quick] [--only NAME[,NAME]]`: run the figures, print and save the table.

Writes bench/results/latest.json and bench/results/latest.md (git-ignored); a full run of
every figure also copies the Markdown to bench/RESULTS.md (committed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, code_version, load, machine, pg_available

RESULTS = ROOT / "bench" / "results"
FULL = {"sweep": [10_000, 100_000], "engine": 1000, "dispatch": 2000, "reps": 3,
        "prefect_sample": 50, "startup_runs": 5, "best_of": 2}
QUICK = {"sweep": [1_000, 5_000], "engine": 100, "dispatch": 300, "reps": 1,
         "prefect_sample": 5, "startup_runs": 3, "best_of": 1}


class Context:
    """What the figures share: sizes, a scratch folder, the template cases, cached results."""

    def __init__(self, quick: bool, selected: set[str], tmp: Path) -> None:
        self.quick = quick
        self.sizes: dict[str, Any] = QUICK if quick else FULL
        self.selected = selected
        self.tmp = tmp
        self.cache: dict[str, Any] = {}

    @cache  # noqa: B019 - one context per run
    def templates(self) -> Any:
        from bench.cohort import build_templates

        return build_templates()


def _figures() -> dict[str, Callable[[Context], list[Row]]]:
    from bench import (
        cli_write,
        dispatch,
        engine,
        prefect_runs,
        startup,
        sweep,
        sync,
        sync_scale,
        workbench,
    )

    return {"sweep-sqlite": sweep.figure_sqlite, "sweep-postgres": sweep.figure_postgres,
            "engine": engine.figure, "dispatch": dispatch.figure,
            "human-task": prefect_runs.figure_human_task, "timers": prefect_runs.figure_timers,
            "startup": startup.figure, "sync": sync.figure,
            "scale": sync_scale.figure, "cli-write": cli_write.figure,
            "workbench": workbench.figure}


NEEDS_POSTGRES = {"sweep-postgres", "dispatch"}  # scale skips only its PostgreSQL half
METHOD = """\
- **Cohorts** (figures 1, 2, 6): eight template cases (England and Scotland, different
  caregivers, 0 to 24 tasks done) are opened and progressed through the domain commands, then
  cloned in bulk (sqlite3 `executemany`, PostgreSQL `COPY`) into a freshly migrated store with
  fictional names: ~20 live timers per case, each clone shifted by whole weeks (0-150), so
  timers before the window are fired, those at the window's 09:00 UK send time are due and later
  ones pending. One practitioner per role per 40 cases; every role has a team channel (the
  README's production config), so role messages go to one channel, not to everyone in the role.
- **Sweeps**: each side runs in a fresh process on the same rows; imports, SQLAlchemy's mapper
  configuration and the engine object (process start-up, once per sweep process) come before
  timing; connecting and compiling SQL are timed. Baseline first; after each run the timers
  are un-fired and the outbox emptied. Best of 2 (full run), as the machine may be shared.
  Peak RSS is the process's VmHWM.
- **Dispatch**: two dispatcher processes (8 send threads each) start on one signal; the
  receiver counts messages by their `ref:` footer. Wall-clock from the signal to the last
  message received; best of 2 on fresh outboxes, duplicates counted in every run.
- **Prefect**: `prefect server start` on a free port with a temporary PREFECT_HOME and one
  `serve` process (runner poll 1 s); CPU-s from /proc for the server and serve process trees
  plus the driver's client calls. Medians of the repetitions.
- **Start-up**: median wall-clock of separate runs against a small migrated SQLite store.
- **Orchestration at scale** (figures 11-17, `--only scale`): 100 cases opened through the
  commands and synced through Prefect's API (real runs), then both stores grown to 10,000
  open cases by cloning them row by row (every case-scoped table; in Prefect each clone's
  runs Suspended, each at its own instant, plus six finished runs per case: ~100,000 runs),
  once with Prefect on SQLite and once on PostgreSQL (`VACUUM ANALYZE` after the load, as
  autovacuum would). No runner: nothing executes; idle CPU after a 60 s settle, over 30 s.
"""


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def _met(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "—"}[met]


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (also readable as plain text)."""
    head = ["figure", "value", "target", "met", "baseline", "ratio", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['figure']} | error: {r['error']} | | | | | |")
            continue
        base = f"{_fmt(r['baseline'], r['unit'])} ({r['baseline_label']})" \
            if r["baseline"] is not None else r["baseline_label"] or "—"
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "—"
        lines.append(f"| {r['figure']} | {_fmt(r['value'], r['unit'])} | {r['target']} | "
                     f"{_met(r['met'])} | {base} | {ratio} | {r['note']} |")
    return "\n".join(lines)


def _details(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if r.get("details"):
            bits = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}"
                             for k, v in r["details"].items() if not isinstance(v, dict))
            out.append(f"- **{r['figure']}**: {bits}")
            for k, v in r["details"].items():
                if isinstance(v, dict):
                    out.append(f"  - {k}: " + json.dumps(v, default=lambda x: round(x, 3)))
    return "\n".join(out)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    return "\n".join([
        "# nim-pathway benchmark results", "",
        f"Run {report['started']} ({'quick' if report['quick'] else 'full'}), "
        f"{report['total_s']:.0f} s in total. `make bench` to reproduce.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql']}; {m['os']}. Code measured: "
        f"{m['code']}" + (f" at the start, {m['code_at_end']} at the end (the code changed during "
                          "the run)" if m["code_at_end"] != m["code"] else "") + ". Load average "
        f"before the run {report['load_before']}, after {m['load_average']} (anything else "
        "running on the machine shares its cores with the figures).", "",
        table(report["rows"]), "",
        "Ratio = value / baseline, except figure 6, where it is how many times cheaper the "
        "case store is (Prefect CPU-s / case-store CPU-s).", "",
        "## Details", "", _details(report["rows"]), "", "## Method", "", METHOD])


def main(argv: list[str] | None = None) -> int:
    figures = _figures()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help=f"comma-separated figures: {', '.join(figures)}")
    args = parser.parse_args(argv)
    selected = list(figures) if not args.only else args.only.split(",")
    unknown = set(selected) - set(figures)
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(figures)}")
    started, t0, load_before = datetime.now(UTC), time.perf_counter(), load()
    code = code_version()  # the code being measured: the other figures import it as they run
    no_pg = pg_available() if NEEDS_POSTGRES & set(selected) else None
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="nim-bench-"))
    try:
        ctx = Context(args.quick, set(selected), tmp)
        for name in selected:
            print(f"[{time.perf_counter() - t0:6.0f} s] {name} …", flush=True)
            if name in NEEDS_POSTGRES and no_pg:
                rows.append({"figure": name, "error": f"PostgreSQL unavailable ({no_pg})"})
                continue
            try:
                rows += [r.as_dict() for r in figures[name](ctx)]
            except Exception as exc:  # noqa: BLE001 - report it and go on with the others
                traceback.print_exc()
                rows.append({"figure": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"started": started.isoformat(timespec="seconds"), "quick": args.quick,
              "total_s": time.perf_counter() - t0, "load_before": load_before,
              "machine": {**machine(), "code": code, "code_at_end": code_version()},
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, default=str))
    md = markdown(report)
    (RESULTS / "latest.md").write_text(md)
    if not args.quick and not args.only:
        (ROOT / "bench" / "RESULTS.md").write_text(md)
    print("\n" + table(rows))
    print(f"\ntotal {report['total_s']:.0f} s; written to {RESULTS / 'latest.md'}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
