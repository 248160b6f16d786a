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

from models.calendar import ADJUST_FOR_KIND, WorkingCalendar, compute_due
from models.pathway import (
    CASE_ANCHORS,
    DIRECTION_TASK,
    ClockSpec,
    Offset,
    PathwaySpec,
    TaskSpec,
)

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


@dataclass(frozen=True)
class Extension:
    """One extension of a court's timetable (Children Act 1989 s32(5)), as granted."""

    granted_on: date
    weeks: int
    reason: str


@dataclass(frozen=True)
class FinalOrder:
    """The order that disposes of the application: it meets the 26-week clock."""

    made_on: date
    kind: str
    follows_recommendation: bool


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
    extensions: list[Extension] = field(default_factory=list)  # in the order granted
    final_order: FinalOrder | None = None
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


def _due(case: CaseState, rule: Offset, anchor_name: str, anchor: date, kind: str = "target"):
    """Due date of one rule. Work a person does never falls due on a non-working day: a
    target rolls forward, a legal maximum is pulled back; an exact date stays."""
    return compute_due(case.calendar, anchor, rule.amount(case.settings), rule.unit,
                       anchor_name.replace("_", " "), adjust=ADJUST_FOR_KIND[kind],
                       day_one=rule.day_one, fraction=rule.fraction)


def _apply_step(case: CaseState, spec_task: TaskSpec, occurrence: int) -> tuple[date, str]:
    due_rule, every = spec_task.due, spec_task.every
    anchor = _resolve_anchor(case, due_rule.anchor)
    if anchor is None:
        raise EngineError(
            f"case {case.ref} has no {due_rule.anchor!r} date yet; record it before this stage"
        )
    first = _due(case, due_rule, due_rule.anchor, anchor, spec_task.kind)
    if occurrence == 1 or every is None or spec_task.then_every:
        return first.due, first.explanation  # a series restarts from its anchor
    # occurrence n is the first due date plus (n-1) spacings, computed in the spacing's unit
    step = every.amount(case.settings) * (occurrence - 1)
    d = compute_due(case.calendar, first.due, step, every.unit, "occurrence 1 due",
                    adjust=ADJUST_FOR_KIND[spec_task.kind])
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
            due, why = _apply_step(case, spec_task, occurrence)
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
    stage = spec.stage_by_id[stage_id]
    if stage.when is not None and not case.settings.get(stage.when):
        if stage.next is None:  # an optional last stage that is switched off
            return _close(case, on, "pathway complete")
        return _enter_stage(spec, case, stage.next, on)
    case.stage = stage_id
    case.anchors[f"stage:{stage_id}"] = on
    effects = [Effect("stage-entered", None, {"stage": stage_id, "on": str(on)})]
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
    if "care_entry" in case.anchors:  # the first placement starts at care entry unless told
        case.anchors.setdefault("placement_start", case.anchors["care_entry"])
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
    if spec_task.while_looked_after and "ceased_looked_after" in case.anchors:
        return []  # no more reviews or visits once the child is no longer looked after
    n = done.occurrence + 1
    key = _task_key(spec_task, done.caregiver, n, True)
    if key in case.tasks:
        return []
    step = _series_step(spec_task, done.occurrence, case)
    d = _due(case, step, f"previous ({done.key}) completed", completed_on, spec_task.kind)
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


def _series_step(spec_task: TaskSpec, previous: int, case: CaseState) -> Offset:
    """The spacing after the `previous`-th occurrence of a series since its anchor (a restarted
    series, after a placement change, begins its ladder again)."""
    since = previous - _series_base(case, spec_task)
    return spec_task.then_every[min(max(since, 1) - 1, len(spec_task.then_every) - 1)]


def _series_base(case: CaseState, spec_task: TaskSpec) -> int:
    """Occurrences of this series before its current anchor run (0 if never restarted)."""
    restarts = [t.occurrence - 1 for t in case.tasks.values()
                if t.spec_id == spec_task.id and t.anchor == spec_task.due.anchor]
    return max(restarts, default=0)


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


