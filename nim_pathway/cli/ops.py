"""`nim-pathway audit|outbox|notify|retention …` and the operator commands: the audit chain,
notifications, erasure, the local stack, sweep and reconcile."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from nim_pathway.cli.io import ActorOpt, JsonOpt, UserError, emit, service, settings

audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)
outbox_app = typer.Typer(help="Queued and sent notifications.", no_args_is_help=True)
notify_app = typer.Typer(help="Check notification targets.", no_args_is_help=True)
retention_app = typer.Typer(help="Records past their retention date.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(checkpoint: Annotated[list[str] | None, typer.Option(
        "--checkpoint", metavar="FILE",
        help="a copy of a checkpoint kept outside the database (the admin message or the "
             "Prefect artifact `audit-checkpoint`, pasted into a file); repeatable")] = None,
        prefect: Annotated[bool, typer.Option(
            "--prefect", help="also check against the audit-checkpoint artifacts Prefect "
                              "holds (read from its API)")] = False,
                 ) -> None:
    """Check the hash chain with the audit key and against the latest checkpoint (the local
    file and each --checkpoint copy): an edited, inserted or deleted row, a recomputed chain
    and a truncated tail are reported."""
    from pathlib import Path

    from models.errors import ConfigError
    from store.audit import parse_checkpoints
    from store.files import read_bounded

    external: list[dict] = []
    for name in checkpoint or []:
        try:
            pasted = read_bounded(Path(name), "the checkpoint file").decode("utf-8", "replace")
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        found = parse_checkpoints(pasted)
        if not found:
            raise UserError(f"{name} holds no audit checkpoint: paste the JSON line from the "
                            "admin message or the Prefect artifact `audit-checkpoint` into it "
                            "(it starts {\"db\": ...)")
        external += found
    if prefect:
        from orchestration.prefect_api import published_checkpoints

        copies = [c for text in published_checkpoints(settings()) for c in parse_checkpoints(text)]
        if not copies:
            raise UserError("Prefect holds no audit-checkpoint artifact yet: the sweep "
                            "publishes one when the log has moved (at most daily)")
        external += copies
    problems = service().queries.verify_audit(external)
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("audit chain intact" + (f" and matches {len(external)} checkpoint copy(ies)"
                                       if external else ""))


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Print the audit log's signed head as one JSON line: keep it where the database's owner
    cannot change it, and check the log against it later with `audit verify --checkpoint`."""
    import json

    from store.audit import head_entry

    svc = service()
    with svc.ctx.read() as session:
        entry = head_entry(session, svc.url, svc.ctx.audit_key, svc.ctx.now())
    if entry is None:
        raise UserError("the audit log is empty: nothing to checkpoint yet")
    typer.echo(json.dumps(entry))


@retention_app.command("review")
def retention_review(actor: ActorOpt, as_json: JsonOpt = False) -> None:
    """Cases past their retention date (75th birthday; 100 years after adoption)."""
    svc = service()
    svc.admin.permit_read(actor, "review-retention", doing="review retention")
    emit(svc.queries.retention_review(), as_json, ["case", "basis", "retain_until", "closed_on"],
         title="Past retention")


def erase(ref: str, actor: ActorOpt,
          reason: Annotated[str, typer.Option(help="why, if before the retention date")] = "",
          ) -> None:
    """Remove a case's identity; the pathway record and the audit of the erasure remain."""
    typer.echo(service().admin.erase(ref, actor, reason).message)


def up(
    seed: Annotated[bool, typer.Option(help="add the demo practitioners")] = False,
) -> None:
    """Start the local stack: Prefect server, work pool, deployments, worker."""
    from nim_pathway.stack import LocalStack

    url = LocalStack(settings()).up()
    if seed:
        from nim_pathway.demo import seed_team

        seed_team(service(), settings().inbox_ports[0])  # their messages go to the local inbox
    typer.echo(f"Prefect UI: {url}  (stop with `nim-pathway down`)")


