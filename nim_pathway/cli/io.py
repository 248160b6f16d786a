"""What every CLI command shares: the service, options, printing, input files, errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported lazily at run time: --help stays fast
    from nim_pathway.app import Service
    from nim_pathway.commands import Result
    from nim_pathway.settings import Settings

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


_INVOCATION: dict[str, Any] = {}  # this command's settings and service, built once each


def new_invocation() -> None:
    """Forget the last command's settings and service (the CLI runs in-process in tests)."""
    _INVOCATION.clear()


def settings() -> Settings:
    """This command's settings, read from the environment once (the composition root's)."""
    if "settings" not in _INVOCATION:
        from nim_pathway.settings import Settings

        _INVOCATION["settings"] = Settings.from_env()
    return _INVOCATION["settings"]


def service() -> Service:
    """This command's service, built once from its settings (imported here: --help and
    simple reads start fast)."""
    if "service" not in _INVOCATION:
        from nim_pathway.app import build_service

        _INVOCATION["service"] = build_service(settings=settings())
    return _INVOCATION["service"]


def current_actor(claimed: str | None) -> str:
    """Who is running this command, authenticated: a one-time code for `--as`, else this
    user's live `login` session (whose owner `--as` must match), else a code asked for."""

    code = (ONE_TIME_CODE or [""])[0].strip()
    if code:
        if not claimed:
            raise UserError("a one-time code needs --as HANDLE to say whose it is")
        return service().identity.authenticate(claimed, code)
    token = read_session_token()
    if token:
        return service().identity.session_actor(token, claimed)
    if claimed and sys.stdin.isatty():
        entered = typer.prompt(f"one-time code for {claimed}", hide_input=True)
        return service().identity.authenticate(claimed, entered)
    raise UserError("who is acting? Log in with `nim-pathway login --as HANDLE` (your "
                    "authenticator app's code), or give `--as HANDLE` with `nim-pathway --code "
                    "CODE ...`")


def read_session_token() -> str | None:
    """This user's session token, if a private session file holds one. A file that is a link,
    not a regular file, or readable by others is refused: `login` replaces it."""
    import stat

    from store.files import read_bounded

    path = settings().session_file
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise UserError(f"the session file {path} is not a private file of yours (a link, a "
                        "device, or readable by others); `nim-pathway login` replaces it")
    return read_bounded(path, "NIM_SESSION_FILE", limit=4096).decode(
        "utf-8", "replace").strip() or None


