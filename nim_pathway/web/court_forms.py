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
from nim_pathway.web.actions import CaseInfo, case_form, case_form_page, choose
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


@case_form
async def court_date(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(model_fields(CourtDateForm), "anchor", list(COURT_DATES)),
                    "category", list(DELAY_CAUSES))
    return await case_form_page(
        request, me, case, "record a court date", fields, CourtDateForm,
        lambda f: svc.cases.move_date(case.view.ref, f.anchor, f.value, f.cause, me.handle,
                                      f.category), "court-date", "Record the date")


@case_form
async def direction(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(choose(model_fields(DirectionForm), "document",
                                  list(case.spec.court.documents.items())), "role",
                           sorted(case.spec.roles)), "child", case.children())
    return await case_form_page(
        request, me, case, "record a court direction", fields, DirectionForm,
        lambda f: svc.court.add_direction(case.view.ref, f.document, f.role, f.by, me.handle,
                                          f.child), "direction", "Record the direction")


@case_form
async def extension(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    return await case_form_page(
        request, me, case, "record an extension of the court's timetable",
        choose(model_fields(ExtensionForm), "child", case.children()), ExtensionForm,
        lambda f: svc.court.extend_timetable(case.view.ref, f.granted_on, f.weeks, f.reason,
                                             me.handle, f.child),
        "extension", "Record the extension")


@case_form
async def interim_order(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(model_fields(InterimOrderForm), "kind",
                           list(case.spec.court.interim_order_kinds.items())),
                    "child", case.children())
    return await case_form_page(
        request, me, case, "record an interim order", fields, InterimOrderForm,
        lambda f: svc.court.record_interim_order(case.view.ref, f.made_on, f.kind, f.court,
                                                 me.handle, f.child),
        "interim-order", "Record the order")


@case_form
async def final_order(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(model_fields(FinalOrderForm), "kind",
                           list(case.spec.court.order_kinds.items())), "child", case.children())
    return await case_form_page(
        request, me, case, "record the final order", fields, FinalOrderForm,
        lambda f: svc.court.record_final_order(case.view.ref, f.made_on, f.kind,
                                               f.follows_recommendation, me.handle, f.child),
        "final-order", "Record the order")


@case_form
async def looked_after(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(model_fields(LookedAfterForm), "child", case.children())
    return await case_form_page(
        request, me, case, "a child no longer looked after", fields, LookedAfterForm,
        lambda f: svc.court.cease_looked_after(case.view.ref, f.on, f.reason, me.handle,
                                               f.child), "looked-after", "Record it")


ROUTES = [("/cases/{ref}/court-date", court_date, ["GET", "POST"]),
          ("/cases/{ref}/direction", direction, ["GET", "POST"]),
          ("/cases/{ref}/extension", extension, ["GET", "POST"]),
          ("/cases/{ref}/interim-order", interim_order, ["GET", "POST"]),
          ("/cases/{ref}/final-order", final_order, ["GET", "POST"]),
          ("/cases/{ref}/looked-after", looked_after, ["GET", "POST"])]
