"""`nim-pathway`: the command line for coordinators, practitioners and managers.

Heavy imports (SQLAlchemy, holidays, Prefect) happen inside the commands that need them,
so `--help` and simple reads start fast. Every refusal is one line on stderr, exit code 2,
with nothing written.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="NIM pathway engine: cases, tasks, deadlines.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
case_app = typer.Typer(help="Open and inspect cases.", no_args_is_help=True)
task_app = typer.Typer(help="List, complete and reassign tasks.", no_args_is_help=True)
prac_app = typer.Typer(help="Manage practitioners.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)
outbox_app = typer.Typer(help="Queued and sent notifications.", no_args_is_help=True)
notify_app = typer.Typer(help="Check notification targets.", no_args_is_help=True)
report_app = typer.Typer(help="Manager views, KPIs, report packs.", no_args_is_help=True)
export_app = typer.Typer(help="CSV, FHIR and calendar exports.", no_args_is_help=True)
app.add_typer(case_app, name="case")
app.add_typer(task_app, name="task")
app.add_typer(prac_app, name="practitioner")
app.add_typer(audit_app, name="audit")
app.add_typer(outbox_app, name="outbox")
app.add_typer(notify_app, name="notify")
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ActorOpt = Annotated[str, typer.Option("--as", envvar="NIM_ACTOR",
                                       help="your practitioner handle (or set NIM_ACTOR)")]


class UserError(Exception):
    """Shown as one line, exit code 2."""


def _store():  # noqa: ANN202 - lazy import keeps --help fast
    from nim_pathway import settings
    from nim_pathway.commands import CaseStore
    from nim_pathway.db import migrate

    url = settings.database_url()
    migrate(url)
    return CaseStore(url, settings.clock(), settings.closure_days())


def _emit(rows: Any, as_json: bool, columns: list[str] | None = None, title: str = "") -> None:
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(rows, dict):
        table = Table(title=title, show_header=False)
        for k, v in rows.items():
            table.add_row(k, v if isinstance(v, str) else json.dumps(v, default=str))
        console.print(table)
        return
    table = Table(title=title)
    columns = columns or (list(rows[0]) if rows else [])
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    console.print(table)
    if not rows:
        console.print("(none)")


def _parse_date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{what} {value!r} is not an ISO date like 2026-03-02") from None


def _report(result: Any, store: Any = None) -> None:
    """Print what a command did, then bring Prefect up to date if it is configured."""
    typer.echo(result.message)
    for e in result.effects:
        if e.kind in ("stage-entered", "task-unlocked", "decision-recorded", "case-closed",
                      "task-redated"):
            bits = " ".join(f"{k}={v}" for k, v in e.detail.items())
            typer.echo(f"  {e.kind} {e.task or ''} {bits}".rstrip())
    if store is None or not result.ref:
        return
    from nim_pathway.orchestration import OrchestrationUnavailable, orchestrate_after

    try:
        typer.echo(orchestrate_after(store, result.ref))
    except OrchestrationUnavailable as exc:
        typer.echo(f"warning: {exc}", err=True)
    except Exception as exc:  # noqa: BLE001 - the case store change stands whatever Prefect says
        typer.echo(f"warning: saved in the case store, but updating Prefect failed "
                   f"({exc.__class__.__name__}: {str(exc)[:200]}); orchestration is pending: run "
                   "`nim-pathway reconcile` (every sweep also does)", err=True)


def _do(command: str, *args: Any) -> None:
    """Run a write command on the store and report it (with orchestration)."""
    store = _store()
    _report(getattr(store, command)(*args), store)


# -- deadline ------------------------------------------------------------------------------


@app.command()
def deadline(
    jurisdiction: Annotated[str, typer.Option(help="england-and-wales, scotland, northern-ireland")],
    from_: Annotated[str, typer.Option("--from", help="anchor date (ISO)")],
    working_days: Annotated[int | None, typer.Option(help="N-th working day after the anchor")] = None,
    days: Annotated[int | None, typer.Option(help="calendar days")] = None,
    weeks: Annotated[int | None, typer.Option(help="weeks")] = None,
    months: Annotated[int | None, typer.Option(help="calendar months")] = None,
    explain: Annotated[bool, typer.Option(help="say how the date was reached")] = False,
) -> None:
    """Compute a due date; the ISO date is always the last line."""
    from models.calendar import WorkingCalendar, compute_due
    from nim_pathway.settings import closure_days

    given = {k: v for k, v in dict(working_days=working_days, days=days, weeks=weeks,
                                    months=months).items() if v is not None}
    if len(given) != 1:
        raise UserError("give exactly one of --working-days, --days, --weeks, --months")
    (unit, amount), = given.items()
    anchor = _parse_date(from_, "--from")
    due = compute_due(WorkingCalendar(jurisdiction, closure_days()), anchor, amount, unit)
    if explain:
        typer.echo(due.explanation)
    typer.echo(due.due.isoformat())


# -- cases ---------------------------------------------------------------------------------


def _load_referral_file(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"referral file {path} does not exist")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid JSON/YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a referral must be a mapping of fields")
    return data


def _split(value: str, what: str) -> tuple[str, str | None]:
    head, sep, tail = value.partition(":")
    return head.strip(), (tail.strip() or None) if sep else None


@case_app.command("open")
def case_open(
    actor: ActorOpt,
    file: Annotated[Path | None, typer.Option(help="referral as JSON or YAML")] = None,
    jurisdiction: Annotated[str | None, typer.Option()] = None,
    site: Annotated[str | None, typer.Option()] = None,
    pathway: Annotated[str | None, typer.Option(help="profile: england, scotland")] = None,
    given_name: Annotated[str | None, typer.Option(help="child's given name")] = None,
    family_name: Annotated[str | None, typer.Option(help="child's family name")] = None,
    dob: Annotated[str | None, typer.Option(help="child's date of birth")] = None,
    care_entry: Annotated[str | None, typer.Option()] = None,
    referral_date: Annotated[str | None, typer.Option("--referral")] = None,
    proceedings_issued: Annotated[str | None, typer.Option()] = None,
    caregiver: Annotated[list[str] | None, typer.Option(
        help="RELATIONSHIP[:NAME], repeat per caregiver (mother, father, parent, "
             "foster-carer, kinship-carer)")] = None,
    placement: Annotated[str | None, typer.Option(help="KIND:START, e.g. foster:2026-01-05")] = None,
    setting: Annotated[list[str] | None, typer.Option(help="pathway setting NAME=N")] = None,
) -> None:
    """Open a case from a referral file or flags. Prefer a file: flags land in shell history."""
    from pydantic import ValidationError

    from models.schemas import Referral

    data: dict[str, Any] = _load_referral_file(file) if file else {}
    flags = {"jurisdiction": jurisdiction, "site": site, "pathway": pathway,
             "care_entry": care_entry, "referral": referral_date,
             "proceedings_issued": proceedings_issued}
    data.update({k: v for k, v in flags.items() if v is not None})
    child = {"given_name": given_name, "family_name": family_name, "date_of_birth": dob}
    if any(child.values()):
        data["child"] = {**data.get("child", {}), **{k: v for k, v in child.items() if v}}
    if caregiver:
        data["caregivers"] = [dict(zip(("relationship", "name"), _split(c, "caregiver"),
                                       strict=True)) for c in caregiver]
    if placement:
        kind, start = _split(placement, "placement")
        data["placement"] = {"kind": kind, "start": start}
    if setting:
        pairs = [s.partition("=") for s in setting]
        bad = [s for s, (_, eq, v) in zip(setting, pairs, strict=True) if not eq or not v.isdigit()]
        if bad:
            raise UserError(f"--setting must be NAME=N (whole number): {', '.join(bad)}")
        data["settings"] = {k: int(v) for k, _, v in pairs}
    try:
        referral = Referral.model_validate(data)
    except ValidationError as exc:
        raise UserError("invalid referral: " + _pydantic_problems(exc)) from None
    _do("open_case", referral, actor)


@case_app.command("intake")
def case_intake(
    actor: ActorOpt,
    file: Annotated[Path, typer.Option(help="referral as JSON or YAML")],
) -> None:
    """Stage a referral for opening from the Prefect UI: prints the handle the form takes."""
    from pydantic import ValidationError

    from models.schemas import Referral

    try:
        referral = Referral.model_validate(_load_referral_file(file))
    except ValidationError as exc:
        raise UserError("invalid referral: " + _pydantic_problems(exc)) from None
    handle = _store().stage_intake(referral, actor)
    typer.echo(f"staged referral {handle}: in the Prefect UI run deployment open-case/open-case "
               f"with intake={handle} and your handle as coordinator")
    typer.echo(handle)


def _printable(text: str, keep_newlines: bool = False) -> str:
    """Escape control characters so an error stays on its line whatever the input held."""
    return "".join(ch if ch.isprintable() or (keep_newlines and ch == "\n")
                   else repr(ch)[1:-1] for ch in text)


def _pydantic_problems(exc: Any) -> str:
    out = []
    for err in exc.errors():
        where = ".".join(_printable(str(p)) for p in err["loc"]) or "referral"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return "; ".join(out)


@case_app.command("list")
def case_list(as_json: JsonOpt = False) -> None:
    """All cases with their stage."""
    _emit(_store().cases(), as_json, ["ref", "stage", "jurisdiction", "site", "closed_on"])


@case_app.command("show")
def case_show(ref: str, as_json: JsonOpt = False) -> None:
    """A case's stage, dates, statutory clocks and open work (no identity)."""
    data = _store().show(ref)
    if as_json:
        _emit(data, True)
        return
    clocks = data.pop("clocks")
    open_tasks = data.pop("open_tasks")
    _emit(data, False, title=ref)
    _emit([{k: c[k] for k in ("title", "due", "state", "days_left")} for c in clocks], False,
          title="Statutory clocks")
    _emit(open_tasks, False, title="Open tasks")


