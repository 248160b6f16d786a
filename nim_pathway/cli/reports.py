"""`nim-pathway report …` and `export …`: manager views, KPIs, packs and exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nim_pathway.cli.io import ActorOpt, JsonOpt, emit, service, settings, show_markdown

report_app = typer.Typer(help="Manager views, KPIs, report packs.", no_args_is_help=True)
export_app = typer.Typer(help="CSV, FHIR and calendar exports.", no_args_is_help=True)


ProgrammeOpt = Annotated[str | None, typer.Option(
    help="one programme's cases only (nim, fdac); default: every programme")]


@report_app.command("board")
def report_board(
    case: Annotated[str | None, typer.Option(help="one case: all its open work and clocks")]
    = None,
    programme: ProgrammeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The caseload board, most urgent first: each open case's RAG from its worst open task
    or clock (red: anything overdue), how much is overdue, and what is next."""
    from reports.oversight import BOARD_COLUMNS, BOARD_LABELS, case_detail, caseload_board

    amber = settings().rag_amber_working_days
    if case:
        emit(case_detail(service().queries, case, amber), as_json,
             ["rag", "kind", "item", "title", "due", "working_days_to_due", "owner"],
             title=f"{case}: open work by urgency", labels={"working_days_to_due": "wd"})
        return
    emit(caseload_board(service().queries, programme, amber), as_json, BOARD_COLUMNS,
         title="Caseload board" + (f" ({programme})" if programme else ""), labels=BOARD_LABELS)


@report_app.command("kpis")
def report_kpis(programme: ProgrammeOpt = None, as_json: JsonOpt = False) -> None:
    """KPIs: days to each milestone, share to treatment, on-time rates, breach causes."""
    from reports.oversight import kpi_markdown, kpis
    from store.views import jsonable

    data = kpis(service().queries, programme)
    if as_json:
        typer.echo(json.dumps(jsonable(data), indent=2, default=str))
    else:
        show_markdown(kpi_markdown(data))


@report_app.command("breaches")
def report_breaches(programme: ProgrammeOpt = None, as_json: JsonOpt = False) -> None:
    """Late or overdue work and breached clocks, by team, with their cause."""
    from reports.oversight import breach_report_markdown, breaches
    from store.views import jsonable

    rows = breaches(service().queries, programme=programme)
    if as_json:
        typer.echo(json.dumps(jsonable(rows), indent=2, default=str))
    else:
        show_markdown(breach_report_markdown(rows))


@report_app.command("pack")
def report_pack(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="assessment (after D1) or final (after D2)")],
    fmt: Annotated[str, typer.Option("--format", help="html or pdf")] = "html",
    out: Annotated[Path | None, typer.Option(help="folder (default: <data>/reports)")] = None,
) -> None:
    """Render a report pack for the court or hearing (contains identity: local file only)."""

    path, digest = service().admin.write_pack(ref, kind, fmt, out or settings().data_dir / "reports",
                                              actor)
    typer.echo(f"wrote {path} (sha256 {digest}, recorded in the audit log)")


@report_app.command("diagram")
def report_diagram(profile: Annotated[str, typer.Option()] = "england") -> None:
    """The pathway as a Mermaid flowchart, from the YAML."""
    from models.pathway import load_pathway
    from reports.diagram import mermaid

    typer.echo(mermaid(load_pathway(profile)))


@export_app.command("csv")
def export_csv(actor: ActorOpt,
               case: Annotated[str | None, typer.Option(help="one case")] = None) -> None:
    """Tasks and deadlines as CSV (stdout)."""
    from reports.exports import tasks_csv

    svc = service()
    svc.admin.permit_read(actor, "export-data", doing="export tasks as CSV")
    typer.echo(tasks_csv(svc.queries, case), nl=False)


@export_app.command("fhir")
def export_fhir(ref: str, actor: ActorOpt) -> None:
    """A FHIR R4 Task bundle for one case (JSON, stdout)."""
    from reports.exports import fhir_bundle

    svc = service()
    svc.admin.permit_read(actor, "export-data", doing=f"export {ref} as FHIR")
    typer.echo(json.dumps(fhir_bundle(svc.queries, ref), indent=2))


@export_app.command("ics")
def export_ics(handle: str, actor: ActorOpt) -> None:
    """A practitioner's open deadlines as an iCalendar file (stdout): your own, or anyone's
    for an admin or a manager."""
    from reports.exports import practitioner_ics

    svc = service()
    if handle != actor:
        svc.admin.permit_read(actor, "export-data", doing=f"export {handle}'s calendar")
    typer.echo(practitioner_ics(svc.queries, handle, svc.notify_config()), nl=False)


