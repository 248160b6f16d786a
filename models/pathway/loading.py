"""Loading a pathway: parsing its YAML (a profile may `extends:` another bundled one),
validating it with errors that name the file, line, path and field, and reading a version
stored with a case."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models.nesting import too_deeply_nested
from models.pathway.constants import PATHWAYS_DIR, SLUG, PathwayError
from models.pathway.spec import PathwaySpec


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML key or item at a Pydantic error location, as far as it goes."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                node = None
                continue
            line, node = pair[0].start_mark.line + 1, pair[1]  # the key's line, then go down
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
            line = node.start_mark.line + 1 if node is not None else line
        else:
            node = None
    return line


def _path_to_loc(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def parse_pathway(text: str, source: str = "<pathway>") -> PathwaySpec:
    try:
        if too_deeply_nested(text):
            raise RecursionError
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PathwayError(f"{where}: not valid YAML: {why}") from None
    except RecursionError:
        raise PathwayError(f"{source}: nested too deeply to be a pathway file") from None
    except ValueError as exc:  # a value YAML itself cannot build, e.g. a date 2026-02-30
        raise PathwayError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PathwayError(f"{source}: a pathway file must be a mapping with 'profile', 'stages'…")
    if "extends" in data:  # a nation's profile that shares another's pathway: its top-level
        # sections replace the parent's whole (a section is either inherited or restated)
        parent = data.pop("extends")
        if not isinstance(parent, str) or not re.fullmatch(SLUG[1:-1], parent):
            raise PathwayError(f"{source}: extends: give a profile name, e.g. extends: england")
        parent_path = PATHWAYS_DIR / f"{parent}.yaml"
        if not parent_path.is_file() or parent_path.resolve() == Path(source).resolve():
            raise PathwayError(f"{source}: extends: no other pathway {parent!r} in {PATHWAYS_DIR}")
        base = yaml.safe_load(parent_path.read_text(encoding="utf-8"))
        if isinstance(base, dict) and "extends" in base:
            raise PathwayError(f"{source}: extends: {parent!r} extends another profile itself; "
                               "extend the base profile directly")
        data = {**base, **data}
    try:
        return PathwaySpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            if not loc and msg.startswith("Value error, "):
                # cross-reference problems carry their own paths
                for problem in msg.removeprefix("Value error, ").split("\n"):
                    path, _, why = problem.partition(": ")
                    line = _line_of(root, _path_to_loc(path))
                    lines.append(f"{source}:{line or '?'}: {path}: {why}")
                continue
            path = ".".join(str(p) for p in loc)
            line = _line_of(root, loc)
            lines.append(f"{source}:{line or '?'}: {path}: {msg.removeprefix('Value error, ')}")
        raise PathwayError("invalid pathway file\n" + "\n".join(lines)) from None


def load_pathway(profile_or_path: str, directory: Path | None = None) -> PathwaySpec:
    """Load `pathways/<profile>.yaml` (or a file path) and validate it."""
    candidate = Path(profile_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
    else:
        path = (directory or PATHWAYS_DIR) / f"{profile_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (directory or PATHWAYS_DIR).glob("*.yaml"))
        raise PathwayError(
            f"no pathway {profile_or_path!r} (looked for {path}); known profiles: "
            f"{', '.join(known) or 'none'}"
        )
    return _parse_file(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _parse_file(path: str, mtime_ns: int) -> PathwaySpec:
    """Parsed once per file version: the mtime in the key notices edits."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PathwayError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_pathway(text, source=path)


def pathway_from_json(text: str) -> PathwaySpec:
    """A pathway version stored with a case (already validated when it was first used;
    versions stored before setting ranges existed have none)."""
    return PathwaySpec.model_validate_json(text, context={"stored": True})
