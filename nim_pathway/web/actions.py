"""The coordinator's actions as forms: the machinery (`form_page`), and the case's own actions
(open a case, pause or resume, exit, transfer). The family's forms are in family_forms.py, the
court's in court_forms.py. Each runs the same domain command as the CLI, as the signed-in
person, so the policy refuses here exactly what it refuses there (the refusal is the page's
one error line). Input is checked by Pydantic models (the domain's own for a referral or a
child) with errors per field, and kept on the page when refused."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from models.errors import CommandError, Refused
from models.pathway import PathwaySpec
from models.schemas import MAX_CAREGIVERS, CaregiverIn, Referral
from nim_pathway.app import Service
from nim_pathway.web.forms import FormField, field_errors, model_fields, nested_data, who_words
from nim_pathway.web.session import Person, render
from store.views import CaseView

CAREGIVER_ROWS = min(3, MAX_CAREGIVERS)  # rows on the referral form


class PauseForm(BaseModel):
    action: str = Field(description="pause or resume")
    person: str | None = Field(default=None, max_length=40, description=(
        "whose work (blank: the whole family's)"))
    reason: str | None = Field(default=None, max_length=500,
                               description="why the work pauses (not kept on the board)")


class ExitForm(BaseModel):
    reason: str = Field(description="exit reason")
    note: str = Field(default="", max_length=2000)


class TransferForm(BaseModel):
    site: str = Field(min_length=1, max_length=100, description="the receiving site")
    team: str = Field(min_length=1, max_length=100,
                      description="the receiving team (takes the programme's open work)")


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


def choose(fields: list[FormField], name: str,
           choices: list[str] | list[tuple[str, str]]) -> list[FormField]:
    """`fields` with `name` made a choice of `choices` (values, or (value, label) pairs)."""
    pairs = tuple(c if isinstance(c, tuple) else (c, c) for c in choices)
    return [FormField(f.name, f.label, "choice", f.required, pairs) if f.name == name else f
            for f in fields]


@dataclass(frozen=True)
class CaseInfo:
    """What a case's forms offer as choices: its pathway and its people, by key."""

    spec: PathwaySpec
    view: CaseView

    def children(self) -> list[tuple[str, str]]:
        return [(c.key, who_words(c.key)) for c in self.view.children]

    def caregivers(self) -> list[tuple[str, str]]:
        return [(c.key, f"{who_words(c.key)} (consent: {c.consent or 'not asked yet'})")
                for c in self.view.caregivers if c.active]


async def case_info(svc: Service, ref: str) -> CaseInfo | str:
    """The case's pathway and people, or why there are none (an unknown reference)."""
    def read() -> CaseInfo:
        return CaseInfo(svc.queries.pathway(ref), svc.queries.show(ref))

    try:
        return await run_in_threadpool(read)
    except CommandError as exc:
        return str(exc)


def not_found(me: Person, error: str) -> Response:
    return render("error.html.j2", 404, me=me, title="Not found", error=error)


Page = Callable[[Request, Service, Person], Awaitable[Response]]


def case_form(handler: Callable[[Request, Service, Person, CaseInfo], Awaitable[Response]]
              ) -> Page:
    """A form on one case: the reference from the path, the case read first (its pathway and
    people give the form's choices); an unknown reference is the not-found page."""
    @functools.wraps(handler)
    async def page(request: Request, svc: Service, me: Person) -> Response:
        case = await case_info(svc, request.path_params["ref"])
        if isinstance(case, str):
            return not_found(me, case)
        return await handler(request, svc, me, case)
    return page


async def case_form_page(request: Request, me: Person, case: CaseInfo, heading: str,
                         fields: list[FormField], model: type[BaseModel],
                         act: Callable[[Any], Any], done: str, button: str = "Save") -> Response:
    """`form_page` for one case: headed by its reference, back to its page when done (the
    page says what was `done`)."""
    ref = case.view.ref
    return await form_page(request, me, f"{ref}: {heading}", fields, model, act,
                           lambda _: f"/cases/{ref}?done={done}", ref, button)


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


def _pause(svc: Service, ref: str, me: Person, form: PauseForm) -> Any:  # noqa: ANN401
    if form.action == "resume":
        return svc.cases.resume(ref, me.handle, form.person)
    return svc.cases.pause(ref, form.reason or "", me.handle, form.person)


@case_form
async def pause(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    ref = case.view.ref
    people = [(k, w) for k, w in case.children()] + [
        (c.key, who_words(c.key)) for c in case.view.caregivers if c.active]
    fields = choose(choose(model_fields(PauseForm), "action", ["pause", "resume"]), "person",
                    people)
    return await case_form_page(request, me, case, "pause or resume the work", fields,
                                PauseForm, lambda f: _pause(svc, ref, me, f), "pause")


@case_form
async def exit_case(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(model_fields(ExitForm), "reason",
                    [(k, e.label) for k, e in case.spec.exits.items()])
    return await case_form_page(
        request, me, case, "the family leaves the pathway", fields, ExitForm,
        lambda f: svc.cases.exit_case(case.view.ref, f.reason, f.note, me.handle), "exit",
        "Record the exit")


@case_form
async def transfer(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    teams = await run_in_threadpool(
        lambda: sorted({p.team for p in svc.queries.practitioners() if p.active and p.team}))
    fields = choose(model_fields(TransferForm), "team", teams)
    return await case_form_page(
        request, me, case, "transfer to another site", fields, TransferForm,
        lambda f: svc.cases.transfer(case.view.ref, f.site, f.team, me.handle), "transfer",
        "Transfer the case")


ROUTES = [("/cases/new", open_case, ["GET", "POST"]),
          ("/cases/{ref}/pause", pause, ["GET", "POST"]),
          ("/cases/{ref}/exit", exit_case, ["GET", "POST"]),
          ("/cases/{ref}/transfer", transfer, ["GET", "POST"])]