def down() -> None:
    """Stop the local stack (worker first, then server)."""
    from nim_pathway.stack import LocalStack

    stopped = LocalStack(settings()).down()
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def status(as_json: JsonOpt = False) -> None:
    """The deployment the environment points at: Prefect's API, the work pool (NIM_WORK_POOL)
    and its workers, the deployments, recent failed runs, the case store, the outbox and the
    orchestration journal; and the local stack if `nim-pathway up` runs it. URLs are masked.
    Exits 1 when something needs fixing (listed under problems)."""
    from nim_pathway.health import gather

    health = gather(settings())
    if as_json:
        emit(health.as_dict(), True)
    else:
        _print_health(health.facts)
        for problem in health.problems:
            typer.echo(f"problem: {problem}", err=True)
    if health.problems:
        raise typer.Exit(1)


def _print_health(facts: dict[str, Any]) -> None:
    """One indented block per section (nested dicts and lists of workers or runs)."""

    def show(value: Any, depth: int) -> None:  # noqa: ANN401 - JSON-like
        pad = "  " * depth
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict | list) and v:
                    typer.echo(f"{pad}{k}:")
                    show(v, depth + 1)
                else:
                    typer.echo(f"{pad}{k}: {'-' if v in (None, [], {}) else v}")
        else:
            for item in value:
                typer.echo(f"{pad}- " + ", ".join(f"{k}: {v}" for k, v in item.items())
                           if isinstance(item, dict) else f"{pad}- {item}")

    show(facts, 0)


def doctor(timeout: Annotated[float, typer.Option(
        min=5, max=1800, help="seconds to wait for a worker to run the probe")] = 120,
           notify: Annotated[bool, typer.Option(
               help="send a test message to the admin targets")] = True) -> None:
    """Check the deployment end to end: what `status` checks, then a probe run (the `check`
    deployment) that a worker must pick up and finish against the case store, then a test
    message to the admin targets. Exits 1 with what to fix."""
    from nim_pathway.health import gather, notify_admins, probe_run

    health = gather(settings())
    for line in health.problems:
        typer.echo(f"problem: {line}", err=True)
    problems = list(health.problems)
    if health.facts.get("prefect", {}).get("state") == "healthy":
        ok, said = probe_run(settings(), timeout)
        (typer.echo if ok else lambda m: typer.echo(f"problem: {m}", err=True))(said)
        problems += [] if ok else [said]
    if notify:
        ok, said = notify_admins(settings())
        (typer.echo if ok else lambda m: typer.echo(f"problem: {m}", err=True))(said)
        problems += [] if ok else [said]
    if problems:
        typer.echo(f"{len(problems)} problem(s) to fix (docs/DEPLOY.md)", err=True)
        raise typer.Exit(1)
    typer.echo("deployment healthy")


def _prefect_or_refuse(doing: str, wait: bool = False) -> None:
    from orchestration.prefect_api import check_reachable

    url = settings().prefect_api_url
    if url is None:
        raise UserError(f"no Prefect to {doing}: start the stack (`nim-pathway up`) or set "
                        "PREFECT_API_URL")
    if not wait:
        check_reachable(url)


def reconcile(ref: Annotated[list[str] | None, typer.Argument(help="cases (default: all)")] = None,
              ) -> None:
    """Audit Prefect against the case store and repair the cases that differ (after an outage
    or a lost Prefect database; runs nightly)."""
    from rich.progress import Progress

    from orchestration.reconcile import reconcile as do_reconcile

    _prefect_or_refuse("reconcile with")
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        phases: dict[str, Any] = {}

        def tell(phase: str, done: int, total: int) -> None:
            if phase not in phases:
                phases[phase] = bar.add_task(phase, total=total)
            bar.update(phases[phase], completed=done, total=total)

        synced = do_reconcile(service(), ref or None, progress=tell)
    for report in synced:
        typer.echo(report.summary())
    if not synced:
        typer.echo("every case's runs match the case store")


