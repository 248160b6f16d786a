"""What managers watch: the caseload board, each case's timeline, breaches and KPIs.

Read models over the case store, computed with the same calendar and engine as the cases.
Nothing here carries identity: case references, roles and dates only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean, median
from typing import Any

from sqlmodel import select

from models import engine as eng
from models.tables import Case, Placement, Task
from nim_pathway.commands import CaseStore
from nim_pathway.db import session_scope

AMBER_WORKING_DAYS = 5


def rag(working_days_to_due: int) -> str:
    """Red: overdue; amber: due within 5 working days; green otherwise."""
    if working_days_to_due < 0:
        return "red"
    return "amber" if working_days_to_due <= AMBER_WORKING_DAYS else "green"


def _states(store: CaseStore, open_only: bool,
            ref: str | None = None) -> list[tuple[Case, Any, eng.CaseState]]:
    with session_scope(store.url, read_only=True) as session:
        stmt = select(Case).order_by(Case.ref)
        if open_only:
            stmt = stmt.where(Case.closed_on.is_(None))
        if ref is not None:
            stmt = stmt.where(Case.ref == ref)
        return [(case, *store._load(session, case)) for case in session.exec(stmt)]


def caseload_board(store: CaseStore) -> list[dict[str, Any]]:
    """One row per open case: stage, next work due, working days to due, RAG, clocks."""
    today = store._today()
    rows = []
    for case, spec, state in _states(store, open_only=True):
        work = [t for t in state.tasks.values() if t.state == eng.OPEN]
        nxt = min(work, key=lambda t: (t.stage == "statutory", t.due), default=None)
        clocks = eng.clock_states(spec, state, today)
        wd = state.calendar.working_days_between(today, nxt.due) if nxt else None
        rows.append({
            "case": case.ref, "jurisdiction": case.jurisdiction, "stage": state.stage,
            "next_task": nxt.key if nxt else None, "due": str(nxt.due) if nxt else None,
            "working_days_to_due": wd, "rag": rag(wd) if wd is not None else "green",
            "owner_role": nxt.role if nxt else None,
            "overdue_tasks": sum(1 for t in work if t.due < today),
            "clocks": "; ".join(f"{c.id}: {c.state}" + (f" ({c.due})" if c.due else "")
                                for c in clocks if c.state != "not-started"),
        })
    order = {"red": 0, "amber": 1, "green": 2}
    return sorted(rows, key=lambda r: (order[r["rag"]], r["due"] or "9999", r["case"]))


def breaches(store: CaseStore, ref: str | None = None) -> list[dict[str, Any]]:
    """Work done late or still overdue, and statutory clocks breached, with their cause."""
    today = store._today()
    with session_scope(store.url, read_only=True) as session:
        causes = {(t.case_id, t.key): t.delay_cause for t in session.exec(select(Task))}
    out = []
    for case, spec, state in _states(store, open_only=False, ref=ref):
        for t in state.tasks.values():
            late = (t.completed_on - t.due).days if t.state == eng.DONE and t.completed_on \
                else (today - t.due).days if t.state == eng.OPEN else 0
            if late <= 0:
                continue
            team = spec.roles[t.role].team if t.role in spec.roles else "?"
            out.append({"case": case.ref, "kind": "task", "item": t.key, "role": t.role,
                        "team": team, "due": str(t.due), "days_late": late,
                        "open": t.state == eng.OPEN,
                        "cause": causes.get((case.id, t.key)) or "not recorded",
                        "explanation": t.due_explanation})
        for c in eng.clock_states(spec, state, today):
            if c.state in ("breached", "breached-open"):
                out.append({"case": case.ref, "kind": "clock", "item": c.id, "role": "",
                            "team": "statutory", "due": str(c.due),
                            "days_late": (today - c.due).days, "open": c.state != "breached",
                            "cause": "court override" if state.court_override_weeks else
                            "not recorded", "explanation": c.explanation})
    return sorted(out, key=lambda r: (r["team"], r["case"], r["due"]))


def _summary(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "mean": None}
    return {"n": len(values), "median": median(values), "mean": round(mean(values), 1)}


def kpis(store: CaseStore) -> dict[str, Any]:
    """The numbers NIM.md names, across every case in the store."""
    states = _states(store, open_only=False)
    today = store._today()
    with session_scope(store.url, read_only=True) as session:
        moves = Counter(p.case_id for p in session.exec(select(Placement)))
    spans: dict[str, list[int]] = defaultdict(list)
    on_time_kind: dict[str, list[bool]] = defaultdict(list)
    on_time_role: dict[str, list[bool]] = defaultdict(list)
    d1 = Counter()
    for _case, _spec, state in states:
        entry = state.anchors["care_entry"]
        spans["care entry to referral"].append((state.anchors["referral"] - entry).days)
        if "stage:assessment" in state.anchors:
            spans["care entry to consent"].append((state.anchors["stage:assessment"] - entry).days)
        for milestone, spec_id in (("care entry to assessment report", "assessment-report"),
                                   ("care entry to recommendation", "recommendation-signoff")):
            done = [t.completed_on for t in state.tasks.values()
                    if t.spec_id == spec_id and t.state == eng.DONE]
            if done:
                spans[milestone].append((done[0] - entry).days)
        if "d1" in state.decisions:
            d1[state.decisions["d1"]] += 1
        for t in state.tasks.values():
            if t.state == eng.DONE or (t.state == eng.OPEN and t.due < today):
                ok = t.state == eng.DONE and t.completed_on <= t.due
                on_time_kind[t.spec_id].append(ok)
                on_time_role[t.role].append(ok)
    causes = Counter(b["cause"] for b in breaches(store) if b["kind"] == "task")

    def rate(flags: list[bool]) -> dict[str, Any]:
        return {"n": len(flags), "on_time": round(sum(flags) / len(flags), 3) if flags else None}

    decided = sum(d1.values())
    return {
        "as_of": str(today),
        "cases": len(states),
        "open_cases": sum(1 for c, _, _ in states if not c.closed_on),
        "days": {name: _summary(values) for name, values in spans.items()},
        "share_to_treatment": round(d1["treatment"] / decided, 3) if decided else None,
        "d1_decided": decided,
        "on_time_by_task": {k: rate(v) for k, v in sorted(on_time_kind.items())},
        "on_time_by_role": {k: rate(v) for k, v in sorted(on_time_role.items())},
        "breaches_by_cause": dict(causes),
        "placement_moves_per_child": _summary([max(moves.get(c.id, 1) - 1, 0)
                                               for c, _, _ in states]),
    }


def timeline_markdown(store: CaseStore, ref: str) -> str:
    """The per-case timeline artifact: planned against actual, decisions, breaches."""
    rows = store.timeline(ref)
    show = store.show(ref)
    lines = [f"# {ref} timeline", "",
             f"Stage: **{show['stage'] or 'closed'}** · pathway {show['pathway']} · "
             f"{show['jurisdiction']}", "",
             "| date | event | due | status | role |", "|---|---|---|---|---|"]
    lines += [f"| {r['date']} | {r['event']} | {r['due'] or ''} | {r['status']} | {r['role']} |"
              for r in rows]
    lines += ["", "## Statutory clocks", "", "| clock | due | state | why |", "|---|---|---|---|"]
    lines += [f"| {c['title']} | {c['due'] or ''} | {c['state']} | {c['explanation']} |"
              for c in show["clocks"]]
    case_breaches = breaches(store, ref)  # this case only: the sweep calls this per case
    if case_breaches:
        lines += ["", "## Breaches", "", "| item | due | days late | cause |", "|---|---|---|---|"]
        lines += [f"| {b['item']} | {b['due']} | {b['days_late']} | {b['cause']} |"
                  for b in case_breaches]
    return "\n".join(lines)


def breach_report_markdown(rows: list[dict[str, Any]]) -> str:
    by_team: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_team[r["team"]].append(r)
    out = ["# Breach report", ""]
    if not rows:
        return "\n".join(out + ["No breaches."])
    for team, items in sorted(by_team.items()):
        out += [f"## {team}", "", "| case | item | role | due | days late | still open | cause |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['case']} | {r['item']} | {r['role']} | {r['due']} | {r['days_late']} | "
                f"{'yes' if r['open'] else 'no'} | {r['cause']} |" for r in items]
        out.append("")
    return "\n".join(out)


def kpi_markdown(data: dict[str, Any]) -> str:
    out = [f"# NIM KPIs (as of {data['as_of']})", "",
           f"Cases: {data['cases']} ({data['open_cases']} open). Share going on to treatment: "
           f"{data['share_to_treatment']} of {data['d1_decided']} D1 decisions.", "",
           "| interval | n | median days | mean days |", "|---|---|---|---|"]
    out += [f"| {k} | {v['n']} | {v['median']} | {v['mean']} |" for k, v in data["days"].items()]
    out += ["", "| role | tasks due so far | on time |", "|---|---|---|"]
    out += [f"| {k} | {v['n']} | {v['on_time']} |" for k, v in data["on_time_by_role"].items()]
    out += ["", "Breaches by cause: " + (", ".join(f"{k}: {v}" for k, v in
                                                   data["breaches_by_cause"].items()) or "none"),
            f"Placement moves per child: median {data['placement_moves_per_child']['median']}"]
    return "\n".join(out)
