"""The checks across a pathway's sections, run when it is loaded: every name one section uses
(a role, a stage, a task, a setting, an anchor, a team) is declared by another, stages only
lead forward, and every setting has a range that fits its uses.

Each check returns its problems as `path: why` lines; `pathway_problems` runs them all in a
fixed order (the order of the lines in a refused file's error).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from models.pathway.constants import (
    ASSIGNEE,
    CASE_ANCHORS,
    DEFAULT_PERMISSIONS,
    OPTIONAL_ANCHORS,
    OUTSIDE_OWNERS,
    PER_BUILT_IN,
    PLACEMENT_KINDS,
    REFERRAL_DATES,
    RELATIONSHIPS,
    SUBJECTS,
    TASK_ROLE,
)
from models.pathway.ranges import range_problems

if TYPE_CHECKING:
    from models.pathway.sections import ClockSpec, Offset, StageSpec, TaskSpec
    from models.pathway.spec import PathwaySpec


def pathway_problems(spec: PathwaySpec, stored: bool) -> list[str]:
    """Every problem across the pathway's sections (a pathway version stored before setting
    ranges existed is held to its settings' uses alone)."""
    anchors = _anchors(spec)
    return [
        *programme_problems(spec),
        *id_problems(spec),
        *date_problems(spec),
        *stage_problems(spec, anchors),
        *cycle_problems(spec),
        *statutory_problems(spec, anchors),
        *clock_problems(spec, anchors),
        *role_problems(spec),
        *escalation_problems(spec),
        *exit_problems(spec),
        *consent_problems(spec),
        *order_problems(spec),
        *per_child_gate_problems(spec),
        *switch_problems(spec),
        *clock_owner_problems(spec),
        *permission_problems(spec),
        *reporting_problems(spec),
        *court_problems(spec),
        *decision_problems(spec),
        *retention_problems(spec),
        *range_problems(spec, stored),
    ]


def _stage_ids(spec: PathwaySpec) -> list[str]:
    return [s.id for s in spec.stages]


def _task_ids(spec: PathwaySpec) -> list[str]:
    """The ids of every stage's tasks, then the statutory tasks."""
    all_tasks = [t for s in spec.stages for t in s.tasks] + list(spec.statutory)
    return [t.id for t in all_tasks]


def _anchors(spec: PathwaySpec) -> set[str]:
    """What a due rule or a clock can run from: the engine's dates, a stage's start, a date
    the pathway declares, or a task's completion."""
    anchors = set(CASE_ANCHORS) | set(OPTIONAL_ANCHORS) | {f"stage:{s}" for s in _stage_ids(spec)}
    anchors |= set(spec.dates)
    anchors |= {f"done:{t}" for t in _task_ids(spec)}
    return anchors


# -- programme and eligibility ------------------------------------------------------------


def programme_problems(spec: PathwaySpec) -> list[str]:
    """Who the programme is for, its own team and its caregiver groups."""
    problems = _eligibility_problems(spec)
    if spec.programme not in spec.teams:
        problems.append(f"programme: declare the programme's own team {spec.programme!r} "
                        f"under 'teams:' (declared: {', '.join(sorted(spec.teams))})")
    for name, members in spec.caregiver_groups.items():
        if not re.fullmatch(r"[a-z][a-z0-9]*", name) or name in PER_BUILT_IN:
            problems.append(f"caregiver_groups.{name}: a group name is lower-case letters "
                            "and digits, and not case or child")
        if not members:
            problems.append(f"caregiver_groups.{name}: list the relationships in it "
                            f"({', '.join(RELATIONSHIPS)})")
    return problems


def _eligibility_problems(spec: PathwaySpec) -> list[str]:
    problems = []
    subject = spec.eligibility.subject
    if subject not in SUBJECTS:
        problems.append(
            f"eligibility.subject: {subject!r} is not supported; this engine runs "
            "programmes for a child in care or in care proceedings (subject: child-in-care): "
            "its cases open from a child's care entry, run the child's statutory reviews and "
            "placements, and close on the child's order. A programme for a parent with no "
            "child in her care (Pause) needs another engine (README, Limits)")
    rule = spec.eligibility
    problems += [f"eligibility.needs_dates.{name}: a referral gives only "
                 f"{', '.join(REFERRAL_DATES)}" for name in rule.needs_dates
                 if name not in REFERRAL_DATES]
    if rule.min_age_months is not None and rule.max_age_months is not None and \
            rule.min_age_months >= rule.max_age_months:
        problems.append(f"eligibility.min_age_months: {rule.min_age_months} is not below "
                        f"max_age_months {rule.max_age_months}")
    return problems


