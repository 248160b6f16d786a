"""A looked-after child's placements: a new placement restarts the statutory work that
hangs on it; a child who stops being looked after has their reviews and visits stop."""

from __future__ import annotations

from datetime import date

from models.engine.family import _child_of
from models.engine.scheduling import (
    _apply_step,
    _due,
    _task_key,
    again_anchor,
    first_child_keyed,
    placement_applies,
    set_due,
)
from models.engine.state import (
    BLOCKED,
    CANCELLED,
    DONE,
    OPEN,
    CaseState,
    Effect,
    EngineError,
    TaskState,
    child_anchor,
)
from models.pathway import PathwaySpec, TaskSpec


def _next_occurrence(case: CaseState, spec_task: TaskSpec, child: str | None, due: date,
                     explanation: str, anchor: str) -> Effect:
    """A statutory series' next occurrence for `child` (None: the family's), due as given
    (bound by any court direction)."""
    n = 1 + max((t.occurrence for t in case.tasks.values()
                 if t.spec_id == spec_task.id and t.child == child), default=0)
    key = _task_key(spec_task, None, n, True, child, first_child_keyed(case))
    task = case.tasks[key] = TaskState(
        key=key, spec_id=spec_task.id, stage="statutory", title=spec_task.title,
        role=spec_task.role, due=due, due_explanation=explanation, anchor=anchor,
        occurrence=n, child=child)
    set_due(case, task, due, explanation)
    return Effect("task-created", key, {"role": spec_task.role, "due": str(task.due)})


def change_placement(spec: PathwaySpec, case: CaseState, start: date,
                     child: str | None = None, kind: str | None = None) -> list[Effect]:
    """A child's new placement: statutory work that hangs on the placement (visits within a
    week of any placement) starts again from its first day, at the cadence the pathway sets
    for the placement's kind (if given; else the default cadence)."""
    child = _child_of(case, child)
    name = child_anchor("placement_start", child)
    case.anchors[name] = start
    if kind is not None:
        case.placement_kinds[child] = kind
    else:
        case.placement_kinds.pop(child, None)
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
        if not placement_applies(spec, spec_task, case, child):
            continue  # another cadence applies to this kind of placement
        d = _due(case, spec_task.due, "placement start", start, spec_task.kind)
        effects.append(_next_occurrence(case, spec_task, child if per_child else None, d.due,
                                        d.explanation, "placement_start"))
    return effects


def final_order_cadence(spec: PathwaySpec, case: CaseState, made_on: date,
                        children: list[str]) -> list[Effect]:
    """The final order for children still looked after whose placement kind a visit series
    follows only until it (a child with a parent under an interim care order, visited weekly:
    SI 2010/959 reg 28(4)): that series' open visit ends and the default cadence takes over,
    due its interval after the last visit (within the placement's first week if none yet)."""
    effects: list[Effect] = []
    hangs = [t for t in spec.statutory if t.due.anchor == "placement_start"]
    for child in children:
        kind = case.placement_kinds.get(child)
        ending = {t.id for t in hangs if kind in t.until_final_order}
        if not ending or child_anchor("ceased_looked_after", child) in case.anchors:
            continue
        start = case.anchors.get(child_anchor("placement_start", child))
        visits = [t for t in case.tasks.values() if t.spec_id in {h.id for h in hangs}
                  and t.child in (child, None)]
        for t in visits:
            if t.spec_id in ending and t.state in (OPEN, BLOCKED):
                t.state = CANCELLED
                effects.append(Effect("task-cancelled", t.key, {
                    "reason": f"final order {made_on}: the interim order's visit cadence ends"}))
        done = sorted((t for t in visits if t.state == DONE and t.completed_on
                       and (start is None or t.completed_on >= start)),
                      key=lambda t: t.completed_on or date.min)
        for spec_task in hangs:
            if spec_task.id in ending or not placement_applies(spec, spec_task, case, child) \
                    or any(t.spec_id == spec_task.id and t.state in (OPEN, BLOCKED)
                           and t.child == child for t in visits):
                continue
            if done and spec_task.then_every:
                last = done[-1]
                d = _due(case, spec_task.then_every[0], f"last visit ({last.key}) completed; "
                         f"final order {made_on}", last.completed_on, spec_task.kind)
                anchor = f"done:{last.key}"
            elif start is not None:
                d = _due(case, spec_task.due, "placement start", start, spec_task.kind)
                anchor = "placement_start"
            else:
                continue
            effects.append(_next_occurrence(case, spec_task,
                                            child if spec_task.per == "child" else None,
                                            d.due, d.explanation, anchor))
    return effects


