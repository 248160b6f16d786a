"""The pure pathway engine: (case state, event, date) -> new case state + effects.

No Prefect, no database, no wall clock. The case store loads a `CaseState`, calls one of the
event functions with today's date from the injected clock, persists the state and turns the
returned effects into audit rows, notifications and orchestration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from models.calendar import WorkingCalendar, compute_due
from models.pathway import CASE_ANCHORS, DueRule, Offset, PathwaySpec, TaskSpec

PARENT_RELATIONSHIPS = ("mother", "father", "parent")
CARER_RELATIONSHIPS = ("foster-carer", "kinship-carer")
RELATIONSHIPS = PARENT_RELATIONSHIPS + CARER_RELATIONSHIPS

OPEN, BLOCKED, DONE, CANCELLED = "open", "blocked", "done", "cancelled"


class EngineError(ValueError):
    """An event the pathway cannot accept, with the reason in words a user can act on."""


class AlreadyCompleted(EngineError):
    """The task was completed before; nothing changes."""


@dataclass
class Caregiver:
    key: str  # e.g. "mother", "father", "father-2", "foster-carer"
    relationship: str


@dataclass
class TaskState:
    key: str  # unique in the case, [a-z0-9-]: "wmci-mother", "court-update-3"
    spec_id: str
    stage: str
    title: str
    role: str
    due: date
    due_explanation: str
    anchor: str
    state: str = OPEN
    caregiver: str | None = None
    occurrence: int = 1
    after: list[str] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    completed_on: date | None = None
    completed_by: str | None = None


@dataclass
class CaseState:
    ref: str
    jurisdiction: str
    anchors: dict[str, date]
    settings: dict[str, int]
    caregivers: list[Caregiver]
    tasks: dict[str, TaskState] = field(default_factory=dict)
    stage: str | None = None
    decisions: dict[str, str] = field(default_factory=dict)
    closed_on: date | None = None
    court_override_weeks: int | None = None
    closures: frozenset[date] = frozenset()

    @property
    def calendar(self) -> WorkingCalendar:
        return WorkingCalendar(self.jurisdiction, self.closures)


@dataclass(frozen=True)
class Effect:
    """Something that happened, for the audit log, notifications and orchestration."""

    kind: str  # stage-entered, stage-completed, task-created, task-unlocked, task-completed,
    # task-redated, task-cancelled, decision-recorded, anchor-moved, case-closed
    task: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------


def caregiver_keys(relationships: list[str]) -> list[Caregiver]:
    """Stable per-case keys: the first mother is 'mother', a second father 'father-2'."""
    seen: dict[str, int] = {}
    out = []
    for rel in relationships:
        if rel not in RELATIONSHIPS:
            raise EngineError(
                f"unknown caregiver relationship {rel!r}; use one of {', '.join(RELATIONSHIPS)}"
            )
        seen[rel] = seen.get(rel, 0) + 1
        out.append(Caregiver(rel if seen[rel] == 1 else f"{rel}-{seen[rel]}", rel))
    return out


def _caregivers_for(spec_task: TaskSpec, case: CaseState) -> list[str | None]:
    if spec_task.per == "case":
        return [None]
    wanted = {
        "caregiver": RELATIONSHIPS,
        "parent": PARENT_RELATIONSHIPS,
        "carer": CARER_RELATIONSHIPS,
    }[spec_task.per]
    return [c.key for c in case.caregivers if c.relationship in wanted]


def _resolve_anchor(case: CaseState, anchor: str) -> date | None:
    if anchor.startswith("done:"):
        done = [t for t in case.tasks.values() if t.spec_id == anchor[5:] and t.state == DONE]
        return max((t.completed_on for t in done if t.completed_on), default=None)
    return case.anchors.get(anchor)


def _due(case: CaseState, rule: Offset, anchor_name: str, anchor: date, work: bool = True):
    """Due date of one rule; work a person does never falls due on a non-working day."""
    return compute_due(case.calendar, anchor, rule.amount(case.settings), rule.unit,
                       anchor_name.replace("_", " "), roll_forward=work)


def _apply_step(
    case: CaseState, due_rule: DueRule, every: Offset | None, occurrence: int
) -> tuple[date, str]:
    anchor = _resolve_anchor(case, due_rule.anchor)
    if anchor is None:
        raise EngineError(
            f"case {case.ref} has no {due_rule.anchor!r} date yet; record it before this stage"
        )
    if occurrence == 1 or every is None:
        d = _due(case, due_rule, due_rule.anchor, anchor)
        return d.due, d.explanation
    # occurrence n is the first due date plus (n-1) spacings, computed in the spacing's unit
    first = _due(case, due_rule, due_rule.anchor, anchor)
    step = every.amount(case.settings) * (occurrence - 1)
    d = compute_due(case.calendar, first.due, step, every.unit, "occurrence 1 due", True)
    return d.due, f"occurrence {occurrence}: {d.explanation} ({first.explanation})"


def _task_key(spec_task: TaskSpec, caregiver: str | None, occurrence: int, many: bool) -> str:
    key = spec_task.id
    if caregiver:
        key += f"-{caregiver}"
    if many:
        key += f"-{occurrence}"
    return key


def _create_tasks(case: CaseState, spec_task: TaskSpec, stage: str) -> list[Effect]:
    effects = []
    count = spec_task.count
    count = case.settings[count] if isinstance(count, str) else count
    many = count > 1 or bool(spec_task.then_every)
    for caregiver in _caregivers_for(spec_task, case):
        for occurrence in range(1, count + 1):
            key = _task_key(spec_task, caregiver, occurrence, many)
            if key in case.tasks:
                continue
            due, why = _apply_step(case, spec_task.due, spec_task.every, occurrence)
            after = [
                k
                for k, t in case.tasks.items()
                if t.spec_id in spec_task.after and t.caregiver in (None, caregiver)
            ]
            task = TaskState(
                key=key,
                spec_id=spec_task.id,
                stage=stage,
                title=spec_task.title,
                role=spec_task.role,
                due=due,
                due_explanation=why,
                anchor=spec_task.due.anchor,
                caregiver=caregiver,
                occurrence=occurrence,
                after=after,
            )
            if any(case.tasks[k].state != DONE for k in after):
                task.state = BLOCKED
            case.tasks[key] = task
            effects.append(Effect("task-created", key, {"role": task.role, "due": str(due)}))
    return effects


def _enter_stage(spec: PathwaySpec, case: CaseState, stage_id: str, on: date) -> list[Effect]:
    case.stage = stage_id
    case.anchors[f"stage:{stage_id}"] = on
    effects = [Effect("stage-entered", None, {"stage": stage_id, "on": str(on)})]
    stage = spec.stage_by_id[stage_id]
    # create in declaration order so 'after' can see its prerequisites
    for spec_task in stage.tasks:
        effects += _create_tasks(case, spec_task, stage_id)
    effects += _advance_if_stage_done(spec, case, on)
    return effects


def _stage_tasks(case: CaseState, stage: str) -> list[TaskState]:
    return [t for t in case.tasks.values() if t.stage == stage]


def _advance_if_stage_done(spec: PathwaySpec, case: CaseState, on: date) -> list[Effect]:
    stage_id = case.stage
    if stage_id is None or case.closed_on:
        return []
    if any(t.state in (OPEN, BLOCKED) for t in _stage_tasks(case, stage_id)):
        return []
    stage = spec.stage_by_id[stage_id]
    effects = [Effect("stage-completed", None, {"stage": stage_id, "on": str(on)})]
    nxt = stage.next
    if stage.gate:
        outcome = case.decisions.get(stage.gate.decision)
        if outcome is None:  # gate task cancelled without a decision: stay put
            return []
        nxt = stage.gate.outcomes[outcome].next
    if nxt is None:
        return effects + _close(case, on, "pathway complete")
    return effects + _enter_stage(spec, case, nxt, on)


def _close(case: CaseState, on: date, why: str) -> list[Effect]:
    case.closed_on = on
    case.stage = None
    effects = []
    for t in case.tasks.values():
        if t.state in (OPEN, BLOCKED):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": f"case closed: {why}"}))
    return effects + [Effect("case-closed", None, {"on": str(on), "reason": why})]


# -- events -------------------------------------------------------------------------------


def open_case(spec: PathwaySpec, case: CaseState, on: date) -> list[Effect]:
    """Start the pathway: the statutory series and the first stage's tasks."""
    for name in CASE_ANCHORS:
        if name not in case.anchors:
            raise EngineError(f"a case needs its {name.replace('_', ' ')} date")
    if case.tasks or case.stage:
        raise EngineError(f"case {case.ref} is already open")
    effects: list[Effect] = []
    for spec_task in spec.statutory:
        effects += _create_tasks(case, spec_task, "statutory")
    return effects + _enter_stage(spec, case, spec.stages[0].id, on)


