"""The court's forms: its dates (proceedings issued, the hearings), a direction to file a
document, an extension of its timetable, an interim order, the final order, and a child no
longer looked after. Each runs the command `case move-date`, `case direction`, `case extend`,
`case interim-order`, `case final-order` and `case cease-looked-after` run, as the signed-in
person."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from nim_pathway.app import Service
from nim_pathway.commands.base import DELAY_CAUSES
from nim_pathway.web.actions import case_info, choose, form_page, not_found
from nim_pathway.web.forms import model_fields
from nim_pathway.web.session import Person

COURT_DATES = (("proceedings_issued", "proceedings issued"),
               ("case_management_hearing", "case management hearing (listed)"),
               ("cmh_held", "case management hearing held"),
               ("issues_resolution_hearing", "issues resolution hearing"),
               ("final_hearing", "final hearing"))


class CourtDateForm(BaseModel):
    anchor: str = Field(description="which date")
    value: date = Field(description="the date")
    cause: str = Field(min_length=1, max_length=500, description="why it is set or moved")
    category: str = Field(default="court", description="cause of any delay")


class DirectionForm(BaseModel):
    document: str = Field(description="the document to file")
    by: date = Field(description="the filing deadline the court set")
    role: str | None = Field(default=None, description=(
        "the role that files it (only for a document no pathway task produces)"))
    child: str | None = Field(default=None, max_length=40, description=(
        "a direction in one child's proceedings (blank: the family's)"))


class ExtensionForm(BaseModel):
    granted_on: date = Field(description="the day the court granted it")
    weeks: int = Field(description="weeks granted (up to 8)")
    reason: str = Field(min_length=1, max_length=500,
                        description="the court's reason, as recorded (no names)")
    child: str | None = Field(default=None, max_length=40, description=(
        "one child's own application (blank: the family's)"))


class InterimOrderForm(BaseModel):
    made_on: date = Field(description="the day the order was made")
    kind: str = Field(min_length=1, max_length=100, description="kind of interim order")
    court: str = Field(min_length=1, max_length=200, description=(
        "the court that made it, e.g. Family Court at Leeds (no person's name)"))
    child: str | None = Field(default=None, max_length=40,
                              description="which child (blank: child 1)")


class FinalOrderForm(BaseModel):
    made_on: date = Field(description="the day the order was made")
    kind: str = Field(min_length=1, max_length=100, description="kind of order")
    follows_recommendation: bool = Field(default=False, description=(
        "the order follows NIM's recommendation"))
    child: str | None = Field(default=None, max_length=40, description=(
        "one child's own order, where a sibling group's differ (blank: every child)"))


class LookedAfterForm(BaseModel):
    on: date = Field(description="the day the child stopped being looked after")
    reason: str = Field(min_length=1, max_length=500,
                        description="why, e.g. care order discharged (no names)")
    child: str | None = Field(default=None, max_length=40,
                              description="which child (blank: child 1)")


async def court_date(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    fields = choose(choose(model_fields(CourtDateForm), "anchor", list(COURT_DATES)),
                    "category", list(DELAY_CAUSES))
    return await form_page(
        request, me, f"{ref}: record a court date", fields, CourtDateForm,
        lambda f: svc.cases.move_date(ref, f.anchor, f.value, f.cause, me.handle, f.category),
        lambda _: f"/cases/{ref}?done=court-date", ref, "Record the date")


async def direction(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    case = await case_info(svc, ref)
    if isinstance(case, str):
        return not_found(me, case)
    fields = choose(choose(choose(model_fields(DirectionForm), "document",
                                  list(case.spec.court.documents.items())), "role",
                           sorted(case.spec.roles)), "child", case.children())
    return await form_page(
        request, me, f"{ref}: record a court direction", fields, DirectionForm,
        lambda f: svc.court.add_direction(ref, f.document, f.role, f.by, me.handle, f.child),
        lambda _: f"/cases/{ref}?done=direction", ref, "Record the direction")


async def extension(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    case = await case_info(svc, ref)
    if isinstance(case, str):
        return not_found(me, case)
    return await form_page(
        request, me, f"{ref}: record an extension of the court's timetable",
        choose(model_fields(ExtensionForm), "child", case.children()), ExtensionForm,
        lambda f: svc.court.extend_timetable(ref, f.granted_on, f.weeks, f.reason, me.handle,
                                             f.child),
        lambda _: f"/cases/{ref}?done=extension", ref, "Record the extension")


async def interim_order(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    case = await case_info(svc, ref)
    if isinstance(case, str):
        return not_found(me, case)
    fields = choose(choose(model_fields(InterimOrderForm), "kind",
                           list(case.spec.court.interim_order_kinds.items())),
                    "child", case.children())
    return await form_page(
        request, me, f"{ref}: record an interim order", fields, InterimOrderForm,
        lambda f: svc.court.record_interim_order(ref, f.made_on, f.kind, f.court, me.handle,
                                                 f.child),
        lambda _: f"/cases/{ref}?done=interim-order", ref, "Record the order")


async def final_order(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    case = await case_info(svc, ref)
    if isinstance(case, str):
        return not_found(me, case)
    fields = choose(choose(model_fields(FinalOrderForm), "kind",
                           list(case.spec.court.order_kinds.items())), "child", case.children())
    return await form_page(
        request, me, f"{ref}: record the final order", fields,
        FinalOrderForm, lambda f: svc.court.record_final_order(
            ref, f.made_on, f.kind, f.follows_recommendation, me.handle, f.child),
        lambda _: f"/cases/{ref}?done=final-order", ref, "Record the order")


async def looked_after(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    case = await case_info(svc, ref)
    if isinstance(case, str):
        return not_found(me, case)
    fields = choose(model_fields(LookedAfterForm), "child", case.children())
    return await form_page(
        request, me, f"{ref}: a child no longer looked after", fields, LookedAfterForm,
        lambda f: svc.court.cease_looked_after(ref, f.on, f.reason, me.handle, f.child),
        lambda _: f"/cases/{ref}?done=looked-after", ref, "Record it")


ROUTES = [("/cases/{ref}/court-date", court_date, ["GET", "POST"]),
          ("/cases/{ref}/direction", direction, ["GET", "POST"]),
          ("/cases/{ref}/extension", extension, ["GET", "POST"]),
          ("/cases/{ref}/interim-order", interim_order, ["GET", "POST"]),
          ("/cases/{ref}/final-order", final_order, ["GET", "POST"]),
          ("/cases/{ref}/looked-after", looked_after, ["GET", "POST"])]
