"""`nim-pathway case …`, `deadline` and `decide`: open and inspect cases, key dates, gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nim_pathway.cli.io import (
    ActorOpt,
    ChildOpt,
    JsonOpt,
    UserError,
    emit,
    load_data_file,
    parse_date,
    pydantic_problems,
    report,
    run,
    service,
    split_pair,
)

case_app = typer.Typer(help="Open and inspect cases.", no_args_is_help=True)


def deadline(
    jurisdiction: Annotated[str, typer.Option(help="england-and-wales, scotland, northern-ireland")],
    from_: Annotated[str, typer.Option("--from", help="anchor date (ISO)")],
    working_days: Annotated[int | None, typer.Option(help="N-th working day after the anchor")] = None,
    days: Annotated[int | None, typer.Option(help="calendar days")] = None,
    weeks: Annotated[int | None, typer.Option(help="weeks")] = None,
    months: Annotated[int | None, typer.Option(help="calendar months")] = None,
    explain: Annotated[bool, typer.Option(help="say how the date was reached")] = False,
    kind: Annotated[str, typer.Option(help="maximum (a legal limit: pulled back to a working "
                                           "day), target (rolls forward) or exact")] = "exact",
    day_one: Annotated[bool, typer.Option(help="the anchor is day 1 ('N weeks beginning with')")]
    = False,
) -> None:
    """Compute a due date; the ISO date is always the last line."""
    from models.calendar import ADJUST_FOR_KIND, MAX_AMOUNT, WorkingCalendar, compute_due
    from nim_pathway.cli.io import settings

    if kind not in ADJUST_FOR_KIND:
        raise UserError(f"--kind must be one of {', '.join(ADJUST_FOR_KIND)}")

    given = {k: v for k, v in dict(working_days=working_days, days=days, weeks=weeks,
                                    months=months).items() if v is not None}
    if len(given) != 1:
        raise UserError("give exactly one of --working-days, --days, --weeks, --months")
    (unit, amount), = given.items()
    if abs(amount) > MAX_AMOUNT[unit]:
        raise UserError(f"--{unit.replace('_', '-')} must be between -{MAX_AMOUNT[unit]} and "
                        f"{MAX_AMOUNT[unit]} (about five years)")
    anchor = parse_date(from_, "--from")
    due = compute_due(WorkingCalendar(jurisdiction, settings().closure_days), anchor, amount, unit,
                      adjust=ADJUST_FOR_KIND[kind], day_one=day_one)
    if explain:
        typer.echo(due.explanation)
    typer.echo(due.due.isoformat())


@case_app.command("open")
def case_open(
    actor: ActorOpt,
    file: Annotated[Path | None, typer.Option(help="referral as JSON or YAML")] = None,
    jurisdiction: Annotated[str | None, typer.Option()] = None,
    site: Annotated[str | None, typer.Option()] = None,
    programme: Annotated[str | None, typer.Option(
        help="the programme the case is on: nim (default) or fdac")] = None,
    pathway: Annotated[str | None, typer.Option(
        help="profile: england, scotland, fdac-england (default: the programme's for the "
             "jurisdiction)")] = None,
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
    first_entry_to_care: Annotated[bool | None, typer.Option(
        "--first-entry-to-care/--not-first-entry-to-care",
        help="whether this is the child's first entry to care (asked by some programmes)")]
    = None,
    new_episode: Annotated[bool, typer.Option(
        "--new-episode", help="confirm a new episode for a child already on an open case "
        "(the referral's new_episode: true)")] = False,
) -> None:
    """Open a case from a referral file or flags. Prefer a file: flags land in shell history."""
    from pydantic import ValidationError

    from models.schemas import Referral

    data: dict[str, Any] = load_data_file(file) if file else {}
    flags = {"jurisdiction": jurisdiction, "site": site, "programme": programme,
             "pathway": pathway,
             "care_entry": care_entry, "referral": referral_date,
             "proceedings_issued": proceedings_issued, "first_entry_to_care": first_entry_to_care,
             "new_episode": new_episode or None}
    data.update({k: v for k, v in flags.items() if v is not None})
    child = {"given_name": given_name, "family_name": family_name, "date_of_birth": dob}
    if any(child.values()):
        data["child"] = {**data.get("child", {}), **{k: v for k, v in child.items() if v}}
    if caregiver:
        data["caregivers"] = [dict(zip(("relationship", "name"), split_pair(c), strict=True))
                              for c in caregiver]
    if placement:
        kind, start = split_pair(placement)
        data["placement"] = {"kind": kind, "start": start}
    if setting:
        pairs = [s.partition("=") for s in setting]
        bad = [s for s, (_, eq, v) in zip(setting, pairs, strict=True)
               if not eq or not (v.isascii() and v.isdigit() and len(v) < 10)]
        if bad:
            raise UserError(f"--setting must be NAME=N (whole number): {', '.join(bad)}")
        data["settings"] = {k: int(v) for k, _, v in pairs}
    try:
        referral = Referral.model_validate(data)
    except ValidationError as exc:
        raise UserError("invalid referral: " + pydantic_problems(exc)) from None
    svc = service()
    result = svc.cases.open_case(referral, actor)
    report(result, svc)
    warn_overdue(svc, result.ref)


def warn_overdue(svc: Any, ref: str) -> None:
    """A case can open with work already late (a visit due a week after a placement that
    began long before the referral): say so on the spot, not at the next sweep."""
    late = svc.queries.tasks(case=ref, overdue=True, state=None)
    if late:
        typer.echo(f"warning: {ref} opens with {len(late)} overdue task(s): "
                   + ", ".join(f"{t.task} (due {t.due})" for t in late), err=True)


@case_app.command("intake")
def case_intake(
    actor: ActorOpt,
    file: Annotated[Path, typer.Option(help="referral as JSON or YAML")],
) -> None:
    """Stage a referral for opening from the Prefect UI: prints the handle the form takes."""
    from pydantic import ValidationError

    from models.schemas import Referral

    try:
        referral = Referral.model_validate(load_data_file(file))
    except ValidationError as exc:
        raise UserError("invalid referral: " + pydantic_problems(exc)) from None
    handle = service().cases.stage_intake(referral, actor)
    typer.echo(f"staged referral {handle}: in the Prefect UI run deployment open-case/open-case "
               f"with intake={handle} and your handle as coordinator")
    typer.echo(handle)


@case_app.command("list")
def case_list(as_json: JsonOpt = False) -> None:
    """All cases with their stage."""
    emit(service().queries.cases(), as_json, ["ref", "stage", "jurisdiction", "site", "closed_on"])


@case_app.command("show")
def case_show(ref: str, as_json: JsonOpt = False) -> None:
    """A case's stage, dates, statutory clocks and open work (no identity)."""
    from store.views import jsonable

    view = service().queries.show(ref)
    if as_json:
        emit(view, True)
        return
    data = jsonable(view)
    clocks, open_tasks = data.pop("clocks"), data.pop("open_tasks")
    emit(data, False, title=ref)
    emit(clocks, False, ["title", "kind", "owner", "due", "state", "days_left"],
         title="Statutory clocks")
    emit(open_tasks, False, title="Open tasks")


