"""The pathway as a picture, server-side: the structure reports/diagram.py gives Mermaid
(stages with their tasks, each gate's outcomes and where they lead, the clocks and the stage
each one watches) laid out top to bottom as SVG. No script runs in the browser."""

from __future__ import annotations

from dataclasses import dataclass

from models.pathway import PathwaySpec
from nim_pathway.web.session import _ENV

BOX_W, LINE_H, GAP, CLOCK_X = 460, 16, 46, 560


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
    x1: int
    y1: int
    x2: int
    y2: int
    label: str
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
            outs = ", ".join(f"{code} → {out.next or 'case closed'}"
                             for code, out in stage.gate.outcomes.items())
            lines.append(f"gate {stage.gate.decision.upper()}: {outs}")
        h = 30 + LINE_H * len(lines)
        stages.append(Box(stage.id, 20, y, h, stage.title, tuple(lines)))
        y += h + GAP
    at = {b.id: b for b in stages}
    edges = []
    for stage in spec.stages:
        src = at[stage.id]
        targets = ([(out.next, code) for code, out in stage.gate.outcomes.items() if out.next]
                   if stage.gate else [(stage.next, "")] if stage.next else [])
        for n, (target, label) in enumerate(targets):
            dst = at[target]
            shift = 24 * n
            edges.append(Edge(src.x + 60 + shift, src.y + src.h, dst.x + 60 + shift, dst.y,
                              label))
    clocks, cy = [], 20
    for clock in spec.clocks:
        lines = (f"{clock.kind}, owner {clock.owner}", clock.source[:70])
        box = Box(f"clock-{clock.id}", CLOCK_X, cy, 30 + LINE_H * len(lines), clock.title,
                  lines)
        clocks.append(box)
        task = clock.forecast_task or (clock.met_by[5:] if clock.met_by and
                                       clock.met_by.startswith("done:") else None)
        if task and spec.stage_of_task.get(task) in at:
            dst = at[spec.stage_of_task[task]]
            edges.append(Edge(box.x, box.y + box.h // 2, dst.x + BOX_W, dst.y + dst.h // 2,
                              "", True))
        cy += box.h + 14
    return stages, clocks, edges, max(y, cy) + 20


def svg(spec: PathwaySpec) -> str:
    stages, clocks, edges, height = layout(spec)
    return _ENV.get_template("pathway.svg.j2").render(
        stages=stages, clocks=clocks, edges=edges, width=CLOCK_X + 480, height=height,
        box_w=BOX_W, line_h=LINE_H, title=f"{spec.title} ({spec.profile}@{spec.version})")
