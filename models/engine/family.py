"""The family on a case changes: caregivers join, leave, consent or withdraw it, and are
linked to children; children join and leave the family episode."""

from __future__ import annotations

from datetime import date

from models.engine.lifecycle import _advance_if_stage_done, exit_case
from models.engine.scheduling import _create_tasks
from models.engine.state import (
    BLOCKED,
    CANCELLED,
    DONE,
    FIRST_CHILD,
    OPEN,
    Caregiver,
    CaseState,
    Effect,
    EngineError,
    caregiver_keys,
    child_anchor,
)
from models.pathway import PathwaySpec


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
              placement_start: date | None = None, placement_kind: str | None = None,
              looked_after_from: date | None = None,
              proceedings_issued: date | None = None) -> list[Effect]:
    """A sibling joins the family episode (a newborn, a child taken into care later): their
    own statutory work from their own dates, never the family's. `looked_after_from`: the day
    they became looked after (default: today), which their first review counts from;
    `proceedings_issued`: their own application, if the court issued one apart from the
    family's (its own 26 weeks and case management hearing); `placement_*`: their placement,
    which their visits count from (default: the day they became looked after)."""
    child = f"child-{len(case.children) + 1}"
    looked_after_from = looked_after_from or on
    if looked_after_from > on:
        raise EngineError(f"{child} cannot be looked after from {looked_after_from}, after "
                          f"today ({on}); add the child once they are looked after")
    case.children.append(child)
    case.anchors[child_anchor("care_entry", child)] = looked_after_from
    case.anchors[child_anchor("placement_start", child)] = placement_start or looked_after_from
    if proceedings_issued is not None:
        case.anchors[child_anchor("proceedings_issued", child)] = proceedings_issued
    if placement_kind is not None:
        case.placement_kinds[child] = placement_kind
    effects = [Effect("child-added", None, {
        "child": child, "looked_after_from": str(looked_after_from),
        **({"proceedings_issued": str(proceedings_issued)} if proceedings_issued else {})})]
    for spec_task in spec.statutory:
        effects += _create_tasks(spec, case, spec_task, "statutory", late_from=on)
    if case.stage is not None:
        for spec_task in spec.stage_by_id[case.stage].tasks:
            effects += _create_tasks(spec, case, spec_task, case.stage, late_from=on)
    return effects


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


def _child_of(case: CaseState, child: str | None) -> str:
    child = child or FIRST_CHILD
    if child not in case.children:
        raise EngineError(f"case {case.ref} has no child {child!r}; its children: "
                          f"{', '.join(case.children)}")
    return child