def validate_outcome(spec: PathwaySpec, task: TaskState, outcome: dict[str, Any]) -> dict:
    model = spec.outcome_model(task.spec_id)
    try:
        return model.model_validate(outcome).model_dump(mode="json")
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "outcome"
            problems.append(f"{where}: {err['msg']}")
        fields = ", ".join(model.model_fields)
        raise EngineError(
            f"invalid outcome for {task.key}: {'; '.join(problems)} (fields: {fields})"
        ) from None


def complete_task(
    spec: PathwaySpec,
    case: CaseState,
    key: str,
    outcome: dict[str, Any],
    actor: str,
    on: date,
) -> list[Effect]:
    """Record a task's outcome; unlock what waits on it; pass a gate; move the stage on."""
    task = case.tasks.get(key)
    if task is None:
        raise EngineError(f"case {case.ref} has no task {key!r}")
    if task.state == DONE:
        raise AlreadyCompleted(
            f"task {case.ref}/{key} was already completed on {task.completed_on} "
            f"by {task.completed_by}; nothing was changed"
        )
    if task.state == CANCELLED:
        raise EngineError(f"task {case.ref}/{key} was cancelled; it cannot be completed")
    if task.state == BLOCKED:
        waiting = [k for k in task.after if case.tasks[k].state != DONE]
        raise EngineError(f"task {case.ref}/{key} is waiting for {', '.join(waiting)} first")
    clean = validate_outcome(spec, task, outcome)
    completed_on = date.fromisoformat(clean["completed_on"]) if clean["completed_on"] else on
    if completed_on > on:
        raise EngineError(f"completed_on {completed_on} is in the future (today is {on})")
    clean["completed_on"] = str(completed_on)
    task.state, task.outcome, task.completed_on, task.completed_by = DONE, clean, on, actor
    effects = [Effect("task-completed", key, {"role": task.role, "by": actor, "on": str(on)})]

    gate = spec.gate_of_task.get(task.spec_id)
    if gate:
        case.decisions[gate.decision] = clean["decision"]
        effects.append(
            Effect("decision-recorded", key, {"decision": gate.decision, "outcome": clean["decision"]})
        )
    for other in case.tasks.values():
        if other.state == BLOCKED and key in other.after:
            if all(case.tasks[k].state == DONE for k in other.after):
                other.state = OPEN
                effects.append(Effect("task-unlocked", other.key, {"by": key, "role": other.role}))
    spec_task = spec.task_by_id[task.spec_id]
    if spec_task.then_every and not case.closed_on:
        effects += _next_in_series(case, spec_task, task, completed_on)
    return effects + _advance_if_stage_done(spec, case, on)