def readable(value: Any) -> str:  # noqa: ANN401 - any JSON-able view value
    """A view's value as a person reads it (`--json` keeps the machine form): no JSON
    brackets or nulls; lists one item after another, records as "key value" pairs."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        shown = [f"{k.replace('_', ' ')} {readable(v)}" for k, v in value.items()
                 if v not in (None, [], {}, "")]
        return "; ".join(shown) or "none"
    if isinstance(value, list | tuple):
        return "; ".join(readable(v).replace("; ", ", ") for v in value) or "none"
    return str(value)


def emit(rows: Any, as_json: bool, columns: list[str] | None = None, title: str = "",
         labels: dict[str, str] | None = None) -> None:
    """Print views as a table, or as JSON with `--json`. A terminal gets a Rich table; a pipe
    or a file gets tab-separated lines (header first), never cut to 80 columns. `labels`
    gives shorter headers for some columns."""
    from store.views import jsonable

    rows = jsonable(rows)
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    labels = labels or {}
    if isinstance(rows, dict):
        pairs = [(k.replace("_", " "), readable(v)) for k, v in rows.items()]
        header, body = None, [list(p) for p in pairs]
    else:
        columns = columns or (list(rows[0]) if rows else [])
        header = [labels.get(c, c) for c in columns]
        body = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    if not sys.stdout.isatty():
        lines = ([f"# {title}"] if title else []) + ([header] if header else []) + body
        for line in lines:
            typer.echo(line if isinstance(line, str) else
                       "\t".join(" ".join(cell.split()) for cell in line))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title, show_header=header is not None)
    for c in header or ["", ""]:
        # identifiers (a task, a case, a date) stay whole and other columns wrap around them;
        # only a terminal too narrow even for those folds one, never cutting it
        whole = c in ("task", "case", "ref", "due", "key", "handle", "date", "state")
        table.add_column(c, overflow="fold", no_wrap=whole, ratio=None if whole else 1)
    for line in body:
        table.add_row(*line)
    console.print(table)
    if not rows:
        console.print("(none)")


def show_markdown(text: str) -> None:
    """A report written as Markdown: rendered by Rich in a terminal, the text itself
    otherwise (a file, a pipe, an email)."""
    if not sys.stdout.isatty():
        typer.echo(text)
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(text))


# The dates a command takes: anything outside is a typo (a case's own rules narrow it further).
EARLIEST, LATEST = date(1900, 1, 1), date(2199, 12, 31)


def parse_date(value: str, what: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{what} {value!r} is not an ISO date like 2026-03-02") from None
    if not EARLIEST <= day <= LATEST:
        raise UserError(f"{what} {day} is outside {EARLIEST.year}-{LATEST.year}; check the year")
    return day


def report(result: Result, svc: Service | None = None, since: int = 0) -> None:
    """Print what a command did, then bring Prefect up to date if it is configured (`since`:
    the newest journal entry before the command, so its own entries can be told apart)."""
    typer.echo(result.message)
    for e in result.effects:
        if e.kind in ("stage-entered", "task-unlocked", "decision-recorded", "case-closed",
                      "task-redated"):
            bits = " ".join(f"{k}={v}" for k, v in e.detail.items())
            typer.echo(f"  {e.kind} {e.task or ''} {bits}".rstrip())
    if svc is None or not result.ref:
        return
    from orchestration.prefect_api import OrchestrationUnavailable
    from orchestration.sync import orchestrate_after

    try:
        typer.echo(orchestrate_after(svc, result.ref, since))
    except OrchestrationUnavailable as exc:
        typer.echo(f"warning: {exc}", err=True)
    except Exception as exc:  # noqa: BLE001 - the case store change stands whatever Prefect says
        from models.redaction import scrub_text

        typer.echo(f"warning: saved in the case store, but updating Prefect failed "
                   f"({exc.__class__.__name__}: {scrub_text(str(exc))[:200]}); orchestration "
                   "is pending: the next sweep applies it (or `nim-pathway drain`)", err=True)


def run(command: Callable[[Service], Result]) -> None:
    """Run a write command (given the service, it picks the command group), print what it
    did, then bring Prefect up to date."""
    svc = service()
    since = svc.queries.newest_change()
    report(command(svc), svc, since)


MAX_FILE_BYTES = 256_000  # a referral or an outcome is a few kilobytes
MAX_NESTING = 10  # a referral's deepest field (children, a child's placement) is 4 levels down


def load_data_file(path: Path) -> dict:
    """A referral or outcome file (JSON or YAML): a mapping of fields, or a one-line refusal
    saying what is wrong with the file."""
    if not path.is_file():
        raise UserError(f"referral file {path} does not exist")
    import yaml

    from models.nesting import too_deeply_nested

    try:
        text = _read_input(path).decode("utf-8")
        if too_deeply_nested(text):
            raise RecursionError
        data = yaml.safe_load(text)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid JSON/YAML{where}: {why}") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply; give a mapping of fields") from None
    except ValueError as exc:  # a value YAML cannot build, e.g. the date 2025-02-30
        raise UserError(f"{path}: {exc}; check the dates and numbers in the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a referral must be a mapping of fields")
    if _depth(data) > MAX_NESTING:
        raise UserError(f"{path}: nested more than {MAX_NESTING} levels deep; give a mapping of "
                        "fields")
    return data


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest, visiting each once (no recursion, and YAML aliases
    that repeat a list are not walked again: the file may be hostile)."""
    deepest, stack, seen = 0, [(data, 1)], set()
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level <= MAX_NESTING and isinstance(item, dict | list) and id(item) not in seen:
            seen.add(id(item))
            stack += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


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

    from models.redaction import mask_url, scrub_text

    url = mask_url(settings().database_url)  # never a password, in the userinfo or the query
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = scrub_text(re.sub(r"^\((?:[\w.]+)\) ", "", reason))
    return (f"the case store at {url} is unavailable ({reason}). Check NIM_DATABASE_URL and "
            "that the database is running; nothing was changed.")


def fail(message: str) -> None:
    typer.echo(f"error: {printable(message, keep_newlines=True)}", err=True)
    sys.exit(2)


