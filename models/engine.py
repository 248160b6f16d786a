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
    CARER_RELATIONSHIPS,
    CASE_ANCHORS,
    DIRECTION_TASK,
    PARENT_RELATIONSHIPS,
    REFERRAL_OUT_TASK,
    RELATIONSHIPS,
    ClockSpec,
    Offset,
    PathwaySpec,
    TaskSpec,
)

__all__ = ["CARER_RELATIONSHIPS", "PARENT_RELATIONSHIPS", "RELATIONSHIPS"]

OPEN, BLOCKED, DONE, CANCELLED = "open", "blocked", "done", "cancelled"


class EngineError(ValueError):
    """An event the pathway cannot accept, with the reason in words a user can act on."""


class AlreadyCompleted(EngineError):
    """The task was completed before; nothing changes."""


FIRST_CHILD = "child-1"  # a one-child case's keys carry no child suffix


@dataclass
class Caregiver:
    key: str  # e.g. "mother", "father", "father-2", "foster-carer"
    relationship: str
    children: list[str] = field(default_factory=list)  # the children cared for; [] = all
    consent: str | None = None  # given, declined, not-reached, withdrawn
    active: bool = True  # False once removed from the case

    def cares_for(self, child: str) -> bool:
        return not self.children or child in self.children


@dataclass(frozen=True)
class Pause:
    start: date
    end: date
    reason: str


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
    child: str | None = None  # the child this work is about (per-child work)


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
    child_orders: dict[str, FinalOrder] = field(default_factory=dict)  # where orders differ
    closures: frozenset[date] = frozenset()
    children: list[str] = field(default_factory=lambda: [FIRST_CHILD])
    exit_reason: str | None = None  # the early exit the family took, if any
    paused_since: date | None = None
    pauses: list[Pause] = field(default_factory=list)

    @property
    def paused_days(self) -> int:
        return sum((p.end - p.start).days for p in self.pauses)

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


def caregiver_keys(relationships: list[str],
                   existing: list[Caregiver] | None = None) -> list[Caregiver]:
    """Stable per-case keys: the first mother is 'mother', a second father 'father-2'."""
    seen: dict[str, int] = {}
    for c in existing or []:
        seen[c.relationship] = seen.get(c.relationship, 0) + 1
    out = []
    for rel in relationships:
        if rel not in RELATIONSHIPS:
            raise EngineError(
                f"unknown caregiver relationship {rel!r}; use one of {', '.join(RELATIONSHIPS)}"
            )
        seen[rel] = seen.get(rel, 0) + 1
        out.append(Caregiver(rel if seen[rel] == 1 else f"{rel}-{seen[rel]}", rel))
    return out


def _subjects(spec: PathwaySpec, spec_task: TaskSpec,
              case: CaseState) -> list[tuple[str | None, str | None]]:
    """(child, caregiver) pairs a task is generated for: per case, per child, per (consenting,
    active) caregiver of the task's group, or per child x caregiver who cares for that child."""
    per = spec_task.per
    if per == "case":
        return [(None, None)]
    if per == "child":
        return [(c, None) for c in case.children]
    wanted = spec.relationships_of(per)
    carers = [c for c in case.caregivers if c.active and c.relationship in wanted
              and (not spec_task.needs_consent or c.consent == "given")]
    if not per.startswith("child-"):
        return [(None, c.key) for c in carers]
    return [(child, c.key) for child in case.children for c in carers if c.cares_for(child)]


def child_anchor(name: str, child: str | None) -> str:
    """A per-child date's name: the first child's is the plain name (one-child cases)."""
    return name if child in (None, FIRST_CHILD) else f"{name}@{child}"


def _resolve_anchor(case: CaseState, anchor: str, child: str | None = None) -> date | None:
    if anchor.startswith("done:"):
        done = [t for t in case.tasks.values() if t.spec_id == anchor[5:] and t.state == DONE
                and t.child in (None, child)]
        return max((t.completed_on for t in done if t.completed_on), default=None)
    return case.anchors.get(child_anchor(anchor, child), case.anchors.get(anchor))


