"""Exports for other systems: CSV of tasks and deadlines, a FHIR R4 Task bundle per case, and
an .ics calendar per practitioner. Case references and roles only, no identity."""

from __future__ import annotations

import csv
import io
from typing import Any

from models.errors import NotFound
from notifications.config import NotifyConfig
from notifications.render import ics_calendar
from store.queries import Queries
from store.views import jsonable

CSV_COLUMNS = ["task", "title", "child", "stage", "role", "assignee", "state", "due", "days_to_due",
               "completed_on", "due_explanation"]
# NIM task state -> FHIR Task.status; the finer NIM state goes in businessStatus
FHIR_STATUS = {"open": "ready", "blocked": "on-hold", "done": "completed",
               "cancelled": "cancelled"}
CASE_SYSTEM = "urn:nim-pathway:case"
TASK_SYSTEM = "urn:nim-pathway:task"


def tasks_csv(queries: Queries, ref: str | None = None) -> str:
    rows = [jsonable(t) for t in queries.tasks(case=ref, state=None)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def fhir_bundle(queries: Queries, ref: str) -> dict[str, Any]:
    """A FHIR R4 collection Bundle of Task resources for one case, validated on the way out."""
    from fhir.resources.R4B.bundle import Bundle  # R4B shares R4's Task resource

    today = queries.today()
    entries = []
    for t in queries.tasks(case=ref, state=None):
        status = FHIR_STATUS[t.state]
        business = t.state if t.state != "open" else (
            "overdue" if t.due < today else "awaiting")
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": f"{ref}-{t.key}".lower(),
            "identifier": [{"system": TASK_SYSTEM, "value": str(t.task)}],
            "status": status,
            "businessStatus": {"text": business},
            "intent": "order",
            "code": {"text": t.spec_id},
            "description": t.title,
            "for": {"identifier": {"system": CASE_SYSTEM, "value": ref},
                    "display": f"child on case {ref}"},
            "focus": {"identifier": {"system": CASE_SYSTEM, "value": ref},
                      "display": f"{ref} stage {t.stage}"},
            "performerType": [{"text": t.role}],
            "restriction": {"period": {"end": str(t.due)}},
            "note": [{"text": t.due_explanation}],
        }
        if t.assignee:
            task["owner"] = {"identifier": {"system": "urn:nim-pathway:practitioner",
                                            "value": t.assignee}}
        if t.completed_on:
            task["executionPeriod"] = {"end": str(t.completed_on)}
        entries.append({"fullUrl": f"urn:uuid:{ref.lower()}-{t.key}", "resource": task})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def practitioner_ics(queries: Queries, handle: str, config: NotifyConfig) -> str:
    """Every open deadline of one practitioner as an all-day event calendar."""
    if handle not in {p.handle for p in queries.practitioners()}:
        raise NotFound(f"unknown practitioner {handle!r}")
    events = [{"case_ref": t.ref, "task_key": t.key, "title": t.title, "due": t.due,
               "link": f"{config.ui_url}/v2/runs?tags=case:{t.ref}",
               "uid": f"{t.task}/{t.due}@nim-pathway"}
              for t in queries.tasks() if t.assignee == handle]
    return ics_calendar(events)
