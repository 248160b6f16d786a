"""The forms people answer in the Prefect UI: a task's Resume form (its outcome fields, who
completes it and their one-time code), the stage gate's, the open-case form, and the markdown
description each shows. Case reference only, never a name or a date of birth."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field, create_model

from models.pathway import PathwaySpec
from store.views import TaskView

# The one-time code from the practitioner's authenticator app: a required password field in
# the UI, checked by the flow before anything is recorded, spent on use (a code works once),
# and deleted from Prefect with the rest of the form response.
CODE_FIELD: Any = Field(description="one-time code from your authenticator app",
                        json_schema_extra={"format": "password", "writeOnly": True})

# What a form asked again after a wrong code says first. Prefect's own "Flow run resumed"
# toast cannot be changed: the run is asked again at once and its form leads with this.
WRONG_CODE = ("The code you entered was wrong — nothing was saved; enter the current code "
              "from your authenticator app.")


class OpenCaseForm(BaseModel):
    """The open-case deployment's form. It takes a handle, never a name or a date of birth:
    the coordinator stages the referral in the case store first (`nim-pathway case intake`)."""

    model_config = ConfigDict(extra="forbid")
    intake: str = Field(pattern=r"^IN-[0-9A-F]{8}$", description="handle from `case intake`")
    coordinator: str = Field(description="your practitioner handle")
    code: str = CODE_FIELD


class StageClosed(RunInput):
    closed_on: date


def form_model(spec: PathwaySpec, spec_id: str) -> type[RunInput]:
    """The Resume form of a task: who completes it plus the task's outcome fields."""
    outcome = spec.outcome_model(spec_id)
    return create_model(  # type: ignore[call-overload]
        f"{outcome.__name__}Form",
        __base__=(outcome, RunInput),
        completed_by=(str, Field(description="your practitioner handle")),
        code=(str, CODE_FIELD),
    )


def task_description(ref: str, view: TaskView, note: str = "") -> str:
    """Markdown for the Resume form and the task card. Case reference only, no identity."""
    who = f" ({view.caregiver})" if view.caregiver else ""
    lines = [
        f"## {ref} · {view.title}{who}",
        f"**Awaiting:** {view.role}" + (f" (assigned: {view.assignee})" if view.assignee else ""),
        f"**Due:** {view.due} ({view.due_explanation})",
        f"**Stage:** {view.stage}",
    ]
    if view.handover_note:  # free text stays in the case store: say that it exists
        lines.append(f"**Handover note:** left by whoever handed this over; read it with "
                     f"`nim-pathway task list --case {ref} --json` (not shown in Prefect)")
    lines.append("Enter your practitioner handle in *completed_by* and the code your "
                 "authenticator app shows in *code*; the engine checks both, then your role.")
    if note:  # the first thing the person reads when the form is asked again
        said = note if note.startswith(WRONG_CODE) else f"Nothing was saved: {note}"
        lines.insert(0, f"> **Not recorded.** {said}")
    return "\n\n".join(lines)