def _due(case: CaseState, rule: Offset, anchor_name: str, anchor: date, kind: str = "target"):
    """Due date of one rule. Work a person does never falls due on a non-working day: a
    target rolls forward, a legal maximum is pulled back; an exact date stays."""
    return compute_due(case.calendar, anchor, rule.amount(case.settings), rule.unit,
                       anchor_name.replace("_", " "), adjust=ADJUST_FOR_KIND[kind],
                       day_one=rule.day_one, fraction=rule.fraction)


def _apply_step(case: CaseState, spec_task: TaskSpec, occurrence: int,
                child: str | None = None, late_from: date | None = None) -> tuple[date, str]:
    due_rule, every = spec_task.due, spec_task.every
    anchor = _resolve_anchor(case, due_rule.anchor, child)
    if late_from is not None and due_rule.anchor.startswith("stage:") and anchor is not None:
        # work for someone who joined after the stage began runs from the day they joined
        anchor = max(anchor, late_from)
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


def _task_key(spec_task: TaskSpec, caregiver: str | None, occurrence: int, many: bool,
              child: str | None = None) -> str:
    key = spec_task.id
    if caregiver:
        key += f"-{caregiver}"
    if child and child != FIRST_CHILD:
        key += f"-{child}"
    if many:
        key += f"-{occurrence}"
    return key