def drain(limit: Annotated[int, typer.Option(min=1, max=5000, help="changes per batch")] = 200,
          follow: Annotated[bool, typer.Option(
              "--follow", help="keep running as the sync service: apply each change as it is "
              "written (commands then wait for it instead of importing Prefect)")] = False,
          ) -> None:
    """Sync the cases changed since the last sweep (the orchestration journal), as each sweep
    does; changes Prefect could not take wait for the next one. With --follow, run until
    stopped (Ctrl-C or SIGTERM) as the sync service the local stack starts."""
    from orchestration.drain import drain_journal, serve_journal

    _prefect_or_refuse("sync with", wait=follow)  # a service waits for Prefect to come up
    if follow:
        import signal
        import threading

        from store.journal import ServiceRunning

        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            serve_journal(service(), stop, log=lambda line: typer.echo(line, err=True))
        except ServiceRunning as exc:
            raise UserError(f"{exc}; stop it first, or leave it running") from None
        return
    report = drain_journal(service(), limit)
    typer.echo(f"{report.applied} change(s) applied over {report.cases} case(s); "
               f"{report.failed} waiting")
    for error in report.errors[:20]:
        typer.echo(f"warning: {error}", err=True)


def sweep(at: Annotated[str | None, typer.Option(help="fire as of this instant (ISO)")] = None,
          dispatch: Annotated[bool, typer.Option(help="deliver the queued messages too")] = True,
          ) -> None:
    """Fire due timers into the outbox (reminders, escalations, clock warnings), then deliver."""
    from models.clock import VirtualClock, parse_instant

    try:
        instant = parse_instant(at) if at else None
    except ValueError as exc:
        raise UserError(str(exc)) from None

    days = settings().intake_days  # settings are read before anything is written
    svc = service()
    if dispatch:
        svc.notify_config()  # a bad notification config is refused before anything is written
    fired = svc.timers.fire_due_timers(instant)
    expired = svc.admin.expire_intakes(days)
    if expired:
        typer.echo(f"deleted {expired} staged referral(s) never opened in {days} days")
    for t in fired:
        typer.echo(f"{t.kind:<13} {t.ref} {t.task or (t.detail or {}).get('clock', '')} "
                   f"-> {t.role}")
    typer.echo(f"fired {len(fired)} timer(s)")
    if dispatch:

        clock = VirtualClock(instant) if instant else svc.clock
        done = svc.dispatcher(clock).run_until_idle()
        typer.echo(f"delivered {done.sent}, failed {done.failed} (will retry), "
                   f"dead-lettered {done.dead}, deferred {done.deferred}")


@outbox_app.command("list")
def outbox_list(actor: ActorOpt,
                failed: Annotated[bool, typer.Option(help="only failing or dead")] = False,
                as_json: JsonOpt = False) -> None:
    """Messages queued, sent, failing or dead-lettered (newest first)."""
    from notifications.outbox import outbox_listing

    svc = service()
    svc.admin.permit_read(actor, "administer-outbox", doing="list the outbox")
    emit(outbox_listing(svc.queries, failed), as_json,
         ["id", "kind", "case", "recipient", "status", "subject", "preview", "attempts",
           "last_error", "sent_at"])


@outbox_app.command("retry")
def outbox_retry(message_id: int, actor: ActorOpt) -> None:
    """Queue a failing or dead-lettered message again."""
    if not 1 <= message_id < 2**63:  # the ids `outbox list` shows
        raise UserError(f"no outbox message {message_id}; `nim-pathway outbox list` shows them")
    typer.echo(service().admin.retry_message(message_id, actor).message)