def command_words(argv: list[str], root: typer.Typer) -> list[str]:
    """The command run (`case open`) of the app `root`, from its words only: no option,
    argument or value (a `--code`, a name, a path) ever reaches the error log."""
    group: Any = typer.main.get_command(root)
    words: list[str] = []
    for arg in argv[:6]:
        if len(words) == 2 or not isinstance(getattr(group, "commands", None), dict):
            break
        if arg.startswith("-"):
            continue  # the root option's value (`--code 123456`) is never a command name
        if arg not in group.commands:
            if words:
                break
            continue
        words.append(arg)
        group = group.commands[arg]
    return words


_DATA_LAYER = ("sqlalchemy.", "psycopg", "sqlite3", "pydantic", "yaml.")


def scrubbed_message(exc: BaseException) -> str:
    """An exception's message without the values it may quote: a validation error gives its
    locations and error types; a database error its class and SQLSTATE (SQL parameters and
    `DETAIL` lines can carry names, dates of birth, addresses); anything else its first line
    with quoted text, numbers, dates and URLs masked."""
    import re

    from models.redaction import scrub_text

    module = type(exc).__module__ or ""
    if hasattr(exc, "errors") and module.startswith("pydantic"):
        try:
            return printable(scrub_text("; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '-'} ({e['type']})"
                for e in exc.errors())))[:500]
        except Exception:  # noqa: BLE001 - a log line must never fail
            return "(validation error)"
    orig = getattr(exc, "orig", None)
    if orig is not None or module.startswith(_DATA_LAYER):
        code = next((getattr(e, a) for e in (orig, exc) for a in ("sqlstate", "pgcode",
                     "sqlite_errorname") if e is not None and getattr(e, a, None)), None)
        inner = (f"{type(orig).__module__}.{type(orig).__qualname__}".removeprefix("builtins.")
                 if orig is not None else "")
        return " ".join(bit for bit in (f"from {inner}" if inner else "",
                                        f"sqlstate {code}" if code else "") if bit) or "-"
    text = (str(exc).strip().splitlines() or ["-"])[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\[[^\]]*\]|\{[^}]*\}", "…",
                  scrub_text(text))
    text = re.sub(r"\d[\d\-/:.T]*", "#", text)
    return printable(text[:200])


def crash_record(exc: BaseException, argv: list[str], root: typer.Typer) -> str:
    """One error-log entry: when, the command, the exception types, scrubbed messages and the
    frames (file:line in function), never locals, arguments or SQL parameters."""
    import traceback
    from datetime import UTC, datetime

    try:
        command = " ".join(command_words(argv, root)) or "-"
    except Exception:  # noqa: BLE001 - a log line must never fail
        command = "?"
    lines = [f"--- {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} nim-pathway {command}"]
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for n, err in enumerate(chain):
        kind = f"{type(err).__module__}.{type(err).__qualname__}".removeprefix("builtins.")
        try:
            message = scrubbed_message(err)
        except Exception:  # noqa: BLE001 - a log line must never fail
            message = "?"
        lines.append(f"{'caused by ' if n else ''}{kind}: {message}")
        for frame in traceback.extract_tb(err.__traceback__):
            where = Path(frame.filename)
            short = "/".join(where.parts[-2:]) if len(where.parts) > 1 else where.name
            lines.append(f"  {short}:{frame.lineno} in {frame.name}")
    return "\n".join(lines) + "\n"


def _read_input(path: Path) -> bytes:
    """An input file's bytes: a regular file of at most MAX_FILE_BYTES (never /dev/zero)."""
    from models.errors import ConfigError
    from store.files import read_bounded

    try:
        return read_bounded(path, "the input file", limit=MAX_FILE_BYTES)
    except ConfigError as exc:
        if "larger than" in str(exc):
            raise UserError(f"{path}: larger than {MAX_FILE_BYTES // 1000} kB; a referral or an "
                            "outcome is a few kilobytes") from None
        raise UserError(str(exc).removesuffix(". Nothing was changed")) from None


def internal(exc: Exception, root: typer.Typer) -> None:
    from store.files import append_private

    try:
        log = settings().data_dir / "errors.log"
        append_private(log, crash_record(exc, sys.argv[1:], root))
        where = f"details in {log}"
    except OSError as err:
        where = f"the error log could not be written ({err.strerror})"
    typer.echo(f"internal error ({type(exc).__name__}); {where}. Nothing was "
               "half-written: each command is one transaction.", err=True)
    sys.exit(1)

