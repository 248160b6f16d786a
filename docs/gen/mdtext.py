"""What the reference generators share: Markdown escaping and writing (or checking) a page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Characters Markdown would read as markup in plain help text (never inside `code`).
_MARKUP = re.compile(r"([\\*_\[\]<>|])")


def inline(text: str) -> str:
    """`text` as one line of Markdown that shows exactly what was written: markup characters
    escaped outside `code spans` (which stay as they are; a `|` in one is escaped for tables)."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", " ".join(text.split()))):
        out.append(part.replace("|", r"\|") if i % 2 else _MARKUP.sub(r"\\\1", part))
    return "".join(out)


def paragraphs(text: str) -> list[str]:
    """A docstring or help text as Markdown paragraphs (click's `\\b` no-rewrap markers
    dropped)."""
    text = text.replace("\b", "")
    return [inline(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def code(value: str) -> str:
    """`value` as a code span for a table cell."""
    value = str(value).replace("|", r"\|")
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def write_or_check(path: Path, text: str, generator: str) -> None:
    """Write `text` to `path`; with `--check` on the command line, write nothing and exit 1 if
    the file differs (the committed page has drifted from the code)."""
    if "--check" in sys.argv[1:]:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            where = path.relative_to(ROOT)
            sys.exit(f"{where} is out of date with the code: run `.venv/bin/python {generator}` "
                     f"(or `make docs`) and commit {where}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