@case_app.command("timeline")
def case_timeline(ref: str, as_json: JsonOpt = False) -> None:
    """Planned against actual for every task, decisions and stage starts."""
    emit(service().queries.timeline(ref), as_json, ["date", "event", "due", "status", "role"],
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
    hearing = parse_date(hearing_date, "--hearing-date") if hearing_date else None
    data = service().queries.forecast(ref, hearing, treatment_months)
    if as_json:
        emit(data, True)
        return
    emit(data.milestones, False, ["task", "title", "projected", "done"],
         title=f"{ref} forecast")
    emit(data.clocks, False, ["title", "due", "state"], title="Statutory clocks (projected)")
    for c in data.conflicts:
        typer.echo(f"CONFLICT: {c}")
    if not data.conflicts:
        typer.echo("no conflicts projected")


@case_app.command("move-date")
def case_move_date(
    ref: str, name: str, new_date: str, actor: ActorOpt,
    cause: Annotated[str, typer.Option(help="why: hearing adjourned, court extension, ...")] = "",
    category: Annotated[str, typer.Option(help="court, family, capacity or other")] = "court",
) -> None:
    """Set or move a key date (e.g. final_hearing); dependent deadlines are re-dated."""
    on = parse_date(new_date, "date")
    run(lambda svc: svc.cases.move_date(ref, name, on, cause, actor, category))


@case_app.command("placement")
def case_placement(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="foster, kinship, mother-and-baby, residential, home")],
    start: Annotated[str, typer.Option(help="date the new placement started")],
    reason: Annotated[str, typer.Option(help="why the child moved")],
    child: ChildOpt = None,
) -> None:
    """Record a child's placement change (their current placement ends that day; their
    visits start again)."""
    on = parse_date(start, "--start")
    run(lambda svc: svc.family.change_placement(ref, kind, on, reason, actor, child))


