"""The pathway as a picture, server-side: the structure reports/diagram.py gives Mermaid
(stages with their tasks, each gate's outcomes and where they lead, the clocks and the stage
each one watches) laid out top to bottom as SVG. No script runs in the browser."""

from __future__ import annotations

from dataclasses import dataclass

from models.pathway import PathwaySpec
from nim_pathway.web.session import _ENV

BOX_W, LINE_H, GAP, LEFT, CLOCK_X, CLOCK_W = 460, 16, 40, 70, 600, 520


@dataclass(frozen=True)
class Box:
    id: str
    x: int
    y: int
    h: int
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    points: str  # an SVG polyline's points
    dashed: bool = False


def layout(spec: PathwaySpec) -> tuple[list[Box], list[Box], list[Edge], int]:
    """Stage boxes down the left, clocks down the right, arrows between them."""
    stages, y = [], 20
    for stage in spec.stages:
        lines = [f"{t.id} ({t.role}{', per ' + t.per if t.per != 'case' else ''})"
                 for t in stage.tasks]
        if stage.when:
            lines.insert(0, f"only when {stage.when} is on")
        if stage.gate:
            lines.append(f"gate {stage.gate.decision.upper()}:")
            lines += [f"    {code} → {out.next or 'case closed'}"
                      for code, out in stage.gate.outcomes.items()]
        h = 30 + LINE_H * len(lines)
        stages.append(Box(stage.id, LEFT, y, h, stage.title, tuple(lines)))
        y += h + GAP
    at = {b.id: b for b in stages}
    order = [b.id for b in stages]
    edges, lane = [], 0
    for stage in spec.stages:
        src = at[stage.id]
        targets = (dict.fromkeys(out.next for out in stage.gate.outcomes.values() if out.next)
                   if stage.gate else [stage.next] if stage.next else [])
        for target in targets:
            dst = at[target]
            if order.index(target) == order.index(stage.id) + 1:  # the next box: straight down
                x = src.x + 80
                edges.append(Edge(f"{x},{src.y + src.h} {x},{dst.y}"))
                continue
            lane += 1  # a jump past other stages runs down the left margin
            x_lane, y_out = LEFT - 12 * lane, src.y + src.h - 8
            edges.append(Edge(f"{src.x},{y_out} {x_lane},{y_out} {x_lane},{dst.y + 12} "
                              f"{dst.x},{dst.y + 12}"))
    clocks, cy = [], 20
    for clock in spec.clocks:
        lines = (f"{clock.kind}, owner {clock.owner}", _cut(clock.source, 80))
        box = Box(f"clock-{clock.id}", CLOCK_X, cy, 30 + LINE_H * len(lines),
                  _cut(clock.title, 72), lines)
        clocks.append(box)
        task = clock.forecast_task or (clock.met_by[5:] if clock.met_by and
                                       clock.met_by.startswith("done:") else None)
        if task and spec.stage_of_task.get(task) in at:
            dst = at[spec.stage_of_task[task]]
            edges.append(Edge(f"{box.x},{box.y + box.h // 2} {dst.x + BOX_W},"
                              f"{dst.y + dst.h // 2}", True))
        cy += box.h + 14
    return stages, clocks, edges, max(y, cy) + 20


def svg(spec: PathwaySpec) -> str:
    stages, clocks, edges, height = layout(spec)
    return _ENV.get_template("pathway.svg.j2").render(
        stages=stages, clocks=clocks, edges=edges, width=CLOCK_X + CLOCK_W + 20, height=height,
        box_w=BOX_W, clock_w=CLOCK_W, line_h=LINE_H, title=f"{spec.title} ({spec.profile}@{spec.version})")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
