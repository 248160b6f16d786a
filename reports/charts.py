"""The pictures, drawn server-side as SVG with pygal (no script in the browser), shown by the
workbench and put into the report packs:
a case's Gantt-style timeline (planned against actual per task, each clock with its owner,
pauses and court extensions), and the KPI charts (on-time rate by role, exits by reason).
Labels carry task keys, roles and owners only, never identity."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pygal
from pygal.style import Style

from models import engine as eng
from store.views import Kpis

STYLE = Style(background="white", plot_background="white", font_family="system-ui, sans-serif",
              colors=("#1d3b5a", "#1e7b34", "#b00020", "#a65e00", "#6a1b9a", "#00838f"),
              label_font_size=11, major_label_font_size=11, legend_font_size=12,
              title_font_size=15, no_data_font_size=22)
# a timeline's series: (colour, offset from its row's line, so planned and actual sit apart)
SERIES: dict[str, tuple[str, float]] = {
    "planned": ("#9bb3cc", 0.17), "done, on time": ("#1e7b34", -0.13),
    "done, late": ("#b00020", -0.13), "open, on time": ("#4a78a8", -0.13),
    "open, late": ("#e0455f", -0.13), "clock": ("#a65e00", 0.0),
    "pause": ("#6a1b9a", 0.0), "extension": ("#00838f", 0.0)}
_COMMON: dict[str, Any] = {"style": STYLE, "js": [], "disable_xml_declaration": True,
                           "no_data_text": "nothing due yet",
                           "explicit_size": False, "print_values": False}


def _svg(chart: Any) -> str:  # noqa: ANN401 - a pygal chart
    """The chart's SVG, inline, without pygal's config script (the pages run no script)."""
    return re.sub(r"<script[^>]*>.*?</script>", "", chart.render(is_unicode=True), flags=re.S)


def on_time_by_role(data: Kpis) -> str:
    """Share of due work done on time, per role (n in the label), as horizontal bars."""
    chart = pygal.HorizontalBar(title="On time by role (share of work due so far)",
                                range=(0, 100), width=760,
                                height=max(220, 40 + 28 * len(data.on_time_by_role)),
                                show_legend=False, value_formatter=lambda v: f"{v:.0f}%",
                                **_COMMON)
    roles = [(r, v) for r, v in data.on_time_by_role.items() if v["on_time"] is not None]
    chart.x_labels = [f"{r} (n={v['n']})" for r, v in roles]
    chart.add("on time", [round(v["on_time"] * 100, 1) for _, v in roles])
    return _svg(chart)


def exits_by_reason(data: Kpis) -> str:
    """Cases that left the pathway early, by reason."""
    exits = data.exits_by_reason or {}
    chart = pygal.Bar(title="Exits by reason", width=760, height=300, show_legend=False,
                      **_COMMON)
    chart.x_labels = list(exits) or ["no exits yet"]
    chart.add("cases", list(exits.values()) or [0])
    return _svg(chart)


def timeline(spec: Any, state: eng.CaseState, today: date) -> str:  # noqa: ANN401 - a spec
    """A Gantt-style picture of one case: one row per task (planned: from its anchor to its
    due date; actual: to the day it was done, or today while open), one row per clock (to its
    last day, owner named), and rows for NIM's pauses and the court's extensions."""
    start = min(state.anchors.values(), default=today)
    rows: list[tuple[str, list[tuple[date, date]], str]] = []  # label, spans, series
    for t in sorted(state.tasks.values(), key=lambda t: (t.due, t.key)):
        if t.state == eng.CANCELLED:
            continue
        begin = state.anchors.get(t.anchor, start)
        begin = min(begin, t.due)
        rows.append((f"{t.key} ({t.role})", [(begin, t.due)], "planned"))
        end = t.completed_on if t.state == eng.DONE else today
        if end is not None and end >= begin:
            late = end > t.due
            done = "done" if t.state == eng.DONE else "open"
            rows.append((f"{t.key} ({t.role})", [(begin, end)],
                         f"{done}, late" if late else f"{done}, on time"))
    for c in eng.clock_states(spec, state, today):
        if c.due is None or c.state in ("not-started", "not-applicable"):
            continue
        rows.append((f"clock {c.id} (owner: {c.owner})", [(c.earliest or start, c.due)],
                     "clock"))
    for p in state.pauses:
        rows.append(("NIM's work paused", [(p.start, p.end)], "pause"))
    if state.paused_since:
        rows.append(("NIM's work paused", [(state.paused_since, today)], "pause"))
    for e in state.extensions:
        rows.append((f"court extension {e.weeks} weeks", [(e.granted_on,
                     e.granted_on + timedelta(weeks=e.weeks))], "extension"))
    labels = list(dict.fromkeys(label for label, _, _ in rows))
    y_of = {label: len(labels) - i for i, label in enumerate(labels)}
    series: dict[str, list[Any]] = {name: [] for name in SERIES}
    for label, spans, name in rows:
        for a, b in spans:
            y = y_of[label] + SERIES[name][1]
            series[name] += [((a - start).days, y), ((b - start).days, y), None]
    shown = [name for name in SERIES if series[name]]
    day = (today - start).days
    style = Style(**{**STYLE.__dict__, "colors": tuple(SERIES[n][0] for n in shown),
                     "stroke_width": "8", "stroke_width_hover": "10"})
    chart = pygal.XY(title=f"{state.ref}: planned against actual, in days from {start} "
                           f"(today: day {day})",
                     width=1100, height=max(260, 90 + 24 * len(labels)), stroke=True,
                     allow_interruptions=True, show_dots=False, legend_at_bottom=True,
                     legend_at_bottom_columns=4,
                     y_labels=[{"label": label, "value": y_of[label]} for label in labels],
                     range=(0, len(labels) + 1), x_title="days", show_y_guides=False,
                     **{**_COMMON, "style": style})
    for name in shown:
        chart.add(name, series[name], stroke_style={"linecap": "butt"})
    return _svg(chart)
