"""The chaos soak's script and its reference: what happens to a cohort day by day, taken from
the simulation (models/simulate.py), and the same script through the pure engine alone.

A script is a list of days, each a list of actions (plain dicts, JSON-safe): `open` (a
referral with sentinel identity), `complete` (a task and its outcome), `add-child` (a
later-born sibling), `placement` (a move to kinship care), `direction` (a court direction for
NIM's final report), `order` (an order for one child), `exit` (withdrawal, disengagement),
`pause` and `resume`. It is made by running the engine day by day: each day a case takes its
life events that are due, then every open task due that day or before is completed. The
engine states it leaves are the reference the soak's stores must equal.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from models import engine as eng
from models.pathway import PathwaySpec, load_pathway
from models.schemas import Referral
from models.simulate import exit_outcomes, family_mix, life_events, sample_outcome

START = date(2026, 1, 5)  # a Monday
CAREGIVERS = [["mother", "father", "foster-carer"], ["mother", "foster-carer"], ["mother"],
              ["mother", "father", "kinship-carer"], ["father", "foster-carer"]]
SENTINEL = "Sentinel"  # every name, address and birth place of the cohort carries it
NOTE = "soak"  # the note or reason every command that asks for one is given


def specs() -> dict[str, PathwaySpec]:
    return {"england-and-wales": load_pathway("england"), "scotland": load_pathway("scotland")}


def referral_for(i: int, on: date) -> dict[str, Any]:
    """The i-th family's referral (opened on `on`), identity all sentinels."""
    children, _ = family_mix(i)
    jurisdiction = "scotland" if i % 4 == 3 else "england-and-wales"
    care_entry = on - timedelta(days=7)
    kids = [{"given_name": f"{SENTINEL}-Given-{i}-{n}", "family_name": f"{SENTINEL}-Family-{i}",
             "date_of_birth": str(care_entry - timedelta(days=90 + 200 * n)),
             "address": f"{SENTINEL} Street {i}"} for n in range(children)]
    data: dict[str, Any] = {
        "jurisdiction": jurisdiction, "site": "soak", "care_entry": str(care_entry),
        "referral": str(on), "new_episode": True, "first_entry_to_care": True,
        "caregivers": [{"relationship": r, "name": f"{SENTINEL}-{r}-{i}"}
                       for r in CAREGIVERS[i % len(CAREGIVERS)]],
        "placement": {"kind": "foster", "start": str(care_entry)}}
    if jurisdiction != "scotland":
        data["proceedings_issued"] = str(on - timedelta(days=4))
    if children == 1:
        data["child"] = kids[0]
    else:
        data["children"] = kids
    return data


def engine_open(spec: PathwaySpec, data: dict[str, Any], ref: str, on: date) -> eng.CaseState:
    """The case state `case open` builds from a referral (nim_pathway/commands/cases.py),
    opened on `on`, with no store."""
    referral = Referral.model_validate(data)
    anchors: dict[str, date] = {"care_entry": referral.care_entry, "referral": referral.referral}
    children, kinds = [], {}
    for n, child in enumerate(referral.all_children, start=1):
        key = f"child-{n}"
        children.append(key)
        placement = referral.placement_of(child)
        if placement:
            kinds[key] = placement.kind
        anchors[eng.child_anchor("placement_start", key)] = (
            placement.start if placement else child.looked_after_from or referral.care_entry)
    carers = eng.caregiver_keys([c.relationship for c in referral.caregivers])
    for c, given in zip(carers, referral.caregivers, strict=True):
        c.children = list(given.children)
    for name, day in referral.case_dates().items():
        if name.partition("@")[0] in ("la_referral", "proceedings_issued", "final_hearing",
                                      "care_entry"):
            anchors[name] = day
    state = eng.CaseState(ref=ref, jurisdiction=referral.jurisdiction, anchors=anchors,
                          settings={**spec.settings, **referral.settings}, caregivers=carers,
                          closures=frozenset(), children=children, placement_kinds=kinds)
    eng.open_case(spec, state, on)
    return state


