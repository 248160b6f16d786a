"""What managers watch: the caseload board, each case's timeline, breaches and KPIs.

Read models over the case store, computed with the same calendar and engine as the cases.
Nothing here carries identity: case references, roles and dates only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from statistics import mean, median
from typing import Any

from models import engine as eng
from models.pathway import OUTSIDE_OWNERS
from store.queries import Queries
from store.views import BoardItem, BoardRow, BreachRow, Kpis

# the default of NIM_RAG_AMBER_WORKING_DAYS (Settings.rag_amber_working_days): callers with a
# service pass the site's setting
AMBER_WORKING_DAYS = 5


def rag(working_days_to_due: int, amber: int = AMBER_WORKING_DAYS) -> str:
    """Red: overdue; amber: due within NIM_RAG_AMBER_WORKING_DAYS (5) working days; else green."""
    if working_days_to_due < 0:
        return "red"
    return "amber" if working_days_to_due <= amber else "green"


# Clock states that still ask something of someone; met, breached-and-met, not-started and
# informational (elapsed) clocks are history or not yet live.
_LIVE_CLOCK = ("running", "open", "upcoming", "breached-open")
_RAG_ORDER = {"red": 0, "amber": 1, "green": 2}


def _urgency(item: BoardItem) -> tuple[int, int, str, str]:
    """Red first, then the most overdue / soonest due, then a stable order."""
    return _RAG_ORDER[item.rag], item.working_days_to_due, item.due, item.item


def item_team(spec: Any, item: BoardItem) -> str:
    """Whose an open item is: a task's role's team, or the owner a clock declares."""
    if item.kind == "clock":
        return item.owner
    role = spec.roles.get(item.owner)
    return role.team if role is not None else spec.programme


def owner_side(spec: Any, team: str) -> str:
    """own (the programme's team), court (a court or children's hearing) or la (another
    team: the LA, an HSC Trust)."""
    if team == spec.programme:
        return "own"
    return "court" if team in OUTSIDE_OWNERS else "la"


def open_items(snap: Any, today: date, amber: int = AMBER_WORKING_DAYS,
               clocks: list | None = None) -> list[BoardItem]:
    """Every open task and live statutory clock of one case, most urgent first. Working days
    come from WorkingCalendar.working_days_to_due, the count `task list` shows too. `clocks`:
    the case's `clock_states` today, if the caller has them already."""
    spec, state = snap.spec, snap.state
    cal = state.calendar
    items = []
    for t in state.tasks.values():
        if t.state == eng.OPEN:
            wd = cal.working_days_to_due(today, t.due)
            items.append(BoardItem(snap.ref, "task", t.key, t.title, str(t.due), wd,
                                   rag(wd, amber), t.role))
    met_by = {c.id: c.met_by for c in spec.clocks}
    for c in clocks if clocks is not None else eng.clock_states(spec, state, today):
        if c.due is not None and c.state in _LIVE_CLOCK and met_by.get(c.clock_id):
            wd = cal.working_days_to_due(today, c.due)
            items.append(BoardItem(snap.ref, "clock", c.id, c.title, str(c.due), wd,
                                   rag(wd, amber), c.owner))
    return sorted(items, key=_urgency)


def caseload_board(queries: Queries, programme: str | None = None,
                   amber: int = AMBER_WORKING_DAYS) -> list[BoardRow]:
    """One row per open case (of one programme if given), RAG from its worst open item of the
    programme's own work: an own task overdue or an own clock breached and still open makes
    the case red, whatever its next pathway task says. The LA's and the court's lateness
    (statutory visits and reviews, court timetables) is theirs: counted in its own columns
    (la_late, court_late), never the programme's RAG. Sorted by urgency."""
    today = queries.today()
    rows = []
    for snap in queries.snapshots(open_only=True, programme=programme):
        state = snap.state
        clocks = eng.clock_states(snap.spec, state, today)
        items = open_items(snap, today, amber, clocks)
        side = {i.item: owner_side(snap.spec, item_team(snap.spec, i)) for i in items}
        own = [i for i in items if side[i.item] == "own"]
        late = Counter(side[i.item] for i in items if i.working_days_to_due < 0)
        worst = own[0] if own else None
        work = [t for t in state.tasks.values() if t.state == eng.OPEN]
        nxt = min(work, key=lambda t: (t.stage == "statutory", t.due), default=None)
        rows.append(BoardRow(
            case=snap.ref, rag=worst.rag if worst else "green", overdue=late["own"],
            la_late=late["la"], court_late=late["court"],
            worst=worst.item if worst else None, due=worst.due if worst else None,
            working_days_to_due=worst.working_days_to_due if worst else None,
            owner_role=worst.owner if worst else None, stage=state.stage,
            next_task=nxt.key if nxt else None, jurisdiction=snap.jurisdiction,
            clocks="; ".join(f"{c.id}: {c.state}" + (f" ({c.due})" if c.due else "")
                             for c in clocks if c.state != "not-started"),
            programme=snap.programme,
        ))
    return sorted(rows, key=lambda r: (_RAG_ORDER[r.rag], r.working_days_to_due is None,
                                       r.working_days_to_due or 0, r.due or "", r.case))