def _create_tasks(spec: PathwaySpec, case: CaseState, spec_task: TaskSpec, stage: str,
                  late_from: date | None = None) -> list[Effect]:
    effects = []
    count = spec_task.count
    count = case.settings[count] if isinstance(count, str) else count
    many = count > 1 or bool(spec_task.then_every)
    for child, caregiver in _subjects(spec, spec_task, case):
        for occurrence in range(1, count + 1):
            key = _task_key(spec_task, caregiver, occurrence, many, child)
            if key in case.tasks:
                continue
            due, why = _apply_step(case, spec_task, occurrence, child, late_from)
            after = [
                k
                for k, t in case.tasks.items()
                if t.spec_id in spec_task.after and t.caregiver in (None, caregiver)
                and t.child in (None, child) and t.state != CANCELLED
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
                child=child,
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
        effects += _create_tasks(spec, case, spec_task, stage_id)
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
        effects += _create_tasks(spec, case, spec_task, "statutory")
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
    # every date of an outcome lies in the case's life: from its referral to today
    start = case.anchors.get("referral")
    dated = {"completed_on": completed_on} | {
        name: date.fromisoformat(clean[name]) for name, f in
        spec.task_by_id[task.spec_id].outcome.items() if f.type == "date" and clean.get(name)}
    for name, day in dated.items():
        if day > on or (start is not None and day < start):
            raise EngineError(f"{name} {day} is outside the case's life: give a date from its "
                              f"referral ({start}) to today ({on})")
    clean["completed_on"] = str(completed_on)
    task.state, task.outcome, task.completed_on, task.completed_by = DONE, clean, on, actor
    effects = [Effect("task-completed", key, {"role": task.role, "by": actor, "on": str(on)})]

    gate = spec.gate_of_task.get(task.spec_id)
    if gate:  # a decision taken per child is kept per child (D2 for each of a sibling group)
        case.decisions[child_anchor(gate.decision, task.child)] = clean["decision"]
        effects.append(Effect("decision-recorded", key, {
            "decision": gate.decision, "outcome": clean["decision"],
            **({"child": task.child} if task.child else {})}))
    for other in case.tasks.values():
        if other.state == BLOCKED and key in other.after:
            if all(case.tasks[k].state in (DONE, CANCELLED) for k in other.after):
                other.state = OPEN
                effects.append(Effect("task-unlocked", other.key, {"by": key, "role": other.role}))
    spec_task = spec.task_by_id[task.spec_id]
    if spec_task.then_every and not case.closed_on:
        effects += _next_in_series(case, spec_task, task, completed_on)
    effects += _consent_recorded(spec, case, task, on)
    exit_effects = _auto_exit(spec, case, task, on)
    if exit_effects:
        return effects + exit_effects
    return effects + _advance_if_stage_done(spec, case, on)


def _consent_recorded(spec: PathwaySpec, case: CaseState, task: TaskState,
                      on: date) -> list[Effect]:
    """Keep each caregiver's consent; one who consents after their stage began gets the
    current stage's work for them, due from the day they consented."""
    rule = spec.consent_rule
    if rule is None or task.spec_id != rule.task or task.caregiver is None:
        return []
    carer = next(c for c in case.caregivers if c.key == task.caregiver)
    carer.consent = (task.outcome or {}).get(rule.field)
    if carer.consent != rule.given or case.stage is None or \
            case.stage == spec.stage_of_task[rule.task]:
        return []
    effects = []
    for spec_task in spec.stage_by_id[case.stage].tasks:
        effects += _create_tasks(spec, case, spec_task, case.stage, late_from=on)
    return effects


def _auto_exit(spec: PathwaySpec, case: CaseState, task: TaskState, on: date) -> list[Effect]:
    """An exit the pathway takes by itself: triage not accepted; nobody consented."""
    for code, ex in spec.exits.items():
        when = ex.when
        if when is None:
            continue
        if when.task == task.spec_id and (task.outcome or {}).get(when.field) == when.equals:
            return exit_case(spec, case, code, on)
        rule = spec.consent_rule
        if when.no_consent == "declined" and rule and task.spec_id == rule.task:
            asked = [t for t in case.tasks.values() if t.spec_id == rule.task
                     and t.state != CANCELLED]
            if all(t.state == DONE for t in asked) and not any(
                    c.consent == rule.given for c in case.caregivers if c.active):
                return exit_case(spec, case, code, on)
    return []


def exit_case(spec: PathwaySpec, case: CaseState, reason: str, on: date,
              note: str = "") -> list[Effect]:
    """The family leaves the pathway early: NIM's open work is cancelled and the case closes;
    the LA's statutory work for the child goes on where the exit says so."""
    if reason not in spec.exits:
        raise EngineError(f"unknown exit {reason!r}; this pathway's exits: "
                          f"{', '.join(spec.exits) or '(none declared)'}")
    if case.closed_on:
        raise EngineError(f"case {case.ref} closed on {case.closed_on}; it cannot exit again")
    ex = spec.exits[reason]
    case.exit_reason = reason
    case.paused_since = None
    effects = [Effect("case-exited", None, {"reason": reason, "label": ex.label, "on": str(on),
                                            "notify": list(ex.notify),
                                            "keeps_statutory": ex.keeps_statutory,
                                            "note_length": len(note)})]
    for t in case.tasks.values():
        if t.state in (OPEN, BLOCKED) and not (ex.keeps_statutory and t.stage == "statutory"):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": f"exit: {reason}"}))
    case.closed_on, case.stage = on, None
    return effects + [Effect("case-closed", None, {"on": str(on), "reason": f"exit: {reason}"})]


def withdraw_consent(spec: PathwaySpec, case: CaseState, caregiver: str, on: date) -> list[Effect]:
    """A caregiver withdraws consent: their work that needs it stops; with nobody consenting
    any more, the family exits (if the pathway declares that exit)."""
    carer = _caregiver(case, caregiver)
    if carer.consent != (spec.consent_rule.given if spec.consent_rule else "given"):
        raise EngineError(f"{caregiver} has not given consent on {case.ref} "
                          f"(consent: {carer.consent or 'not asked yet'})")
    carer.consent = "withdrawn"
    effects = [Effect("consent-withdrawn", None, {"caregiver": caregiver, "on": str(on)})]
    effects += _cancel_work_of(spec, case, caregiver, "consent withdrawn", consent_only=True)
    if not any(c.consent == "given" for c in case.caregivers if c.active):
        code = next((k for k, e in spec.exits.items()
                     if e.when and e.when.no_consent == "withdrawn"), None)
        if code:
            return effects + exit_case(spec, case, code, on)
    return effects + _advance_if_stage_done(spec, case, on)


def _caregiver(case: CaseState, key: str) -> Caregiver:
    found = next((c for c in case.caregivers if c.key == key and c.active), None)
    if found is None:
        raise EngineError(f"case {case.ref} has no caregiver {key!r}; its caregivers: "
                          f"{', '.join(c.key for c in case.caregivers if c.active)}")
    return found


def _cancel_work_of(spec: PathwaySpec, case: CaseState, caregiver: str, why: str,
                    consent_only: bool = False) -> list[Effect]:
    effects = []
    for t in case.tasks.values():
        if t.caregiver == caregiver and t.state in (OPEN, BLOCKED) and (
                not consent_only or spec.task_by_id[t.spec_id].needs_consent):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": why}))
    for t in case.tasks.values():  # work that waited on the cancelled work waits no more
        if t.state == BLOCKED and all(case.tasks[k].state in (DONE, CANCELLED) for k in t.after):
            t.state = OPEN
            effects.append(Effect("task-unlocked", t.key, {"by": why, "role": t.role}))
    return effects


def add_caregiver(spec: PathwaySpec, case: CaseState, relationship: str,
                  children: list[str], on: date) -> list[Effect]:
    """A caregiver identified late (a father, a kinship carer) or a new foster carer: they are
    asked for consent now, and their assessments follow once they give it."""
    unknown = sorted(set(children) - set(case.children))
    if unknown:
        raise EngineError(f"case {case.ref} has no child {', '.join(unknown)}; its children: "
                          f"{', '.join(case.children)}")
    carer = caregiver_keys([relationship], case.caregivers)[0]
    carer.children = list(children)
    case.caregivers.append(carer)
    effects = [Effect("caregiver-added", None, {"caregiver": carer.key,
                                                "relationship": relationship,
                                                "children": children or "all"})]
    if case.stage is None:
        return effects
    consent_task = spec.task_by_id.get(spec.consent_rule.task) if spec.consent_rule else None
    consent_stage = spec.stage_of_task.get(consent_task.id) if consent_task else None
    stage_ids = [st.id for st in spec.stages]
    if consent_task and stage_ids.index(case.stage) > stage_ids.index(consent_stage):
        effects += _create_tasks(spec, case, consent_task, case.stage, late_from=on)
    else:  # before or during consent: the current stage's work includes them as usual
        for spec_task in spec.stage_by_id[case.stage].tasks:
            effects += _create_tasks(spec, case, spec_task, case.stage, late_from=on)
    return effects


def remove_caregiver(spec: PathwaySpec, case: CaseState, key: str, on: date,
                     why: str) -> list[Effect]:
    """A caregiver leaves (a carer who stops caring for the child): their open work stops."""
    carer = _caregiver(case, key)
    carer.active = False
    effects = [Effect("caregiver-removed", None, {"caregiver": key, "on": str(on)})]
    return effects + _cancel_work_of(spec, case, key, f"caregiver left: {why}") + \
        _advance_if_stage_done(spec, case, on)


def add_child(spec: PathwaySpec, case: CaseState, on: date,
              placement_start: date | None = None) -> list[Effect]:
    """A sibling joins the family episode: their own statutory work, and the current stage's
    work for them (and for each caregiver who cares for them)."""
    child = f"child-{len(case.children) + 1}"
    case.children.append(child)
    case.anchors[child_anchor("placement_start", child)] = placement_start or on
    effects = [Effect("child-added", None, {"child": child})]
    for spec_task in spec.statutory:
        effects += _create_tasks(spec, case, spec_task, "statutory", late_from=on)
    if case.stage is not None:
        for spec_task in spec.stage_by_id[case.stage].tasks:
            effects += _create_tasks(spec, case, spec_task, case.stage, late_from=on)
    return effects


def pause(spec: PathwaySpec, case: CaseState, on: date, reason: str) -> list[Effect]:
    """Pause NIM's work (a parent in hospital, rehab or custody; an adjourned hearing): NIM's
    own targets stop; statutory limits never do."""
    if case.paused_since is not None:
        raise EngineError(f"case {case.ref} is paused already (since {case.paused_since})")
    if case.closed_on:
        raise EngineError(f"case {case.ref} is closed")
    case.paused_since = on
    case.anchors["paused_since"] = on
    return [Effect("case-paused", None, {"on": str(on), "reason": reason})]  # sealed in the audit


def resume(spec: PathwaySpec, case: CaseState, on: date, reason: str = "") -> list[Effect]:
    """Resume after a pause: NIM's open work (not statutory work) moves on by the pause."""
    if case.paused_since is None:
        raise EngineError(f"case {case.ref} is not paused")
    start = case.paused_since
    if on < start:
        raise EngineError(f"resume date {on} is before the pause began ({start})")
    case.pauses.append(Pause(start, on, reason))
    case.paused_since = None
    case.anchors.pop("paused_since", None)
    days = (on - start).days
    effects = [Effect("case-resumed", None, {"on": str(on), "paused_days": days})]
    for t in case.tasks.values():
        if t.state in (OPEN, BLOCKED) and t.stage not in ("statutory", "court") and days:
            moved = compute_due(case.calendar, t.due, days, "days", "the due date before the "
                                f"pause ({start} to {on})", adjust="forward")
            effects.append(Effect("task-redated", t.key, {"from": str(t.due),
                                                          "to": str(moved.due),
                                                          "cause": "case paused"}))
            t.due, t.due_explanation = moved.due, f"{moved.explanation} ({t.due_explanation})"
    return effects


def _next_in_series(
    case: CaseState, spec_task: TaskSpec, done: TaskState, completed_on: date
) -> list[Effect]:
    if spec_task.while_looked_after and \
            child_anchor("ceased_looked_after", done.child) in case.anchors:
        return []  # no more reviews or visits once the child is no longer looked after
    n = done.occurrence + 1
    key = _task_key(spec_task, done.caregiver, n, True, done.child)
    if key in case.tasks:
        return []
    step = _series_step(spec_task, done.occurrence, case, done.child)
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
        child=done.child,
    )
    return [Effect("task-created", key, {"role": spec_task.role, "due": str(d.due)})]


