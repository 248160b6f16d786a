"""What every CLI command shares: the service, options, printing, input files, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported lazily at run time: --help stays fast
    from nim_pathway.app import Service
    from nim_pathway.commands import Commands, Result

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ChildOpt = Annotated[str | None, typer.Option(
    "--child", help="which child of a sibling group (child-1, child-2, ...); the first if none")]
TaskArg = Annotated[str, typer.Argument(help="CASE-REF/TASK-KEY, e.g. NIM-2026-0001/triage")]


def _authenticated(ctx: typer.Context, claimed: str) -> str:
    return claimed if ctx.resilient_parsing else current_actor(claimed or None)


ActorOpt = Annotated[str, typer.Option(
    "--as", envvar="NIM_ACTOR", callback=_authenticated,
    help="your practitioner handle, proven by your `nim-pathway login` session or by a "
         "one-time code (`nim-pathway --code 123456 ...`, NIM_CODE, or asked for)")]
ONE_TIME_CODE: list[str] = []  # the root `--code` option, for the one command it runs


class UserError(Exception):
    """Shown as one line, exit code 2."""


def service() -> Service:
    """The service from settings (imported here: --help and simple reads start fast)."""
    from nim_pathway.app import build_service

    return build_service()


def current_actor(claimed: str | None) -> str:
    """Who is running this command, authenticated: a one-time code for `--as`, else this
    user's live `login` session (whose owner `--as` must match), else a code asked for."""

    code = (ONE_TIME_CODE or [""])[0].strip()
    if code:
        if not claimed:
            raise UserError("a one-time code needs --as HANDLE to say whose it is")
        return service().commands.authenticate(claimed, code)
    token = read_session_token()
    if token:
        return service().commands.session_actor(token, claimed)
    if claimed and sys.stdin.isatty():
        entered = typer.prompt(f"one-time code for {claimed}", hide_input=True)
        return service().commands.authenticate(claimed, entered)
    raise UserError("who is acting? Log in with `nim-pathway login --as HANDLE` (your "
                    "authenticator app's code), or give `--as HANDLE` with `nim-pathway --code "
                    "CODE ...`")


def read_session_token() -> str | None:
    from nim_pathway.settings import session_file

    path = session_file()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def emit(rows: Any, as_json: bool, columns: list[str] | None = None, title: str = "") -> None:
    """Print views as a table, or as JSON with `--json`."""
    from store.views import jsonable

    rows = jsonable(rows)
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


def parse_date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{what} {value!r} is not an ISO date like 2026-03-02") from None


def report(result: Result, svc: Service | None = None) -> None:
    """Print what a command did, then bring Prefect up to date if it is configured."""
    typer.echo(result.message)
    for e in result.effects:
        if e.kind in ("stage-entered", "task-unlocked", "decision-recorded", "case-closed",
                      "task-redated"):
            bits = " ".join(f"{k}={v}" for k, v in e.detail.items())
            typer.echo(f"  {e.kind} {e.task or ''} {bits}".rstrip())
    if svc is None or not result.ref:
        return
    from flows.orchestration import OrchestrationUnavailable, orchestrate_after

    try:
        typer.echo(orchestrate_after(svc, result.ref))
    except OrchestrationUnavailable as exc:
        typer.echo(f"warning: {exc}", err=True)
    except Exception as exc:  # noqa: BLE001 - the case store change stands whatever Prefect says
        typer.echo(f"warning: saved in the case store, but updating Prefect failed "
                   f"({exc.__class__.__name__}: {str(exc)[:200]}); orchestration is pending: run "
                   "`nim-pathway reconcile` (every sweep also does)", err=True)


def run(command: Callable[[Commands], Result]) -> None:
    """Run a write command, print what it did, then bring Prefect up to date."""
    svc = service()
    report(command(svc.commands), svc)


def load_data_file(path: Path) -> dict:
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


def split_pair(value: str) -> tuple[str, str | None]:
    head, sep, tail = value.partition(":")
    return head.strip(), (tail.strip() or None) if sep else None


def printable(text: str, keep_newlines: bool = False) -> str:
    """Escape control characters so an error stays on its line whatever the input held."""
    return "".join(ch if ch.isprintable() or (keep_newlines and ch == "\n")
                   else repr(ch)[1:-1] for ch in text)


def pydantic_problems(exc: Any) -> str:
    out = []
    for err in exc.errors():
        where = ".".join(printable(str(p)) for p in err["loc"]) or "referral"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return "; ".join(out)


def store_unavailable(exc: Exception) -> str:
    import re

    from nim_pathway.settings import database_url

    url = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", database_url())  # never a password
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = re.sub(r"^\((?:[\w.]+)\) ", "", reason)
    return (f"the case store at {url} is unavailable ({reason}). Check NIM_DATABASE_URL and "
            "that the database is running; nothing was changed.")


def fail(message: str) -> None:
    typer.echo(f"error: {printable(message, keep_newlines=True)}", err=True)
    sys.exit(2)


def internal(exc: Exception) -> None:
    import traceback

    from nim_pathway.settings import data_dir

    log = data_dir() / "errors.log"
    with log.open("a", encoding="utf-8") as fh:
        traceback.print_exception(exc, file=fh)
    typer.echo(f"internal error ({type(exc).__name__}); details in {log}. Nothing was "
               "half-written: each command is one transaction.", err=True)
    sys.exit(1)