def extend_timetable(spec: PathwaySpec, case: CaseState, granted_on: date, weeks: int,
                     reason: str, on: date) -> list[Effect]:
    """Record one extension of the court's timetable (s32(5): one at a time, each up to the
    clock's maximum, with its reason)."""
    clock = next((c for c in spec.clocks if c.extensions), None)
    if clock is None:
        raise EngineError(f"pathway {spec.profile} has no court timetable that can be extended")
    if clock.anchor not in case.anchors:
        raise EngineError(f"record {clock.anchor.replace('_', ' ')} before extending its "
                          "timetable")
    if not 1 <= weeks <= clock.max_extension_weeks:
        raise EngineError(f"an extension is for 1 to {clock.max_extension_weeks} weeks "
                          f"({clock.source}); record a further extension when it is granted")
    if not reason.strip():
        raise EngineError("give the court's reason for the extension (--reason)")
    if granted_on < case.anchors[clock.anchor] or granted_on > on:
        raise EngineError(f"extension granted {granted_on} must be between "
                          f"{case.anchors[clock.anchor]} and today ({on})")
    if case.extensions and granted_on < case.extensions[-1].granted_on:
        raise EngineError(f"extensions are recorded in the order granted; the last was granted "
                          f"{case.extensions[-1].granted_on}")
    before = clock_state(spec, case, clock, on)
    case.extensions.append(Extension(granted_on, weeks, reason))
    after = clock_state(spec, case, clock, on)
    return [Effect("timetable-extended", None, {"clock": clock.id, "weeks": weeks,
                                                "granted_on": str(granted_on),
                                                "from": str(before.due), "to": str(after.due)})]


def record_final_order(spec: PathwaySpec, case: CaseState, made_on: date, kind: str,
                       follows_recommendation: bool, on: date) -> list[Effect]:
    """The final order that disposes of the proceedings (it meets the 26-week clock)."""
    if kind not in spec.court.order_kinds:
        raise EngineError(f"unknown order kind {kind!r}; use one of "
                          f"{', '.join(spec.court.order_kinds) or '(none declared)'}")
    issued = case.anchors.get("proceedings_issued")
    if issued is None:
        raise EngineError("record when proceedings were issued before the final order")
    if not issued <= made_on <= on:
        raise EngineError(f"final order date {made_on} must be between issue ({issued}) and "
                          f"today ({on})")
    case.final_order = FinalOrder(made_on, kind, follows_recommendation)
    case.anchors["final_order"] = made_on
    return [Effect("final-order-recorded", None, {
        "on": str(made_on), "kind": kind, "follows_recommendation": follows_recommendation})]


def add_direction(spec: PathwaySpec, case: CaseState, document: str, role: str, by: date,
                  on: date) -> list[Effect]:
    """A court direction to file a document by a date: a task for the named role."""
    if document not in spec.court.documents:
        raise EngineError(f"unknown document {document!r}; the court can direct: "
                          f"{', '.join(spec.court.documents) or '(none declared)'}")
    if role not in spec.roles:
        raise EngineError(f"unknown role {role!r}; roles: {', '.join(sorted(spec.roles))}")
    if by < on:
        raise EngineError(f"the filing deadline {by} is already past (today {on})")
    n = 1 + sum(1 for t in case.tasks.values() if t.spec_id == DIRECTION_TASK.id)
    key = f"{DIRECTION_TASK.id}-{n}"
    case.tasks[key] = TaskState(
        key=key, spec_id=DIRECTION_TASK.id, stage="court", role=role, due=by,
        title=f"File {spec.court.documents[document]} (court direction)",
        due_explanation=f"filing deadline set by the court on {on.isoformat()}",
        anchor="direction", occurrence=n)
    return [Effect("task-created", key, {"role": role, "due": str(by), "document": document})]


