"""The timers a case should have: reminders, due notices, escalations, clock warnings and
breaches (the store keeps its timer table equal to this plan)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from models.calendar import compute_due
from models.engine.clocks import clock_instances, clock_state, is_stopped
from models.engine.state import OPEN, CaseState
from models.pathway import PathwaySpec


@dataclass(frozen=True)
class TimerPlan:
    """A timer the case should have: the store keeps its timer table equal to this set."""

    key: str  # unique and stable: re-dating a task changes the key of its timers
    kind: str  # reminder, due, escalation, clock-warning, clock-breach
    fire_on: date
    task: str | None
    role: str
    detail: dict[str, Any]


def opened_on(spec: PathwaySpec, case: CaseState) -> date | None:
    """The day the case opened into the programme: its first stage began."""
    return case.anchors.get(f"stage:{spec.stages[0].id}") if spec.stages else None


def planned_timers(spec: PathwaySpec, case: CaseState) -> list[TimerPlan]:
    """Every reminder, due notice, escalation and clock warning the case needs now. A closed
    case keeps only the statutory work an exit kept; a paused case, only statutory work's."""
    cal = case.calendar
    plans: list[TimerPlan] = []
    notes = spec.notifications
    opened = opened_on(spec, case)
    for task in case.tasks.values():
        if task.state != OPEN:
            continue
        if (case.closed_on or case.paused_since) and task.stage != "statutory":
            continue
        if task.stage != "statutory" and (task.caregiver in case.paused_people
                                          or task.child in case.paused_people):
            continue  # this person's work is paused
        ladder = spec.task_by_id[task.spec_id].reminders
        for before in ladder if ladder is not None else notes.reminders:
            kind = "due" if before == 0 else "reminder"
            fire = cal.add_working_days(task.due, -before)[0] if before else task.due
            plans.append(TimerPlan(f"{case.ref}/{task.key}/{kind}-{before}wd/{task.due}", kind,
                                   fire, task.key, task.role, {"due": str(task.due)}))
        team = spec.roles[task.role].team if task.role in spec.roles else None
        if team != spec.programme and opened is not None and task.due < opened:
            continue  # another team's work already late when the case came to NIM: theirs
        ladder = [e for e in notes.escalations if e.team in (None, team)]
        for tier, esc in enumerate(ladder, start=1):
            fire = cal.add_working_days(task.due, esc.after_working_days)[0]
            # keyed by task and tier only: re-dating never sends a tier a second time
            plans.append(TimerPlan(f"{case.ref}/{task.key}/escalation-{tier}",
                                   "escalation", fire, task.key, esc.role,
                                   {"due": str(task.due), "tier": tier, "owner": task.role}))
    for clock, child in clock_instances(spec, case) if not case.closed_on else []:
        state = clock_state(spec, case, clock, date.min, child)
        if state.due is None or state.state in ("met", "breached", "not-applicable") or \
                is_stopped(state.state):
            continue
        detail = {"clock": state.id, "title": state.title, "due": str(state.due),
                  "explanation": state.explanation, "owner": clock.owner, "kind": clock.kind}
        warned = clock.notify or (spec.task_by_id[clock.met_by[5:]].role
                                  if clock.met_by and clock.met_by.startswith("done:")
                                  else spec.clock_owner)
        for w in clock.warnings:
            fire = compute_due(cal, state.due, -w.amount(case.settings), w.unit).due
            plans.append(TimerPlan(
                f"{case.ref}/clock/{state.id}/warn-{w.raw_amount}{w.unit}/{state.due}",
                "clock-warning", fire, None, warned, detail))
        if clock.met_by:
            for role in clock.escalate or [warned]:
                suffix = "" if not clock.escalate else f"/{role}"
                plans.append(TimerPlan(
                    f"{case.ref}/clock/{state.id}/breach/{state.due}{suffix}", "clock-breach",
                    state.due + timedelta(days=1), None, role, detail))
    return plans