# -- ids and dates ------------------------------------------------------------------------


def id_problems(spec: PathwaySpec) -> list[str]:
    """Stage ids are unique, and task ids across the whole pathway."""
    problems = []
    stage_ids = _stage_ids(spec)
    if len(set(stage_ids)) != len(stage_ids):
        problems.append("stages: stage ids must be unique")
    task_ids = _task_ids(spec)
    dupes = sorted({t for t in task_ids if task_ids.count(t) > 1})
    if dupes:
        problems.append(f"tasks: task ids must be unique across the pathway: {dupes}")
    return problems


def date_problems(spec: PathwaySpec) -> list[str]:
    """The pathway's own `dates:` do not take the engine's names."""
    return [f"dates.{name}: a date name is lower_snake_case and not one of "
            "the engine's own dates" for name in spec.dates
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in CASE_ANCHORS + OPTIONAL_ANCHORS]


# -- tasks, stages and statutory work -----------------------------------------------------


def _offset_problems(spec: PathwaySpec, where: str, offset: Offset | None) -> list[str]:
    """An amount given as a setting's name names a declared setting."""
    if offset is not None and isinstance(offset.raw_amount, str):
        if offset.raw_amount not in spec.settings:
            return [f"{where}.{offset.unit}: setting {offset.raw_amount!r} is not declared under "
                    f"'settings' (declared: {', '.join(sorted(spec.settings)) or 'none'})"]
    return []


def _task_problems(spec: PathwaySpec, where: str, task: TaskSpec, siblings: set[str],
                   anchors: set[str]) -> list[str]:
    """A task's role, anchor, `per:` kind, settings and prerequisites are declared."""
    problems = []
    if task.role not in spec.roles:
        problems.append(
            f"{where}.role: unknown role {task.role!r}; declared roles: "
            f"{', '.join(sorted(spec.roles))}"
        )
    if task.due.anchor not in anchors:
        problems.append(
            f"{where}.due.anchor: unknown anchor {task.due.anchor!r}; use a case "
            f"anchor ({', '.join(CASE_ANCHORS + OPTIONAL_ANCHORS)}), a date the "
            "pathway declares under 'dates:' (name: what it is), 'stage:<id>' or "
            "'done:<task-id>'"
        )
    problems += _per_problems(spec, where, task)
    problems += _offset_problems(spec, f"{where}.due", task.due)
    problems += _offset_problems(spec, f"{where}.every", task.every)
    for i, off in enumerate(task.then_every):
        problems += _offset_problems(spec, f"{where}.then_every.{i}", off)
    if isinstance(task.count, str) and task.count not in spec.settings:
        problems.append(f"{where}.count: setting {task.count!r} is not declared")
    problems += [f"{where}.after: {dep!r} is not a task of the same stage "
                 f"({', '.join(sorted(siblings))})" for dep in task.after if dep not in siblings]
    return problems


def _per_problems(spec: PathwaySpec, where: str, task: TaskSpec) -> list[str]:
    """`per:` is case, child, a caregiver group or child-<group>."""
    groups = sorted(spec.caregiver_groups)
    if task.per in PER_BUILT_IN or task.per.removeprefix("child-") in spec.caregiver_groups:
        return []
    return [f"{where}.per: unknown kind {task.per!r}; use case, child, a caregiver "
            f"group ({', '.join(groups)}) or child-<group>, or declare the group "
            f"under 'caregiver_groups:' ({task.per.removeprefix('child-')}: a list of "
            f"{', '.join(RELATIONSHIPS)})"]


def stage_problems(spec: PathwaySpec, anchors: set[str]) -> list[str]:
    """Each stage's tasks, the stage it leads to and its gate."""
    problems = []
    stage_ids = _stage_ids(spec)
    for si, stage in enumerate(spec.stages):
        siblings = {t.id for t in stage.tasks}
        for ti, task in enumerate(stage.tasks):
            problems += _task_problems(spec, f"stages.{si}.tasks.{ti}", task, siblings, anchors)
        if stage.next is not None and stage.next not in stage_ids:
            problems.append(f"stages.{si}.next: unknown stage {stage.next!r}; stages: "
                            f"{', '.join(stage_ids)}")
        problems += _gate_problems(si, stage, siblings, stage_ids)
    return problems