# The compact board (CLI table and Prefect artifact): what a manager scans; `--json` and
# `report board --case` give the rest.
BOARD_COLUMNS = ["case", "rag", "overdue", "la_late", "court_late", "worst", "due",
                 "working_days_to_due", "owner_role", "stage", "next_task"]
BOARD_LABELS = {"working_days_to_due": "wd", "owner_role": "owner", "next_task": "next",
                "la_late": "la-late", "court_late": "court-late"}


def board_table(rows: list[BoardRow]) -> list[dict[str, Any]]:
    """The compact board as rows of its columns (the Prefect artifact's table)."""
    return [{BOARD_LABELS.get(c, c): getattr(r, c) for c in BOARD_COLUMNS} for r in rows]


def case_detail(queries: Queries, ref: str, amber: int = AMBER_WORKING_DAYS) -> list[BoardItem]:
    """One case's open tasks and live clocks, most urgent first (the board's detail)."""
    return open_items(queries.snapshot(ref), queries.today(), amber)


def breaches(queries: Queries, ref: str | None = None,
             programme: str | None = None, clocks: bool = True) -> list[BreachRow]:
    """Work done late or still overdue, and statutory clocks breached, with their cause (of
    one case, or one programme's cases, if given). Each row names the team whose work it is:
    the report shows the programme's own apart from the LA's and the court's; another team's
    work already late on the day the case opened is marked so (it was never the
    programme's). `clocks=False`: the tasks' rows only."""
    today = queries.today()
    causes = queries.delay_causes()
    out = []
    for snap in queries.snapshots(ref=ref, programme=programme):
        spec, state = snap.spec, snap.state
        opened = eng.opened_on(spec, state)
        for t in state.tasks.values():
            late = (t.completed_on - t.due).days if t.state == eng.DONE and t.completed_on \
                else (today - t.due).days if t.state == eng.OPEN else 0
            if late <= 0:
                continue
            team = spec.roles[t.role].team if t.role in spec.roles else "?"
            cause = causes.get((snap.case_id, t.key)) or (
                "late before the case opened" if team != spec.programme and opened
                and t.due < opened else "not recorded")
            out.append(BreachRow(snap.ref, "task", t.key, t.role, team, str(t.due), late,
                                 t.state == eng.OPEN, cause, t.due_explanation,
                                 own=team == spec.programme))
        for clock, child in eng.clock_instances(spec, state) if clocks else ():
            c = eng.clock_state(spec, state, clock, today, child)
            if c.state in ("breached", "breached-open") and c.days_late:
                out.append(BreachRow(snap.ref, "clock", c.id, "", c.owner, str(c.due),
                                     c.days_late, c.state != "breached",
                                     clock_cause(clock, state, snap.case_id, causes),
                                     c.explanation, own=spec.own_clock(clock)))
    return sorted(out, key=lambda r: (not r.own, r.team, r.case, r.due))


def clock_cause(clock: Any, state: eng.CaseState, case_id: int,
                causes: dict[tuple[int, str], str | None]) -> str:
    """Why this clock was breached, from its own record: the delay cause of the task that meets
    it; for a court's timetable, the extensions it granted (a court event, not NIM's delay)."""
    if clock.met_by and clock.met_by.startswith("done:"):
        recorded = [causes.get((case_id, t.key)) for t in state.tasks.values()
                    if t.spec_id == clock.met_by[5:]]
        found = sorted({c for c in recorded if c})
        if found:
            return ", ".join(found)
    if clock.extensions and state.extensions:
        return f"court: {len(state.extensions)} extension(s) granted"
    return "not recorded"