def _series_step(spec_task: TaskSpec, previous: int, case: CaseState,
                 child: str | None = None) -> Offset:
    """The spacing after the `previous`-th occurrence of a series since its anchor (a restarted
    series, after a placement change, begins its ladder again)."""
    since = previous - _series_base(case, spec_task, child)
    return spec_task.then_every[min(max(since, 1) - 1, len(spec_task.then_every) - 1)]


def _series_base(case: CaseState, spec_task: TaskSpec, child: str | None = None) -> int:
    """Occurrences of this series before its current anchor run (0 if never restarted)."""
    restarts = [t.occurrence - 1 for t in case.tasks.values()
                if t.spec_id == spec_task.id and t.anchor == spec_task.due.anchor
                and t.child == child]
    return max(restarts, default=0)


def decide(
    spec: PathwaySpec, case: CaseState, decision: str, outcome: str, actor: str, on: date,
    extra: dict[str, Any] | None = None, child: str | None = None,
) -> list[Effect]:
    """Record D1 or D2 by completing its gate task (for one child, when it is per child)."""
    gate_task = next(
        (t for t in case.tasks.values() if t.spec_id in spec.gate_of_task
         and spec.gate_of_task[t.spec_id].decision == decision and t.state != CANCELLED
         and t.child in (None, child or FIRST_CHILD)),
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
                       follows_recommendation: bool, on: date,
                       child: str | None = None) -> list[Effect]:
    """The final order that disposes of the proceedings (it meets the 26-week clock); with
    `child`, one child's own order where a sibling group's orders differ (the proceedings are
    disposed of once every child has theirs)."""
    if kind not in spec.court.order_kinds:
        raise EngineError(f"unknown order kind {kind!r}; use one of "
                          f"{', '.join(spec.court.order_kinds) or '(none declared)'}")
    issued = case.anchors.get("proceedings_issued")
    if issued is None:
        raise EngineError("record when proceedings were issued before the final order")
    if not issued <= made_on <= on:
        raise EngineError(f"final order date {made_on} must be between issue ({issued}) and "
                          f"today ({on})")
    order = FinalOrder(made_on, kind, follows_recommendation)
    if child is not None and len(case.children) > 1:
        case.child_orders[_child_of(case, child)] = order
        case.anchors[f"final_order@{child}"] = made_on  # each child's own, even the first
        if all(c in case.child_orders for c in case.children):
            case.anchors["final_order"] = max(o.made_on for o in case.child_orders.values())
    else:
        case.final_order = order
        case.anchors["final_order"] = made_on
    return [Effect("final-order-recorded", None, {
        "on": str(made_on), "kind": kind, "follows_recommendation": follows_recommendation,
        **({"child": child} if child else {})})]


