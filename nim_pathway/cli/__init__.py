"""`nim-pathway`: the command line for coordinators, practitioners and managers.

One module per sub-app (cases, tasks, reports, ops); what they share is in io.py. Heavy
imports (SQLAlchemy, holidays, Prefect) happen inside the commands that need them, so `--help`
and simple reads start fast. Every refusal is one line on stderr, exit code 2, with nothing
written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nim_pathway.cli import cases, identity, ops, reports, tasks, web
from nim_pathway.cli import court as court  # registers the court commands on `case`
from nim_pathway.cli.io import (
    ONE_TIME_CODE,
    UserError,
    fail,
    internal,
    new_invocation,
    store_unavailable,
)

GROUPS: dict[str, typer.Typer] = {
    "case": cases.case_app, "task": tasks.task_app, "practitioner": identity.prac_app,
    "pathway": identity.pathway_app, "audit": ops.audit_app, "outbox": ops.outbox_app,
    "notify": ops.notify_app, "report": reports.report_app, "export": reports.export_app,
    "retention": ops.retention_app, "consent": cases.consent_app, "keys": identity.keys_app}
COMMANDS = (identity.init, identity.login, identity.logout, identity.whoami, cases.deadline,
            cases.decide, ops.erase, ops.up, ops.down, ops.status, ops.doctor, ops.reconcile,
            ops.drain, ops.sweep, ops.demo, ops.inbox, web.web)


def _root(code: Annotated[str | None, typer.Option(
        "--code", envvar="NIM_CODE", show_envvar=False,
        help="a one-time code from your authenticator app, for this one command (with --as); "
             "or log in once with `nim-pathway login`")] = None) -> None:
    ONE_TIME_CODE[:] = [code] if code else []
    new_invocation()  # settings are read once per command, at its start (in-process runs too)


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI; with `only`, just that command group under the root options (see main)."""
    built = typer.Typer(help="NIM pathway engine: cases, tasks, deadlines.", no_args_is_help=True,
                        add_completion=False, pretty_exceptions_enable=False,
                        rich_markup_mode=None)
    built.callback()(_root)
    for name, sub_app in GROUPS.items():
        if only in (None, name):
            # Click's plain help: it wraps at the terminal's width (80 columns included),
            # where Rich's boxed panels cut option names and help mid-word
            sub_app.rich_markup_mode = None
            built.add_typer(sub_app, name=name)
    for command in COMMANDS if only is None else ():
        built.command()(command)
    return built


app = build_app()  # the whole CLI: help, the docs' CLI reference, and commands outside a group


def _app_for(argv: list[str]) -> typer.Typer:
    """Click builds every command of the app it runs (~70 here, ~50 ms a process); a command
    in a group needs only its group, so only that one is built. Anything else (help, a
    top-level command, a typo) runs the whole app, so its messages are unchanged."""
    args = iter(argv)
    for arg in args:
        if arg == "--code":
            next(args, None)
        elif not arg.startswith("--code="):
            return build_app(arg) if arg in GROUPS else app
    return app


def main() -> None:
    """Entry point: user errors are one line and exit 2; nothing else leaks a traceback."""
    clicks = sys.modules[typer.BadParameter.__module__]  # click's errors (typer vendors click)
    bare_group = getattr(clicks, "NoArgsIsHelpError", ())
    cli = _app_for(sys.argv[1:])
    try:
        # named after the command typed, also when the preloaded CLI runs it (nim_pathway/preload.py)
        code = cli(standalone_mode=False, prog_name=Path(sys.argv[0]).name)
    except bare_group as exc:  # a group without a command: its help
        exc.show()
        sys.exit(2)
    except clicks.UsageError as exc:
        where = f" (`{exc.ctx.command_path} --help` shows how)" if exc.ctx else ""
        fail(f"{exc.format_message()}{where}")
    except clicks.ClickException as exc:
        fail(exc.format_message())
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except UserError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - translate known refusals, log the rest
        from models.calendar import CalendarError
        from models.errors import CommandError
        from models.pathway import PathwayError
        from orchestration.prefect_api import OrchestrationUnavailable

        if isinstance(exc, CommandError | PathwayError | CalendarError | OrchestrationUnavailable):
            fail(str(exc))
        if type(exc).__name__ == "OperationalError":  # sqlite3's, psycopg's or SQLAlchemy's
            fail(store_unavailable(exc))
        internal(exc, cli)
    if isinstance(code, int) and code:  # an explicit exit code (typer.Exit(1))
        sys.exit(code)