def _gate_problems(si: int, stage: StageSpec, siblings: set[str],
                   stage_ids: list[str]) -> list[str]:
    """A gate is taken by a task of its stage and branches to declared stages."""
    if not stage.gate:
        return []
    problems = []
    if stage.gate.task not in siblings:
        problems.append(
            f"stages.{si}.gate.task: {stage.gate.task!r} is not a task of stage "
            f"{stage.id!r}"
        )
    for code, out in stage.gate.outcomes.items():
        if out.next is not None and out.next not in stage_ids:
            problems.append(
                f"stages.{si}.gate.outcomes.{code}.next: unknown stage {out.next!r}"
                f"; stages: {', '.join(stage_ids)} (leave next out to end the "
                "pathway)")
    return problems


def cycle_problems(spec: PathwaySpec) -> list[str]:
    """A stage's `next` and its gate's branches lead on, never back: a case re-entering a
    stage it has done would find its work done and loop."""
    ids = {s.id: i for i, s in enumerate(spec.stages)}
    onward = {s.id: [n for n in [s.next] + [o.next for o in (s.gate.outcomes.values()
                                                              if s.gate else [])]
                     if n in ids] for s in spec.stages}
    problems = []
    for start in spec.stages:
        seen, todo = set(), list(onward[start.id])
        while todo:
            stage = todo.pop()
            if stage == start.id:
                problems.append(f"stages.{ids[start.id]}: stage {start.id!r} leads back to "
                                "itself (through next: or a gate's branch); a pathway "
                                "only goes forward: add a new stage for repeated work")
                break
            if stage not in seen:
                seen.add(stage)
                todo += onward[stage]
    return problems


def statutory_problems(spec: PathwaySpec, anchors: set[str]) -> list[str]:
    """The statutory tasks, checked like a stage's (their `after:` within statutory work)."""
    problems = []
    statutory_ids = {t.id for t in spec.statutory}
    for ti, task in enumerate(spec.statutory):
        problems += _task_problems(spec, f"statutory.{ti}", task, statutory_ids, anchors)
        problems += [f"statutory.{ti}.placements: unknown placement kind {k!r}; use "
                     f"{', '.join(PLACEMENT_KINDS)}" for k in task.placements
                     if k not in PLACEMENT_KINDS]
        problems += [f"statutory.{ti}.until_final_order: {k!r} is not one of this series' "
                     f"placements ({', '.join(task.placements) or 'none'})"
                     for k in task.until_final_order if k not in task.placements]
        if task.after_review and task.after_review.task not in statutory_ids:
            problems.append(f"statutory.{ti}.after_review.task: unknown statutory task "
                            f"{task.after_review.task!r}")
    return problems


def per_child_gate_problems(spec: PathwaySpec) -> list[str]:
    """A decision taken per child leads the whole family to one next stage."""
    problems = []
    for si, stage in enumerate(spec.stages):
        if stage.gate and stage.gate.task in spec.task_by_id and \
                spec.task_by_id[stage.gate.task].per == "child":
            nexts = {o.next for o in stage.gate.outcomes.values()}
            if len(nexts) > 1:
                problems.append(f"stages.{si}.gate: a decision taken per child must lead to "
                                f"one next stage whatever the outcome (got {sorted(map(str, nexts))})")
    return problems


def switch_problems(spec: PathwaySpec) -> list[str]:
    """A stage's switch (`when:`) is a declared setting."""
    return [f"stages.{si}.when: setting {stage.when!r} is not declared"
            for si, stage in enumerate(spec.stages)
            if stage.when is not None and stage.when not in spec.settings]


# -- clocks -------------------------------------------------------------------------------


def clock_problems(spec: PathwaySpec, anchors: set[str]) -> list[str]:
    """Each clock's anchor, owner, what meets it, its roles and the settings it names."""
    problems = []
    task_ids = _task_ids(spec)
    for ci, clock in enumerate(spec.clocks):
        where = f"clocks.{ci}"
        problems += _clock_reference_problems(spec, where, clock, anchors, task_ids)
        problems += _offset_problems(spec, f"{where}.limit", clock.limit)
        if clock.window:
            problems += _offset_problems(spec, f"{where}.window.earliest", clock.window.earliest)
            problems += _offset_problems(spec, f"{where}.window.latest", clock.window.latest)
        for wi, warning in enumerate(clock.warnings):
            problems += _offset_problems(spec, f"{where}.warnings.{wi}", warning)
    return problems


