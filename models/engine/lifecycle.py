"""A case's way through the pathway: opening, stages and their gates, completing tasks and
taking decisions, moving key dates, exits, pauses and closing."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import ValidationError

from models.calendar import compute_due
from models.engine.scheduling import (
    _create_tasks,
    _next_in_series,
    redate_after_review,
    redate_open_tasks,
    set_due,
)
from models.engine.state import (
    BLOCKED,
    CANCELLED,
    DONE,
    FIRST_CHILD,
    OPEN,
    AlreadyCompleted,
    CaseState,
    Effect,
    EngineError,
    Pause,
    TaskState,
    child_anchor,
)
from models.pathway import CASE_ANCHORS, PathwaySpec


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
    if any(t.after_review and t.after_review.task == task.spec_id for t in spec.statutory):
        effects += redate_after_review(spec, case, task)
    effects += _consent_recorded(spec, case, task, on)
    exit_effects = _auto_exit(spec, case, task, on)
    if exit_effects:
        return effects + exit_effects
    return effects + _advance_if_stage_done(spec, case, on)


def _consent_recorded(spec: PathwaySpec, case: CaseState, task: TaskState,
                      on: date) -> list[Effect]:
    """Keep each caregiver's consent (the first given is the case's `consent` date); one who
    consents after their stage began gets the current stage's work, due from that day."""
    rule = spec.consent_rule
    if rule is None or task.spec_id != rule.task or task.caregiver is None:
        return []
    carer = next(c for c in case.caregivers if c.key == task.caregiver)
    carer.consent = (task.outcome or {}).get(rule.field)
    if carer.consent == rule.given and "consent" not in case.anchors:
        # the day the first caregiver consented (FDAC: a parent signed up): a clock or due
        # rule hangs on it; a hearing held with no parent signing up does not set it
        case.anchors["consent"] = date.fromisoformat((task.outcome or {}).get(
            "completed_on") or str(on))
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


def _person(case: CaseState, who: str) -> str:
    """One of the case's (active) caregivers or children, by key."""
    if who in case.children or any(c.key == who and c.active for c in case.caregivers):
        return who
    carers = ", ".join(c.key for c in case.caregivers if c.active) or "none"
    raise EngineError(f"case {case.ref} has no caregiver or child {who!r}; its caregivers: "
                      f"{carers}; its children: {', '.join(case.children)}")


def pause(spec: PathwaySpec, case: CaseState, on: date, reason: str,
          person: str | None = None) -> list[Effect]:
    """Pause the programme's work (a parent in hospital, rehab or custody; an adjourned
    hearing). The whole family's by default: its own targets stop; statutory limits never do.
    With `person` (a caregiver or child), only the open work about that person stops."""
    if case.closed_on:
        raise EngineError(f"case {case.ref} is closed")
    if person is None:
        if case.paused_since is not None:
            raise EngineError(f"case {case.ref} is paused already (since {case.paused_since})")
        case.paused_since = on
        case.anchors["paused_since"] = on
        return [Effect("case-paused", None, {"on": str(on), "reason": reason})]  # sealed
    _person(case, person)
    if person in case.paused_people:
        raise EngineError(f"{person}'s work on case {case.ref} is paused already (since "
                          f"{case.paused_people[person]}); resume it with --caregiver {person}")
    case.paused_people[person] = on
    return [Effect("work-paused", None, {"on": str(on), "person": person, "reason": reason})]


def resume(spec: PathwaySpec, case: CaseState, on: date, reason: str = "",
           person: str | None = None) -> list[Effect]:
    """Resume after a pause: open programme work (not statutory or court work) of the family,
    or of `person`, that was not yet due when the pause began moves on by the days paused;
    work already late that day keeps its date, so its lateness stays visible."""
    if person is not None:  # (one who left the case while paused can still be resumed)
        who = person if person in case.paused_people else _person(case, person)
        return _resume_person(case, on, reason, who)
    if case.paused_since is None:
        who = ", ".join(case.paused_people)
        raise EngineError(f"case {case.ref} is not paused" + (
            f"; the work of {who} is: resume it with --caregiver" if who else ""))
    start = case.paused_since
    if on < start:
        raise EngineError(f"resume date {on} is before the pause began ({start})")
    case.pauses.append(Pause(start, on, reason))
    case.paused_since = None
    case.anchors.pop("paused_since", None)
    days = (on - start).days
    return [Effect("case-resumed", None, {"on": str(on), "paused_days": days})] + \
        _shift_paused(case, start, on, days, None)


def _resume_person(case: CaseState, on: date, reason: str, person: str) -> list[Effect]:
    start = case.paused_people.get(person)
    if start is None:
        raise EngineError(f"{person}'s work on case {case.ref} is not paused")
    if on < start:
        raise EngineError(f"resume date {on} is before the pause began ({start})")
    del case.paused_people[person]
    case.pauses.append(Pause(start, on, reason, person))
    # days the whole family was paused too are moved by the family's own resume, not twice
    family = [(p.start, p.end) for p in case.pauses if p.person is None]
    if case.paused_since is not None:
        family.append((case.paused_since, on))
    overlap = sum(max(0, (min(e, on) - max(s, start)).days) for s, e in family)
    days = (on - start).days - overlap
    return [Effect("work-resumed", None, {"on": str(on), "person": person,
                                          "paused_days": (on - start).days})] + \
        _shift_paused(case, start, on, days, person)


def _shift_paused(case: CaseState, start: date, on: date, days: int,
                  person: str | None) -> list[Effect]:
    """Move the paused work on by `days`: the programme's open work (of `person` only, when
    given) that was not yet due on `start`. Work overdue that day keeps its due date. A court
    direction's date still binds (set_due)."""
    effects: list[Effect] = []
    whose = "case paused" if person is None else f"{person}'s work paused"
    for t in case.tasks.values():
        if t.state not in (OPEN, BLOCKED) or t.stage in ("statutory", "court") or not days:
            continue
        if person is not None and person not in (t.caregiver, t.child):
            continue
        if t.due < start:
            continue  # already late when the pause began: it stays late, by as many days
        base = t.pathway_due or t.due
        moved = compute_due(case.calendar, base, days, "days", "the due date before the "
                            f"pause ({start} to {on})", adjust="forward")
        why = moved.explanation if t.pathway_due else \
            f"{moved.explanation} ({t.due_explanation})"
        before = t.due
        if set_due(case, t, moved.due, why):
            effects.append(Effect("task-redated", t.key, {"from": str(before),
                                                          "to": str(t.due), "cause": whose}))
    return effects


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
