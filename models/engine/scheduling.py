"""Making a case's tasks: who each is for, its key, its due date from its anchor, the next of
a recurring series, and re-dating open work when a date it hangs on moves."""

from __future__ import annotations

import re
from datetime import date

from models.calendar import ADJUST_FOR_KIND, compute_due
from models.engine.state import (
    BLOCKED,
    CANCELLED,
    DONE,
    FIRST_CHILD,
    OPEN,
    CaseState,
    Effect,
    EngineError,
    TaskState,
    child_anchor,
)
from models.pathway import Offset, PathwaySpec, TaskSpec


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


def own_application(case: CaseState, child: str | None) -> bool:
    """Whether a child has an application of their own, apart from the family's."""
    return child not in (None, FIRST_CHILD) and \
        child_anchor("proceedings_issued", child) in case.anchors


def has_final_order(case: CaseState, child: str | None) -> bool:
    """Whether the child's proceedings have their final order (their own, or the family's
    for a child on the family's application)."""
    child = child or FIRST_CHILD
    return child in case.child_orders or (
        case.final_order is not None and not own_application(case, child))


def _follows(spec_task: TaskSpec, kind: str | None, ordered: bool) -> bool:
    return kind in spec_task.placements and not (ordered and kind in spec_task.until_final_order)


def placement_applies(spec: PathwaySpec, spec_task: TaskSpec, case: CaseState,
                      child: str | None) -> bool:
    """Whether a series that hangs on the placement runs for this child's placement kind: a
    series naming `placements:` runs for those kinds (those in its `until_final_order` only
    until the child's final order); one naming none for every other kind (and when the kind
    is not known)."""
    if spec_task.due.anchor != "placement_start":
        return True
    kind = case.placement_kinds.get(child or FIRST_CHILD)
    ordered = has_final_order(case, child)
    if spec_task.placements:
        return _follows(spec_task, kind, ordered)
    return not any(_follows(t, kind, ordered) for t in spec.statutory
                   if t.due.anchor == "placement_start")


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
    anchor, name = _resolve_anchor(case, due_rule.anchor, child), due_rule.anchor
    if spec_task.while_looked_after and due_rule.anchor == "care_entry":
        # looked after again (an interim care order after their status had ended): their
        # reviews count from that day, not from the care entry the case began with
        name = "looked after again" if again_anchor(child) in case.anchors else name
        anchor = case.anchors.get(again_anchor(child), anchor)
    if late_from is not None and due_rule.anchor.startswith("stage:") and anchor is not None:
        # work for someone who joined after the stage began runs from the day they joined
        anchor = max(anchor, late_from)
    if anchor is None:
        raise EngineError(
            f"case {case.ref} has no {due_rule.anchor!r} date yet; record it before this stage"
        )
    first = _due(case, due_rule, name, anchor, spec_task.kind)
    if occurrence == 1 or every is None or spec_task.then_every:
        return first.due, first.explanation  # a series restarts from its anchor
    # occurrence n is the first due date plus (n-1) spacings, computed in the spacing's unit
    step = every.amount(case.settings) * (occurrence - 1)
    d = compute_due(case.calendar, first.due, step, every.unit, "occurrence 1 due",
                    adjust=ADJUST_FOR_KIND[spec_task.kind])
    return d.due, f"occurrence {occurrence}: {d.explanation} ({first.explanation})"


def again_anchor(child: str | None) -> str:
    """The day a child became looked after again, after their status had ended (always
    suffixed, the first child's too: the family's care entry stays the case's)."""
    return f"looked_after_again@{child or FIRST_CHILD}"


def court_bound(case: CaseState, spec_id: str, due: date, why: str, child: str | None = None
                ) -> tuple[date, str, date | None]:
    """The due date a court direction allows: the earlier of the pathway's `due` and the
    earliest direction governing tasks of `spec_id` about `child` (a direction naming a child
    binds that child's tasks and the family's, never a sibling's), with its explanation, and
    the pathway's own date when the court's is the earlier (None otherwise). Re-dating by the
    pathway (a pause, a moved date) goes through here, so it never moves work past the
    court's date."""
    binding = [d for d in case.directions if d.binds(spec_id, child)]
    if not binding:
        return due, why, None
    first = min(binding, key=lambda d: (d.by, d.given_on))
    if first.by < due:
        return first.by, f"{first.names()} (the pathway's date {due}: {why})", due
    return due, why, None


def set_due(case: CaseState, task: TaskState, due: date, why: str) -> bool:
    """Give `task` the pathway's `due` (bound by any court direction); whether it moved."""
    due, why, pathway_due = court_bound(case, task.spec_id, due, why, task.child)
    moved = due != task.due
    if moved or pathway_due != task.pathway_due:
        task.due, task.due_explanation, task.pathway_due = due, why, pathway_due
    return moved


_FIRST_CHILD_KEY = re.compile(rf"-{FIRST_CHILD}(-|$)")


