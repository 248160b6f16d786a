"""Forecast and what-if: project every remaining deadline and flag conflicts before they happen.

Pure: a copy of the case is driven through the rest of the pathway with each task done on its
due date (the treatment gate assumed to send the family to treatment, as the pathway's
`reporting:` names them, unless already decided), so the projection follows the same rules as
the real case. Conflicts: the programme's timetable against the 26-week limit or Scotland's
6-month aim, a final report due after the final hearing, and work a court direction binds that
the pathway alone would finish after the court's date.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date

from models import engine as eng
from models.pathway import ClockSpec, PathwaySpec
from models.simulate import sample_outcome


@dataclass(frozen=True, slots=True)
class Milestone:
    task: str  # task key
    title: str
    projected: date
    done: bool


@dataclass
class Forecast:
    ref: str
    milestones: list[Milestone] = field(default_factory=list)
    clocks: list[eng.ClockState] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def forecast(spec: PathwaySpec, case: eng.CaseState, today: date,
             hearing_date: date | None = None, treatment_months: int | None = None) -> Forecast:
    sim = copy.deepcopy(case)
    rep = spec.reporting
    if treatment_months is not None:
        if rep.treatment_length is None:
            raise eng.EngineError(f"pathway {spec.profile} names no treatment length "
                                  "(reporting.treatment_length): no what-if on it")
        sim.settings[rep.treatment_length] = treatment_months
        eng.redate_open_tasks(spec, sim, "what-if: treatment length")
    if hearing_date is not None:
        eng.move_anchor(spec, sim, "final_hearing", hearing_date, "what-if: hearing date")
    decisions = _assumed_decisions(spec, sim)
    day = today
    for _ in range(2000):
        if sim.closed_on or sim.stage is None or sim.stage == rep.follow_up_stage:
            break
        task = min((t for t in sim.tasks.values()
                    if t.state == eng.OPEN and t.stage != "statutory"),
                   key=lambda t: (t.due, t.key), default=None)
        if task is None:
            break
        day = max(day, task.due)
        eng.complete_task(spec, sim, task.key, sample_outcome(spec, task.spec_id, decisions),
                          "forecast", day)
    out = Forecast(case.ref)
    shown = set(spec.gate_of_task) | {rep.assessment_report, rep.final_report, rep.handover}
    for t in sorted(sim.tasks.values(), key=lambda t: (t.completed_on or t.due, t.key)):
        if t.stage == "statutory" or t.spec_id not in shown:
            continue
        real = case.tasks.get(t.key)
        out.milestones.append(Milestone(t.key, t.title, t.completed_on or t.due,
                                        bool(real and real.state == eng.DONE)))
    out.clocks = eng.clock_states(spec, sim, day)
    for clock in spec.clocks:
        advice = clock_advice(spec, sim, clock, day)
        if advice:
            out.conflicts.append(advice)
    out.conflicts += direction_conflicts(sim)
    hearing = sim.anchors.get("final_hearing")
    final = next((m.projected for m in out.milestones if m.task == rep.final_report), None)
    if hearing and final and final > hearing:
        out.conflicts.append(f"final report projected for {final}, after the final hearing on "
                             f"{hearing}")
    return out


def direction_conflicts(sim: eng.CaseState) -> list[str]:
    """Work a court direction binds whose pathway date (projected) is later than the court's:
    the projection plans it to the court's date, so the team has to bring it forward."""
    out = []
    for t in sorted(sim.tasks.values(), key=lambda t: (t.pathway_due or t.due, t.key)):
        if t.pathway_due is None or t.state == eng.CANCELLED:
            continue
        binding = min((d for d in sim.directions if d.binds(t.spec_id, t.child) and d.by < t.pathway_due),
                      key=lambda d: (d.by, d.given_on), default=None)
        if binding is None:
            continue
        out.append(f"{binding.names()}: the pathway projects {t.key} for {t.pathway_due}, "
                   f"{(t.pathway_due - binding.by).days} days later; it is planned to the "
                   "court's date: bring the work forward or ask the court to vary the "
                   "direction")
    return out


def clock_advice(spec: PathwaySpec, sim: eng.CaseState, clock: ClockSpec, day: date) -> str | None:
    """What to do when NIM's projected work misses a clock, by the clock's kind and owner: a
    court's maximum can only be extended by the court; NIM's own target is re-planned; another
    body's target (Scotland's PACE aim) is theirs to know about, with no court action."""
    task = clock.forecast_task or (clock.met_by[5:] if clock.met_by and
                                   clock.met_by.startswith("done:") else None)
    state = eng.clock_state(spec, sim, clock, day)
    if task is None or state.due is None:
        return None
    when = max((t.completed_on or t.due for t in sim.tasks.values() if t.spec_id == task),
               default=None)
    if when is None or when <= state.due:
        return None
    late = f"{task} is projected for {when}, {(when - state.due).days} days after {state.due}"
    if clock.kind == "maximum" and clock.extensions:
        return (f"{clock.title}: {late}; only the court can move this limit: ask for an "
                f"extension ({clock.source}; one at a time, each up to "
                f"{clock.max_extension_weeks} weeks) or shorten NIM's timetable")
    if clock.kind == "maximum":
        return f"{clock.title}: {late}; a legal maximum ({clock.source}): bring {task} forward"
    if spec.own_clock(clock):
        return (f"{clock.title}: {late}; the {spec.programme.upper()} team's own target: "
                "re-plan the work or record the cause")
    return (f"{clock.title}: {late}; this is the {clock.owner}'s target, not a court "
            f"timetable ({clock.source}): tell them, no court action is needed")


def _assumed_decisions(spec: PathwaySpec, case: eng.CaseState) -> dict[str, str]:
    """Decisions taken so far; the rest assumed: treatment at the treatment gate, else each
    gate's first outcome."""
    rep = spec.reporting
    out = {}
    for stage in spec.stages:
        if stage.gate:
            first = next(iter(stage.gate.outcomes))
            assumed = rep.treatment_outcome if stage.gate.decision == rep.treatment_gate else first
            out[stage.gate.decision] = case.decisions.get(stage.gate.decision, assumed or first)
    return out
