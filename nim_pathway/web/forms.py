"""Forms from the domain's own models: a task's outcome form from the pathway's outcome model,
and Pydantic's errors as one line per field. Identity never enters a label: children and
caregivers are named by position and role ("child 2", "mother")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from models.pathway import PathwaySpec
from store.views import TaskView


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: str  # text, textarea, date, int, bool, choice
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)


def who_words(key: str | None) -> str:
    """A child's or caregiver's key in words: child-2 -> child 2, foster-carer -> foster carer."""
    return (key or "").replace("-", " ")


def task_label(task: TaskView) -> str:
    """A task's full title, naming the child and the caregiver by position and role."""
    about = [who_words(k) for k in (task.child, task.caregiver) if k]
    return task.title + (f" — {', '.join(about)}" if about else "")


def outcome_fields(spec: PathwaySpec, task_id: str) -> list[FormField]:
    """The fields of a task's outcome (the pathway's outcome model), in the model's order."""
    task = spec.task_by_id[task_id]
    fields = []
    gate = spec.gate_of_task.get(task_id)
    if gate:
        fields.append(FormField("decision", f"Decision {gate.decision.upper()}", "choice", True,
                                tuple((code, f"{code}: {out.label}" if getattr(out, "label", None)
                                       else code) for code, out in gate.outcomes.items())))
    for name, f in task.outcome.items():
        kind = {"text": "text", "date": "date", "bool": "bool", "int": "int",
                "choice": "choice"}[f.type]
        fields.append(FormField(name, f.label or name.replace("_", " "), kind, f.required,
                                tuple((c, c) for c in (f.choices or ()))))
    fields.append(FormField("completed_on", "Completed on (default: today)", "date"))
    fields.append(FormField("notes", "Notes", "textarea"))
    return fields


def outcome_from_form(spec: PathwaySpec, task_id: str, form: Any) -> dict[str, Any]:  # noqa: ANN401
    """The outcome the form gives, checked against the pathway's outcome model (a
    ValidationError names each wrong field); empty fields are left out."""
    kinds = {f.name: f.kind for f in outcome_fields(spec, task_id)}
    data: dict[str, Any] = {}
    for name, kind in kinds.items():
        raw = str(form.get(name) or "").strip()
        if not raw:
            continue
        data[name] = {"yes": True, "no": False}.get(raw, raw) if kind == "bool" else raw
    spec.outcome_model(task_id).model_validate(data)
    return data


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's errors by field (dotted location), one line each; the model-wide ones under
    "" (the form's top)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        out[where] = f"{out[where]}; {msg}" if where in out else msg
    return out


def model_fields(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = (),
                 optional: bool = False, group: str = "") -> list[FormField]:
    """A form's fields from a Pydantic model, generically (a field added to the model appears
    on the form): text, dates, whole numbers, yes/no and choices; nested models by dotted
    name (`child.given_name`). Lists and mappings are left to the caller."""
    out = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        ann = info.annotation
        label = group + (info.description or name.replace("_", " "))
        args = [a for a in get_args(ann) if a is not type(None)]
        if get_origin(ann) in (Union, UnionType) and len(args) == 1:
            ann = args[0]
        key, required = prefix + name, info.is_required() and not optional
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += model_fields(ann, key + ".", optional=optional or not info.is_required(),
                                group=f"{group}{name.replace('_', ' ')}: ")
        elif get_origin(ann) is Literal:
            out.append(FormField(key, label, "choice", required,
                                 tuple((str(c), str(c)) for c in get_args(ann))))
        elif ann in (date, bool, int, str):
            kind = {date: "date", bool: "bool", int: "int", str: "text"}[ann]
            out.append(FormField(key, label, kind, required))
    return out


def nested_data(fields: list[FormField], form: Any) -> dict[str, Any]:  # noqa: ANN401
    """The form's non-empty values as the nested mapping the model reads (`a.0.b` becomes
    {"a": [{"b": ...}]}); yes/no as booleans."""
    data: dict[str, Any] = {}
    for f in fields:
        raw = str(form.get(f.name) or "").strip()
        if not raw:
            continue
        value: Any = {"yes": True, "no": False}.get(raw, raw) if f.kind == "bool" else raw
        *path, last = f.name.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return _lists(data)


def _lists(node: Any) -> Any:  # noqa: ANN401
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node
