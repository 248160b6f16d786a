"""Rows <-> engine state. The engine works on `CaseState`; this module is the only place that
knows which columns hold it. Task columns are the fields of `engine.TaskState`, named once."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from models import engine as eng
from models.errors import Invalid, NotFound
from models.pathway import PathwaySpec
from store.tables import (
    Caregiver,
    Case,
    CaseAnchor,
    Child,
    CourtExtension,
    Decision,
    Intake,
    PathwayVersion,
    Placement,
    Task,
)

# every TaskState field is a Task column of the same name (key identifies the row)
TASK_STATE_FIELDS = tuple(f.name for f in fields(eng.TaskState))


def find_case(session: Session, ref: str, lock: bool = False) -> Case:
    """The case row; `lock` makes this transaction the case's one writer on PostgreSQL
    (SQLite's BEGIN IMMEDIATE already is)."""
    stmt = select(Case).where(Case.ref == ref)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    case = session.exec(stmt).first()
    if case is None:
        raise NotFound(f"unknown case {ref!r}; `nim-pathway case list` shows the cases")
    return case


def find_task(session: Session, case: Case, key: str) -> Task:
    task = session.exec(select(Task).where(Task.case_id == case.id, Task.key == key)).first()
    if task is None:
        raise NotFound(f"case {case.ref} has no task {key!r}")
    return task


def find_intake(session: Session, handle: str, lock: bool = False) -> Intake:
    stmt = select(Intake).where(Intake.handle == handle.strip())
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    intake = session.exec(stmt).first()
    if intake is None:
        raise NotFound(f"no staged referral {handle!r}; create one with "
                       "`nim-pathway case intake --file referral.yaml`")
    return intake


def load_state(session: Session, case: Case, spec: PathwaySpec,
               closures: frozenset[date]) -> eng.CaseState:
    """The engine's view of a case, read from its rows (its free text opened: a command
    works on it and writes it back)."""
    anchors = {a.name: a.value for a in session.exec(
        select(CaseAnchor).where(CaseAnchor.case_id == case.id))}
    carers = [(c.key, c.relationship, c.children, c.consent, c.active) for c in session.exec(
        select(Caregiver).where(Caregiver.case_id == case.id).order_by(Caregiver.id))]
    decisions = {d.kind: d.outcome for d in session.exec(
        select(Decision).where(Decision.case_id == case.id))}
    children = list(session.exec(select(Child.key).where(
        Child.case_id == case.id, Child.removed_on.is_(None)).order_by(Child.id)))
    extensions = [(e.granted_on, e.weeks, e.reason, e.child) for e in session.exec(
        select(CourtExtension).where(CourtExtension.case_id == case.id)
        .order_by(CourtExtension.id))]
    placements = {p.child: p.kind for p in session.exec(
        select(Placement).where(Placement.case_id == case.id, Placement.end.is_(None)))}
    tasks = [{name: getattr(row, name) for name in TASK_STATE_FIELDS} for row in session.exec(
        select(Task).where(Task.case_id == case.id).order_by(Task.id))]
    return _state(case, spec, closures, anchors, carers, decisions, children, extensions,
                  placements, tasks)


def load_states(session: Session, cases: list[Case], specs: dict[int, PathwaySpec],
                closures: frozenset[date], ids: Any) -> dict[int, eng.CaseState]:  # noqa: ANN401
    """The engine's view of many cases (by case id) for reading, not changing: one query per
    table for all of them (`ids`: a select of their case ids), columns only. What people typed
    (outcome notes and text fields, an extension's reason) stays sealed, as stored: the board,
    the KPIs, the breaches and the timeline never show it, and no case key is opened."""
    from collections import defaultdict

    def rows(*columns: Any, order: Any = None, where: Any = None) -> dict[int, list]:  # noqa: ANN401
        table = columns[0].class_
        stmt = select(table.case_id, *columns).where(table.case_id.in_(ids))
        if where is not None:
            stmt = stmt.where(where)
        grouped: dict[int, list] = defaultdict(list)
        for row in session.exec(stmt.order_by(order if order is not None else table.id)):
            grouped[row[0]].append(tuple(row[1:]))
        return grouped

    anchors = rows(CaseAnchor.name, CaseAnchor.value)
    carers = rows(Caregiver.key, Caregiver.relationship, Caregiver.children, Caregiver.consent,
                  Caregiver.active)
    decisions = rows(Decision.kind, Decision.outcome)
    children = rows(Child.key, where=Child.removed_on.is_(None))
    extensions = rows(CourtExtension.granted_on, CourtExtension.weeks, CourtExtension.reason,
                      CourtExtension.child)
    placements = rows(Placement.child, Placement.kind, where=Placement.end.is_(None))
    tasks = rows(*(getattr(Task, name) for name in TASK_STATE_FIELDS))
    return {case.id: _state(
        case, specs[case.id], closures, dict(anchors[case.id]), carers[case.id],
        dict(decisions[case.id]), [k for (k,) in children[case.id]], extensions[case.id],
        dict(placements[case.id]), [dict(zip(TASK_STATE_FIELDS, t, strict=True))
                                    for t in tasks[case.id]])
        for case in cases if case.id is not None}


def _state(case: Case, spec: PathwaySpec, closures: frozenset[date], anchors: dict[str, date],
           carers: list, decisions: dict[str, str], children: list[str], extensions: list,
           placements: dict[str, str], tasks: list[dict[str, Any]]) -> eng.CaseState:
    state = eng.CaseState(
        ref=case.ref, jurisdiction=case.jurisdiction, anchors=anchors,
        settings={**spec.settings, **(case.settings or {})},
        caregivers=[eng.Caregiver(key, relationship, list(kids or []), consent, active)
                    for key, relationship, kids, consent, active in carers],
        children=children or [eng.FIRST_CHILD],
        child_orders={k: eng.FinalOrder(date.fromisoformat(o["made_on"]), o["kind"],
                                        o["follows"]) for k, o in (case.child_orders or {}).items()},
        exit_reason=case.exit_reason, paused_since=case.paused_since,
        pauses=[eng.Pause(date.fromisoformat(p["start"]), date.fromisoformat(p["end"]), "",
                          p.get("person")) for p in case.pauses or []],
        paused_people={k: date.fromisoformat(v) for k, v in (case.paused_people or {}).items()},
        directions=[eng.Direction(d["document"], date.fromisoformat(d["by"]),
                                  date.fromisoformat(d["given_on"]), tuple(d["tasks"]),
                                  d.get("child"))
                    for d in case.directions or []],
        orders=[eng.CourtOrder(date.fromisoformat(o["made_on"]), o["kind"], o["child"],
                               o.get("court", "")) for o in case.orders or []],
        stage=case.stage, decisions=decisions, closed_on=case.closed_on, closures=closures,
        extensions=[eng.Extension(granted_on, weeks, reason, child)
                    for granted_on, weeks, reason, child in extensions],
    )
    # each child's current placement kind: it picks the visit cadence (sw-visit-weekly)
    state.placement_kinds = placements
    if case.final_order_kind and "final_order" in anchors:
        state.final_order = eng.FinalOrder(anchors["final_order"], case.final_order_kind,
                                           bool(case.final_order_follows_recommendation))
    for values in tasks:
        values["after"] = list(values["after"] or [])
        state.tasks[values["key"]] = eng.TaskState(**values)
    return state


def save_state(session: Session, case: Case, state: eng.CaseState, effects: list[eng.Effect],
               now: datetime, actor: str) -> list[Task]:
    """Write the case, its key dates, court timetable and tasks as the engine left them;
    return the task rows created (the caller assigns them)."""
    case.stage, case.closed_on = state.stage, state.closed_on
    case.exit_reason, case.paused_since = state.exit_reason, state.paused_since
    case.pauses = [{"start": str(p.start), "end": str(p.end),
                    **({"person": p.person} if p.person else {})} for p in state.pauses] or None
    case.paused_people = {k: str(v) for k, v in state.paused_people.items()} or None
    case.directions = [{"document": d.document, "by": str(d.by), "given_on": str(d.given_on),
                        "tasks": list(d.tasks), **({"child": d.child} if d.child else {})}
                       for d in state.directions] or None
    case.orders = [{"made_on": str(o.made_on), "kind": o.kind, "child": o.child,
                    **({"court": o.court} if o.court else {})} for o in state.orders] or None
    case.child_orders = {k: {"made_on": str(o.made_on), "kind": o.kind,
                             "follows": o.follows_recommendation}
                         for k, o in state.child_orders.items()} or None
    if state.final_order:
        case.final_order_kind = state.final_order.kind
        case.final_order_follows_recommendation = state.final_order.follows_recommendation
    session.add(case)
    stored = len(session.exec(select(CourtExtension.id).where(
        CourtExtension.case_id == case.id)).all())
    for ext in state.extensions[stored:]:  # extensions are only ever added
        session.add(CourtExtension(case_id=case.id, granted_on=ext.granted_on, weeks=ext.weeks,
                                   reason=ext.reason, child=ext.child, recorded_by=actor,
                                   recorded_at=now))
    existing_anchors = {a.name: a for a in session.exec(
        select(CaseAnchor).where(CaseAnchor.case_id == case.id))}
    causes = {e.detail["anchor"]: e.detail["cause"] for e in effects if e.kind == "anchor-moved"}
    for name, value in state.anchors.items():
        row = existing_anchors.get(name)
        if row is None:
            session.add(CaseAnchor(case_id=case.id, name=name, value=value,
                                   cause=causes.get(name)))
        elif row.value != value:
            row.value, row.cause = value, causes.get(name, row.cause)
            session.add(row)
    for name, row in existing_anchors.items():  # a date the engine dropped (a pause's start,
        if name not in state.anchors:  # on resuming) is gone from the case too
            session.delete(row)
    rows = {t.key: t for t in session.exec(select(Task).where(Task.case_id == case.id))}
    created = []
    for t in state.tasks.values():
        row = rows.get(t.key)
        values = {name: getattr(t, name) for name in TASK_STATE_FIELDS if name != "key"}
        if row is None:
            row = Task(case_id=case.id, key=t.key, created_at=now, updated_at=now, **values)
            created.append(row)
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
        else:
            continue
        session.add(row)
    return created


def save_decisions(session: Session, case: Case, state: eng.CaseState,
                   effects: list[eng.Effect], actor: str) -> None:
    for e in effects:
        if e.kind == "decision-recorded":
            task = state.tasks[e.task]
            kind = eng.child_anchor(e.detail["decision"], e.detail.get("child"))
            session.add(Decision(case_id=case.id, kind=kind,
                                 outcome=e.detail["outcome"], decided_on=task.completed_on,
                                 decided_by=actor, rationale=task.outcome.get("notes", "")))


def save_family(session: Session, case: Case, state: eng.CaseState, today: date) -> None:
    """Each caregiver's consent (with the day it changed), who they care for and whether they
    are still on the case; rows for children and caregivers added since (the command that added
    them writes their identity)."""
    rows = {c.key: c for c in session.exec(select(Caregiver).where(Caregiver.case_id == case.id))}
    for carer in state.caregivers:
        row = rows.get(carer.key) or Caregiver(case_id=case.id, key=carer.key,
                                               relationship=carer.relationship)
        if row.consent != carer.consent:
            row.consent, row.consent_on = carer.consent, today
        row.children, row.active = carer.children or None, carer.active
        session.add(row)
    rows_by_key = {c.key: c for c in session.exec(select(Child).where(Child.case_id == case.id))}
    for key, row in rows_by_key.items():  # children who left the episode
        if key not in state.children and row.removed_on is None:
            row.removed_on = today
            session.add(row)
    known = set(rows_by_key)
    for key in state.children:
        if key not in known:
            session.add(Child(case_id=case.id, key=key, given_name=None, family_name=None,
                              date_of_birth=None))


def find_installed_pathway(session: Session, profile: str) -> PathwayVersion:
    """The newest installed version of a profile (cases open on nothing else)."""
    row = session.exec(select(PathwayVersion).where(
        PathwayVersion.profile == profile, PathwayVersion.installed_at.is_not(None)
    ).order_by(PathwayVersion.installed_at.desc(), PathwayVersion.id.desc()).limit(1)).first()
    if row is None:
        raise Invalid(f"pathway {profile!r} is not installed here; an admin installs a reviewed "
                      f"version with `nim-pathway pathway install FILE`")
    return row