@outbox_app.command("dispatch")
def outbox_dispatch() -> None:
    """Deliver what is due in the outbox now."""

    svc = service()
    done = svc.dispatcher().run_until_idle()
    typer.echo(f"delivered {done.sent}, failed {done.failed} (will retry), "
               f"dead-lettered {done.dead}, deferred {done.deferred}")
    for err in sorted(set(done.errors))[:10]:
        typer.echo(f"  {err}", err=True)


@notify_app.command("test")
def notify_test(to: Annotated[str, typer.Option(
        help="an Apprise URL, a named target like email:you@example.org, or a practitioner")],
) -> None:
    """Send a test message to a target and say whether it arrived."""
    from notifications.dispatcher import apprise_send
    from notifications.render import fit_for_channel, is_email, render_message

    config = service().notify_config()
    contact = to
    if "://" not in to and ":" not in to:  # a practitioner handle
        known = {p.handle: p.contact for p in service().queries.practitioners()}
        if to not in known:
            raise UserError(f"{to!r} is neither a target URL, a named target nor a practitioner")
        contact = known[to]
    try:
        name, url = config.resolve(f"practitioner:{to}", contact)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if "://" in to:
        name = f"the {to.split('://', 1)[0]} target"  # never echo a URL: it may hold a secret
    from models.redaction import mask_url

    msg = render_message("test", {"case_ref": "TEST", "link": config.ui_url,
                                  "recipient": mask_url(to), "dedupe_key": "notify-test"})
    title, body = fit_for_channel(url, msg)
    error = apprise_send(url, title, body, is_email(url), None)
    if error:
        raise UserError(f"test message to {name} failed: {error}")
    typer.echo(f"test message delivered to {name}")


def demo(
    profile: Annotated[str, typer.Option(help="england or scotland")] = "england",
    no_treatment: Annotated[bool, typer.Option(help="take the D1 no-treatment branch")] = False,
    stack: Annotated[bool, typer.Option(help="then start the local stack with a live case")]
    = False,
    code_for: Annotated[str | None, typer.Option(
        help="print a demo practitioner's one-time code now (their simulated phone; demo "
             "site only)")] = None,
) -> None:
    """Drive a demo case through the whole pathway in virtual time and print its timeline;
    with --stack, then bring up Prefect and leave a live case waiting for people."""
    from nim_pathway.demo import demo_code, run_demo, run_live_demo

    if code_for:
        typer.echo(demo_code(settings(), code_for))
        return

    run_demo(settings(), profile, no_treatment)
    if stack:
        run_live_demo(settings())




def inbox(handle: Annotated[str | None, typer.Argument(
        help="a practitioner's handle, or admin for dead-letter alerts (default: all)")] = None,
          as_json: JsonOpt = False) -> None:
    """The local inbox (demo and local stack): the messages sent to HANDLE, newest first,
    with subject, time and body. The stack also serves them as a web page per practitioner."""
    from nim_pathway.cli.io import printable
    from notifications.inbox import ADMIN_BOX, InboxStore, shown_time

    store = InboxStore(settings().inbox_dir)
    if handle is not None:
        known = {p.handle for p in service().queries.practitioners()} | {ADMIN_BOX}
        if handle not in known | store.boxes():
            raise UserError(f"no practitioner {handle[:60]!r}; `nim-pathway practitioner list` "
                            "shows them (admin holds the dead-letter alerts)")
    messages = store.messages(handle)
    if as_json:
        from dataclasses import asdict

        emit([asdict(m) for m in messages], True)
        return
    if not messages:
        typer.echo(f"no messages{f' for {handle}' if handle else ''} in the local inbox "
                   f"(127.0.0.1:{settings().inbox_ports[0]}; the demo and `nim-pathway up` send there)")
    for m in messages:
        typer.echo(f"{shown_time(m.received_at)}  to {printable(', '.join(m.to))}  "
                   f"{printable(m.subject)}")
        for line in printable(m.body, keep_newlines=True).splitlines():
            typer.echo(f"    {line}")
        typer.echo("")
