"""The coordinator's actions as forms. Each runs the same domain command as the CLI, as the
signed-in person, so the policy refuses here exactly what it refuses there (the refusal is
the page's one error line). Input is checked by the domain's Pydantic models (a referral, a
child) with errors per field, and kept on the page when refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from models.errors import CommandError, Refused
from models.pathway import PathwaySpec
from models.schemas import MAX_CAREGIVERS, CaregiverIn, ChildIn, Referral
from nim_pathway.app import Service
from nim_pathway.commands.base import DELAY_CAUSES
from nim_pathway.web.forms import FormField, field_errors, model_fields, nested_data
from nim_pathway.web.session import Person, render

CAREGIVER_ROWS = min(3, MAX_CAREGIVERS)  # rows on the referral form
COURT_DATES = ("proceedings_issued", "case_management_hearing", "cmh_held",
               "issues_resolution_hearing", "final_hearing")


class PauseForm(BaseModel):
    action: str = Field(description="pause or resume NIM's work")
    reason: str | None = Field(default=None, max_length=500,
                               description="why NIM's work pauses (not kept on the board)")


class ExitForm(BaseModel):
    reason: str = Field(description="exit reason")
    note: str = Field(default="", max_length=2000)


class FinalOrderForm(BaseModel):
    made_on: date
    kind: str = Field(min_length=1, max_length=100, description="kind of order")
    follows_recommendation: bool = False
    child: str | None = Field(default=None, pattern=r"^child-\d+$",
                              description="one child (child-2) where the orders differ")


class CourtDateForm(BaseModel):
    anchor: str = Field(description="which date")
    value: date = Field(description="the date")
    cause: str = Field(min_length=1, max_length=500, description="why it is set or moved")
    category: str = Field(default="court", description="cause of any delay")


def referral_fields(svc: Service) -> list[FormField]:
    fields = model_fields(Referral, skip=("children", "caregivers", "settings"))
    specs = svc.queries.installed_specs()
    fields = choose(choose(fields, "pathway", list(specs)), "programme",
                    sorted({s.programme for s in specs.values()}))
    at = next(i for i, f in enumerate(fields) if f.name == "placement.kind")
    rows = [FormField(f"caregivers.{n}.{f.name}", f"caregiver {n + 1}: {f.label}", f.kind,
                      f.required and n == 0, f.choices)
            for n in range(CAREGIVER_ROWS) for f in model_fields(CaregiverIn)]
    return fields[:at] + rows + fields[at:]


def choose(fields: list[FormField], name: str, choices: list[str]) -> list[FormField]:
    return [FormField(f.name, f.label, "choice", f.required, tuple((c, c) for c in choices))
            if f.name == name else f for f in fields]


async def form_page(request: Request, me: Person, heading: str, fields: list[FormField],
                    model: type[BaseModel], act: Callable[[Any], Any], done: Callable[[Any], str],
                    ref: str | None = None, button: str = "Save") -> Response:
    """GET: the empty form. POST: validate with the model, run the command, go to the case;
    a wrong field, a refusal or a rule broken keeps the input with one clear error line."""
    values: dict[str, str] = {}
    error, errors, status = None, {}, 200
    if request.method == "POST":
        form = request.state.form  # read, and its CSRF token checked, by app.signed_in
        values = {k: v for k, v in form.items() if k != "csrf"}
        try:
            parsed = model.model_validate(nested_data(fields, form))
            result = await run_in_threadpool(act, parsed)
            return RedirectResponse(done(result), status_code=303)
        except ValidationError as exc:
            errors, status = field_errors(exc), 400
            error = "check the fields marked below" + (f": {errors['']}" if "" in errors else "")
        except Refused as exc:
            error, status = str(exc), 403
        except CommandError as exc:
            error, status = str(exc), 400
    return render("form.html.j2", status, me=me, title=heading, heading=heading, ref=ref,
                  fields=fields, values=values, error=error, errors=errors,
                  action=request.url.path, button=button)


async def open_case(request: Request, svc: Service, me: Person) -> Response:
    fields = await run_in_threadpool(referral_fields, svc)
    return await form_page(
        request, me, "Open a case from a referral", fields, Referral,
        lambda r: svc.cases.open_case(r, me.handle),
        lambda res: f"/cases/{res.ref}?done=opened", button="Open the case")


async def add_child(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    return await form_page(request, me, f"{ref}: add a child", model_fields(ChildIn), ChildIn,
                           lambda c: svc.family.add_child(ref, c, me.handle),
                           lambda _: f"/cases/{ref}?done=child", ref, "Add the child")


def _pause(svc: Service, ref: str, me: Person, form: PauseForm) -> Any:  # noqa: ANN401
    if form.action == "resume":
        return svc.cases.resume(ref, me.handle)
    return svc.cases.pause(ref, form.reason or "", me.handle)


async def pause(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    fields = choose(model_fields(PauseForm), "action", ["pause", "resume"])
    return await form_page(request, me, f"{ref}: pause or resume NIM's work", fields,
                           PauseForm, lambda f: _pause(svc, ref, me, f),
                           lambda _: f"/cases/{ref}?done=pause", ref)


async def _pathway_of(svc: Service, ref: str) -> PathwaySpec | str:
    """The case's pathway, or why there is none (an unknown reference)."""
    try:
        return await run_in_threadpool(svc.queries.pathway, ref)
    except CommandError as exc:
        return str(exc)


async def exit_case(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    spec = await _pathway_of(svc, ref)
    if isinstance(spec, str):
        return render("error.html.j2", 404, me=me, title="Not found", error=spec)
    fields = [FormField(f.name, f.label, "choice", f.required,
                        tuple((k, e.label) for k, e in spec.exits.items()))
              if f.name == "reason" else f for f in model_fields(ExitForm)]
    return await form_page(request, me, f"{ref}: the family leaves the pathway", fields,
                           ExitForm, lambda f: svc.cases.exit_case(ref, f.reason, f.note,
                                                                   me.handle),
                           lambda _: f"/cases/{ref}?done=exit", ref, "Record the exit")


async def final_order(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    spec = await _pathway_of(svc, ref)
    if isinstance(spec, str):
        return render("error.html.j2", 404, me=me, title="Not found", error=spec)
    fields = [FormField(f.name, f.label, "choice", f.required,
                        tuple(spec.court.order_kinds.items())) if f.name == "kind" else f
              for f in model_fields(FinalOrderForm)]
    return await form_page(
        request, me, f"{ref}: record the final order", fields,
        FinalOrderForm, lambda f: svc.court.record_final_order(
            ref, f.made_on, f.kind, f.follows_recommendation, me.handle, f.child),
        lambda _: f"/cases/{ref}?done=final-order", ref, "Record the order")


async def court_date(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    fields = choose(choose(model_fields(CourtDateForm), "anchor", list(COURT_DATES)),
                    "category", list(DELAY_CAUSES))
    return await form_page(
        request, me, f"{ref}: record a court date", fields, CourtDateForm,
        lambda f: svc.cases.move_date(ref, f.anchor, f.value, f.cause, me.handle, f.category),
        lambda _: f"/cases/{ref}?done=court-date", ref, "Record the date")


ROUTES = [("/cases/new", open_case, ["GET", "POST"]),
          ("/cases/{ref}/child", add_child, ["GET", "POST"]),
          ("/cases/{ref}/pause", pause, ["GET", "POST"]),
          ("/cases/{ref}/exit", exit_case, ["GET", "POST"]),
          ("/cases/{ref}/final-order", final_order, ["GET", "POST"]),
          ("/cases/{ref}/court-date", court_date, ["GET", "POST"])]
