"""The pathway as a Mermaid flowchart, generated from the YAML so it never drifts."""

from __future__ import annotations

from models.pathway import PathwaySpec


def _node(stage_id: str) -> str:
    return stage_id.replace("-", "_")


def mermaid(spec: PathwaySpec) -> str:
    lines = ["flowchart TD"]
    for stage in spec.stages:
        tasks = "<br/>".join(f"{t.id} ({t.role}{', per ' + t.per if t.per != 'case' else ''})"
                             for t in stage.tasks)
        when = f"<br/><i>only when {stage.when} is on</i>" if stage.when else ""
        lines.append(f'    {_node(stage.id)}["<b>{stage.title}</b>{when}<br/>{tasks}"]')
    for stage in spec.stages:
        if stage.gate:
            gate = f"{_node(stage.id)}_gate"
            lines.append(f"    {_node(stage.id)} --> {gate}{{{stage.gate.decision.upper()}}}")
            for code, out in stage.gate.outcomes.items():
                target = _node(out.next) if out.next else "closed"
                lines.append(f"    {gate} -->|{code}| {target}")
        elif stage.next:
            lines.append(f"    {_node(stage.id)} --> {_node(stage.next)}")
        else:
            lines.append(f"    {_node(stage.id)} --> closed([case closed])")
    for clock in spec.clocks:
        label = f"{clock.title}<br/><i>{clock.kind}, {clock.owner}: {clock.source}</i>"
        lines.append(f'    clock_{_node(clock.id)}[/"{label}"/]')
        task = clock.forecast_task or (clock.met_by[5:] if clock.met_by and
                                       clock.met_by.startswith("done:") else None)
        if task:
            lines.append(f"    clock_{_node(clock.id)} -.-> {_node(spec.stage_of_task[task])}")
    return "\n".join(lines)
