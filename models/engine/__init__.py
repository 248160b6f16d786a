"""The pure pathway engine: (case state, event, date) -> new case state + effects.

No Prefect, no database, no wall clock. The case store loads a `CaseState`, calls one of the
event functions with today's date from the injected clock, persists the state and turns the
returned effects into audit rows, notifications and orchestration.

The engine is split by concern; this package re-exports all of it, so callers keep writing
`from models import engine as eng` and `eng.complete_task(...)`:

- `state`: the case state, effects and errors;
- `scheduling`: making tasks and working out their due dates;
- `lifecycle`: opening, stages and gates, completing tasks, decisions, exits, pauses;
- `family`: caregivers and children joining, leaving, consenting;
- `placement`: placement changes and a child ceasing to be looked after;
- `court`: the court's timetable, final orders, directions, referrals out;
- `clocks`: the clocks' read model;
- `timers`: the timers a case should have.
"""

from __future__ import annotations

from models.engine.clocks import (
    ClockState,
    clock_instances,
    clock_state,
    clock_states,
    is_stopped,
)
from models.engine.court import (
    add_direction,
    extend_timetable,
    record_final_order,
    record_interim_order,
    refer_out,
)
from models.engine.family import (
    add_caregiver,
    add_child,
    link_caregiver,
    remove_caregiver,
    remove_child,
    withdraw_consent,
)
from models.engine.lifecycle import (
    complete_task,
    decide,
    exit_case,
    move_anchor,
    open_case,
    pause,
    resume,
    validate_outcome,
)
from models.engine.placement import (
    cease_looked_after,
    change_placement,
    end_looked_after,
    looked_after_again,
)
from models.engine.scheduling import _apply_step, redate_open_tasks
from models.engine.state import (
    BLOCKED,
    CANCELLED,
    DONE,
    FIRST_CHILD,
    OPEN,
    AlreadyCompleted,
    Caregiver,
    CaseState,
    CourtOrder,
    Direction,
    Effect,
    EngineError,
    Extension,
    FinalOrder,
    Pause,
    TaskState,
    caregiver_keys,
    child_anchor,
)
from models.engine.timers import TimerPlan, opened_on, planned_timers
from models.pathway import CARER_RELATIONSHIPS, PARENT_RELATIONSHIPS, RELATIONSHIPS

__all__ = [
    # state
    "OPEN", "BLOCKED", "DONE", "CANCELLED", "FIRST_CHILD", "EngineError", "AlreadyCompleted",
    "Caregiver", "Pause", "TaskState", "Extension", "Direction", "FinalOrder", "CourtOrder",
    "CaseState", "Effect",
    "caregiver_keys", "child_anchor",
    # scheduling (`_apply_step` is used by tests/test_clocks.py)
    "_apply_step", "redate_open_tasks",
    # lifecycle
    "open_case", "validate_outcome", "complete_task", "exit_case", "pause", "resume", "decide",
    "move_anchor",
    # family
    "withdraw_consent", "add_caregiver", "remove_caregiver", "add_child", "link_caregiver",
    "remove_child",
    # placement
    "change_placement", "cease_looked_after", "end_looked_after", "looked_after_again",
    # court
    "extend_timetable", "record_final_order", "record_interim_order", "add_direction",
    "refer_out",
    # clocks and timers
    "ClockState", "clock_instances", "clock_state", "clock_states", "TimerPlan",
    "planned_timers", "opened_on",
    "is_stopped",
    # the caregiver relationships, from models.pathway
    "CARER_RELATIONSHIPS", "PARENT_RELATIONSHIPS", "RELATIONSHIPS",
]