def decide(
    ref: str,
    decision: Annotated[str, typer.Argument(
        help="a decision of the case's pathway: d1 or d2 (NIM), trial-for-change, "
             "extended-trial or recommendation (FDAC)")],
    outcome: Annotated[str, typer.Argument(
        help="one of the decision's outcomes, e.g. d1: treatment, no_treatment; d2: "
             "return_home, kinship_care, adoption, long_term_foster_care, permanence_order "
             "(Scotland); trial-for-change: continue, extend, stop")],
    actor: ActorOpt,
    rationale: Annotated[str, typer.Option(help="why, for the record")] = "",
    child: ChildOpt = None,
) -> None:
    """Record a gate's decision: NIM's D1 (treatment or not) or D2 (the permanence
    recommendation; for one child of a sibling group with --child), FDAC's trial for change."""
    run(lambda svc: svc.cases.decide(ref, decision, outcome, actor, rationale, child))


@case_app.command("add-child")
def case_add_child(
    ref: str, actor: ActorOpt,
    given_name: Annotated[str, typer.Option(help="the child's given name (case store only)")],
    family_name: Annotated[str, typer.Option(help="the child's family name")],
    dob: Annotated[str, typer.Option(help="date of birth")],
    placement: Annotated[str | None, typer.Option(help="KIND:START, e.g. foster:2026-02-02")]
    = None,
    looked_after_from: Annotated[str | None, typer.Option(
        help="the day they became looked after (default: today); their first review counts "
             "from it")] = None,
    proceedings_issued: Annotated[str | None, typer.Option(
        help="their own application's issue date, if apart from the family's (its own 26 "
             "weeks and hearing window)")] = None,
) -> None:
    """Add a sibling to the family episode (a newborn, a child taken into care later): their
    own statutory work from their own dates, and the current stage's work."""
    from pydantic import ValidationError

    from models.schemas import ChildIn

    data: dict[str, Any] = {"given_name": given_name, "family_name": family_name,
                            "date_of_birth": dob}
    if placement:
        kind, start = split_pair(placement)
        data["placement"] = {"kind": kind, "start": start}
    for name, value in (("looked_after_from", looked_after_from),
                        ("proceedings_issued", proceedings_issued)):
        if value:
            data[name] = value
    try:
        child = ChildIn.model_validate(data)
    except ValidationError as exc:
        raise UserError("invalid child: " + pydantic_problems(exc)) from None
    run(lambda svc: svc.family.add_child(ref, child, actor))


@case_app.command("add-caregiver")
def case_add_caregiver(
    ref: str, actor: ActorOpt,
    relationship: Annotated[str, typer.Option(help="mother, father, parent, foster-carer, "
                                                   "kinship-carer")],
    name: Annotated[str | None, typer.Option(help="their name (case store only)")] = None,
    child: Annotated[list[str] | None, typer.Option(help="a child they care for (repeat); "
                                                         "all if none")] = None,
) -> None:
    """Add a caregiver identified late, or a new carer: asked for consent, then assessed."""
    run(lambda svc: svc.family.add_caregiver(ref, relationship, name, child or [], actor))


@case_app.command("link-caregiver")
def case_link_caregiver(
    ref: str, caregiver: str, actor: ActorOpt,
    child: Annotated[list[str] | None, typer.Option(help="a child they care for (repeat); "
                                                         "all if none")] = None,
) -> None:
    """Say which children a caregiver cares for; their relationship work follows."""
    run(lambda svc: svc.family.link_caregiver(ref, caregiver, child or [], actor))


@case_app.command("remove-child")
def case_remove_child(
    ref: str, child: str, actor: ActorOpt,
    reason: Annotated[str, typer.Option(help="why the child leaves the episode (no names)")],
) -> None:
    """A child leaves the family episode: their open work stops; the family goes on."""
    run(lambda svc: svc.family.remove_child(ref, child, reason, actor))


@case_app.command("remove-caregiver")
def case_remove_caregiver(
    ref: str, caregiver: str, actor: ActorOpt,
    reason: Annotated[str, typer.Option(help="why they left the case (no names)")],
) -> None:
    """A caregiver leaves the case: their open work stops."""
    run(lambda svc: svc.family.remove_caregiver(ref, caregiver, reason, actor))


