"""`nim-pathway init|login|logout|whoami`, `practitioner …` and `pathway …`: who may act, how
they prove it, and which pathway versions cases open on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nim_pathway.cli.io import (
    ONE_TIME_CODE,
    ActorOpt,
    JsonOpt,
    UserError,
    emit,
    pydantic_problems,
    read_session_token,
    service,
)

if TYPE_CHECKING:
    from models.schemas import PractitionerIn
    from nim_pathway.commands.identity import Enrolment

prac_app = typer.Typer(help="Practitioners: add, update, change role, deactivate, enrol, "
                            "unlock (admin only).", no_args_is_help=True)
pathway_app = typer.Typer(help="Installed pathway versions (cases open only on these).",
                          no_args_is_help=True)

keys_app = typer.Typer(help="The site's keys (the operator, on the service's host).",
                       no_args_is_help=True)

RoleOpt = Annotated[str, typer.Option(help="a role from an installed pathway, or admin")]
NameOpt = Annotated[str, typer.Option(help="display name")]
TeamOpt = Annotated[str, typer.Option()]
ContactOpt = Annotated[str | None, typer.Option(
    help="named target (email:you@nhs.net) or Apprise URL without secrets")]


def _practitioner(handle: str, role: str, name: str, team: str,
                  contact: str | None) -> PractitionerIn:
    from pydantic import ValidationError

    from models.schemas import PractitionerIn

    try:
        return PractitionerIn(handle=handle, display_name=name, role=role, team=team,
                              contact=contact)
    except ValidationError as exc:
        raise UserError("invalid practitioner: " + pydantic_problems(exc)) from None


def show_enrolment(enrolment: Enrolment) -> None:
    """The QR code for an authenticator app, and the key for typing in; shown once, to the
    first admin at `init` (everyone else enrols at the workbench's /enrol page)."""
    import segno

    typer.echo(f"\nEnrol {enrolment.handle}'s authenticator app (any RFC 6238 app): scan this, "
               "or type the key. It is shown once; an admin can enrol again if it is lost.\n")
    segno.make(enrolment.uri, error="m").terminal(compact=True)
    typer.echo(f"key: {enrolment.secret}\n")


@prac_app.command("add")
def practitioner_add(handle: str, role: RoleOpt, name: NameOpt, actor: ActorOpt,
                     team: TeamOpt = "nim", contact: ContactOpt = None) -> None:
    """Register a practitioner (admin only); a one-time enrolment code goes to their own
    contact, and they enrol at the workbench's /enrol page: nobody else sees their key."""
    typer.echo(service().admin.add_practitioner(
        _practitioner(handle, role, name, team, contact), actor).message)


@prac_app.command("role")
def practitioner_role(handle: str, role: Annotated[str, typer.Argument(help="the new role")],
                      actor: ActorOpt) -> None:
    """Change a practitioner's role (admin only; audited with before and after). A manager or
    admin role waits for a second admin's `approve-role`; with no second admin it is given at
    once and the person, every manager and the admins are told."""
    typer.echo(service().admin.change_role(handle, role, actor).message)


@prac_app.command("approve-role")
def practitioner_approve_role(handle: str,
                              role: Annotated[str, typer.Argument(help="the role asked for")],
                              actor: ActorOpt) -> None:
    """Approve a manager or admin role another admin asked for (a second admin only: not
    whoever asked, nor the person); only then is it given. Audited; everyone is told."""
    typer.echo(service().admin.approve_role(handle, role, actor).message)


@prac_app.command("update")
def practitioner_update(
    handle: str, actor: ActorOpt,
    contact: Annotated[str | None, typer.Option(
        help="named target (email:you@nhs.net) or Apprise URL without secrets; '' removes "
             "it")] = None,
    digest: Annotated[bool | None, typer.Option(
        "--digest/--no-digest", help="reminders in one daily digest, or one by one")] = None,
    active: Annotated[bool | None, typer.Option(
        "--active/--inactive", help="may act, or not (their sessions end)")] = None,
) -> None:
    """Change a practitioner's contact, digest or whether they may act (admin only; audited
    with what changed, contacts masked)."""
    typer.echo(service().admin.update_practitioner(handle, actor, contact, digest,
                                                   active).message)


@prac_app.command("deactivate")
def practitioner_deactivate(handle: str, actor: ActorOpt,
                            reason: Annotated[str, typer.Option(help="why")] = "") -> None:
    """Stop a practitioner acting (left, long leave); their sessions end at once."""
    typer.echo(service().admin.deactivate(handle, actor, reason).message)


@prac_app.command("enrol")
def practitioner_enrol(handle: str, actor: ActorOpt) -> None:
    """Enrol a practitioner's authenticator again (a lost phone): old codes stop working and
    a one-time enrolment code goes to their own contact (never shown here)."""
    typer.echo(service().identity.reenrol(handle, actor).message)


@prac_app.command("unlock")
def practitioner_unlock(handle: str, actor: ActorOpt) -> None:
    """Lift the wait on a practitioner slowed after repeated wrong codes (admin only)."""
    typer.echo(service().identity.unlock(handle, actor).message)


@prac_app.command("recover-admin")
def practitioner_recover_admin(
        handle: str,
        reason: Annotated[str, typer.Option(help="who asked and why (audited)")] = "") -> None:
    """Break glass (operator only, on the service's host): send an admin a new enrolment
    code at their own contact and lift any wait when no admin can sign in; audited with the
    reason. The operator never sees the admin's key."""
    typer.echo(service().identity.recover_admin(handle, reason).message)


@prac_app.command("list")
def practitioner_list(as_json: JsonOpt = False) -> None:
    """Registered practitioners (contacts with any credential masked)."""
    from dataclasses import replace

    from models.redaction import mask_url

    emit([replace(p, contact=mask_url(p.contact)) for p in service().queries.practitioners()],
         as_json,
         ["handle", "display_name", "role", "team", "active", "enrolled", "locked"])


@keys_app.command("split-totp")
def keys_split_totp() -> None:
    """Once, for a site from before the TOTP key: make the TOTP key (NIM_TOTP_KEY_FILE, else
    totp.key in the data folder) if it is missing and move every enrolled second factor from
    the secret key to it. Then only the workbench and the worker need it (docs/DEPLOY.md)."""
    from nim_pathway.cli.io import settings

    if settings().make_totp_key():
        typer.echo(f"made the TOTP key {settings().totp_key_path} (0600): back it up with the "
                   "other keys")
    typer.echo(service().identity.split_totp_key().message)


@pathway_app.command("install")
def pathway_install(file: Annotated[Path, typer.Argument(help="a reviewed pathway YAML")],
                    actor: ActorOpt) -> None:
    """Install a reviewed pathway version (admin only): validated, hashed and audited; new
    cases on its profile open on it, open cases keep theirs."""
    typer.echo(service().identity.install_pathway(file, actor).message)


@pathway_app.command("list")
def pathway_list(as_json: JsonOpt = False) -> None:
    """Installed pathway versions, newest first."""
    emit(service().queries.installed_pathways(), as_json,
         ["profile", "version", "sha256", "installed_by", "installed_at"])


def init(
    admin: Annotated[str, typer.Option(help="the first admin's handle, e.g. it.admin")],
    name: NameOpt,
    team: TeamOpt = "it",
    contact: ContactOpt = None,
) -> None:
    """Set up a new site once: the first admin (with their one-time codes) and the pathways
    shipped with this release. Afterwards only an admin adds people."""
    result, enrolment = service().identity.init_site(
        _practitioner(admin, "admin", name, team, contact))
    typer.echo(result.message)
    show_enrolment(enrolment)
    typer.echo(f"Next: `nim-pathway login --as {admin}`, then `nim-pathway practitioner add`.")


def login(
    actor: Annotated[str, typer.Option("--as", envvar="NIM_ACTOR", help="your handle")],
    code: Annotated[str | None, typer.Option(help="the code your app shows (else asked)")]
    = None,
) -> None:
    """Start a short-lived session (NIM_SESSION_MINUTES, 60) so each command needs no code."""
    import sys

    from nim_pathway.cli.io import settings
    from store.files import private_dir, write_private

    entered = code or (ONE_TIME_CODE or [""])[0]
    if not entered and not sys.stdin.isatty():
        raise UserError("give the code your authenticator app shows: --code 123456")
    entered = entered or typer.prompt(f"one-time code for {actor}", hide_input=True)
    token = service().identity.login(actor, entered, settings().session_minutes)
    path = settings().session_file
    private_dir(path.parent, "the session folder (NIM_SESSION_FILE)")
    write_private(path, token.token.encode(), "NIM_SESSION_FILE")  # a new 0600 file, never through a link
    typer.echo(f"logged in as {token.handle} until {token.expires_at:%H:%M} "
               f"({settings().session_minutes} minutes)")


def logout() -> None:
    """End this user's CLI session."""
    from nim_pathway.cli.io import settings

    token = read_session_token()
    message = service().identity.logout(token).message if token else "not logged in"
    settings().session_file.unlink(missing_ok=True)
    typer.echo(message)


def whoami() -> None:
    """Who this user's CLI session says they are."""
    token = read_session_token()
    if not token:
        raise UserError("not logged in; `nim-pathway login --as HANDLE`")
    typer.echo(service().identity.session_actor(token))