def first_child_keyed(case: CaseState) -> bool:
    """Whether the first child's work carries their key beside a sibling's on this case
    (`child-assessment-child-1` beside `child-assessment-child-2`). A case opened with a
    sibling group does. A case whose first child already has work keyed without it keeps that
    (every case stored before, and a one-child case that later gains a sibling): a stored key
    never changes, since timers, Prefect runs, messages and the audit log name it."""
    mine = [t.key for t in case.tasks.values() if t.child == FIRST_CHILD]
    if mine:
        return any(_FIRST_CHILD_KEY.search(k) for k in mine)
    return len(case.children) > 1


def _task_key(spec_task: TaskSpec, caregiver: str | None, occurrence: int, many: bool,
              child: str | None = None, first_keyed: bool = False) -> str:
    key = spec_task.id
    if caregiver:
        key += f"-{caregiver}"
    if child and (child != FIRST_CHILD or first_keyed):
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
    first_keyed = first_child_keyed(case)
    for child, caregiver in _subjects(spec, spec_task, case):
        if not placement_applies(spec, spec_task, case, child):
            continue
        for occurrence in range(1, count + 1):
            key = _task_key(spec_task, caregiver, occurrence, many, child, first_keyed)
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
            set_due(case, task, due, why)
            if any(case.tasks[k].state != DONE for k in after):
                task.state = BLOCKED
            case.tasks[key] = task
            effects.append(Effect("task-created", key, {"role": task.role, "due": str(task.due)}))
    return effects


def _next_in_series(
    case: CaseState, spec_task: TaskSpec, done: TaskState, completed_on: date
) -> list[Effect]:
    if spec_task.while_looked_after and \
            child_anchor("ceased_looked_after", done.child) in case.anchors:
        return []  # no more reviews or visits once the child is no longer looked after
    n = done.occurrence + 1
    key = _task_key(spec_task, done.caregiver, n, True, done.child, first_child_keyed(case))
    if key in case.tasks:
        return []
    step = _series_step(spec_task, done.occurrence, case, done.child)
    d = _due(case, step, f"previous ({done.key}) completed", completed_on, spec_task.kind)
    task = case.tasks[key] = TaskState(
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
    set_due(case, task, d.due, d.explanation)
    return [Effect("task-created", key, {"role": spec_task.role, "due": str(task.due)})]


def _series_step(spec_task: TaskSpec, previous: int, case: CaseState,
                 child: str | None = None) -> Offset:
    """The spacing after the `previous`-th occurrence of a series since its anchor (a restarted
    series, after a placement change, begins its ladder again)."""
    switch = spec_task.after_review
    if switch is not None and reviewed(case, switch.task, child):
        return switch.every
    since = previous - _series_base(case, spec_task, child)
    return spec_task.then_every[min(max(since, 1) - 1, len(spec_task.then_every) - 1)]


def reviewed(case: CaseState, review: str, child: str | None) -> bool:
    """The first review (a task of `review`) since the current placement began has been held.
    The stricter reading of "until the first review" for a child whose first review came
    before this placement: weekly visits until the next one (docs/STATUTORY-CLOCKS.md EN-5a)."""
    since = _resolve_anchor(case, "placement_start", child) or date.min
    return any(t.spec_id == review and t.state == DONE and t.child == child
               and t.completed_on is not None and t.completed_on >= since
               for t in case.tasks.values())


def redate_after_review(spec: PathwaySpec, case: CaseState, review: TaskState) -> list[Effect]:
    """The child's first review was held: open visits of a series whose spacing changes after
    it ("weekly until the first review, then not more than four weeks") are re-dated from the
    previous visit with the new spacing."""
    effects = []
    for task in case.tasks.values():
        switch = spec.task_by_id[task.spec_id].after_review
        if task.state not in (OPEN, BLOCKED) or switch is None or switch.task != review.spec_id \
                or task.child != review.child or not task.anchor.startswith("done:"):
            continue
        prev = case.tasks.get(task.anchor[5:])
        if prev is None or prev.completed_on is None:
            continue
        d = _due(case, switch.every, f"previous ({prev.key}) completed; first review held "
                 f"{review.completed_on}", prev.completed_on, spec.task_by_id[task.spec_id].kind)
        before = task.due
        if set_due(case, task, d.due, d.explanation):
            effects.append(Effect("task-redated", task.key, {"from": str(before),
                                                             "to": str(task.due),
                                                             "cause": "first review held"}))
    return effects


def _series_base(case: CaseState, spec_task: TaskSpec, child: str | None = None) -> int:
    """Occurrences of this series before its current anchor run (0 if never restarted)."""
    restarts = [t.occurrence - 1 for t in case.tasks.values()
                if t.spec_id == spec_task.id and t.anchor == spec_task.due.anchor
                and t.child == child]
    return max(restarts, default=0)


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
        before = task.due
        if set_due(case, task, due, why):
            effects.append(Effect("task-redated", task.key,
                                  {"from": str(before), "to": str(task.due), "cause": cause}))
    return effects
