"""The court's timetable and dated work set by someone else: extensions, final orders, court
directions to file a document, and referrals out to other services."""

from __future__ import annotations

from datetime import date
from typing import Any

from models.engine.clocks import clock_state
from models.engine.family import _caregiver, _child_of
from models.engine.placement import end_looked_after
from models.engine.scheduling import court_bound
from models.engine.state import (
    CANCELLED,
    DONE,
    FIRST_CHILD,
    CaseState,
    Direction,
    Effect,
    EngineError,
    Extension,
    FinalOrder,
    TaskState,
    child_anchor,
)
from models.pathway import DIRECTION_TASK, REFERRAL_OUT_TASK, PathwaySpec, TaskSpec


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


def own_application(case: CaseState, child: str | None) -> bool:
    """Whether a child has an application of their own, apart from the family's."""
    return child not in (None, FIRST_CHILD) and \
        child_anchor("proceedings_issued", child) in case.anchors


def record_final_order(spec: PathwaySpec, case: CaseState, made_on: date, kind: str,
                       follows_recommendation: bool, on: date,
                       child: str | None = None) -> list[Effect]:
    """The final order that disposes of the proceedings (it meets the 26-week clock); with
    `child`, one child's own order where a sibling group's orders differ (the family's
    application is disposed of once every child on it has theirs; a child with their own
    application has it disposed of by their own order). An order after which the child is no
    longer looked after (the pathway's `court.ends_looked_after`) ends their reviews, visits
    and NIM's work for them alone."""
    if kind not in spec.court.order_kinds:
        raise EngineError(f"unknown order kind {kind!r}; use one of "
                          f"{', '.join(spec.court.order_kinds) or '(none declared)'}")
    if child is not None:
        _child_of(case, child)
    own = own_application(case, child)
    issued = case.anchors.get(child_anchor("proceedings_issued", child) if own
                              else "proceedings_issued")
    if issued is None:
        raise EngineError("record when proceedings were issued before the final order")
    if not issued <= made_on <= on:
        raise EngineError(f"final order date {made_on} must be between issue ({issued}) and "
                          f"today ({on})")
    order = FinalOrder(made_on, kind, follows_recommendation)
    on_family = [c for c in case.children if not own_application(case, c)]
    if child is not None and len(case.children) > 1:
        case.child_orders[child] = order
        case.anchors[f"final_order@{child}"] = made_on  # each child's own, even the first
        if not own and all(c in case.child_orders for c in on_family):
            case.anchors["final_order"] = max(case.child_orders[c].made_on for c in on_family)
        covered = [child]
    else:
        case.final_order = order
        case.anchors["final_order"] = made_on
        covered = on_family
    effects = [Effect("final-order-recorded", None, {
        "on": str(made_on), "kind": kind, "follows_recommendation": follows_recommendation,
        **({"child": child} if child else {})})]
    if kind in spec.court.ends_looked_after:
        why = (f"{spec.court.order_kinds[kind].lower()} made on {made_on}: no longer looked "
               f"after ({spec.court.ends_looked_after_source or 'the pathway'})")
        for c in covered:
            if child_anchor("ceased_looked_after", c) not in case.anchors:
                effects += end_looked_after(spec, case, made_on, why, c,
                                            nim_work=len(case.children) > 1)
    return effects


def add_direction(spec: PathwaySpec, case: CaseState, document: str, role: str | None,
                  by: date, on: date) -> list[Effect]:
    """A court direction to file a document by a date. A document the pathway's own tasks
    produce (`court.produced_by`) binds them: each open one is due by the earlier of its date
    and the court's, one not yet made is bound when it is made, one already done is only
    recorded against ("already filed on ..."). Any other document is a task for `role`."""
    governs = spec.court.produced_by.get(document)
    if not governs and role is None:
        raise EngineError(f"{document} is produced by no task of this pathway: name the role "
                          "that files it (--role)")
    _check_dated(spec, "document", document, spec.court.documents, role, by, on)
    if not governs:
        return _dated_task(case, DIRECTION_TASK, "court", str(role), by,
                           f"File {spec.court.documents[document]} (court direction)",
                           f"filing deadline set by the court on {on.isoformat()}",
                           "direction", {"document": document})
    direction = Direction(document, by, on, tuple(governs))
    case.directions.append(direction)
    bound = [t for t in case.tasks.values() if t.spec_id in governs and t.state != CANCELLED]
    effects = [Effect("direction-recorded", None, {
        "document": document, "by": str(by), "given_on": str(on), "tasks": list(governs),
        "bound": [t.key for t in bound if t.state != DONE],
        "pending": not bound})]  # no such task yet: bound when the pathway makes it
    for task in bound:
        if task.state == DONE:
            effects.append(Effect("direction-already-met", task.key, {
                "document": document, "by": str(by),
                "note": f"already filed on {task.completed_on}"}))
            continue
        pathway_due = task.pathway_due or task.due
        due, why, _ = court_bound(case, task.spec_id, pathway_due, "as the pathway dated it")
        if due < task.due:
            effects.append(Effect("task-redated", task.key, {
                "from": str(task.due), "to": str(due), "cause": direction.names()}))
            task.due, task.due_explanation, task.pathway_due = due, why, pathway_due
    return effects


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


def _check_dated(spec: PathwaySpec, what: str, code: str, declared: dict[str, str],
                 role: str | None, by: date, on: date) -> None:
    """A dated task's kind is declared by the pathway, its role exists, its date is to come."""
    if code not in declared:
        raise EngineError(f"unknown {what} {code!r}; this pathway has: "
                          f"{', '.join(declared) or '(none declared)'}")
    if role is not None and role not in spec.roles:
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
