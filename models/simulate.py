"""Drive cases through the pathway in virtual time: demo, tests and benchmarks share it."""

from __future__ import annotations

import typing
from datetime import date
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
) -> int:
    """Complete every task on its due date until the case closes; returns events applied.
    `exit_in` (stage, exit reason): the family leaves when that stage begins."""
    eng.open_case(spec, case, start)
    events = 1
    day = start
    while not case.closed_on and events < max_steps:
        if exit_in and case.stage == exit_in[0]:
            eng.exit_case(spec, case, exit_in[1], day)
            break
        task = next_due_task(case)
        if task is None:
            raise eng.EngineError(f"{case.ref} is stuck in stage {case.stage}")
        day = max(day, task.due)
        eng.complete_task(spec, case, task.key, sample_outcome(spec, task.spec_id, decisions),
                          "simulation", day)
        events += 1
    return events