def _clock_reference_problems(spec: PathwaySpec, where: str, clock: ClockSpec,
                              anchors: set[str], task_ids: list[str]) -> list[str]:
    problems = []
    if clock.anchor not in anchors:
        problems.append(f"{where}.anchor: unknown anchor {clock.anchor!r}; use a case "
                        "anchor, a date declared under 'dates:', 'stage:<id>' or "
                        "'done:<task-id>'")
    if clock.owner not in spec.teams and clock.owner not in OUTSIDE_OWNERS:
        problems.append(f"{where}.owner: unknown owner {clock.owner!r}; use a team "
                        f"declared under 'teams:' ({', '.join(sorted(spec.teams))}) "
                        f"or {' or '.join(OUTSIDE_OWNERS)}")
    if clock.met_by is not None and clock.met_by not in anchors:
        problems.append(f"{where}.met_by: {clock.met_by!r} is neither a case anchor nor "
                        "'done:<task-id>' of this pathway")
    if clock.forecast_task is not None and clock.forecast_task not in task_ids:
        problems.append(f"{where}.forecast_task: unknown task {clock.forecast_task!r}")
    problems += [f"{where}.ended_by: {name!r} is not a case anchor of this pathway"
                 for name in clock.ended_by if name not in anchors]
    problems += [f"{where}: unknown role {name!r}" for name in [clock.notify, *clock.escalate]
                 if name is not None and name not in spec.roles]
    return problems


# -- roles, notifications, exits, consent, permissions ------------------------------------


def role_problems(spec: PathwaySpec) -> list[str]:
    """Each role is in a declared team."""
    return [f"roles.{name}.team: unknown team {role.team!r}; declare it "
            f"under 'teams:' (declared: {', '.join(sorted(spec.teams))})"
            for name, role in spec.roles.items() if role.team not in spec.teams]


def escalation_problems(spec: PathwaySpec) -> list[str]:
    """Each rung of the escalation ladder goes to a declared role, for a team with roles."""
    problems = []
    teams = {r.team for r in spec.roles.values()}
    for ei, esc in enumerate(spec.notifications.escalations):
        if esc.role not in spec.roles:
            problems.append(f"notifications.escalations.{ei}.role: unknown role {esc.role!r}")
        if esc.team is not None and esc.team not in teams:
            problems.append(f"notifications.escalations.{ei}.team: no role is in team "
                            f"{esc.team!r}")
    return problems


def clock_owner_problems(spec: PathwaySpec) -> list[str]:
    """Who hears of a clock no task meets is a declared role."""
    owner = spec.notifications.clock_owner
    if owner is not None and owner not in spec.roles:
        return [f"notifications.clock_owner: unknown role {owner!r}"]
    return []


def exit_problems(spec: PathwaySpec) -> list[str]:
    """Each exit notifies declared roles and is taken on a declared task."""
    problems = []
    task_ids = _task_ids(spec)
    for code, ex in spec.exits.items():
        problems += [f"exits.{code}.notify: unknown role {r!r}" for r in ex.notify
                     if r not in spec.roles]
        if ex.when and ex.when.task and ex.when.task not in task_ids:
            problems.append(f"exits.{code}.when.task: unknown task {ex.when.task!r}")
        clock_ids = {c.id for c in spec.clocks}
        problems += [f"exits.{code}.ends_clocks: unknown clock {c!r}" for c in ex.ends_clocks
                     if c not in clock_ids]
    return problems


def order_problems(spec: PathwaySpec) -> list[str]:
    """An order that ends looked-after status is one of the pathway's order kinds; one under
    which a child is looked after is one of its interim order kinds; no code is both."""
    court = spec.court
    problems = [f"court.ends_looked_after: unknown order kind {k!r}; the court's order_kinds "
                f"are {', '.join(court.order_kinds) or '(none)'}"
                for k in court.ends_looked_after if k not in court.order_kinds]
    problems += [f"court.looked_after_under: unknown interim order kind {k!r}; the court's "
                 f"interim_order_kinds are {', '.join(court.interim_order_kinds) or '(none)'}"
                 for k in court.looked_after_under if k not in court.interim_order_kinds]
    problems += [f"court.interim_order_kinds: {k!r} is a final order kind too; give the "
                 "interim order its own code" for k in court.interim_order_kinds
                 if k in court.order_kinds]
    return problems


def consent_problems(spec: PathwaySpec) -> list[str]:
    """Consent is recorded by a declared task."""
    if spec.consent and spec.consent.task not in _task_ids(spec):
        return [f"consent.task: unknown task {spec.consent.task!r}"]
    return []