def link_caregiver(spec: PathwaySpec, case: CaseState, key: str, children: list[str],
                   on: date) -> list[Effect]:
    """Say which children a caregiver cares for: work with children no longer theirs stops;
    the current stage's work with newly linked children starts (once they consent)."""
    carer = _caregiver(case, key)
    for child in children:
        _child_of(case, child)
    carer.children = list(children)
    effects = [Effect("caregiver-linked", None, {"caregiver": key,
                                                 "children": children or "all"})]
    for t in case.tasks.values():
        if t.caregiver == key and t.child and not carer.cares_for(t.child) and \
                t.state in (OPEN, BLOCKED):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": "no longer their child"}))
    if case.stage is not None:
        for spec_task in spec.stage_by_id[case.stage].tasks:
            effects += _create_tasks(spec, case, spec_task, case.stage, late_from=on)
    return effects


def remove_child(spec: PathwaySpec, case: CaseState, child: str, on: date,
                 why: str) -> list[Effect]:
    """A child leaves the family episode (placed elsewhere, proceedings ended for them): their
    open work stops; the rest of the family goes on."""
    _child_of(case, child)
    if len(case.children) == 1:
        raise EngineError(f"{child} is the only child on {case.ref}: close the case with an "
                          "exit instead")
    case.children.remove(child)
    effects = [Effect("child-removed", None, {"child": child, "on": str(on)})]
    for t in case.tasks.values():
        if t.child == child and t.state in (OPEN, BLOCKED):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": f"{child} left: {why}"}))
    return effects + _advance_if_stage_done(spec, case, on)