@case_app.command("timeline")
def case_timeline(ref: str, as_json: JsonOpt = False) -> None:
    """Planned against actual for every task, decisions and stage starts."""
    _emit(_store().timeline(ref), as_json, ["date", "event", "due", "status", "role"],
          title=f"{ref} timeline")


@case_app.command("forecast")
def case_forecast(
    ref: str,
    hearing_date: Annotated[str | None, typer.Option(help="what if the final hearing is then")]
    = None,
    treatment_months: Annotated[int | None, typer.Option(help="what if treatment lasts N months")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Project every remaining deadline and flag conflicts before they happen."""
    hearing = _parse_date(hearing_date, "--hearing-date") if hearing_date else None
    data = _store().forecast(ref, hearing, treatment_months)
    if as_json:
        _emit(data, True)
        return
    _emit(data["milestones"], False, ["task", "title", "projected", "done"],
          title=f"{ref} forecast")
    _emit(data["clocks"], False, ["title", "due", "state"], title="Statutory clocks (projected)")
    for c in data["conflicts"]:
        typer.echo(f"CONFLICT: {c}")
    if not data["conflicts"]:
        typer.echo("no conflicts projected")


@case_app.command("move-date")
def case_move_date(
    ref: str, name: str, new_date: str, actor: ActorOpt,
    cause: Annotated[str, typer.Option(help="why: hearing adjourned, court extension, ...")] = "",
    category: Annotated[str, typer.Option(help="court, family, capacity or other")] = "court",
) -> None:
    """Set or move a key date (e.g. final_hearing); dependent deadlines are re-dated."""
    _do("move_date", ref, name, _parse_date(new_date, "date"), cause, actor, category)


@case_app.command("placement")
def case_placement(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="foster, kinship, mother-and-baby, residential, home")],
    start: Annotated[str, typer.Option(help="date the new placement started")],
    reason: Annotated[str, typer.Option(help="why the child moved")],
) -> None:
    """Record a placement change (the current placement ends that day)."""
    _do("change_placement", ref, kind, _parse_date(start, "--start"), reason, actor)


@case_app.command("court-override")
def case_court_override(
    ref: str, actor: ActorOpt,
    weeks: Annotated[int, typer.Option(help="the timetable the court set, in weeks")],
    direction: Annotated[str, typer.Option(help="the court's direction, as recorded")],
) -> None:
    """Record a court timetable override of the 26-week limit (or the Scottish 6-month aim)."""
    _do("set_court_override", ref, weeks, direction, actor)


# -- tasks ---------------------------------------------------------------------------------


@task_app.command("list")
def task_list(
    case: Annotated[str | None, typer.Option(help="case reference")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    overdue: Annotated[bool, typer.Option(help="only work past its due date")] = False,
    due_within: Annotated[int | None, typer.Option(help="due within N calendar days")] = None,
    state: Annotated[str, typer.Option(help="open, blocked, done, cancelled or all")] = "open",
    as_json: JsonOpt = False,
) -> None:
    """Work waiting for people, soonest due first."""
    if state not in ("open", "blocked", "done", "cancelled", "all"):
        raise UserError("--state must be open, blocked, done, cancelled or all")
    from models.clock import today
    from nim_pathway import reads, settings

    filters = (case, role, overdue, due_within, None if state == "all" else state)
    conn = reads.connect(settings.database_url())  # fast: no ORM import (see reads.py)
    if conn is None:  # a new or older database: the store migrates it, then runs the same query
        rows = _store().tasks(*filters)
    else:
        try:
            rows = reads.task_rows(conn, today(settings.clock()), *filters)
        finally:
            conn.close()
    _emit(rows, as_json, ["task", "title", "role", "assignee", "due", "days_to_due", "state"])


@task_app.command("complete")
def task_complete(
    task: Annotated[str, typer.Argument(help="CASE-REF/TASK-KEY")],
    actor: ActorOpt,
    outcome_file: Annotated[Path | None, typer.Option(help="outcome as JSON or YAML")] = None,
    field: Annotated[list[str] | None, typer.Option(help="outcome field NAME=VALUE")] = None,
) -> None:
    """Record a task's outcome; what it unlocks is started."""
    outcome: dict[str, Any] = _load_referral_file(outcome_file) if outcome_file else {}
    for item in field or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--field must be NAME=VALUE, got {item!r}")
        outcome[name] = {"true": True, "false": False}.get(value.lower(), value)
    _do("complete_task", task, actor, outcome)


@task_app.command("reassign")
def task_reassign(
    task: Annotated[str, typer.Argument(help="CASE-REF/TASK-KEY")],
    to: Annotated[str, typer.Option(help="practitioner handle taking the task over")],
    actor: ActorOpt,
    note: Annotated[str, typer.Option(help="handover note for the new owner")] = "",
) -> None:
    """Hand a task to another practitioner with the same role."""
    _do("reassign", task, to, actor, note)


@task_app.command("delay-cause")
def task_delay_cause(
    task: Annotated[str, typer.Argument(help="CASE-REF/TASK-KEY")],
    cause: Annotated[str, typer.Argument(help="court, family, capacity or other")],
    actor: ActorOpt,
    note: Annotated[str, typer.Option(help="what happened")] = "",
) -> None:
    """Record why a task is late (feeds the breach report and the KPIs)."""
    typer.echo(_store().record_delay_cause(task, cause, note, actor).message)


@app.command()
def decide(
    ref: str,
    decision: Annotated[str, typer.Argument(help="d1 or d2")],
    outcome: Annotated[str, typer.Argument(help="d1: treatment, no_treatment; d2: return_home, "
                                                "kinship_care, adoption, long_term_foster_care, "
                                                "permanence_order (Scotland)")],
    actor: ActorOpt,
    rationale: Annotated[str, typer.Option(help="why, for the record")] = "",
) -> None:
    """Record decision D1 (treatment or not) or D2 (the permanence recommendation)."""
    if decision not in ("d1", "d2"):
        raise UserError("decision must be d1 or d2")
    _do("decide", ref, decision, outcome, actor, rationale)


# -- practitioners -------------------------------------------------------------------------


@prac_app.command("add")
def practitioner_add(
    handle: str, role: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option(help="display name")],
    team: Annotated[str, typer.Option()] = "nim",
    contact: Annotated[str | None, typer.Option(help="Apprise URL, e.g. mailto://...")] = None,
    actor: Annotated[str, typer.Option("--as", envvar="NIM_ACTOR")] = "admin",
) -> None:
    """Register a practitioner with a role."""
    from pydantic import ValidationError

    from models.schemas import PractitionerIn

    try:
        p = PractitionerIn(handle=handle, display_name=name, role=role, team=team,
                           contact=contact)
    except ValidationError as exc:
        raise UserError("invalid practitioner: " + _pydantic_problems(exc)) from None
    _report(_store().add_practitioner(p, actor))


@prac_app.command("list")
def practitioner_list(as_json: JsonOpt = False) -> None:
    """Registered practitioners."""
    _emit(_store().practitioners(), as_json, ["handle", "display_name", "role", "team", "active"])


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain: an edited, inserted or deleted row is reported."""
    from nim_pathway import settings
    from nim_pathway.commands import verify_audit
    from nim_pathway.db import migrate

    url = settings.database_url()
    migrate(url)
    problems = verify_audit(url)
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("audit chain intact")


@report_app.command("board")
def report_board(as_json: JsonOpt = False) -> None:
    """The caseload board: every open case, its next work, RAG and clocks."""
    from reports.oversight import caseload_board

    _emit(caseload_board(_store()), as_json, ["case", "stage", "next_task", "due",
                                              "working_days_to_due", "rag", "owner_role",
                                              "clocks"], title="Caseload board")


@report_app.command("kpis")
def report_kpis(as_json: JsonOpt = False) -> None:
    """KPIs: days to each milestone, share to treatment, on-time rates, breach causes."""
    from reports.oversight import kpi_markdown, kpis

    data = kpis(_store())
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else kpi_markdown(data))


@report_app.command("breaches")
def report_breaches(as_json: JsonOpt = False) -> None:
    """Late or overdue work and breached clocks, by team, with their cause."""
    from reports.oversight import breach_report_markdown, breaches

    rows = breaches(_store())
    typer.echo(json.dumps(rows, indent=2, default=str) if as_json
               else breach_report_markdown(rows))


@report_app.command("pack")
def report_pack(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="assessment (after D1) or final (after D2)")],
    fmt: Annotated[str, typer.Option("--format", help="html or pdf")] = "html",
    out: Annotated[Path | None, typer.Option(help="folder (default: <data>/reports)")] = None,
) -> None:
    """Render a report pack for the court or hearing (contains identity: local file only)."""
    from nim_pathway.settings import data_dir
    from reports.packs import write_pack

    path, digest = write_pack(_store(), ref, kind, fmt, out or data_dir() / "reports", actor)
    typer.echo(f"wrote {path} (sha256 {digest}, recorded in the audit log)")


@report_app.command("diagram")
def report_diagram(profile: Annotated[str, typer.Option()] = "england") -> None:
    """The pathway as a Mermaid flowchart, from the YAML."""
    from models.pathway import load_pathway
    from reports.diagram import mermaid

    typer.echo(mermaid(load_pathway(profile)))


@export_app.command("csv")
def export_csv(case: Annotated[str | None, typer.Option(help="one case")] = None) -> None:
    """Tasks and deadlines as CSV (stdout)."""
    from reports.exports import tasks_csv

    typer.echo(tasks_csv(_store(), case), nl=False)


@export_app.command("fhir")
def export_fhir(ref: str) -> None:
    """A FHIR R4 Task bundle for one case (JSON, stdout)."""
    from reports.exports import fhir_bundle

    typer.echo(json.dumps(fhir_bundle(_store(), ref), indent=2))


@export_app.command("ics")
def export_ics(handle: str) -> None:
    """A practitioner's open deadlines as an iCalendar file (stdout)."""
    from reports.exports import practitioner_ics

    typer.echo(practitioner_ics(_store(), handle), nl=False)


retention_app = typer.Typer(help="Records past their retention date.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("review")
def retention_review(as_json: JsonOpt = False) -> None:
    """Cases past their retention date (75th birthday; 100 years after adoption)."""
    _emit(_store().retention_review(), as_json, ["case", "basis", "retain_until", "closed_on"],
          title="Past retention")


@app.command()
def erase(ref: str, actor: ActorOpt,
          reason: Annotated[str, typer.Option(help="why, if before the retention date")] = "",
          ) -> None:
    """Remove a case's identity; the pathway record and the audit of the erasure remain."""
    typer.echo(_store().erase(ref, actor, reason).message)


@app.command()
def up(
    seed: Annotated[bool, typer.Option(help="add the demo practitioners")] = False,
) -> None:
    """Start the local stack: Prefect server, work pool, deployments, worker."""
    from nim_pathway.stack import up as stack_up

    url = stack_up(seed)
    typer.echo(f"Prefect UI: {url}  (stop with `nim-pathway down`)")


@app.command()
def down() -> None:
    """Stop the local stack (worker first, then server)."""
    from nim_pathway.stack import down as stack_down

    stopped = stack_down()
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """What of the local stack runs."""
    from nim_pathway.stack import status as stack_status

    _emit(stack_status(), as_json, title="nim-pathway stack")


@app.command()
def reconcile(ref: Annotated[list[str] | None, typer.Argument(help="cases (default: all)")] = None,
              ) -> None:
    """Rebuild Prefect's runs from the case store (after an outage or a lost database)."""
    from nim_pathway.orchestration import api_url, check_reachable
    from nim_pathway.orchestration import reconcile as do_reconcile

    url = api_url()
    if url is None:
        raise UserError("no Prefect to reconcile with: start the stack (`nim-pathway up`) or "
                        "set PREFECT_API_URL")
    import os

    os.environ.setdefault("PREFECT_API_URL", url)
    check_reachable(url)
    for report in do_reconcile(_store(), ref or None):
        typer.echo(report.summary())


@app.command()
def sweep(at: Annotated[str | None, typer.Option(help="fire as of this instant (ISO)")] = None,
          dispatch: Annotated[bool, typer.Option(help="deliver the queued messages too")] = True,
          ) -> None:
    """Fire due timers into the outbox (reminders, escalations, clock warnings), then deliver."""
    from models.clock import VirtualClock, parse_instant

    try:
        instant = parse_instant(at) if at else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = _store()
    fired = store.fire_due_timers(instant)
    for t in fired:
        typer.echo(f"{t['kind']:<13} {t['ref']} {t['task'] or t['detail'].get('clock', '')} "
                   f"-> {t['role']}")
    typer.echo(f"fired {len(fired)} timer(s)")
    if dispatch:
        from notifications.dispatcher import Dispatcher

        clock = VirtualClock(instant) if instant else store.clock
        report = Dispatcher(store.url, clock).run_until_idle()
        typer.echo(f"delivered {report.sent}, failed {report.failed} (will retry), "
                   f"dead-lettered {report.dead}, deferred {report.deferred}")


@outbox_app.command("list")
def outbox_list(failed: Annotated[bool, typer.Option(help="only failing or dead")] = False,
                as_json: JsonOpt = False) -> None:
    """Messages queued, sent, failing or dead-lettered (newest first)."""
    _emit(_store().outbox(failed), as_json,
          ["id", "kind", "case", "recipient", "status", "attempts", "last_error", "sent_at"])


@outbox_app.command("retry")
def outbox_retry(message_id: int, actor: ActorOpt) -> None:
    """Queue a failing or dead-lettered message again."""
    typer.echo(_store().retry_message(message_id, actor).message)


@outbox_app.command("dispatch")
def outbox_dispatch() -> None:
    """Deliver what is due in the outbox now."""
    from notifications.dispatcher import Dispatcher

    store = _store()
    report = Dispatcher(store.url, store.clock).run_until_idle()
    typer.echo(f"delivered {report.sent}, failed {report.failed} (will retry), "
               f"dead-lettered {report.dead}, deferred {report.deferred}")
    for err in sorted(set(report.errors))[:10]:
        typer.echo(f"  {err}", err=True)


@notify_app.command("test")
def notify_test(to: Annotated[str, typer.Option(
        help="an Apprise URL, a named target like email:you@example.org, or a practitioner")],
) -> None:
    """Send a test message to a target and say whether it arrived."""
    from notifications.config import load_config
    from notifications.dispatcher import apprise_send
    from notifications.render import fit_for_channel, is_email, render_message

    config = load_config()
    contact = to
    if "://" not in to and ":" not in to:  # a practitioner handle
        known = {p["handle"]: p["contact"] for p in _store().practitioners()}
        if to not in known:
            raise UserError(f"{to!r} is neither a target URL, a named target nor a practitioner")
        contact = known[to]
    try:
        name, url = config.resolve(f"practitioner:{to}", contact)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if "://" in to:
        name = f"the {to.split('://', 1)[0]} target"  # never echo a URL: it may hold a secret
    msg = render_message("test", {"case_ref": "TEST", "link": config.ui_url, "recipient": to,
                                  "dedupe_key": "notify-test"})
    title, body = fit_for_channel(url, msg)
    error = apprise_send(url, title, body, is_email(url), None)
    if error:
        raise UserError(f"test message to {name} failed: {error}")
    typer.echo(f"test message delivered to {name}")


@app.command()
def demo(
    profile: Annotated[str, typer.Option(help="england or scotland")] = "england",
    no_treatment: Annotated[bool, typer.Option(help="take the D1 no-treatment branch")] = False,
    stack: Annotated[bool, typer.Option(help="then start the local stack with a live case")]
    = False,
) -> None:
    """Drive a demo case through the whole pathway in virtual time and print its timeline;
    with --stack, then bring up Prefect and leave a live case waiting for people."""
    from nim_pathway.demo import run_demo, run_live_demo

    run_demo(profile, no_treatment)
    if stack:
        run_live_demo()


def main() -> None:
    """Entry point: user errors are one line and exit 2; nothing else leaks a traceback."""
    try:
        app()
    except UserError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - translate known refusals, log the rest
        from models.calendar import CalendarError
        from models.pathway import PathwayError
        from nim_pathway.errors import CommandError
        from nim_pathway.orchestration import OrchestrationUnavailable

        if isinstance(exc, CommandError | PathwayError | CalendarError | OrchestrationUnavailable):
            _fail(str(exc))
        if type(exc).__name__ == "OperationalError":  # sqlite3's, psycopg's or SQLAlchemy's
            _fail(_store_unavailable(exc))
        _internal(exc)


def _store_unavailable(exc: Exception) -> str:
    import re

    from nim_pathway.settings import database_url

    url = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", database_url())  # never a password
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = re.sub(r"^\((?:[\w.]+)\) ", "", reason)
    return (f"the case store at {url} is unavailable ({reason}). Check NIM_DATABASE_URL and "
            "that the database is running; nothing was changed.")


def _fail(message: str) -> None:
    typer.echo(f"error: {_printable(message, keep_newlines=True)}", err=True)
    sys.exit(2)


def _internal(exc: Exception) -> None:
    import traceback

    from nim_pathway.settings import data_dir

    log = data_dir() / "errors.log"
    with log.open("a", encoding="utf-8") as fh:
        traceback.print_exception(exc, file=fh)
    typer.echo(f"internal error ({type(exc).__name__}); details in {log}. Nothing was "
               "half-written: each command is one transaction.", err=True)
    sys.exit(1)
