"""The court's timetable and dated work set by someone else: extensions, final orders, court
directions to file a document, and referrals out to other services."""

from __future__ import annotations

from datetime import date
from typing import Any

from models.engine.clocks import clock_state
from models.engine.family import _caregiver, _child_of
from models.engine.placement import end_looked_after, final_order_cadence, looked_after_again
from models.engine.scheduling import court_bound, own_application
from models.engine.state import (
    CANCELLED,
    DONE,
    CaseState,
    CourtOrder,
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
                     reason: str, on: date, child: str | None = None) -> list[Effect]:
    """Record one extension of the court's timetable (s32(5): one at a time, each up to the
    clock's maximum, with its reason). With `child`, of that child's own application: only
    their own clock instance (`care-proceedings-26-weeks@child-2`) moves."""
    clock = next((c for c in spec.clocks if c.extensions), None)
    if clock is None:
        raise EngineError(f"pathway {spec.profile} has no court timetable that can be extended")
    if child is not None:
        _child_of(case, child)
        if not own_application(case, child):
            raise EngineError(f"{child} is on the family's application: record the extension "
                              "without --child (it extends the family's timetable), or give "
                              f"{child}'s own application first")
    anchor_name = child_anchor(clock.anchor, child)
    if anchor_name not in case.anchors:
        raise EngineError(f"record {clock.anchor.replace('_', ' ')} before extending its "
                          "timetable")
    issued = case.anchors[anchor_name]
    if not 1 <= weeks <= clock.max_extension_weeks:
        raise EngineError(f"an extension is for 1 to {clock.max_extension_weeks} weeks "
                          f"({clock.source}); record a further extension when it is granted")
    if not reason.strip():
        raise EngineError("give the court's reason for the extension (--reason)")
    if granted_on < issued or granted_on > on:
        raise EngineError(f"extension granted {granted_on} must be between {issued} and today "
                          f"({on})")
    mine = [e for e in case.extensions if e.child == child]
    if mine and granted_on < mine[-1].granted_on:
        raise EngineError(f"extensions are recorded in the order granted; the last was granted "
                          f"{mine[-1].granted_on}")
    before = clock_state(spec, case, clock, on, child)
    case.extensions.append(Extension(granted_on, weeks, reason, child))
    after = clock_state(spec, case, clock, on, child)
    return [Effect("timetable-extended", None, {"clock": after.id, "weeks": weeks,
                                                "granted_on": str(granted_on),
                                                "from": str(before.due), "to": str(after.due),
                                                **({"child": child} if child else {})})]



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
        hint = " (an interim order: `case interim-order`)" \
            if kind in spec.court.interim_order_kinds else ""
        raise EngineError(f"unknown order kind {kind!r}{hint}; use one of "
                          f"{', '.join(spec.court.order_kinds) or '(none declared)'}")
    if child is not None:
        _child_of(case, child)
    own = own_application(case, child)
    earlier = case.child_orders.get(child) if child is not None else None
    if earlier is None and not own:
        earlier = case.final_order
    if earlier is not None:  # an order after the disposal: an adoption order, say
        return _later_order(spec, case, earlier, made_on, kind, on, child)
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
    return effects + _order_ends_looked_after(spec, case, kind, made_on, covered) + \
        final_order_cadence(spec, case, made_on, covered)


def _order_ends_looked_after(spec: PathwaySpec, case: CaseState, kind: str, made_on: date,
                             covered: list[str]) -> list[Effect]:
    """An order after which the children it covers are no longer looked after ends their
    reviews, visits and (in a sibling group) NIM's work for them, naming the order."""
    if kind not in spec.court.ends_looked_after:
        return []
    why = (f"{spec.court.order_kinds[kind].lower()} made on {made_on}: no longer looked "
           f"after ({spec.court.ends_looked_after_source or 'the pathway'})")
    effects: list[Effect] = []
    for c in covered:
        if child_anchor("ceased_looked_after", c) not in case.anchors:
            effects += end_looked_after(spec, case, made_on, why, c,
                                        nim_work=len(case.children) > 1)
    return effects


def _later_order(spec: PathwaySpec, case: CaseState, earlier: FinalOrder, made_on: date,
                 kind: str, on: date, child: str | None) -> list[Effect]:
    """An order made after the application was disposed of (an adoption order after the
    placement order): kept with the child's orders, it leaves the disposal's date (and the
    26-week clock it met) as it was, and changes looked-after status as its kind says."""
    whose = f"{child}'s" if child else "the family's"
    if kind == "withdrawn":
        raise EngineError(f"{whose} application was disposed of by a "
                          f"{spec.court.order_kinds.get(earlier.kind, earlier.kind).lower()} "
                          f"on {earlier.made_on}: it cannot be withdrawn after that")
    if not earlier.made_on < made_on <= on:
        raise EngineError(
            f"{whose} application was disposed of by a "
            f"{spec.court.order_kinds.get(earlier.kind, earlier.kind).lower()} on "
            f"{earlier.made_on}: a later order (an adoption order, say) is made after that day "
            f"and by today ({on}); the final order itself cannot be recorded twice")
    covered = [child] if child is not None else \
        [c for c in case.children if not own_application(case, c)]
    effects = []
    for c in covered:
        case.orders.append(CourtOrder(made_on, kind, c))
        effects.append(Effect("later-order-recorded", None, {
            "on": str(made_on), "kind": kind, "child": c, "after": earlier.kind}))
    return effects + _order_ends_looked_after(spec, case, kind, made_on, covered)


