"""Figure 3: 1,000 cases through the whole pathway in virtual time, pure engine.

The brief names no baseline for this figure, so none is shown; loading both pathway files
(paid once per process) is reported beside it.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

from bench.common import Row, run_worker, worker_main

CAREGIVERS = [["mother", "father", "foster-carer"], ["mother", "foster-carer"], ["mother"],
              ["mother", "father", "kinship-carer"], ["father", "foster-carer"]]


def work(args: dict[str, Any]) -> dict[str, Any]:
    from models import engine as eng
    from models.pathway import load_pathway
    from models.simulate import exit_outcomes, family_mix, life_events, run_to_close

    t0 = time.perf_counter()
    specs = {"england-and-wales": load_pathway("england"), "scotland": load_pathway("scotland")}
    setup_s = time.perf_counter() - t0
    events, closed, exits, children, t0 = 0, 0, 0, 0, time.perf_counter()
    for i in range(args["cases"]):
        n_children, leaves = family_mix(i)
        jurisdiction = "scotland" if i % 4 == 3 else "england-and-wales"
        spec = specs[jurisdiction]
        referral = date(2026, 1, 5) + timedelta(days=i % 365)
        anchors = {"care_entry": referral - timedelta(days=7), "referral": referral}
        if jurisdiction != "scotland":
            anchors["proceedings_issued"] = referral - timedelta(days=4)
        case = eng.CaseState(ref=f"NIM-2026-{i + 1:05d}", jurisdiction=jurisdiction,
                             anchors=anchors, settings=dict(spec.settings),
                             caregivers=eng.caregiver_keys(CAREGIVERS[i % len(CAREGIVERS)]),
                             children=[f"child-{k}" for k in range(1, n_children + 1)])
        decisions = {"d1": "treatment" if i % 3 else "no_treatment", "d2": "kinship_care",
                     **exit_outcomes(leaves)}
        events += run_to_close(spec, case, referral, decisions,
                               exit_in=("treatment", leaves) if leaves == "disengaged" else None,
                               events=life_events(i, n_children))
        closed += case.closed_on is not None
        exits += case.exit_reason is not None
        children += n_children
    return {"events": events, "closed": closed, "seconds": time.perf_counter() - t0,
            "setup_s": setup_s, "exits": exits, "children": children}


def figure(ctx: Any) -> list[Row]:
    n = ctx.sizes["engine"]
    r = run_worker("bench.engine", {"cases": n})
    if r["closed"] != n:
        raise RuntimeError(f"only {r['closed']} of {n} cases closed")
    return [Row(
        figure=f"3. engine: {n} cases to closure", value=r["seconds"], unit="s",
        target=f"≤{30 * n / 1000:g} s", met=r["seconds"] <= 30 * n / 1000,
        baseline_label="none (not in the brief)",
        note=f"{r['events']:,} events, {r['events'] / r['seconds']:,.0f} events/s; "
             f"{r['children']:,} children, {r['exits']} early exits (models.simulate's "
             f"BeST?-based mix, with its life events); peak RSS {r['max_rss_mb']:.0f} MB",
        details={"pathway_load_s": r["setup_s"], "events": r["events"],
                 "events_per_s": r["events"] / r["seconds"], "cases_per_s": n / r["seconds"],
                 "children": r["children"], "early_exits": r["exits"],
                 "peak_rss_mb": r["max_rss_mb"]})]


if __name__ == "__main__":
    worker_main(work)