@case_app.command("exit")
def case_exit(
    ref: str, actor: ActorOpt,
    reason: Annotated[str, typer.Option(help="one of the pathway's exits, e.g. disengaged, "
                                             "child-returned-home, proceedings-withdrawn")],
    note: Annotated[str, typer.Option(help="what happened (kept in the case store)")] = "",
) -> None:
    """The family leaves the pathway early: NIM's work stops, the LA's statutory work goes on
    where the exit says so, and the people it names are told."""
    run(lambda svc: svc.cases.exit_case(ref, reason, note, actor))


PersonOpt = Annotated[str | None, typer.Option(
    "--caregiver", help="only this caregiver's (or child's) work, e.g. father or child-2; "
                        "default: the whole family")]


@case_app.command("pause")
def case_pause(
    ref: str, actor: ActorOpt,
    reason: Annotated[str, typer.Option(help="why, e.g. parent in hospital (no names)")],
    caregiver: PersonOpt = None,
) -> None:
    """Pause NIM's work: its own targets stop until resumed; statutory limits never stop. With
    --caregiver, only the work about that caregiver (or child) stops."""
    run(lambda svc: svc.cases.pause(ref, reason, actor, caregiver))


@case_app.command("resume")
def case_resume(ref: str, actor: ActorOpt, caregiver: PersonOpt = None) -> None:
    """Resume NIM's work: open NIM tasks not yet due when the pause began move on by its
    length (work already late keeps its date). With --caregiver, that person's work only."""
    run(lambda svc: svc.cases.resume(ref, actor, caregiver))


@case_app.command("refer-out")
def case_refer_out(
    ref: str, actor: ActorOpt,
    service: Annotated[str, typer.Option(help="substance-use, domestic-abuse, "
                                              "adult-mental-health, parenting-support")],
    role: Annotated[str, typer.Option(help="the role that makes the referral")],
    by: Annotated[str | None, typer.Option(help="by when (default: 5 working days)")] = None,
    caregiver: Annotated[str | None, typer.Option(help="for whom, e.g. mother")] = None,
) -> None:
    """Refer a parent on to another service: a task for the role that makes the referral."""
    day = parse_date(by, "--by") if by else None
    run(lambda svc: svc.family.refer_out(ref, service, role, day, actor, caregiver))


@case_app.command("contact")
def case_contact(
    ref: str, actor: ActorOpt,
    caregiver: Annotated[str, typer.Option(help="the parent or carer, e.g. mother")],
    per_week: Annotated[float, typer.Option(help="sessions a week (0.5: fortnightly)")],
    start: Annotated[str, typer.Option(help="from when")],
    supervised: Annotated[bool, typer.Option("--supervised/--unsupervised")] = True,
    child: ChildOpt = None,
) -> None:
    """Record a contact arrangement between a child and a caregiver (replaces the last)."""
    on = parse_date(start, "--start")
    run(lambda svc: svc.family.record_contact(ref, child or "child-1", caregiver, per_week,
                                              supervised, on, actor))


@case_app.command("session")
def case_session(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="dyadic, parent, child or group")],
    on: Annotated[str, typer.Option(help="the day it was offered")],
    attended: Annotated[bool, typer.Option("--attended/--missed")],
    caregiver: Annotated[str | None, typer.Option(help="who it was for")] = None,
    child: ChildOpt = None,
) -> None:
    """Record a treatment session offered to the family, attended or missed."""
    day = parse_date(on, "--on")
    run(lambda svc: svc.family.record_session(ref, kind, day, attended, actor, caregiver, child))


@case_app.command("transfer")
def case_transfer(
    ref: str, actor: ActorOpt,
    site: Annotated[str, typer.Option(help="the receiving site")],
    team: Annotated[str, typer.Option(help="the receiving NIM team (practitioners' --team)")],
) -> None:
    """Transfer a case to another site: its NIM team takes the open work; both are told."""
    run(lambda svc: svc.cases.transfer(ref, site, team, actor))


consent_app = typer.Typer(help="Consent per person.", no_args_is_help=True)


@consent_app.command("withdraw")
def consent_withdraw(ref: str, caregiver: str, actor: ActorOpt) -> None:
    """A caregiver withdraws consent: their assessments stop; with nobody consenting, the
    family exits."""
    run(lambda svc: svc.family.withdraw_consent(ref, caregiver, actor))