def add_direction(spec: PathwaySpec, case: CaseState, document: str, role: str, by: date,
                  on: date) -> list[Effect]:
    """A court direction to file a document by a date: a task for the named role."""
    _check_dated(spec, "document", document, spec.court.documents, role, by, on)
    return _dated_task(case, DIRECTION_TASK, "court", role, by,
                       f"File {spec.court.documents[document]} (court direction)",
                       f"filing deadline set by the court on {on.isoformat()}", "direction",
                       {"document": document})


def refer_out(spec: PathwaySpec, case: CaseState, service: str, role: str, by: date,
              on: date, caregiver: str | None = None) -> list[Effect]:
    """A referral on to another service (substance use, domestic abuse, adult mental
    health): a task for the role that makes it, by the date given."""
    _check_dated(spec, "service", service, spec.referral_services, role, by, on)
    if caregiver is not None:
        _caregiver(case, caregiver)
    effects = _dated_task(case, REFERRAL_OUT_TASK, case.stage or "treatment", role, by,
                          f"Refer to {spec.referral_services[service]}",
                          f"referral agreed on {on.isoformat()}, to be made by {by}", "referred",
                          {"service": service})
    case.tasks[effects[0].task].caregiver = caregiver
    return effects


def _check_dated(spec: PathwaySpec, what: str, code: str, declared: dict[str, str], role: str,
                 by: date, on: date) -> None:
    """A dated task's kind is declared by the pathway, its role exists, its date is to come."""
    if code not in declared:
        raise EngineError(f"unknown {what} {code!r}; this pathway has: "
                          f"{', '.join(declared) or '(none declared)'}")
    if role not in spec.roles:
        raise EngineError(f"unknown role {role!r}; roles: {', '.join(sorted(spec.roles))}")
    if by < on:
        raise EngineError(f"the date {by} is already past (today {on})")


def _dated_task(case: CaseState, spec_task: TaskSpec, stage: str, role: str, due: date,
                title: str, why: str, anchor: str, detail: dict[str, Any]) -> list[Effect]:
    """A task with a date someone set (a court, a referral), numbered in its kind."""
    n = 1 + sum(1 for t in case.tasks.values() if t.spec_id == spec_task.id)
    key = f"{spec_task.id}-{n}"
    case.tasks[key] = TaskState(key=key, spec_id=spec_task.id, stage=stage, role=role, due=due,
                                title=title, due_explanation=why, anchor=anchor, occurrence=n)
    return [Effect("task-created", key, {"role": role, "due": str(due), **detail})]