def change_placement(spec: PathwaySpec, case: CaseState, start: date) -> list[Effect]:
    """A new placement: statutory work that hangs on the placement (visits within a week of
    any placement) starts again from its first day."""
    case.anchors["placement_start"] = start
    effects = [Effect("anchor-moved", None, {"anchor": "placement_start", "to": str(start),
                                             "cause": "placement changed"})]
    if "ceased_looked_after" in case.anchors:
        return effects
    for spec_task in spec.statutory:
        if spec_task.due.anchor != "placement_start":
            continue
        running = [t for t in case.tasks.values()
                   if t.spec_id == spec_task.id and t.state in (OPEN, BLOCKED)]
        for t in running:
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": "new placement"}))
        n = 1 + max((t.occurrence for t in case.tasks.values() if t.spec_id == spec_task.id),
                    default=0)
        key = _task_key(spec_task, None, n, True)
        d = _due(case, spec_task.due, "placement start", start, spec_task.kind)
        case.tasks[key] = TaskState(key=key, spec_id=spec_task.id, stage="statutory",
                                    title=spec_task.title, role=spec_task.role, due=d.due,
                                    due_explanation=d.explanation, anchor="placement_start",
                                    occurrence=n)
        effects.append(Effect("task-created", key, {"role": spec_task.role, "due": str(d.due)}))
    return effects


def cease_looked_after(spec: PathwaySpec, case: CaseState, on: date, why: str) -> list[Effect]:
    """The child stops being looked after: reviews and visits stop."""
    if "ceased_looked_after" in case.anchors:
        raise EngineError(f"case {case.ref} recorded the child as no longer looked after on "
                          f"{case.anchors['ceased_looked_after']}")
    if on < case.anchors["care_entry"]:
        raise EngineError(f"{on} is before care entry ({case.anchors['care_entry']})")
    case.anchors["ceased_looked_after"] = on
    effects = [Effect("looked-after-ended", None, {"on": str(on), "reason": why})]
    for t in case.tasks.values():
        if t.state in (OPEN, BLOCKED) and spec.task_by_id[t.spec_id].while_looked_after:
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key,
                                  {"reason": "child no longer looked after"}))
    return effects


def redate_open_tasks(spec: PathwaySpec, case: CaseState, cause: str) -> list[Effect]:
    effects = []
    for task in case.tasks.values():
        if task.state not in (OPEN, BLOCKED):
            continue
        spec_task = spec.task_by_id[task.spec_id]
        if task.anchor == "direction":
            continue  # a date the court set
        if task.anchor.startswith("done:") and task.anchor[5:] in case.tasks:
            prev = case.tasks[task.anchor[5:]]
            step = _series_step(spec_task, prev.occurrence, case)
            d = _due(case, step, f"previous ({prev.key}) completed", prev.completed_on,
                     spec_task.kind)
            due, why = d.due, d.explanation
        else:
            due, why = _apply_step(case, spec_task, task.occurrence)
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
    due: date | None  # the last day (a maximum pulled back to a working day); window: latest
    explanation: str
    state: str  # not-started, upcoming, open, running, met, breached, breached-open, elapsed,
    # not-applicable
    days_left: int | None = None
    kind: str = "maximum"
    owner: str = "nim"
    earliest: date | None = None  # windows only
    met_on: date | None = None
    days_late: int | None = None  # met late, or still open past the last day
    source: str = ""


def _clock_anchor(spec: PathwaySpec, case: CaseState, clock: ClockSpec) -> date | None:
    return _resolve_anchor(case, clock.anchor)


def _extended(clock: ClockSpec, case: CaseState, legal_end: date) -> tuple[date, str]:
    """The legal last day after each extension: up to N weeks after the later of the current
    end and the day the extension was granted (s32(8))."""
    notes = []
    for ext in case.extensions:
        legal_end = max(legal_end, ext.granted_on) + timedelta(weeks=ext.weeks)
        notes.append(f"extended {ext.weeks} weeks on {ext.granted_on.isoformat()} to "
                     f"{legal_end.isoformat()}")
    return legal_end, "; ".join(notes)


