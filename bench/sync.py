"""Figures 8 to 10: what keeping Prefect in step with the case store costs per sweep.

A driver process starts `prefect server start` (no runner: the runs it creates stay
Scheduled, which is live, as a waiting task's run is) with the pathway's deployments, opens
N cases in a SQLite store through the domain commands and syncs them once, so that every
open task and stage has its run. Then, with nothing to change (the steady state of a sweep):

8. the sweep's sync now (drain the orchestration journal: empty) against the sweep's sync
   before this change (`sync_case` for every open case, each with its own client and a
   tag-filtered read of the case's runs), both in the same run on the same server;
9. the nightly audit (`reconcile`: one pass over the live runs, a diff in memory) against
   the same per-case baseline;
10. draining a journal of K changes (one per case; each a full sync of its case that finds
   nothing to do), in changes per second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Row, deployed_server, run_worker, timed
from bench.common import worker_main as _worker_main


def driver(args: dict[str, Any]) -> dict[str, Any]:
    with deployed_server(Path(args["tmp"])):
        return _measure(Path(args["tmp"]), args["cases"], args["changes"])


def _measure(tmp: Path, n: int, changes: int) -> dict[str, Any]:
    from models.clock import VirtualClock
    from models.schemas import Referral
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from orchestration.drain import drain_journal
    from orchestration.prefect_api import read_case_runs
    from orchestration.reconcile import reconcile
    from orchestration.sync import sync_case
    from store.db import migrate, session_scope
    from store.journal import note_change

    url = f"sqlite:///{tmp}/store.db"
    migrate(url)
    clock = VirtualClock(datetime(2026, 1, 12, 10, tzinfo=UTC))
    svc = build_service(url, clock, migrate=False)
    seed_team(svc)
    refs = [svc.cases.open_case(Referral(
        jurisdiction="england-and-wales", site="bench", new_episode=True,
        child={"given_name": "Juno", "family_name": "Ashdown", "date_of_birth": "2025-06-01"},
        care_entry="2026-01-05", referral="2026-01-12", proceedings_issued="2026-01-08",
        caregivers=[{"relationship": "mother"}, {"relationship": "foster-carer"}],
        placement={"kind": "foster", "start": "2026-01-05"}), "coord.ali").ref
        for _ in range(n)]
    _, setup_s, _ = timed(lambda: drain_journal(svc, limit=500))  # every case gets its runs
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = len(client.read_flow_runs(limit=200)) if n < 30 else client.count_flow_runs()
    out: dict[str, Any] = {"cases": n, "runs": runs, "setup_s": setup_s}
    def before() -> list[Any]:  # the sweep's sync before the journal: every open case, each
        # with its own client and its runs read by the `case:` tag (a scan: tags have no index)
        out = []
        for ref in refs:
            with get_client(sync_client=True) as client:
                out.append(sync_case(svc, ref, client=client, runs=read_case_runs(client, ref)))
        return out

    # the baseline first, then the new paths, all with nothing to change
    base, out["per_case_wall_s"], out["per_case_cpu_s"] = timed(before)
    out["per_case_actions"] = sum(len(r.started + r.resumed + r.cancelled) for r in base)
    drained, out["drain_wall_s"], out["drain_cpu_s"] = timed(lambda: drain_journal(svc))
    out["drain_claimed"] = drained.claimed
    audited, out["audit_wall_s"], out["audit_cpu_s"] = timed(lambda: reconcile(svc))
    out["audit_synced"] = len(audited)
    with session_scope(url) as session:
        for ref in refs[:changes]:
            note_change(session, ref, clock.now())
    drained, out["journal_wall_s"], out["journal_cpu_s"] = timed(lambda: drain_journal(svc))
    out["journal_applied"] = drained.applied
    return out


def work(args: dict[str, Any]) -> dict[str, Any]:
    return driver(args)


# -- figures (in the bench process) -----------------------------------------------------------


def _results(ctx: Any) -> dict[str, Any]:
    if "sync" not in ctx.cache:
        tmp = ctx.tmp / "sync-stack"
        tmp.mkdir(exist_ok=True)
        n = 20 if ctx.quick else 100
        ctx.cache["sync"] = run_worker("bench.sync", {"tmp": str(tmp), "cases": n,
                                                      "changes": n}, timeout=1800)
    return ctx.cache["sync"]


def figure(ctx: Any) -> list[Row]:
    r = _results(ctx)
    n, base = r["cases"], r["per_case_wall_s"]
    scale = f"{n} open cases, {r['runs']} runs in Prefect (SQLite), nothing to change"
    return [
        Row(figure="8. a quiet sweep's Prefect sync (journal drain)", value=r["drain_wall_s"],
            unit="s", target="cost follows changes, not cases", met=r["drain_claimed"] == 0,
            baseline=base, baseline_label="every open case synced, runs read by tag (before)",
            ratio=r["drain_wall_s"] / base,
            note=f"{scale}; before: {base:.2f} s wall, {r['per_case_cpu_s']:.2f} CPU-s",
            details=r),
        Row(figure="9. reconcile audit, one pass", value=r["audit_wall_s"], unit="s",
            target="<= 60 s at 10,000 cases (measured here at the size shown)",
            met=r["audit_synced"] == 0 and r["audit_wall_s"] <= 60,
            baseline=base, baseline_label="every open case synced, runs read by tag (before)",
            ratio=r["audit_wall_s"] / base,
            note=f"{scale}; {r['audit_cpu_s']:.2f} CPU-s; cases it had to repair: "
                 f"{r['audit_synced']}"),
        Row(figure="10. draining the journal", value=r["journal_applied"] / r["journal_wall_s"],
            unit="changes/s", target=">= 20 changes/s",
            met=r["journal_applied"] / r["journal_wall_s"] >= 20,
            baseline=n / base, baseline_label="cases/s synced one by one (before)",
            ratio=(r["journal_applied"] / r["journal_wall_s"]) / (n / base),
            note=f"{r['journal_applied']} changes, one per case, in {r['journal_wall_s']:.2f} s "
                 f"({r['journal_cpu_s']:.2f} CPU-s), one Prefect client, runs read by id"),
    ]


if __name__ == "__main__":
    _worker_main(work)
