"""Generate docs/reference/pathway-file.md from the pathway schema's Pydantic models (the
`PathwaySpec` of `models.pathway` and every model it holds), so the reference of a pathway file
cannot drift from the validator.

    .venv/bin/python docs/gen/pathway_reference.py            # write the page
    .venv/bin/python docs/gen/pathway_reference.py --check    # fail if the committed page differs

Each field's type, default and constraints come from `model_fields`; its description from the
field's `description=` or else from the comments written beside it in the model's source (the
comment above the field and the one at the end of its line). Only names importable from
`models.pathway` are used, so the module may become a package.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import tokenize
import types
import typing
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mdtext import ROOT, code, inline, paragraphs, write_or_check  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import models.calendar as calendar  # noqa: E402
import models.pathway as pathway  # noqa: E402

OUT = ROOT / "docs" / "reference" / "pathway-file.md"
ROOT_MODEL = pathway.PathwaySpec
_CONSTRAINTS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                ("min_length", "at least {} entries"), ("max_length", "at most {} long"),
                ("pattern", "matches {}"))


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _models_under(model: type[BaseModel]) -> list[type[BaseModel]]:
    """`model` and every model its fields hold, in the order the fields name them."""
    seen: list[type[BaseModel]] = []

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in seen:
                seen.append(tp)
                for field in tp.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(model)
    return seen


def _type(tp: Any) -> str:
    """A reader's name for an annotation: models link to their section."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(code(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in kept)
    if origin is list:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}" if args else "map"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    names = {str: "text", int: "integer", float: "number", bool: "true/false",
             date: "date (ISO)", Any: "any"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        given = value.model_dump(mode="json", exclude_defaults=True)
        return code(json.dumps(given)) if given else "its own defaults"
    return code(json.dumps(value, default=str))


def _constraints(field: Any) -> str:
    found = []
    for item in field.metadata:
        for attr, words in _CONSTRAINTS:
            value = getattr(item, attr, None)
            if value is not None:
                shown = code(value) if attr == "pattern" else str(value)
                if attr == "min_length" and value == 1:
                    found.append("not empty")
                    continue
                found.append(words.format(shown) if "{}" in words else f"{words} {shown}")
    return "; ".join(found)


def _source_comments(owner: type) -> dict[str, list[str]]:
    """Field name -> the comments written beside it in `owner`'s own class body: the comment
    lines right above it and the comment at the end of its line(s)."""
    try:
        source = inspect.getsource(owner)
    except (OSError, TypeError):
        return {}
    source = inspect.cleandoc("\n" + source) if source[:1].isspace() else source
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    found: dict[str, list[str]] = {}
    body = ast.parse(source).body[0]
    for stmt in getattr(body, "body", []):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above, line = [], stmt.lineno - 1
        while line >= 1 and lines[line - 1].strip().startswith("#"):
            # a short comment line ends its thought; a long one was wrapped
            ends = bool(above) and len(lines[line - 1]) < 80
            above.insert(0, comments[line] + (";" if ends else ""))
            line -= 1
        trailing = [comments[n] for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
                    if n in comments and not lines[n - 1].strip().startswith("#")]
        found[stmt.target.id] = [c for c in above + trailing if c and not c.startswith("noqa")]
    return found


def _description(model: type[BaseModel], name: str, field: Any) -> str:
    parts = [field.description] if field.description else []
    for owner in model.__mro__:
        if name in owner.__dict__.get("__annotations__", {}):
            parts += _source_comments(owner).get(name, [])
            break
    return inline(" ".join(parts)) if parts else " "


def _model_section(model: type[BaseModel]) -> list[str]:
    lines = ["", f"## {model.__name__}"]
    for paragraph in paragraphs(model.__doc__ or ""):
        lines += ["", paragraph]
    bases = [b for b in model.__bases__ if b in _models_under(ROOT_MODEL)]
    if bases:
        lines += ["", "Everything " + ", ".join(f"[{b.__name__}](#{_anchor(b)})" for b in bases)
                  + " holds, and the fields it adds."]
    used_by = [f"[{m.__name__}](#{_anchor(m)}) `{n}`" for m in _models_under(ROOT_MODEL)
               for n, f in m.model_fields.items() if model in _models_under_type(f.annotation)]
    if used_by:
        lines += ["", "Used by: " + ", ".join(used_by) + "."]
    lines += ["", "| field | type | default | what it is |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = _type(field.annotation)
        limits = _constraints(field)
        lines.append(f"| {code(name)} | {kind}{'; ' + limits if limits else ''} | "
                     f"{_default(field)} | {_description(model, name, field)} |")
    return lines


def _models_under_type(tp: Any) -> list[type]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models_under_type(arg)]


def _vocabulary() -> list[str]:
    """The names a pathway file may use that the engine defines (skipped if not exported)."""
    rows = [("case anchors (every case)", "CASE_ANCHORS"),
            ("anchors a case may gain later", "OPTIONAL_ANCHORS"),
            ("caregiver relationships", "RELATIONSHIPS"),
            ("`per:` kinds besides caregiver groups", "PER_BUILT_IN"),
            ("clock owners besides declared teams", "OUTSIDE_OWNERS"),
            ("eligibility subjects", "SUBJECTS"),
            ("offset units", "UNITS"),
            ("most times a task repeats by `count:`", "MAX_COUNT"),
            ("most working days a reminder comes before due", "MAX_REMINDER"),
            ("most working days an escalation comes after due", "MAX_ESCALATION"),
            ("largest offset per unit (about five years)", "MAX_AMOUNT")]
    lines = ["", "## Names and limits the engine defines", "",
             "| what | values |", "|---|---|"]
    for label, name in rows:
        value = getattr(pathway, name, getattr(calendar, name, None))
        if value is None:
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{code(k)}: {v}" for k, v in value.items())
        elif isinstance(value, tuple | list):
            shown = ", ".join(code(v) for v in value)
        else:
            shown = code(value)
        lines.append(f"| {inline(label) if '`' not in label else label} | {shown} |")
    permissions = getattr(pathway, "DEFAULT_PERMISSIONS", None)
    if permissions:
        lines += ["", "### Actions under `permissions:`", "",
                  "The engine's default table; each pathway file states its own. `task-role` is "
                  "the role the task is for, `assignee` the practitioner it is assigned to; "
                  "manager roles (`manager: true`) may always act.", "",
                  "| action | roles by default |", "|---|---|"]
        lines += [f"| {code(action)} | {', '.join(code(r) for r in roles) or 'managers only'} |"
                  for action, roles in permissions.items()]
    return lines


def render() -> str:
    lines = [
        "# Pathway file reference",
        "",
        "<!-- Generated by docs/gen/pathway_reference.py from the Pydantic models in "
        "models.pathway: do not edit by hand. `make docs` regenerates it; `make test` fails if "
        "it is stale. -->",
        "",
        "Every key a pathway file (`pathways/<profile>.yaml`) may hold, as the validator reads "
        "it: a file is the [PathwaySpec](#pathwayspec) below, and each nested block is a "
        "section of its own. Unknown keys are refused. What the sections are for, with "
        "examples: [The pathway as data](../PATHWAY-FILES.md) and "
        "[Writing a programme file](../PROGRAMMES.md#writing-a-programme-file). A file is "
        "validated when it is installed: each mistake is one line naming the file, the line, "
        "the dotted path and what to do.",
    ]
    for model in _models_under(ROOT_MODEL):
        lines += _model_section(model)
    lines += _vocabulary()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    write_or_check(OUT, render(), "docs/gen/pathway_reference.py")