def _next_in_series(
    case: CaseState, spec_task: TaskSpec, done: TaskState, completed_on: date
) -> list[Effect]:
    n = done.occurrence + 1
    key = _task_key(spec_task, done.caregiver, n, True)
    if key in case.tasks:
        return []
    step = spec_task.then_every[min(n - 2, len(spec_task.then_every) - 1)]
    d = _due(case, step, f"previous ({done.key}) completed", completed_on)
    case.tasks[key] = TaskState(
        key=key,
        spec_id=spec_task.id,
        stage=done.stage,
        title=spec_task.title,
        role=spec_task.role,
        due=d.due,
        due_explanation=d.explanation,
        anchor=f"done:{done.key}",
        caregiver=done.caregiver,
        occurrence=n,
    )
    return [Effect("task-created", key, {"role": spec_task.role, "due": str(d.due)})]


def decide(
    spec: PathwaySpec, case: CaseState, decision: str, outcome: str, actor: str, on: date,
    extra: dict[str, Any] | None = None,
) -> list[Effect]:
    """Record D1 or D2 by completing its gate task."""
    gate_task = next(
        (t for t in case.tasks.values() if t.spec_id in spec.gate_of_task
         and spec.gate_of_task[t.spec_id].decision == decision),
        None,
    )
    if gate_task is None:
        stages = [s.id for s in spec.stages if s.gate and s.gate.decision == decision]
        if not stages:
            known = ", ".join(s.gate.decision for s in spec.stages if s.gate)
            raise EngineError(f"unknown decision {decision!r}; this pathway's decisions: {known}")
        raise EngineError(
            f"case {case.ref} is not at decision {decision} yet (it is in stage "
            f"{case.stage or 'none'}; {decision} is taken in stage {', '.join(stages)})"
        )
    return complete_task(
        spec, case, gate_task.key, {"decision": outcome, **(extra or {})}, actor, on
    )


