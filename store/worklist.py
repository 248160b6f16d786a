"""The work queue as plain SQL over a DB-API connection (sqlite3 or psycopg).

`nim-pathway task list` is what practitioners run most; importing SQLAlchemy and the SQLModel
tables costs ~0.4 s before any work, so the CLI reads through here directly. The store's
`Queries.tasks()` runs this same query on its session's connection: one query, two ways in.
"""

from __future__ import annotations

import json
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.errors import Invalid, NotFound
from models.refs import TaskRef
from store.views import TaskView

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
TASK_COLUMNS = ("key", "ref", "spec_id", "title", "caregiver", "outcome", "completed_by",
                "stage", "role", "assignee", "due", "state", "due_explanation",
                "completed_on", "handover_note", "child")


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration, read from the files (importing Alembic costs ~0.3 s)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r"^revision: str = '([^']+)'", text, re.M)
        down = re.search(r"^down_revision: str \| None = '([^']+)'", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else ""


def connect(url: str) -> Any | None:
    """A DB-API connection to a case store already at the newest schema, else None (the
    caller migrates through `store.db` first)."""
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split(":///", 1)[1]
        if not Path(path).is_file():
            return None
        conn: Any = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
    else:
        import psycopg

        conn = psycopg.connect(re.sub(r"^postgresql\+\w+://", "postgresql://", url),
                               autocommit=True)
    if not at_head(conn):
        conn.close()
        return None
    return conn


def at_head(conn: Any) -> bool:
    """Whether the database behind this DB-API connection is at the newest migration."""
    try:
        current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except Exception:  # noqa: BLE001 - no alembic_version table: a database never migrated
        return False
    return current is not None and current[0] == head_revision()


def task_rows(conn: Any, today: date, case: str | None = None, role: str | None = None,
              overdue: bool = False, due_within: int | None = None,
              state: str | None = "open", assignee: str | None = None,
              closures: frozenset[date] = frozenset()) -> list[TaskView]:
    """Tasks matching the filters, soonest due first, as the CLI and reports show them:
    `days_to_due` in calendar days, `working_days_to_due` on the case's own calendar (its
    jurisdiction's bank holidays and the site's `closures`), counted as the caseload board
    counts (WorkingCalendar.working_days_to_due)."""
    from models.calendar import WorkingCalendar

    qmark = type(conn).__module__.startswith("sqlite3")

    def param(name: str) -> str:
        return f":{name}" if qmark else f"%({name})s"

    where, params = [], {"today": today.isoformat() if qmark else today}
    if case is not None:  # "" is a case reference too (an unknown one), not "every case"
        found = conn.execute(f"SELECT 1 FROM nim_case WHERE ref = {param('case')}",
                             {"case": case}).fetchone()
        if found is None:
            raise NotFound(f"unknown case {case!r}; `nim-pathway case list` shows the cases")
        where.append(f"c.ref = {param('case')}")
        params["case"] = case
    if role:
        where.append(f"t.role = {param('role')}")
        params["role"] = role
    if assignee:
        where.append(f"p.handle = {param('assignee')}")
        params["assignee"] = assignee
    if state:
        where.append(f"t.state = {param('state')}")
        params["state"] = state
    if overdue:
        where.append(f"t.due < {param('today')} AND t.state IN ('open', 'blocked')")
    if due_within is not None:
        if not 0 <= due_within <= 3660:
            raise Invalid(f"--due-within must be 0-3660 days (ten years), got {due_within}")
        until = date.fromordinal(today.toordinal() + due_within)
        where.append(f"t.due <= {param('until')}")
        params["until"] = until.isoformat() if qmark else until
    sql = ("SELECT t.key, c.ref, t.spec_id, t.title, t.caregiver, t.outcome, t.completed_by, "
           "t.stage, t.role, p.handle, t.due, t.state, t.due_explanation, t.completed_on, "
           "t.handover_note, t.child, c.jurisdiction FROM task t JOIN nim_case c ON c.id = t.case_id "
           "LEFT JOIN practitioner p ON p.id = t.assignee_id"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY t.due, c.ref, t.key")
    out = []
    calendars: dict[str, WorkingCalendar] = {}
    for *values, jurisdiction in conn.execute(sql, params).fetchall():
        row = dict(zip(TASK_COLUMNS, values, strict=True))
        for name in ("due", "completed_on"):  # sqlite3 returns ISO text, psycopg dates
            if isinstance(row[name], str):
                row[name] = date.fromisoformat(row[name])
        if isinstance(row["outcome"], str):  # sqlite3 returns the JSON text
            row["outcome"] = json.loads(row["outcome"])
        ref, key = row.pop("ref"), row.pop("key")
        calendar = calendars.setdefault(jurisdiction, WorkingCalendar(jurisdiction, closures))
        out.append(TaskView(task=TaskRef(ref, key), **row, days_to_due=(row["due"] - today).days,
                            working_days_to_due=calendar.working_days_to_due(today, row["due"])))
    return out
