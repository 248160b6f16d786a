"""`nim-pathway case …` court commands: the timetable's extensions, interim, final and later
orders, court directions, and the end of a child being looked after. Each takes `--child` for
one child's own application or order."""

from __future__ import annotations

from typing import Annotated

import typer

from nim_pathway.cli.cases import case_app
from nim_pathway.cli.io import ActorOpt, ChildOpt, parse_date, run

OwnChildOpt = Annotated[str | None, typer.Option(
    "--child", help="one child's own application (given with add-child "
                    "--proceedings-issued): only their own clock moves")]


@case_app.command("extend")
def case_extend(
    ref: str, actor: ActorOpt,
    weeks: Annotated[int, typer.Option(help="the extension the court granted (up to 8 weeks)")],
    granted: Annotated[str, typer.Option(help="the day the court granted it")],
    reason: Annotated[str, typer.Option(help="the court's reason, as recorded (no names)")],
    child: OwnChildOpt = None,
) -> None:
    """Record one extension of the court's 26-week timetable (Children Act 1989 s32(5)):
    extensions are granted one at a time, each for up to 8 weeks; with --child, of that
    child's own application."""
    on = parse_date(granted, "--granted")
    run(lambda svc: svc.court.extend_timetable(ref, on, weeks, reason, actor, child))


@case_app.command("interim-order")
def case_interim_order(
    ref: str, actor: ActorOpt,
    kind: Annotated[str, typer.Option(help="the interim order's kind, as the pathway lists "
                                           "them (interim-care-order, "
                                           "interim-supervision-order)")],
    made: Annotated[str, typer.Option(help="the day the order was made")],
    court: Annotated[str, typer.Option(help="the court that made it, e.g. 'Family Court at "
                                            "Leeds' (no person's name)")],
    child: ChildOpt = None,
) -> None:
    """Record an interim order for a child (s38): it meets no clock; under an interim care
    order a child recorded as no longer looked after is looked after again from its date."""
    on = parse_date(made, "--made")
    run(lambda svc: svc.court.record_interim_order(ref, on, kind, court, actor, child))


@case_app.command("final-order")
def case_final_order(
    ref: str, actor: ActorOpt,
    made: Annotated[str, typer.Option(help="the day the order was made")],
    kind: Annotated[str, typer.Option(help="the order's kind, as the pathway lists them "
                                           "(care-order, placement-order, adoption-order, …)")],
    follows_recommendation: Annotated[bool, typer.Option(
        "--follows-recommendation/--departs-from-recommendation",
        help="whether the order follows NIM's recommendation")],
    child: Annotated[str | None, typer.Option(
        "--child", help="one child's own order, where a sibling group's orders differ")] = None,
) -> None:
    """Record the final order: it disposes of the proceedings and meets the 26-week clock. An
    order after it (an adoption order after the placement order) is kept as a later order:
    the clock stays as the final order met it."""
    on = parse_date(made, "--made")
    run(lambda svc: svc.court.record_final_order(ref, on, kind, follows_recommendation, actor,
                                                 child))


@case_app.command("direction")
def case_direction(
    ref: str, actor: ActorOpt,
    document: Annotated[str, typer.Option(help="what is to be filed, as the pathway lists "
                                               "(final-report, statement, …)")],
    by: Annotated[str, typer.Option(help="the filing deadline the court set")],
    role: Annotated[str | None, typer.Option(
        help="the role that files it (only for a document no pathway task produces)")] = None,
    child: Annotated[str | None, typer.Option(
        "--child", help="a direction in one child's proceedings: it binds that child's work "
                        "(and the family's), never a sibling's")] = None,
) -> None:
    """Record a court direction to file a document by a date: the pathway's task that produces
    it is due by then (or, for a document no task produces, a task for --role)."""
    on = parse_date(by, "--by")
    run(lambda svc: svc.court.add_direction(ref, document, role, on, actor, child))


@case_app.command("cease-looked-after")
def case_cease_looked_after(
    ref: str, actor: ActorOpt,
    on: Annotated[str, typer.Option(help="the day the child stopped being looked after")],
    reason: Annotated[str, typer.Option(help="why, e.g. care order discharged")],
    child: ChildOpt = None,
) -> None:
    """Record that a child is no longer looked after: their reviews and visits stop."""
    day = parse_date(on, "--on")
    run(lambda svc: svc.court.cease_looked_after(ref, day, reason, actor, child))
