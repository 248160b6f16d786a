"""`nim-pathway task …`: the work queue; complete, reassign, record why work is late."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from models.refs import TaskRef
from nim_pathway.cli.io import ActorOpt, JsonOpt, TaskArg, UserError, emit, load_data_file, run, service

task_app = typer.Typer(help="List, complete and reassign tasks.", no_args_is_help=True)


@task_app.command("list")
def task_list(
    case: Annotated[str | None, typer.Option(help="case reference")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    overdue: Annotated[bool, typer.Option(help="only work past its due date")] = False,
    due_within: Annotated[int | None, typer.Option(help="due within N calendar days")] = None,
    state: Annotated[str, typer.Option(help="open, blocked, done, cancelled or all")] = "open",
    assignee: Annotated[str | None, typer.Option(help="work assigned to this handle")] = None,
    mine: Annotated[bool, typer.Option(
        "--mine", help="work assigned to you (your `login` session says who you are)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Work waiting for people, soonest due first."""
    if state not in ("open", "blocked", "done", "cancelled", "all"):
        raise UserError("--state must be open, blocked, done, cancelled or all")
    if mine and assignee:
        raise UserError("give --mine or --assignee HANDLE, not both")
    from models.clock import today
    from nim_pathway.cli.io import current_actor, settings
    from store import worklist

    if mine:
        assignee = current_actor(None)
    filters = (case, role, overdue, due_within, None if state == "all" else state, assignee)
    conn = worklist.connect(settings().database_url)  # fast: no ORM import (see worklist.py)
    if conn is None:  # a new or older database: the store migrates it, then runs the same query
        rows = service().queries.tasks(*filters)
    else:
        try:
            rows = worklist.task_rows(conn, today(settings().clock), *filters,
                                      closures=settings().closure_days)
        finally:
            conn.close()
    emit(rows, as_json, ["task", "title", "child", "role", "assignee", "due", "days_to_due",
                         "working_days_to_due", "state"],
         labels={"days_to_due": "days", "working_days_to_due": "working days"})


@task_app.command("complete")
def task_complete(
    task: TaskArg,
    actor: ActorOpt,
    outcome_file: Annotated[Path | None, typer.Option(help="outcome as JSON or YAML")] = None,
    field: Annotated[list[str] | None, typer.Option(help="outcome field NAME=VALUE")] = None,
) -> None:
    """Record a task's outcome; what it unlocks is started."""
    outcome: dict[str, Any] = load_data_file(outcome_file) if outcome_file else {}
    for item in field or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--field must be NAME=VALUE, got {item!r}")
        outcome[name] = {"true": True, "false": False}.get(value.lower(), value)
    ref = TaskRef.parse(task)
    run(lambda svc: svc.tasks.complete_task(ref, actor, outcome))


@task_app.command("reassign")
def task_reassign(
    task: TaskArg,
    to: Annotated[str, typer.Option(help="practitioner handle taking the task over")],
    actor: ActorOpt,
    note: Annotated[str, typer.Option(help="handover note for the new owner")] = "",
) -> None:
    """Hand a task to another practitioner with the same role."""
    ref = TaskRef.parse(task)
    run(lambda svc: svc.tasks.reassign(ref, to, actor, note))


@task_app.command("delay-cause")
def task_delay_cause(
    task: TaskArg,
    cause: Annotated[str, typer.Argument(help="court, family, capacity or other")],
    actor: ActorOpt,
    note: Annotated[str, typer.Option(help="what happened")] = "",
) -> None:
    """Record why a task is late (feeds the breach report and the KPIs)."""
    ref = TaskRef.parse(task)
    typer.echo(service().tasks.record_delay_cause(ref, cause, note, actor).message)