def move_anchor(
    spec: PathwaySpec, case: CaseState, name: str, new: date, cause: str
) -> list[Effect]:
    """Set or move a key date and re-date every open task that hangs on it."""
    old = case.anchors.get(name)
    case.anchors[name] = new
    effects = [Effect("anchor-moved", None, {"anchor": name, "from": str(old), "to": str(new),
                                             "cause": cause})]
    return effects + redate_open_tasks(spec, case, cause)


def set_court_override(
    spec: PathwaySpec, case: CaseState, weeks: int | None, direction: str
) -> list[Effect]:
    old = case.court_override_weeks
    case.court_override_weeks = weeks
    return [Effect("court-override", None, {"from": old, "to": weeks, "direction": direction})]


def redate_open_tasks(spec: PathwaySpec, case: CaseState, cause: str) -> list[Effect]:
    effects = []
    for task in case.tasks.values():
        if task.state not in (OPEN, BLOCKED):
            continue
        spec_task = spec.task_by_id[task.spec_id]
        if task.anchor.startswith("done:") and task.anchor[5:] in case.tasks:
            prev = case.tasks[task.anchor[5:]]
            step = spec_task.then_every[min(task.occurrence - 2, len(spec_task.then_every) - 1)]
            d = _due(case, step, f"previous ({prev.key}) completed", prev.completed_on)
            due, why = d.due, d.explanation
        else:
            due, why = _apply_step(case, spec_task.due, spec_task.every, task.occurrence)
        if due != task.due:
            effects.append(Effect("task-redated", task.key,
                                  {"from": str(task.due), "to": str(due), "cause": cause}))
            task.due, task.due_explanation = due, why
    return effects


# -- read models --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockState:
    id: str
    title: str
    due: date | None
    explanation: str
    state: str  # not-started, running, met, breached, breached-open
    days_left: int | None = None


