"""Drive cases through the pathway in virtual time: demo, tests and benchmarks share it."""

from __future__ import annotations

import typing
from datetime import date
from typing import Any

from models import engine as eng
from models.pathway import PathwaySpec


def sample_outcome(spec: PathwaySpec, task_id: str, decisions: dict[str, str]) -> dict[str, Any]:
    """A valid outcome for a task: the first choice of each field, or the given decision."""
    model = spec.outcome_model(task_id)
    gate = spec.gate_of_task.get(task_id)
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
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
    spec: PathwaySpec, case: eng.CaseState, start: date, decisions: dict[str, str],
    max_steps: int = 1000,
) -> int:
    """Complete every task on its due date until the case closes; returns events applied."""
    eng.open_case(spec, case, start)
    events = 1
    day = start
    while not case.closed_on and events < max_steps:
        task = next_due_task(case)
        if task is None:
            raise eng.EngineError(f"{case.ref} is stuck in stage {case.stage}")
        day = max(day, task.due)
        eng.complete_task(spec, case, task.key, sample_outcome(spec, task.spec_id, decisions),
                          "simulation", day)
        events += 1
    return events
