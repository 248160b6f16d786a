"""The Pydantic model of a task's outcome, built from the pathway (its form in the UI and the
CLI file)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

if TYPE_CHECKING:
    from models.pathway.spec import PathwaySpec

_FIELD_TYPES: dict[str, Any] = {"text": str, "date": date, "bool": bool, "int": int}


def _optional(py: Any) -> Any:  # noqa: ANN401 - a type
    """`py | None`, shown in forms as `py`: Prefect's UI draws `anyOf [date, null]` as
    "Property is type None" instead of a date picker. No default in the schema either: the
    UI would fill in null and send it, which a plain date refuses; a field left empty is
    absent, and the model's default (None) applies."""
    if py is date:
        return Annotated[date | None, WithJsonSchema({"type": "string", "format": "date"}),
                         Field(json_schema_extra=_no_default)]
    return py | None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _outcome_model(spec: PathwaySpec, task_id: str) -> type[BaseModel]:
    task = spec.task_by_id[task_id]
    fields: dict[str, Any] = {}
    gate = spec.gate_of_task.get(task_id)
    if gate:
        fields["decision"] = (Literal[tuple(gate.outcomes)], Field(description="decision"))
    for name, f in task.outcome.items():
        py: Any = Literal[tuple(f.choices)] if f.type == "choice" else _FIELD_TYPES[f.type]
        if f.required:
            fields[name] = (py, Field(description=f.label or name))
        else:
            fields[name] = (_optional(py), Field(default=None, description=f.label or name))
    fields["completed_on"] = (_optional(date), Field(default=None,
                                                     description="defaults to today"))
    fields["notes"] = (str, Field(default="", max_length=4000))
    return create_model(  # type: ignore[call-overload]
        f"Outcome_{task_id.replace('-', '_')}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