def _child_of(case: CaseState, child: str | None) -> str:
    child = child or FIRST_CHILD
    if child not in case.children:
        raise EngineError(f"case {case.ref} has no child {child!r}; its children: "
                          f"{', '.join(case.children)}")
    return child


def change_placement(spec: PathwaySpec, case: CaseState, start: date,
                     child: str | None = None) -> list[Effect]:
    """A child's new placement: statutory work that hangs on the placement (visits within a
    week of any placement) starts again from its first day."""
    child = _child_of(case, child)
    name = child_anchor("placement_start", child)
    case.anchors[name] = start
    effects = [Effect("anchor-moved", None, {"anchor": name, "to": str(start),
                                             "cause": "placement changed"})]
    if child_anchor("ceased_looked_after", child) in case.anchors:
        return effects
    for spec_task in spec.statutory:
        if spec_task.due.anchor != "placement_start":
            continue
        per_child = spec_task.per == "child"
        running = [t for t in case.tasks.values() if t.spec_id == spec_task.id
                   and t.state in (OPEN, BLOCKED) and (not per_child or t.child == child)]
        for t in running:
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": "new placement"}))
        mine = child if per_child else None
        n = 1 + max((t.occurrence for t in case.tasks.values()
                     if t.spec_id == spec_task.id and t.child == mine), default=0)
        key = _task_key(spec_task, None, n, True, mine)
        d = _due(case, spec_task.due, "placement start", start, spec_task.kind)
        case.tasks[key] = TaskState(key=key, spec_id=spec_task.id, stage="statutory",
                                    title=spec_task.title, role=spec_task.role, due=d.due,
                                    due_explanation=d.explanation, anchor="placement_start",
                                    occurrence=n, child=mine)
        effects.append(Effect("task-created", key, {"role": spec_task.role, "due": str(d.due)}))
    return effects


def cease_looked_after(spec: PathwaySpec, case: CaseState, on: date, why: str,
                       child: str | None = None) -> list[Effect]:
    """A child stops being looked after: their reviews and visits stop."""
    child = _child_of(case, child)
    name = child_anchor("ceased_looked_after", child)
    if name in case.anchors:
        raise EngineError(f"case {case.ref} recorded {child} as no longer looked after on "
                          f"{case.anchors[name]}")
    if on < case.anchors["care_entry"]:
        raise EngineError(f"{on} is before care entry ({case.anchors['care_entry']})")
    case.anchors[name] = on
    effects = [Effect("looked-after-ended", None, {"on": str(on), "child": child})]
    for t in case.tasks.values():
        if t.state in (OPEN, BLOCKED) and spec.task_by_id[t.spec_id].while_looked_after and \
                t.child in (None, child):
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
        if task.anchor in ("direction", "referred"):
            continue  # a date a court or a person set
        if task.anchor.startswith("done:") and task.anchor[5:] in case.tasks:
            prev = case.tasks[task.anchor[5:]]
            step = _series_step(spec_task, prev.occurrence, case, task.child)
            d = _due(case, step, f"previous ({prev.key}) completed", prev.completed_on,
                     spec_task.kind)
            due, why = d.due, d.explanation
        else:
            due, why = _apply_step(case, spec_task, task.occurrence, task.child)
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
    if spec.own_clock(clock) and kind == "target" and case.paused_days:
        moved = compute_due(case.calendar, due, case.paused_days, "days", "the target",
                            adjust="forward")  # NIM's own targets stop while paused
        due, why = moved.due, f"{why}; {moved.explanation} (paused)"
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
    """Every reminder, due notice, escalation and clock warning the case needs now. A closed
    case keeps only the statutory work an exit kept; a paused case, only statutory work's."""
    cal = case.calendar
    plans: list[TimerPlan] = []
    notes = spec.notifications
    for task in case.tasks.values():
        if task.state != OPEN:
            continue
        if (case.closed_on or case.paused_since) and task.stage != "statutory":
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
    for clock in spec.clocks if not case.closed_on else []:
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