def apply(spec: PathwaySpec, case: eng.CaseState, action: dict[str, Any], on: date) -> None:
    """One action of the script on the pure engine, with the arguments the commands pass."""
    kind = action["kind"]
    if kind == "complete":
        eng.complete_task(spec, case, action["task"], action["outcome"], "soak", on)
    elif kind == "add-child":
        child = action["child"]
        eng.add_child(spec, case, on, None, None, date.fromisoformat(child["looked_after_from"]),
                      date.fromisoformat(child["proceedings_issued"])
                      if child.get("proceedings_issued") else None)
    elif kind == "placement":
        eng.change_placement(spec, case, date.fromisoformat(action["start"]),
                             eng.FIRST_CHILD, action["placement"])
    elif kind == "direction":
        eng.add_direction(spec, case, action["document"], action["role"],
                          date.fromisoformat(action["by"]), on)
    elif kind == "order":
        eng.record_final_order(spec, case, date.fromisoformat(action["made_on"]),
                               action["order"], False, on, action["child"])
    elif kind == "exit":
        eng.exit_case(spec, case, action["reason"], on, NOTE)
    elif kind == "pause":
        eng.pause(spec, case, on, NOTE)
    elif kind == "resume":
        eng.resume(spec, case, on)
    else:
        raise ValueError(f"unknown action {kind}")


def _life_action(spec: PathwaySpec, case: eng.CaseState, kind: str, i: int,
                 day: date) -> dict[str, Any] | None:
    """The action a life event of models.simulate becomes (as `apply_life_event` applies it),
    or None where the case cannot take it."""
    issued = case.anchors.get("proceedings_issued")
    if kind == "later-born-child":
        n = len(case.children) + 1
        return {"kind": "add-child", "child": {
            "given_name": f"{SENTINEL}-Given-{i}-late{n}", "family_name": f"{SENTINEL}-Family-{i}",
            "date_of_birth": str(day - timedelta(days=10)), "address": f"{SENTINEL} Street {i}",
            "looked_after_from": str(day - timedelta(days=3)),
            "proceedings_issued": str(day - timedelta(days=1)) if issued else None}}
    if kind in ("kinship-placement", "home-placement"):
        return {"kind": "placement", "placement": kind.removesuffix("-placement"),
                "start": str(day)}
    if kind == "court-direction" and "final-report" in spec.court.documents:
        report = spec.task_by_id.get("final-report")
        return {"kind": "direction", "document": "final-report",
                "role": report.role if report else next(iter(spec.roles)),
                "by": str(day + timedelta(days=28))}
    if kind == "order-for-one-child" and issued and spec.court.ends_looked_after:
        return {"kind": "order", "made_on": str(day), "order": spec.court.ends_looked_after[0],
                "child": case.children[-1]}
    if kind == "proceedings-withdrawn" and issued and kind in spec.exits:
        return {"kind": "exit", "reason": kind}
    return None


def _try(spec: PathwaySpec, case: eng.CaseState, action: dict[str, Any], on: date) -> bool:
    """Apply `action` if the engine takes it (a refused action leaves the case as it was)."""
    before = copy.deepcopy(case)
    try:
        apply(spec, case, action, on)
    except eng.EngineError:
        case.__dict__.update(before.__dict__)
        return False
    return True


