"""Drive cases through the pathway in virtual time: demo, tests and benchmarks share it."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from models import engine as eng
from models.pathway import PathwaySpec

# Realistic cohorts (models, demo, benchmarks): BeST? randomised 382 families with 488
# children (S11, S14): 1.28 children per family, drawn here as 77% one child, 18% two, 5%
# three (default split, mean 1.28); fewer than 70% of allocated families received NIM (S11):
# 30% leave early, split (default) into a third not accepted at triage, a third declining
# consent, a third disengaging in treatment.
CHILDREN_PER_FAMILY = ((1, 77), (2, 18), (3, 5))
EXIT_SHARE = {"referral-declined": 10, "consent-declined": 10, "disengaged": 10}


def family_mix(i: int) -> tuple[int, str | None]:
    """Children and early exit (or None) of the i-th family of a realistic cohort, cycling
    through 100 families in the proportions above."""
    slot = (i * 37) % 100  # spread the kinds over the cohort
    bound, children = 0, 1
    for n, share in CHILDREN_PER_FAMILY:
        bound += share
        if slot < bound:
            children = n
            break
    slot, bound = (i * 53) % 100, 0
    for reason, share in EXIT_SHARE.items():
        bound += share
        if slot < bound:
            return children, reason
    return children, None


@dataclass(frozen=True)
class LifeEvent:
    """Something that happens to a family while the pathway runs, `after_days` from the
    referral: a later-born sibling (with their own application where the family has one), an
    order ending one child's looked-after status, a withdrawal, a move to a kinship placement,
    a court direction for NIM's final report, a child going home to a parent (under the interim
    care order: weekly visits until the final order)."""

    after_days: int
    kind: str


# Life events per 100 families (defaults, not measured rates): later-born siblings are common
# in recurrent proceedings; kinship placements common in NIM families (issue 27).
LIFE_EVENT_SHARE = {"later-born-child": 8, "kinship-placement": 15, "court-direction": 20,
                    "order-for-one-child": 30, "proceedings-withdrawn": 3, "home-placement": 10}


def life_events(i: int, children: int) -> list[LifeEvent]:
    """The life events of the i-th family of a cohort (deterministic, spread by `i`); an order
    for one child only in a sibling group."""
    out = []
    for n, (kind, share) in enumerate(LIFE_EVENT_SHARE.items()):
        if (i * (31 + 6 * n)) % 100 >= share or (kind == "order-for-one-child" and children < 2):
            continue
        out.append(LifeEvent({"later-born-child": 40, "kinship-placement": 20,
                              "court-direction": 60, "order-for-one-child": 150,
                              "proceedings-withdrawn": 90, "home-placement": 110}[kind], kind))
    return sorted(out, key=lambda e: e.after_days)


def apply_life_event(spec: PathwaySpec, case: eng.CaseState, event: LifeEvent,
                     day: date) -> list[eng.Effect]:
    """Apply one life event on `day`, as the commands would; an event the case cannot take
    (no application to withdraw, a closed case) is skipped."""
    if case.closed_on:
        return []
    issued = case.anchors.get("proceedings_issued")
    if event.kind == "later-born-child":
        return eng.add_child(spec, case, day, looked_after_from=day - timedelta(days=3),
                             proceedings_issued=day - timedelta(days=1) if issued else None)
    if event.kind == "kinship-placement":
        return eng.change_placement(spec, case, day, eng.FIRST_CHILD, "kinship")
    if event.kind == "home-placement":
        return eng.change_placement(spec, case, day, eng.FIRST_CHILD, "home")
    if event.kind == "court-direction" and "final-report" in spec.court.documents:
        report = spec.task_by_id.get("final-report")
        return eng.add_direction(spec, case, "final-report",
                                 report.role if report else next(iter(spec.roles)),
                                 day + timedelta(days=28), day)
    if event.kind == "order-for-one-child" and issued and spec.court.ends_looked_after:
        return eng.record_final_order(spec, case, day, spec.court.ends_looked_after[0], False,
                                      day, case.children[-1])
    if event.kind == "proceedings-withdrawn" and issued and event.kind in spec.exits:
        return eng.exit_case(spec, case, event.kind, day)
    return []


def exit_outcomes(reason: str | None) -> dict[str, Any]:
    """Task outcomes that lead the engine to take an exit by itself."""
    return {"referral-declined": {"triage": {"accepted": False}},
            "consent-declined": {"consent": {"consent": "declined"}}}.get(reason or "", {})


def sample_outcome(spec: PathwaySpec, task_id: str, decisions: dict[str, Any]) -> dict[str, Any]:
    """A valid outcome for a task: the first choice of each field, or the given decision;
    `decisions` may also hold a task id's own field values (a triage not accepted)."""
    model = spec.outcome_model(task_id)
    gate = spec.gate_of_task.get(task_id)
    out: dict[str, Any] = dict(decisions.get(task_id, {}))
    for name, info in model.model_fields.items():
        if name in out:
            continue
        if name == "decision" and gate:
            out[name] = decisions.get(gate.decision, next(iter(gate.outcomes)))
        elif info.is_required():
            choices = typing.get_args(info.annotation)
            if choices:
                out[name] = choices[0]
            elif info.annotation is bool:
                out[name] = True
            elif info.annotation is date:
                out[name] = "2000-01-01"
            else:
                out[name] = "recorded"
    return out


def next_due_task(case: eng.CaseState) -> eng.TaskState | None:
    """The open pathway task due soonest (statutory series are handled alongside)."""
    open_tasks = [t for t in case.tasks.values() if t.state == eng.OPEN]
    return min(open_tasks, key=lambda t: (t.stage == "statutory", t.due, t.key), default=None)


def run_to_close(
    spec: PathwaySpec, case: eng.CaseState, start: date, decisions: dict[str, Any],
    max_steps: int = 1000, exit_in: tuple[str, str] | None = None,
    events: Sequence[LifeEvent] = (),
) -> int:
    """Complete every task on its due date until the case closes; returns events applied.
    `exit_in` (stage, exit reason): the family leaves when that stage begins. `events`: life
    events, each applied on its day (before the work due that day)."""
    eng.open_case(spec, case, start)
    applied = 1
    day = start
    pending = sorted(events, key=lambda e: e.after_days)
    while not case.closed_on and applied < max_steps:
        if exit_in and case.stage == exit_in[0]:
            eng.exit_case(spec, case, exit_in[1], day)
            break
        task = next_due_task(case)
        if task is None:
            raise eng.EngineError(f"{case.ref} is stuck in stage {case.stage}")
        if pending and start + timedelta(days=pending[0].after_days) <= max(day, task.due):
            day = max(day, start + timedelta(days=pending[0].after_days))
            apply_life_event(spec, case, pending.pop(0), day)
            applied += 1
            continue
        day = max(day, task.due)
        eng.complete_task(spec, case, task.key, sample_outcome(spec, task.spec_id, decisions),
                          "simulation", day)
        applied += 1
    return applied