def cease_looked_after(spec: PathwaySpec, case: CaseState, on: date, why: str,
                       child: str | None = None) -> list[Effect]:
    """A child stops being looked after (recorded by hand: a care order discharged, the
    child's accommodation ended): their reviews and visits stop."""
    child = _child_of(case, child)
    name = child_anchor("ceased_looked_after", child)
    if name in case.anchors:
        raise EngineError(f"case {case.ref} recorded {child} as no longer looked after on "
                          f"{case.anchors[name]}")
    entry = case.anchors.get(child_anchor("care_entry", child), case.anchors["care_entry"])
    if on < entry:
        raise EngineError(f"{on} is before {child} became looked after ({entry})")
    return end_looked_after(spec, case, on, why, child)


def end_looked_after(spec: PathwaySpec, case: CaseState, on: date, why: str, child: str,
                     nim_work: bool = False) -> list[Effect]:
    """Record that `child` is no longer looked after from `on`: their reviews and visits stop
    (the reason names what ended it); with `nim_work`, so does NIM's work for that child alone
    (one child of a sibling group leaves; the family's work goes on)."""
    case.anchors[child_anchor("ceased_looked_after", child)] = on
    reason = f"child no longer looked after ({why})" if why else "child no longer looked after"
    effects = [Effect("looked-after-ended", None, {"on": str(on), "child": child,
                                                   "reason": reason})]
    everyone = all(child_anchor("ceased_looked_after", c) in case.anchors for c in case.children)
    for t in case.tasks.values():
        if t.state not in (OPEN, BLOCKED) or t.child != (child if t.child else None):
            continue
        if t.child is None and not everyone:
            continue  # the family's own statutory work goes on while a sibling is looked after
        statutory = spec.task_by_id[t.spec_id].while_looked_after
        if statutory or (nim_work and t.child == child and t.stage not in ("statutory", "court")):
            t.state = CANCELLED
            effects.append(Effect("task-cancelled", t.key, {"reason": reason}))
    return effects


def looked_after_again(spec: PathwaySpec, case: CaseState, on: date, why: str,
                       child: str) -> list[Effect]:
    """`child`, recorded as no longer looked after, is looked after again from `on` (an interim
    care order): their reviews count from that day (`looked_after_again@child`, reg 33(1): from
    the day the child becomes looked after), their placement as a looked-after child starts no
    earlier, and their visits restart from it at the cadence of their placement's kind."""
    case.anchors.pop(child_anchor("ceased_looked_after", child))
    case.anchors[again_anchor(child)] = on
    placed = child_anchor("placement_start", child)
    if case.anchors.get(placed, on) < on:
        case.anchors[placed] = on
    effects = [Effect("looked-after-again", None, {"on": str(on), "child": child,
                                                   "reason": f"looked after again ({why})"})]
    for spec_task in spec.statutory:
        if not spec_task.while_looked_after or spec_task.per != "child" or \
                spec_task.due.anchor not in ("care_entry", "placement_start") or \
                not placement_applies(spec, spec_task, case, child):
            continue
        due, explanation = _apply_step(case, spec_task, 1, child)
        effects.append(_next_occurrence(case, spec_task, child, due, explanation,
                                        spec_task.due.anchor))
    return effects