def clock_states(spec: PathwaySpec, case: CaseState, on: date) -> list[ClockState]:
    """Each statutory clock: when it runs out, why, and whether it is met or breached."""
    out = []
    for clock in spec.clocks:
        anchor = _resolve_anchor(case, clock.anchor)
        if anchor is None:
            out.append(ClockState(clock.id, clock.title, None,
                                  f"starts when {clock.anchor} is recorded", "not-started"))
            continue
        if clock.court_override and case.court_override_weeks:
            d = compute_due(case.calendar, anchor, case.court_override_weeks, "weeks",
                            clock.anchor.replace("_", " "))
            why = d.explanation + " (court timetable override)"
        else:
            d = _due(case, clock.limit, clock.anchor, anchor, work=clock.roll_forward)
            why = d.explanation
        met_on = None
        if clock.target:
            done = [t.completed_on for t in case.tasks.values()
                    if t.spec_id == clock.target and t.state == DONE]
            met_on = max(done) if done else None
        if met_on is not None:
            state = "met" if met_on <= d.due else "breached"
        elif clock.target is None:
            state = "running" if on <= d.due else "elapsed"
        elif case.closed_on and not any(t.spec_id == clock.target for t in case.tasks.values()):
            state = "not-applicable"
        else:
            state = "running" if on <= d.due else "breached-open"
        out.append(ClockState(clock.id, clock.title, d.due, why, state, (d.due - on).days))
    return out


@dataclass(frozen=True)
class TimerPlan:
    """A timer the case should have: the store keeps its timer table equal to this set."""

    key: str  # unique and stable: re-dating a task changes the key of its timers
    kind: str  # reminder, due, escalation, clock-warning, clock-breach
    fire_on: date
    task: str | None
    role: str
    detail: dict[str, Any]


def planned_timers(spec: PathwaySpec, case: CaseState) -> list[TimerPlan]:
    """Every reminder, due notice, escalation and clock warning the case needs now."""
    if case.closed_on:
        return []
    cal = case.calendar
    plans: list[TimerPlan] = []
    notes = spec.notifications
    for task in case.tasks.values():
        if task.state != OPEN:
            continue
        ladder = spec.task_by_id[task.spec_id].reminders
        for before in ladder if ladder is not None else notes.reminders:
            kind = "due" if before == 0 else "reminder"
            fire = cal.add_working_days(task.due, -before)[0] if before else task.due
            plans.append(TimerPlan(f"{case.ref}/{task.key}/{kind}-{before}wd/{task.due}", kind,
                                   fire, task.key, task.role, {"due": str(task.due)}))
        for tier, esc in enumerate(notes.escalations, start=1):
            fire = cal.add_working_days(task.due, esc.after_working_days)[0]
            plans.append(TimerPlan(f"{case.ref}/{task.key}/escalation-{tier}/{task.due}",
                                   "escalation", fire, task.key, esc.role,
                                   {"due": str(task.due), "tier": tier, "owner": task.role}))
    today_clocks = {c.id: c for c in clock_states(spec, case, date.min)}
    for clock in spec.clocks:
        state = today_clocks[clock.id]
        if state.due is None or state.state in ("met", "breached", "not-applicable"):
            continue
        owner = spec.task_by_id[clock.target].role if clock.target else spec.clock_owner
        for w in clock.warnings:
            fire = compute_due(cal, state.due, -w.amount(case.settings), w.unit).due
            plans.append(TimerPlan(
                f"{case.ref}/clock/{clock.id}/warn-{w.raw_amount}{w.unit}/{state.due}",
                "clock-warning", fire, None, owner,
                {"clock": clock.id, "title": clock.title, "due": str(state.due),
                 "explanation": state.explanation}))
        if clock.target:
            plans.append(TimerPlan(
                f"{case.ref}/clock/{clock.id}/breach/{state.due}", "clock-breach",
                state.due + timedelta(days=1), None, owner,
                {"clock": clock.id, "title": clock.title, "due": str(state.due),
                 "explanation": state.explanation}))
    return plans
