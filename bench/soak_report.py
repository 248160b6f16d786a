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
    # repeats the receiver kept once by their Idempotency-Key: each must be a reclaimed send
    absorbed = Counter((p, k) for p, k in chaos.get("absorbed", []))
    diffs += [f"sent again with no reclaim: {k} x{n + 1}" for k, n in absorbed.items()
              if k[1] not in rows or rows[k[1]][1] == 0]
    for name, run in (("control", control), ("chaos", chaos)):
        diffs += [f"{name} audit: {p}" for p in run["audit"]]
        diffs += [f"identity in a message to {p} ({name})" for p, _, hit in run["got"] if hit]
        diffs += [f"identity in log {log} ({name})" for log in run["log_hits"]]
    diffs += [f"reconcile repaired {r}" for r in chaos.get("reconcile", [])]
    return {"differences": diffs, "messages": sum(sent_chaos.values()),
            "distinct_messages": len(sent_chaos), "control_messages": sum(sent_control.values()),
            "repeats_after_kill": sum(repeats.values()) - sum(unexplained.values()),
            "absorbed_repeats": sum(absorbed.values()),
            "refused_posts": chaos["refused"], "events": sum(len(d) for d in script),
            "reconcile_repairs": len(chaos["reconcile"]) if "reconcile" in chaos else None}


HEAD = "## Chaos soak (`make soak`)"
INTRO = ("The whole stack under faults against the pure engine (bench/soak.py, issue 30): the "
         "chaos run on PostgreSQL with two dispatcher processes (and, where the variant says "
         "so, a Prefect server, a worker and the sync service), its cases compared with the "
         "pure engine and its messages with a fault-free run on SQLite. One row per variant, "
         "replaced when that variant runs again.\n\n"
         "| variant | seed | cases | virtual months (days) | events | faults injected | "
         "messages delivered | differences | wall time |\n|---|---|---|---|---|---|---|---|---|\n")


def write_results(r: dict[str, Any], prefect: bool = False) -> None:
    """The soak's figures under their own heading in bench/RESULTS.md: one row per variant
    (size, with or without Prefect), replaced when that variant runs again."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    variant = f"{r['cases']} cases, {r['months']} months" + (" + Prefect" if prefect else "")
    faults = ", ".join(f"{k} {v}" for k, v in r["faults"].items())
    injected = sum(v for k, v in r["faults"].items() if not k.endswith("not-reached"))
    repaired = "" if r.get("reconcile_repairs") is None else \
        f"; reconcile repaired {r['reconcile_repairs']}"
    row = (f"| {variant} | {r['seed']} | {r['cases']} | {r['months']} ({r['days']}) | "
           f"{r['events']:,} | {injected}: {faults} | {r['messages']:,} "
           f"({r['repeats_after_kill']} shown twice; {r.get('absorbed_repeats', 0)} sent again "
           f"after a kill -9 mid-send, each counted in outbox.reclaimed and kept once by the "
           f"receiver's Idempotency-Key; {r['refused_posts']} posts refused) | "
           f"{len(r['differences'])}{repaired} | {r['wall_s']} s (chaos half "
           f"{r['chaos_s']} s, control half {r.get('control_s', '-')} s) |\n")
    before, found, after = text.partition(HEAD)
    rows: list[str] = []
    rest = ""
    if found:
        body, sep, tail = after.partition("\n## ")
        rest = sep + tail
        rows = [line + "\n" for line in body.splitlines()
                if line.startswith("| ") and not line.startswith(("| variant", "| seed"))
                and line.split(" | ")[0] != f"| {variant}" and "|---" not in line]
    else:
        before = text.rstrip("\n") + "\n\n"
    notes = [line + "\n" for line in (after.partition("\n## ")[0] if found else "").splitlines()
             if line.startswith(("- ", "  "))]  # notes under the table are kept
    section = f"{HEAD}\n\n{INTRO}" + "".join(rows) + row + ("\n" + "".join(notes)
                                                              if notes else "")
    path.write_text(before + section + (rest if rest else ""))
