"""Read model of the statutory and service clocks overlaid on a case: when each runs out,
why, whose it is, and whether it is met or breached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from models.calendar import ADJUST_FOR_KIND, compute_due
from models.engine.scheduling import _due, _resolve_anchor
from models.engine.state import FIRST_CHILD, CaseState, child_anchor
from models.pathway import ClockSpec, PathwaySpec


@dataclass(frozen=True)
class ClockState:
    id: str
    title: str
    due: date | None  # the last day (a maximum pulled back to a working day); window: latest
    explanation: str
    state: str  # not-started, upcoming, open, running, met, breached, breached-open, elapsed,
    # not-applicable; or, for a clock that stopped unmet, "ended: <why>" (a withdrawal, the
    # final order) or "handed back to <owner>" (the case left NIM: the clock is its owner's)
    days_left: int | None = None
    kind: str = "maximum"
    owner: str = "nim"
    earliest: date | None = None  # windows only
    met_on: date | None = None
    days_late: int | None = None  # met late, or still open past the last day
    source: str = ""
    child: str | None = None  # a child's own clock (their own application); None: the family's

    @property
    def clock_id(self) -> str:
        """The pathway's clock this is an instance of (`id` carries `@child` for a child's)."""
        return self.id.partition("@")[0]


# Whose a clock is, in words: once a case leaves NIM, clocks NIM does not own are theirs.
OWNER_WORDS = {"court": "the court", "local-authority": "the LA",
               "childrens-hearing": "the children's hearing", "hsc-trust": "the HSC Trust"}


def owner_words(spec: PathwaySpec, owner: str) -> str:
    return OWNER_WORDS.get(owner) or f"the {spec.teams.get(owner, owner)}"


def is_stopped(state: str) -> bool:
    """A clock that stopped unmet: ended by an event, or handed back to its owner."""
    return state.startswith(("ended", "handed back"))


def _stopped(spec: PathwaySpec, case: CaseState, clock: ClockSpec,
             child: str | None = None) -> str | None:
    """Why an unmet clock no longer runs as NIM's: an event that ends it (the final order
    ends the CMH window), an exit that ends it (proceedings withdrawn), or the case having
    left NIM (a court or LA clock is handed back to its owner; NIM's own target ends)."""
    for name in clock.ended_by:
        when = _own_date(case, name, child)
        if when is not None:
            return f"ended: {name.replace('_', ' ')} on {when.isoformat()}"
    exit_spec = spec.exits.get(case.exit_reason or "")
    if exit_spec is not None and clock.id in exit_spec.ends_clocks:
        return f"ended: {exit_spec.label[0].lower()}{exit_spec.label[1:]}"
    if case.closed_on is None:
        return None
    if not spec.own_clock(clock):
        return f"handed back to {owner_words(spec, clock.owner)}"
    if exit_spec is not None and clock.met_by and any(  # NIM's target for work it had begun
            t.spec_id == clock.met_by.removeprefix("done:") for t in case.tasks.values()):
        return f"ended: {exit_spec.label[0].lower()}{exit_spec.label[1:]}"
    return None


def _own_date(case: CaseState, name: str, child: str | None) -> date | None:
    """A date of the family's clock, or of one child's own: a child's own application is met,
    ended and heard by its own dates (`final_order@child-2`), never by the family's."""
    if child is None or name.startswith("done:"):
        return _resolve_anchor(case, name, child)
    return case.anchors.get(child_anchor(name, child))


def own_clock_children(case: CaseState, clock: ClockSpec) -> list[str]:
    """The children with their own instance of a clock: those (after the first, whose dates
    are the family's) with their own date for its anchor, such as their own application."""
    if clock.anchor.startswith(("stage:", "done:")):
        return []
    return [c for c in case.children
            if c != FIRST_CHILD and child_anchor(clock.anchor, c) in case.anchors]


def _clock_anchor(spec: PathwaySpec, case: CaseState, clock: ClockSpec,
                  child: str | None = None) -> date | None:
    return _own_date(case, clock.anchor, child)


def _extended(clock: ClockSpec, case: CaseState, legal_end: date,
              child: str | None = None) -> tuple[date, str]:
    """The legal last day after each extension of this application (the family's, or
    `child`'s own): up to N weeks after the later of the current end and the day the extension
    was granted (s32(8))."""
    notes = []
    for ext in (e for e in case.extensions if e.child == child):
        legal_end = max(legal_end, ext.granted_on) + timedelta(weeks=ext.weeks)
        notes.append(f"extended {ext.weeks} weeks on {ext.granted_on.isoformat()} to "
                     f"{legal_end.isoformat()}")
    return legal_end, "; ".join(notes)


def clock_state(spec: PathwaySpec, case: CaseState, clock: ClockSpec, on: date,
                child: str | None = None) -> ClockState:
    """One clock: when it runs out, why, whose it is, and whether it is met or breached. With
    `child`, that child's own instance (their own application: own_clock_children)."""
    ident, title = clock.id, clock.title
    if child is not None:
        ident, title = f"{clock.id}@{child}", f"{clock.title} ({child}'s own)"
    base = dict(kind=clock.kind, owner=clock.owner, source=clock.source, child=child)
    anchor = _clock_anchor(spec, case, clock, child)
    if anchor is None:
        return ClockState(ident, title, None,
                          f"starts when {clock.anchor.replace('_', ' ')} is recorded",
                          "not-started", **base)
    met_on = _own_date(case, clock.met_by, child) if clock.met_by else None
    stopped = _stopped(spec, case, clock, child) if met_on is None else None
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
        elif stopped:
            state, late = stopped, None
        elif on < first.due:
            state, late = "upcoming", None
        elif on <= last.due:
            state, late = "open", None
        else:
            state, late = "breached-open", (on - last.due).days
        return ClockState(ident, title, last.due, why, state, (last.due - on).days,
                          earliest=first.due, met_on=met_on, days_late=late, **base)
    kind = "maximum" if clock.kind == "maximum" else "target"
    d = _due(case, clock.limit, clock.anchor, anchor, "exact" if clock.extensions else kind)
    due, why = d.due, d.explanation
    if spec.own_clock(clock) and kind == "target" and case.paused_days:
        moved = compute_due(case.calendar, due, case.paused_days, "days", "the target",
                            adjust="forward")  # NIM's own targets stop while paused
        due, why = moved.due, f"{why}; {moved.explanation} (paused)"
    if clock.extensions and any(e.child == child for e in case.extensions):  # this one's own
        legal_end, notes = _extended(clock, case, due, child)
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
    elif stopped:
        state, late = stopped, None
    elif clock.met_by is None:  # informational: nothing NIM does meets it
        state, late = ("running" if on <= due else "elapsed"), None
    elif case.closed_on and clock.met_by.startswith("done:") and not any(
            t.spec_id == clock.met_by[5:] for t in case.tasks.values()):
        state, late = "not-applicable", None
    else:
        state = "running" if on <= due else "breached-open"
        late = (on - due).days if on > due else None
    return ClockState(ident, title, due, why, state, (due - on).days, met_on=met_on,
                      days_late=late, **base)


def clock_instances(spec: PathwaySpec, case: CaseState) -> list[tuple[ClockSpec, str | None]]:
    """Each clock of the case: the family's, then each child's own (their own application)."""
    return [(clock, child) for clock in spec.clocks
            for child in [None, *own_clock_children(case, clock)]]


def clock_states(spec: PathwaySpec, case: CaseState, on: date) -> list[ClockState]:
    """Each clock: when it runs out, why, and whether it is met or breached."""
    return [clock_state(spec, case, clock, on, child)
            for clock, child in clock_instances(spec, case)]