def build(cases: int, days: int, seed: int) -> tuple[list[list[dict[str, Any]]],
                                                     dict[int, eng.CaseState]]:
    """The script (one list of actions per day from START) and the reference states by case
    index. The cohort follows models.simulate (family mix, exits, life events); `seed` picks
    which families pause for a fortnight."""
    rng = random.Random(seed)
    all_specs = specs()
    spread = max(1, min(60, days // 3))
    opens = {i: START + timedelta(days=i * spread // cases) for i in range(cases)}
    paused = {i for i in range(cases) if rng.random() < 0.1}
    script: list[list[dict[str, Any]]] = [[] for _ in range(days)]
    states: dict[int, eng.CaseState] = {}
    pending: dict[int, list[tuple[date, str]]] = {}
    for d in range(days):
        day = START + timedelta(days=d)
        out = script[d]
        for i in range(cases):
            if opens[i] == day:
                data = referral_for(i, day)
                spec = all_specs[data["jurisdiction"]]
                states[i] = engine_open(spec, data, f"REF-{i}", day)
                children, _ = family_mix(i)
                pending[i] = [(day + timedelta(days=e.after_days), e.kind)
                              for e in life_events(i, children)]
                if i in paused:
                    pending[i] += [(day + timedelta(days=35), "pause"),
                                   (day + timedelta(days=49), "resume")]
                pending[i].sort()
                out.append({"kind": "open", "i": i, "referral": data})
        for i, case in states.items():
            if case.closed_on:
                continue
            spec = all_specs[case.jurisdiction]
            _, leaves = family_mix(i)
            while pending[i] and pending[i][0][0] <= day:
                _, kind = pending[i].pop(0)
                action = ({"kind": kind} if kind in ("pause", "resume")
                          else _life_action(spec, case, kind, i, day))
                if action and not case.closed_on and _try(spec, case, action, day):
                    out.append({**action, "i": i})
            if leaves == "disengaged" and case.stage == "treatment" and not case.closed_on:
                action = {"kind": "exit", "reason": "disengaged"}
                if _try(spec, case, action, day):
                    out.append({**action, "i": i})
            decisions = {"d1": "treatment" if i % 3 else "no_treatment", "d2": "kinship_care",
                         **exit_outcomes(leaves)}
            for _ in range(200):  # completing work can open more work due today
                due = sorted((t.due, t.key) for t in case.tasks.values()
                             if t.state == eng.OPEN and t.due <= day)
                if not due or case.closed_on or case.paused_since:
                    break
                task = case.tasks[due[0][1]]
                action = {"kind": "complete", "task": task.key,
                          "outcome": sample_outcome(spec, task.spec_id, decisions)}
                if not _try(spec, case, action, day):
                    break
                out.append({**action, "i": i})
    return script, states


def snapshot(spec: PathwaySpec, case: eng.CaseState, on: date) -> dict[str, Any]:
    """What the differential check compares of a case: its tasks (state, due date, who it is
    about, when done, outcome), anchors, decisions, stage, exit, pauses, orders, placements and
    its clocks on `on` (models.engine.clock_states). Who completed a task is not compared: two
    people race for some tasks in the soak, and either may win."""
    return {
        "stage": case.stage, "closed_on": case.closed_on, "exit_reason": case.exit_reason,
        "paused_since": case.paused_since, "pauses": [asdict(p) for p in case.pauses],
        "anchors": dict(sorted(case.anchors.items())),
        "decisions": dict(sorted(case.decisions.items())),
        "children": list(case.children), "placement_kinds": dict(case.placement_kinds),
        "final_order": asdict(case.final_order) if case.final_order else None,
        "child_orders": {k: asdict(v) for k, v in sorted(case.child_orders.items())},
        "extensions": [asdict(e) for e in case.extensions],
        "caregivers": [(c.key, c.relationship) for c in case.caregivers],
        "tasks": {k: (t.spec_id, t.state, t.due, t.caregiver, t.child, t.occurrence,
                      t.completed_on, t.outcome) for k, t in sorted(case.tasks.items())},
        "clocks": [asdict(c) for c in eng.clock_states(spec, case, on)],
    }


def first_difference(want: dict[str, Any], got: dict[str, Any]) -> str | None:
    """The first field (and, for tasks, the first task) where two snapshots differ."""
    for name in want:
        if want[name] == got.get(name):
            continue
        if isinstance(want[name], dict) and isinstance(got.get(name), dict):
            for key in sorted(set(want[name]) | set(got[name])):
                if want[name].get(key) != got[name].get(key):
                    return (f"{name}[{key}]: engine {want[name].get(key)!r}, "
                            f"store {got[name].get(key)!r}")
        return f"{name}: engine {want[name]!r}, store {got.get(name)!r}"
    return None
