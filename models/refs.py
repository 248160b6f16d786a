"""Typed references that cross boundaries (CLI, Prefect parameters, messages)."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import Invalid


@dataclass(frozen=True, slots=True)
class TaskRef:
    """One task of one case. Written `CASE-REF/TASK-KEY` wherever people type or read it."""

    case: str
    key: str

    def __str__(self) -> str:
        return f"{self.case}/{self.key}"

    @classmethod
    def parse(cls, text: str) -> TaskRef:
        case, sep, key = text.strip().partition("/")
        if not sep or not case or not key:
            raise Invalid(f"task {text!r} should be CASE-REF/TASK-KEY, e.g. NIM-2026-0001/triage "
                          "(`nim-pathway task list --case REF` shows them)")
        return cls(case, key)