def record_interim_order(spec: PathwaySpec, case: CaseState, made_on: date, kind: str,
                         court: str, on: date, child: str | None = None) -> list[Effect]:
    """An interim order for one child (s38: made while the application is adjourned, before
    the final order). It meets no clock. Under an order of `court.looked_after_under` (an
    interim care order) the child is looked after: one recorded as no longer looked after
    before it is looked after again from its date (their reviews and visits start again)."""
    kinds = spec.court.interim_order_kinds
    if kind not in kinds:
        raise EngineError(f"unknown interim order kind {kind!r}; use one of "
                          f"{', '.join(kinds) or '(none declared in this pathway)'}")
    child = _child_of(case, child)
    court = " ".join(court.split())
    if not court:
        raise EngineError("name the court that made the order (--court), e.g. 'Family Court "
                          "at Leeds' (a court's name, never a person's)")
    if len(court) > 120:
        raise EngineError("the court's name is at most 120 characters")
    own = own_application(case, child)
    issued = case.anchors.get(child_anchor("proceedings_issued", child) if own
                              else "proceedings_issued")
    if issued is None:
        raise EngineError(f"record when {child}'s application was issued first: an interim "
                          "order is made in proceedings (Children Act 1989 s38(1))")
    final = case.child_orders.get(child) or (None if own else case.final_order)
    last = min(on, final.made_on) if final else on
    if not issued <= made_on <= last:
        until = f"the final order ({final.made_on})" if final and final.made_on < on \
            else f"today ({on})"
        raise EngineError(f"interim order date {made_on} must be between the application's "
                          f"issue ({issued}) and {until}")
    case.orders.append(CourtOrder(made_on, kind, child, court))
    effects = [Effect("interim-order-recorded", None, {"on": str(made_on), "kind": kind,
                                                      "child": child})]
    ceased = case.anchors.get(child_anchor("ceased_looked_after", child))
    if kind in spec.court.looked_after_under and ceased is not None and ceased <= made_on:
        why = (f"{kinds[kind].lower()} made on {made_on} "
               f"({spec.court.looked_after_under_source or 'the pathway'})")
        effects += looked_after_again(spec, case, made_on, why, child)
    return effects


def add_direction(spec: PathwaySpec, case: CaseState, document: str, role: str | None,
                  by: date, on: date, child: str | None = None) -> list[Effect]:
    """A court direction to file a document by a date. A document the pathway's own tasks
    produce (`court.produced_by`) binds them: each open one is due by the earlier of its date
    and the court's, one not yet made is bound when it is made, one already done is only
    recorded against ("already filed on ..."). Any other document is a task for `role`. With
    `child`, a direction in that child's proceedings: it binds their own tasks and the
    family's, never a sibling's."""
    governs = spec.court.produced_by.get(document)
    if not governs and role is None:
        raise EngineError(f"{document} is produced by no task of this pathway: name the role "
                          "that files it (--role)")
    if child is not None:
        _child_of(case, child)
    _check_dated(spec, "document", document, spec.court.documents, role, by, on)
    if not governs:
        effects = _dated_task(case, DIRECTION_TASK, "court", str(role), by,
                              f"File {spec.court.documents[document]} (court direction)",
                              f"filing deadline set by the court on {on.isoformat()}",
                              "direction", {"document": document,
                                            **({"child": child} if child else {})})
        case.tasks[effects[0].task].child = child
        return effects
    direction = Direction(document, by, on, tuple(governs), child)
    case.directions.append(direction)
    bound = [t for t in case.tasks.values() if direction.binds(t.spec_id, t.child)
             and t.state != CANCELLED]
    effects = [Effect("direction-recorded", None, {
        "document": document, "by": str(by), "given_on": str(on), "tasks": list(governs),
        "bound": [t.key for t in bound if t.state != DONE],
        "pending": not bound,  # no such task yet: bound when the pathway makes it
        **({"child": child} if child else {})})]
    for task in bound:
        if task.state == DONE:
            effects.append(Effect("direction-already-met", task.key, {
                "document": document, "by": str(by),
                "note": f"already filed on {task.completed_on}"}))
            continue
        pathway_due = task.pathway_due or task.due
        due, why, _ = court_bound(case, task.spec_id, pathway_due, "as the pathway dated it",
                                  task.child)
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