def permission_problems(spec: PathwaySpec) -> list[str]:
    """Each permission is for a known action and names declared roles (or stand-ins)."""
    problems = []
    for action, roles in spec.permissions.items():
        if action not in DEFAULT_PERMISSIONS:
            problems.append(f"permissions.{action}: unknown action; actions: "
                            f"{', '.join(sorted(DEFAULT_PERMISSIONS))}")
        for role in roles:
            if role not in spec.roles and role not in (TASK_ROLE, ASSIGNEE):
                problems.append(f"permissions.{action}: unknown role {role!r}; use declared "
                                f"roles, {TASK_ROLE!r} or {ASSIGNEE!r}")
    return problems


# -- reporting, decisions, retention ------------------------------------------------------


def reporting_problems(spec: PathwaySpec) -> list[str]:
    """The tasks, stages and setting `reporting:` names are declared."""
    problems = []
    rep, task_ids, stage_ids = spec.reporting, _task_ids(spec), _stage_ids(spec)
    for name in ("assessment_report", "recommendation", "final_report", "handover"):
        if getattr(rep, name) is not None and getattr(rep, name) not in task_ids:
            problems.append(f"reporting.{name}: unknown task {getattr(rep, name)!r}; name "
                            "a task id this pathway declares, or leave it out")
    for name in ("received_stage", "follow_up_stage"):
        if getattr(rep, name) is not None and getattr(rep, name) not in stage_ids:
            problems.append(f"reporting.{name}: unknown stage {getattr(rep, name)!r}; "
                            f"stages: {', '.join(stage_ids)}")
    if rep.treatment_length is not None and rep.treatment_length not in spec.settings:
        problems.append(f"reporting.treatment_length: setting {rep.treatment_length!r} is "
                        "not declared under 'settings'")
    for name in ("pack_excludes",):
        problems += [f"reporting.{name}: unknown task {t!r}" for t in getattr(rep, name)
                     if t not in task_ids]
    problems += [f"reporting.pack_stages: unknown stage {s!r}" for s in rep.pack_stages
                 if s not in stage_ids]
    return problems


def court_problems(spec: PathwaySpec) -> list[str]:
    """Each document `court.produced_by` names is a declared document, produced by declared
    tasks."""
    problems, task_ids = [], _task_ids(spec)
    for doc, tasks in spec.court.produced_by.items():
        if doc not in spec.court.documents:
            problems.append(f"court.produced_by: unknown document {doc!r}; declare it under "
                            f"court.documents ({', '.join(spec.court.documents) or 'none'})")
        problems += [f"court.produced_by.{doc}: unknown task {t!r}; name a task id this "
                     "pathway declares" for t in tasks if t not in task_ids]
        if not tasks:
            problems.append(f"court.produced_by.{doc}: name at least one task, or leave the "
                            "document out")
    return problems


def decision_problems(spec: PathwaySpec) -> list[str]:
    """Each gate has its own decision id, and the decisions `reporting:` names exist."""
    rep = spec.reporting
    gate_ids = [s.gate.decision for s in spec.stages if s.gate]
    gates = set(gate_ids)
    problems = [f"stages: decision {d!r} is taken in more than one stage; give each gate "
                "its own decision id" for d in sorted(gates) if gate_ids.count(d) > 1]
    for name in ("treatment_gate", "assessment_pack_after", "final_pack_after"):
        if getattr(rep, name) is not None and getattr(rep, name) not in gates:
            problems.append(f"reporting.{name}: unknown decision {getattr(rep, name)!r}; "
                            f"decisions: {', '.join(gate_ids) or 'none'}")
    treat = next((s.gate for s in spec.stages if s.gate and
                  s.gate.decision == rep.treatment_gate), None)
    if treat and rep.treatment_outcome not in treat.outcomes:
        problems.append(f"reporting.treatment_outcome: {rep.treatment_outcome!r} is not an "
                        f"outcome of decision {rep.treatment_gate!r} "
                        f"({', '.join(treat.outcomes)})")
    return problems


def retention_problems(spec: PathwaySpec) -> list[str]:
    """Retention has a default, and every period is 1 to 150 years."""
    problems = []
    if "default" not in spec.retention_years:
        problems.append("retention_years: needs a 'default' entry")
    problems += [f"retention_years.{basis}: {years} is outside 1..150 years"
                 for basis, years in spec.retention_years.items() if not 1 <= years <= 150]
    return problems