def _summary(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "mean": None}
    return {"n": len(values), "median": median(values), "mean": round(mean(values), 1)}


def kpis(queries: Queries, programme: str | None = None) -> Kpis:
    """The numbers NIM.md names, across every case in the store (or one programme's)."""
    snaps = queries.snapshots(programme=programme)
    today = queries.today()
    moves = queries.placement_counts()
    spans: dict[str, list[int]] = defaultdict(list)
    on_time_kind: dict[str, list[bool]] = defaultdict(list)
    on_time_role: dict[str, list[bool]] = defaultdict(list)
    role_teams: dict[str, str] = {}
    treated, decided = 0, 0
    for snap in snaps:
        state, rep = snap.state, snap.spec.reporting
        entry = state.anchors["care_entry"]
        spans["care entry to referral"].append((state.anchors["referral"] - entry).days)
        received = _received_on(snap)
        if received is not None:
            spans["care entry to consent"].append((received - entry).days)
        done = [t.completed_on for t in state.tasks.values()
                if t.spec_id == rep.assessment_report and t.state == eng.DONE]
        if done:
            spans["care entry to assessment report"].append((done[0] - entry).days)
        # time to a permanence recommendation, per child (each has their own D2)
        spans["care entry to recommendation (per child)"] += [
            (t.completed_on - entry).days for t in state.tasks.values()
            if t.spec_id == rep.recommendation and t.state == eng.DONE]
        if rep.treatment_gate in state.decisions:
            decided += 1
            treated += state.decisions[rep.treatment_gate] == rep.treatment_outcome
        role_teams |= {name: r.team for name, r in snap.spec.roles.items()}
        for t in state.tasks.values():
            if t.state == eng.DONE or (t.state == eng.OPEN and t.due < today):
                ok = t.state == eng.DONE and t.completed_on <= t.due
                on_time_kind[t.spec_id].append(ok)
                on_time_role[t.role].append(ok)
    causes = Counter(b.cause for b in breaches(queries, programme=programme, clocks=False))
    counted = {s.programme for s in snaps}
    gates = sorted({g for s in snaps if (g := s.spec.reporting.treatment_gate)})

    def rate(flags: list[bool]) -> dict[str, Any]:
        return {"n": len(flags), "on_time": round(sum(flags) / len(flags), 3) if flags else None}

    received = sum(1 for s in snaps if _received_on(s) is not None)
    return Kpis(
        families=len(snaps), children=sum(len(s.state.children) for s in snaps),
        share_received_nim=round(received / len(snaps), 3) if snaps else None,
        exits_by_reason=dict(Counter(s.state.exit_reason for s in snaps if s.state.exit_reason)),
        as_of=today, cases=len(snaps), open_cases=sum(1 for s in snaps if not s.closed_on),
        days={name: _summary(values) for name, values in spans.items()},
        share_to_treatment=round(treated / decided, 3) if decided else None, d1_decided=decided,
        on_time_by_task={k: rate(v) for k, v in sorted(on_time_kind.items())},
        on_time_by_role={k: rate(v) for k, v in sorted(on_time_role.items())},
        breaches_by_cause=dict(causes),
        placement_moves_per_child=_summary([max(moves.get((s.case_id, child), 1) - 1, 0)
                                            for s in snaps for child in s.state.children]),
        programme=programme or (counted.pop() if len(counted) == 1 else
                                "nim" if not counted else "all programmes"),
        treatment_gate="/".join(gates) if gates else None if snaps else "d1",
        role_teams=role_teams, own_teams=tuple(sorted({s.spec.programme for s in snaps})),
    )


def _received_on(snap: Any) -> date | None:
    """The day the family received the programme: its `reporting.received_stage` began."""
    stage = snap.spec.reporting.received_stage
    return snap.state.anchors.get(f"stage:{stage}") if stage else None


