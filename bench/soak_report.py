"""The chaos soak's differential check and its figures in bench/RESULTS.md (bench/soak.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from typing import Any

from bench.common import ROOT
from bench.soak_script import first_difference, snapshot, specs


def compare(script: list[list[dict[str, Any]]], reference: dict, control: dict[str, Any],
            chaos: dict[str, Any], on: date) -> dict[str, Any]:
    """The differential check over the two runs' summaries (bench.soak `Run.summary`);
    returns the figures and the differences found."""
    all_specs = specs()
    want = {str(i): json.loads(json.dumps(snapshot(all_specs[c.jurisdiction], c, on),
                                          default=str)) for i, c in reference.items()}
    diffs: list[str] = []
    for name, run in (("control", control), ("chaos", chaos)):
        for i in sorted(want, key=int):
            got = run["cases"].get(i)
            why = first_difference(want[i], got) if got is not None else "not opened"
            if why:
                diffs.append(f"{name} case #{i} ({run['refs'].get(i)}): {why}")
    sent_control = Counter((p, k) for p, k, _ in control["got"])
    sent_chaos = Counter((p, k) for p, k, _ in chaos["got"])
    lost = sorted(set(sent_control) - set(sent_chaos))
    extra = sorted(set(sent_chaos) - set(sent_control))
    repeats = {k: n - 1 for k, n in sent_chaos.items() if n > 1}
    rows = chaos["outbox"]  # key: [status, reclaimed]
    unexplained = {k: n for k, n in repeats.items() if k[1] not in rows or rows[k[1]][1] == 0}
    not_sent = [k for k in sent_chaos if k[1] in rows and rows[k[1]][0] != "sent"]
    diffs += [f"lost message {k}" for k in lost] + [f"extra message {k}" for k in extra]
    diffs += [f"duplicated message {k} x{n + 1} (not a reclaim)" for k, n in unexplained.items()]
    diffs += [f"delivered but not sent per the outbox: {k}" for k in not_sent]
    for name, run in (("control", control), ("chaos", chaos)):
        diffs += [f"{name} audit: {p}" for p in run["audit"]]
        diffs += [f"identity in a message to {p} ({name})" for p, _, hit in run["got"] if hit]
        diffs += [f"identity in log {log} ({name})" for log in run["log_hits"]]
    diffs += [f"reconcile repaired {r}" for r in chaos.get("reconcile", [])]
    return {"differences": diffs, "messages": sum(sent_chaos.values()),
            "distinct_messages": len(sent_chaos), "control_messages": sum(sent_control.values()),
            "repeats_after_kill": sum(repeats.values()) - sum(unexplained.values()),
            "refused_posts": chaos["refused"], "events": sum(len(d) for d in script),
            "reconcile_repairs": len(chaos["reconcile"]) if "reconcile" in chaos else None}


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
