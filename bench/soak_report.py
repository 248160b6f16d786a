"""The chaos soak's differential check and its figures in bench/RESULTS.md (bench/soak.py)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import TYPE_CHECKING, Any

from bench.common import ROOT
from bench.soak_script import SENTINEL, first_difference, snapshot, specs

if TYPE_CHECKING:
    from bench.soak import Run


def compare(script: list[list[dict[str, Any]]], reference: dict, control: Run, chaos: Run,
            on: date) -> dict[str, Any]:
    """The differential check; returns the figures and the differences found."""
    from sqlalchemy import text

    from store.db import get_engine

    all_specs = specs()
    want = {i: snapshot(all_specs[c.jurisdiction], c, on) for i, c in reference.items()}
    diffs: list[str] = []
    for name, run in (("control", control), ("chaos", chaos)):
        got = run.snapshots(on)
        for i in sorted(want):
            why = first_difference(want[i], got.get(i, {})) if i in got else "not opened"
            if why:
                diffs.append(f"{name} case #{i} ({run.refs.get(i)}): {why}")
    sent_control = Counter((p, k) for p, k, _ in control.receiver.got)
    sent_chaos = Counter((p, k) for p, k, _ in chaos.receiver.got)
    lost = sorted(set(sent_control) - set(sent_chaos))
    extra = sorted(set(sent_chaos) - set(sent_control))
    repeats = {k: n - 1 for k, n in sent_chaos.items() if n > 1}
    with get_engine(chaos.url).connect() as conn:
        rows = {r.dedupe_key: r for r in conn.execute(text(
            "SELECT dedupe_key, status, reclaimed FROM outbox"))}
    unexplained = {k: n for k, n in repeats.items() if not rows.get(k[1]) or
                   rows[k[1]].reclaimed == 0}
    not_sent = [k for k in sent_chaos if k[1] in rows and rows[k[1]].status != "sent"]
    diffs += [f"lost message {k}" for k in lost] + [f"extra message {k}" for k in extra]
    diffs += [f"duplicated message {k} x{n + 1} (not a reclaim)" for k, n in unexplained.items()]
    diffs += [f"delivered but not sent per the outbox: {k}" for k in not_sent]
    for name, run in (("control", control), ("chaos", chaos)):
        diffs += [f"{name} audit: {p}" for p in run.svc.queries.verify_audit()]
    hits = [f"message to {p}" for run in (control, chaos) for p, _, t in run.receiver.got
            if SENTINEL in t]
    for run in (control, chaos):
        for log in run.folder.rglob("*.log"):
            if SENTINEL in log.read_text(errors="replace"):
                hits.append(f"log {log.name}")
    diffs += [f"identity in {h}" for h in hits]
    return {"differences": diffs, "messages": sum(sent_chaos.values()),
            "distinct_messages": len(sent_chaos), "control_messages": sum(sent_control.values()),
            "repeats_after_kill": sum(repeats.values()) - sum(unexplained.values()),
            "refused_posts": chaos.receiver.refused,
            "events": sum(len(d) for d in script)}


def write_results(r: dict[str, Any]) -> None:
    """The soak's figures under their own heading in bench/RESULTS.md (replaced each run)."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    head = "## Chaos soak (`make soak`)"
    faults = ", ".join(f"{k} {v}" for k, v in r["faults"].items())
    section = (f"{head}\n\nThe whole stack under faults against the pure engine "
               f"(bench/soak.py, issue 30), on PostgreSQL with two dispatcher processes.\n\n"
               f"| seed | cases | virtual months (days) | events | faults injected | "
               f"messages delivered | differences | wall time |\n|---|---|---|---|---|---|---|---|\n"
               f"| {r['seed']} | {r['cases']} | {r['months']} ({r['days']}) | {r['events']:,} | "
               f"{sum(r['faults'].values())}: {faults} | {r['messages']:,} "
               f"({r['repeats_after_kill']} repeats of a message in flight at a kill -9, each "
               f"counted in outbox.reclaimed; {r['refused_posts']} posts refused) | "
               f"{len(r['differences'])} | {r['wall_s']} s (chaos run {r['chaos_s']} s) |\n")
    if head in text:
        before, _, after = text.partition(head)
        rest = after.split("\n## ", 1)
        text = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
