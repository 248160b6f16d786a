"""The family's forms: a child or a caregiver joins, a caregiver's consent (given, declined or
withdrawn), a child's placement moves. Each runs the command `case add-child`,
`case add-caregiver`, `task complete … consent-<caregiver>` / `consent withdraw` and
`case placement` run, as the signed-in person."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from models.errors import Invalid
from models.refs import TaskRef
from models.schemas import MAX_CHILDREN, PLACEMENT_KINDS, CaregiverIn, ChildIn
from nim_pathway.app import Service
from nim_pathway.web.actions import CaseInfo, case_form, case_form_page, choose
from nim_pathway.web.forms import FormField, model_fields
from nim_pathway.web.session import Person

WITHDRAWN = "withdrawn"


class CaregiverForm(BaseModel):
    relationship: str = Field(description="relationship to the child")
    name: str | None = Field(default=None, max_length=200, description=(
        "name (kept in the case store, never shown here)"))
    children: list[str] = Field(default=[], max_length=MAX_CHILDREN, description=(
        "the children they care for, e.g. child-1, child-2 (blank: all)"))

    @field_validator("children", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:  # noqa: ANN401 - the form's text
        if isinstance(value, str):
            return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
        return value


class ConsentForm(BaseModel):
    caregiver: str = Field(max_length=40, description="whose consent")
    consent: str = Field(max_length=40, description="their answer")
    notes: str = Field(default="", max_length=2000, description="notes (no names)")


class PlacementForm(BaseModel):
    kind: str = Field(description="the new placement")
    start: date = Field(description="the day it started")
    reason: str = Field(min_length=1, max_length=500, description="why the child moved")
    child: str | None = Field(default=None, max_length=40,
                              description="which child (blank: child 1)")


def caregiver_fields() -> list[FormField]:
    """The form's fields: the relationship a choice of the referral's (`CaregiverIn`'s); the
    children typed as keys (model_fields leaves lists to the caller)."""
    relationship = next(f for f in model_fields(CaregiverIn) if f.name == "relationship")
    return [relationship if f.name == "relationship" else f
            for f in model_fields(CaregiverForm)] + [
        FormField("children", CaregiverForm.model_fields["children"].description or "", "text")]


@case_form
async def add_child(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    return await case_form_page(
        request, me, case, "add a child", model_fields(ChildIn), ChildIn,
        lambda c: svc.family.add_child(case.view.ref, c, me.handle), "child", "Add the child")


@case_form
async def add_caregiver(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    return await case_form_page(
        request, me, case, "add a caregiver", caregiver_fields(), CaregiverForm,
        lambda f: svc.family.add_caregiver(case.view.ref, f.relationship, f.name, f.children,
                                           me.handle), "caregiver", "Add the caregiver")


def consent_choices(case: CaseInfo) -> list[str]:
    """The pathway's answers to its consent task (given, declined, …), and withdrawn."""
    rule = case.spec.consent_rule
    if rule is None:
        return []
    field = case.spec.task_by_id[rule.task].outcome[rule.field]
    return [*(field.choices or ()), WITHDRAWN]


def record_consent(svc: Service, case: CaseInfo, form: ConsentForm, actor: str) -> Any:  # noqa: ANN401
    """Withdrawn: `consent withdraw`. Otherwise the caregiver's open consent task completed
    with the answer (`task complete REF consent-<caregiver> --outcome consent=…`)."""
    ref, rule = case.view.ref, case.spec.consent_rule
    if rule is None:
        raise Invalid(f"{ref}'s pathway records no consent")
    if form.consent == WITHDRAWN:
        return svc.family.withdraw_consent(ref, form.caregiver, actor)
    if form.consent not in consent_choices(case):
        raise Invalid(f"the answer is one of {', '.join(consent_choices(case))}")
    task = next((t for t in svc.queries.tasks(case=ref)  # open ones
                 if t.spec_id == rule.task and t.caregiver == form.caregiver), None)
    if task is None:
        now = next((c.consent for c in case.view.caregivers if c.key == form.caregiver), None)
        raise Invalid(f"{ref} has no open consent task for {form.caregiver} (their consent: "
                      f"{now or 'not asked yet'}); a consent given can only be withdrawn")
    outcome = {rule.field: form.consent, **({"notes": form.notes} if form.notes else {})}
    return svc.tasks.complete_task(TaskRef(ref, task.key), actor, outcome)


@case_form
async def consent(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(model_fields(ConsentForm), "caregiver", case.caregivers()),
                    "consent", consent_choices(case))
    return await case_form_page(request, me, case, "record a caregiver's consent", fields,
                                ConsentForm, lambda f: record_consent(svc, case, f, me.handle),
                                "consent", "Record the consent")


@case_form
async def placement(request: Request, svc: Service, me: Person, case: CaseInfo) -> Response:
    fields = choose(choose(model_fields(PlacementForm), "kind", list(PLACEMENT_KINDS)),
                    "child", case.children())
    return await case_form_page(
        request, me, case, "record a placement change", fields, PlacementForm,
        lambda f: svc.family.change_placement(case.view.ref, f.kind, f.start, f.reason,
                                              me.handle, f.child),
        "placement", "Record the placement")


ROUTES = [("/cases/{ref}/child", add_child, ["GET", "POST"]),
          ("/cases/{ref}/caregiver", add_caregiver, ["GET", "POST"]),
          ("/cases/{ref}/consent", consent, ["GET", "POST"]),
          ("/cases/{ref}/placement", placement, ["GET", "POST"])]