def timeline_markdown(queries: Queries, ref: str) -> str:
    """The per-case timeline artifact: planned against actual, decisions, breaches."""
    rows = queries.timeline(ref)
    show = queries.show(ref)
    lines = [f"# {ref} timeline", "",
             f"Stage: **{show.stage or 'closed'}** · pathway {show.pathway} · "
             f"{show.jurisdiction}", "",
             "| date | event | due | status | role |", "|---|---|---|---|---|"]
    lines += [f"| {r.date} | {r.event} | {r.due or ''} | {r.status} | {r.role} |" for r in rows]
    lines += ["", "## Statutory clocks", "", "| clock | due | state | why |", "|---|---|---|---|"]
    lines += [f"| {c.title} | {c.due or ''} | {c.state} | {c.explanation} |" for c in show.clocks]
    items = case_detail(queries, ref)  # the board's per-case detail, most urgent first
    if items:
        lines += ["", "## Open work by urgency", "",
                  "| RAG | item | due | working days | owner |", "|---|---|---|---|---|"]
        lines += [f"| {i.rag} | {i.item} | {i.due} | {i.working_days_to_due} | {i.owner} |"
                  for i in items]
    case_breaches = breaches(queries, ref)  # this case only: the sweep calls this per case
    if case_breaches:
        lines += ["", "## Breaches", "", "| item | due | days late | cause |", "|---|---|---|---|"]
        lines += [f"| {b.item} | {b.due} | {b.days_late} | {b.cause} |" for b in case_breaches]
    return "\n".join(lines)


def breach_report_markdown(rows: list[BreachRow]) -> str:
    by_team: dict[str, list[BreachRow]] = defaultdict(list)
    own_teams = {r.team for r in rows if r.own}
    for r in rows:
        by_team[r.team].append(r)
    out = ["# Breach report", ""]
    if not rows:
        return "\n".join(out + ["No breaches."])
    for team, items in sorted(by_team.items(), key=lambda kv: (kv[0] not in own_teams, kv[0])):
        whose = "our own work" if team in own_teams else "theirs, shown for information"
        out += [f"## {team} ({whose})", "",
                "| case | item | role | due | days late | still open | cause |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r.case} | {r.item} | {r.role} | {r.due} | {r.days_late} | "
                f"{'yes' if r.open else 'no'} | {r.cause} |" for r in items]
        out.append("")
    return "\n".join(out)


def _percent(share: float | None) -> str:
    return "none yet" if share is None else f"{share:.0%}"


def _number(value: Any) -> str:
    """A median or mean for people: a dash when there is nothing to summarise yet."""
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def kpi_markdown(data: Kpis) -> str:
    gate = (data.treatment_gate or "").upper()
    treatment = (f"{_percent(data.share_to_treatment)} of {data.d1_decided} {gate} "
                 f"decision{'' if data.d1_decided == 1 else 's'}" if data.d1_decided
                 else f"no {gate} decisions yet" if gate
                 else "not counted (the pathway names no treatment gate)")
    name = data.programme.upper() if data.programme != "all programmes" else "All programmes"
    received = "NIM (assessment began)" if data.programme == "nim" else "the programme"
    out = [f"# {name} KPIs (as of {data.as_of})", "",
           f"Families: {data.families} ({data.open_cases} open), {data.children} children. "
           f"Received {received}: {_percent(data.share_received_nim)}. Going on to "
           f"treatment: {treatment}.", "",  # blank lines: each its own paragraph
           "Early exits: " + (", ".join(f"{k}: {v}" for k, v in
                                        (data.exits_by_reason or {}).items()) or "none"), "",
           "| interval | n | median days | mean days |", "|---|---|---|---|"]
    out += [f"| {k} | {v['n']} | {_number(v['median'])} | {_number(v['mean'])} |"
            for k, v in data.days.items()]
    teams = data.role_teams or {}
    own = set(data.own_teams) or {data.programme}
    ours = {k: v for k, v in data.on_time_by_role.items() if teams.get(k, data.programme) in own}
    theirs = {k: v for k, v in data.on_time_by_role.items() if k not in ours}
    out += ["", "Our own work:", "", "| role | tasks due so far | on time |", "|---|---|---|"]
    out += [f"| {k} | {v['n']} | {_percent(v['on_time'])} |" for k, v in ours.items()]
    if theirs:  # statutory visits and reviews: the LA's work, shown for information
        out += ["", "Others' work (the LA's statutory work, shown as theirs):", "",
                "| role | team | tasks due so far | on time |", "|---|---|---|---|"]
        out += [f"| {k} | {teams.get(k, '?')} | {v['n']} | {_percent(v['on_time'])} |"
                for k, v in theirs.items()]
    out += ["", "Breaches by cause: " + (", ".join(f"{k}: {v}" for k, v in
                                                   data.breaches_by_cause.items()) or "none"),
            "", f"Placement moves per child: median "
            f"{_number(data.placement_moves_per_child['median'])}"]
    return "\n".join(out)