def clock_state(spec: PathwaySpec, case: CaseState, clock: ClockSpec, on: date) -> ClockState:
    """One clock: when it runs out, why, whose it is, and whether it is met or breached."""
    base = dict(kind=clock.kind, owner=clock.owner, source=clock.source)
    anchor = _clock_anchor(spec, case, clock)
    if anchor is None:
        return ClockState(clock.id, clock.title, None,
                          f"starts when {clock.anchor.replace('_', ' ')} is recorded",
                          "not-started", **base)
    met_on = _resolve_anchor(case, clock.met_by) if clock.met_by else None
    if clock.kind == "window":
        w = clock.window
        first = _due(case, w.earliest, clock.anchor, anchor, "target")
        last = _due(case, w.latest, clock.anchor, anchor, "maximum")
        why = f"from {first.due} ({first.explanation}) to {last.due} ({last.explanation})"
        if met_on is not None:
            inside = first.due <= met_on <= last.due
            state = "met" if inside else "breached"
            late = max((met_on - last.due).days, 0) if not inside else None
            if not inside and met_on < first.due:
                why += f"; held {met_on}, before the window"
        elif on < first.due:
            state, late = "upcoming", None
        elif on <= last.due:
            state, late = "open", None
        else:
            state, late = "breached-open", (on - last.due).days
        return ClockState(clock.id, clock.title, last.due, why, state, (last.due - on).days,
                          earliest=first.due, met_on=met_on, days_late=late, **base)
    kind = "maximum" if clock.kind == "maximum" else "target"
    d = _due(case, clock.limit, clock.anchor, anchor, "exact" if clock.extensions else kind)
    due, why = d.due, d.explanation
    if clock.extensions and case.extensions:
        legal_end, notes = _extended(clock, case, due)
        d2 = compute_due(case.calendar, legal_end, 0, "days", "the extended limit",
                         adjust=ADJUST_FOR_KIND[kind])
        due, why = d2.due, f"{why}; {notes}; {d2.explanation}"
    elif clock.extensions:
        d2 = compute_due(case.calendar, due, 0, "days", "the limit", adjust=ADJUST_FOR_KIND[kind])
        due = d2.due
        if d2.due != d.due:
            why = f"{why}; {d2.explanation}"
    if met_on is not None:
        state = "met" if met_on <= due else "breached"
        late = (met_on - due).days if met_on > due else None
    elif clock.met_by is None:  # informational: nothing NIM does meets it
        state, late = ("running" if on <= due else "elapsed"), None
    elif case.closed_on and clock.met_by.startswith("done:") and not any(
            t.spec_id == clock.met_by[5:] for t in case.tasks.values()):
        state, late = "not-applicable", None
    else:
        state = "running" if on <= due else "breached-open"
        late = (on - due).days if on > due else None
    return ClockState(clock.id, clock.title, due, why, state, (due - on).days, met_on=met_on,
                      days_late=late, **base)


def clock_states(spec: PathwaySpec, case: CaseState, on: date) -> list[ClockState]:
    """Each clock: when it runs out, why, and whether it is met or breached."""
    return [clock_state(spec, case, clock, on) for clock in spec.clocks]


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
        team = spec.roles[task.role].team if task.role in spec.roles else None
        ladder = [e for e in notes.escalations if e.team in (None, team)]
        for tier, esc in enumerate(ladder, start=1):
            fire = cal.add_working_days(task.due, esc.after_working_days)[0]
            plans.append(TimerPlan(f"{case.ref}/{task.key}/escalation-{tier}/{task.due}",
                                   "escalation", fire, task.key, esc.role,
                                   {"due": str(task.due), "tier": tier, "owner": task.role}))
    for clock in spec.clocks:
        state = clock_state(spec, case, clock, date.min)
        if state.due is None or state.state in ("met", "breached", "not-applicable"):
            continue
        detail = {"clock": clock.id, "title": clock.title, "due": str(state.due),
                  "explanation": state.explanation, "owner": clock.owner}
        warned = clock.notify or (spec.task_by_id[clock.met_by[5:]].role
                                  if clock.met_by and clock.met_by.startswith("done:")
                                  else spec.clock_owner)
        for w in clock.warnings:
            fire = compute_due(cal, state.due, -w.amount(case.settings), w.unit).due
            plans.append(TimerPlan(
                f"{case.ref}/clock/{clock.id}/warn-{w.raw_amount}{w.unit}/{state.due}",
                "clock-warning", fire, None, warned, detail))
        if clock.met_by:
            for role in clock.escalate or [warned]:
                suffix = "" if not clock.escalate else f"/{role}"
                plans.append(TimerPlan(
                    f"{case.ref}/clock/{clock.id}/breach/{state.due}{suffix}", "clock-breach",
                    state.due + timedelta(days=1), None, role, detail))
    return plans
