"""Synthetic cohorts: fictional cases cloned from template cases made by the domain commands.

Opening 100k cases through `CaseStore.open_case` would take hours, so a handful of template
cases are opened and progressed through the real commands (so tasks, timer kinds, keys and
details are exactly what the engine writes), then cloned in bulk straight into a freshly
migrated store. Each clone is shifted by a whole number of weeks (weekdays and the 09:00 UK
send time stay as planned): its timers before the sweep window are already fired, those in the
window are due, later ones pending. No real data: names come from the lists below.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from models.clock import UK, uk_instant
from nim_pathway.demo import DEMO_TEAM

GIVEN = ["Ada", "Bo", "Cai", "Dara", "Eli", "Fen", "Gus", "Hana", "Iko", "Juno", "Kit", "Lio"]
FAMILY = ["Ashdown", "Brackley", "Cowrie", "Dunmore", "Elsworth", "Fairleigh", "Grisby",
          "Hollins", "Ivesdale", "Jarrow", "Kelbrook", "Lowther"]
HANDLES = {role: handle for handle, _, role, _ in DEMO_TEAM}  # the demo team
TIMERS_PER_CASE = 20
DECISIONS = {"d1": "treatment", "d2": "kinship_care"}
# (jurisdiction, caregivers, pathway tasks completed before cloning, children, early exit):
# sibling groups and early exits near models.simulate's BeST?-based rates (1.28 children per
# family, 30% leaving early): 2 of 10 templates are sibling groups, 3 of 10 leave early
VARIANTS = [
    ("england-and-wales", ["mother", "father", "foster-carer"], 0, 1, None),
    ("england-and-wales", ["mother", "foster-carer"], 4, 2, None),
    ("england-and-wales", ["mother", "father", "foster-carer"], 9, 1, None),
    ("england-and-wales", ["mother"], 16, 1, None),
    ("scotland", ["mother", "father", "kinship-carer"], 0, 1, None),
    ("scotland", ["mother", "foster-carer"], 6, 3, None),
    ("england-and-wales", ["mother", "father"], 24, 1, None),
    ("scotland", ["father", "foster-carer"], 12, 1, "consent-declined"),
    ("england-and-wales", ["mother", "father"], 1, 1, "referral-declined"),
    ("england-and-wales", ["mother", "foster-carer"], 8, 1, "disengaged"),
]


@dataclass
class Template:
    """One template case, as rows relative to nothing: clones shift every date."""

    case: dict[str, Any]
    tasks: list[dict[str, Any]]
    timers: list[dict[str, Any]]
    children: list[str] = field(default_factory=lambda: ["child-1"])


@dataclass
class Templates:
    pathways: list[dict[str, Any]]
    cases: list[Template] = field(default_factory=list)

    @property
    def roles(self) -> list[str]:
        return sorted(HANDLES)


def build_templates() -> Templates:
    """Open and progress the template cases through the domain commands (a few seconds)."""
    import sqlite3

    from models.clock import VirtualClock
    from models.schemas import Referral
    from models.simulate import exit_outcomes, sample_outcome
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from store.db import get_engine, migrate

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/templates.db"
        migrate(url)
        clock = VirtualClock(datetime(2026, 1, 12, 9, 0, tzinfo=UK))
        store = build_service(url, clock, migrate=False)
        seed_team(store)
        for i, (jurisdiction, carers, steps, n_children, leaves) in enumerate(VARIANTS):
            clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=UK))
            referral = Referral(
                jurisdiction=jurisdiction, site="bench", new_episode=True,
                children=[{"given_name": GIVEN[(i + k) % len(GIVEN)], "family_name": FAMILY[i],
                           "date_of_birth": date(2025, 1 + i, 1)} for k in range(n_children)],
                care_entry=date(2026, 1, 5), referral=date(2026, 1, 12),
                proceedings_issued=None if jurisdiction == "scotland" else date(2026, 1, 8),
                caregivers=[{"relationship": c} for c in carers],
                placement={"kind": "foster", "start": "2026-01-05"}, first_entry_to_care=True)
            ref = store.cases.open_case(referral, HANDLES["coordinator"]).ref
            spec = store.queries.pathway(ref)
            done, outcomes = 0, {**DECISIONS, **exit_outcomes(leaves)}
            while done < steps and not store.queries.show(ref).closed_on:
                tasks = store.queries.tasks(case=ref)
                if not tasks:
                    break
                task = min(tasks, key=lambda t: (t.stage == "statutory", t.due))
                clock.set(datetime.combine(task.due, time(10), UK))
                for statutory in [t for t in tasks
                                  if t.stage == "statutory" and t.due <= task.due]:
                    store.tasks.complete_task(statutory.task, HANDLES[statutory.role], {})
                if task.stage != "statutory":
                    store.tasks.complete_task(task.task, HANDLES[task.role],
                                              sample_outcome(spec, task.spec_id, outcomes))
                    done += 1
            if leaves == "disengaged":
                store.cases.exit_case(ref, leaves, "", HANDLES["coordinator"])
        get_engine(url).dispose()
        db = sqlite3.connect(Path(tmp) / "templates.db")
        db.row_factory = sqlite3.Row
        out = Templates([dict(r) for r in db.execute("SELECT * FROM pathway_version")])
        for case in db.execute("SELECT * FROM nim_case ORDER BY id").fetchall():
            tasks = db.execute("SELECT * FROM task WHERE case_id = ? ORDER BY id",
                               (case["id"],)).fetchall()
            timers = db.execute("SELECT * FROM timer WHERE case_id = ? AND cancelled_at IS NULL"
                                " ORDER BY id", (case["id"],)).fetchall()
            # ~20 timers per case, as the live ones of a case at any time: a fixed sample
            kept = random.Random(case["id"]).sample(timers, min(TIMERS_PER_CASE, len(timers)))
            children = [r[0] for r in db.execute(
                "SELECT key FROM child WHERE case_id = ? ORDER BY id", (case["id"],))]
            out.cases.append(Template(dict(case), [_task(dict(t)) for t in tasks],
                                      [_timer(dict(t), case["ref"]) for t in kept], children))
        db.close()
    return out


def _parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _task(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("due", "completed_on"):
        row[name] = date.fromisoformat(row[name]) if row[name] else None
    return row


def _timer(row: dict[str, Any], ref: str) -> dict[str, Any]:
    local = _parse_dt(row["due_at"]).astimezone(UK)
    return {"suffix": row["key"].removeprefix(ref), "task_key": row["task_key"],
            "kind": row["kind"], "role": row["role"], "day": local.date(),
            "at": local.time(), "detail": json.loads(row["detail"] or "null")}


# -- the cohort ---------------------------------------------------------------------------------


@dataclass
class Cohort:
    """What to generate: `cases` open cases, with the sweep window ending at `window_end`."""

    cases: int
    window_end: datetime
    window: timedelta = timedelta(minutes=5)
    spread_weeks: int = 150  # clones shifted back 0..150 weeks: ~4% of cases due in the window
    all_due: bool = False  # every timer due in the window (the 1,000-timer figure)
    max_timers: int | None = None
    contact: str | None = None  # every practitioner's contact (an Apprise URL)
    digest_every: int = 20  # one practitioner in twenty takes a daily digest; 0: nobody
    seed: int = 20260112

    @property
    def window_start(self) -> datetime:
        return self.window_end - self.window

    def staff_per_role(self) -> int:
        return max(2, self.cases // 40)  # a caseload of about 40 cases per practitioner


def notify_config(path: Path, roles: list[str], url: str = "json://127.0.0.1:9/unused") -> Path:
    """Role channels for every role, as README's production config has: role messages
    (escalations, clock warnings) go to one team channel instead of everyone in the role."""
    import yaml

    path.write_text(yaml.safe_dump({
        "channels": {f"team-{r}": f"{url}/team-{r}" for r in roles},
        "roles": {r: [f"team-{r}"] for r in roles}}))
    path.chmod(0o600)  # a notification config readable by others is refused
    return path


class Rows:
    """Rows of each table as tuples of Python values, in insertion order."""

    PRACTITIONER = ("id", "handle", "display_name", "role", "team", "contact", "active", "digest")
    CASE = ("id", "ref", "jurisdiction", "site", "pathway_id", "settings", "stage", "opened_at",
            "closed_on", "legal_status", "final_order_kind", "final_order_follows_recommendation",
            "exit_reason")
    CHILD = ("case_id", "key", "given_name", "family_name", "date_of_birth", "address")
    TASK = ("case_id", "key", "spec_id", "stage", "title", "role", "caregiver", "child",
            "occurrence",
            "anchor", "after", "due", "due_explanation", "state", "assignee_id", "outcome",
            "completed_on", "completed_by", "created_at", "updated_at")
    TIMER = ("key", "case_id", "task_key", "kind", "role", "due_at", "detail", "fired_at",
             "cancelled_at")

    def __init__(self, templates: Templates, cohort: Cohort) -> None:
        self.t = templates
        self.c = cohort
        self.rng = random.Random(cohort.seed)
        self.staff: dict[str, list[int]] = {}
        # one shift per case, drawn up front so every table agrees
        on = cohort.window_end.astimezone(UK).date()
        self.shifts: list[tuple[Template, int]] = []
        for i in range(cohort.cases):
            tpl = templates.cases[i % len(templates.cases)]
            if cohort.all_due:
                shift = 0
            else:
                first = min((tm["day"] for tm in tpl.timers), default=on)
                weeks = (on - first).days // 7 - self.rng.randrange(cohort.spread_weeks)
                shift = weeks * 7
            self.shifts.append((tpl, shift))
        self._uk: dict[tuple[date, time], datetime] = {}

    def pathways(self) -> Iterator[tuple]:
        for p in self.t.pathways:
            # the seal made under this site's secret key (checked where the spec is loaded)
            yield (p["id"], p["profile"], p["version"], p["sha256"], p["spec_json"],
                   _parse_dt(p["stored_at"]), _parse_dt(p["stored_at"]), p.get("seal"))

    def practitioners(self) -> Iterator[tuple]:
        n, pid = self.c.staff_per_role(), 0
        for role in self.t.roles:
            for k in range(n):
                pid += 1
                self.staff.setdefault(role, []).append(pid)
                name = f"{GIVEN[k % len(GIVEN)]} {FAMILY[(k // len(GIVEN)) % len(FAMILY)]}"
                every = self.c.digest_every
                digest = bool(every) and k % every == every - 1
                yield (pid, f"{role}.{k:05d}", name, role, "nim", self.c.contact, True, digest)

    def _instant(self, day: date, at: time) -> datetime:
        key = (day, at)
        if key not in self._uk:
            self._uk[key] = uk_instant(day, at)
        return self._uk[key]

    def cases(self) -> Iterator[tuple]:
        for i, (tpl, shift) in enumerate(self.shifts, start=1):
            case = tpl.case
            opened = _parse_dt(case["opened_at"]) + timedelta(days=shift)
            closed = date.fromisoformat(case["closed_on"]) + timedelta(days=shift) \
                if case["closed_on"] else None
            yield (i, f"NIM-2025-{i:06d}", case["jurisdiction"], "bench", case["pathway_id"],
                   case["settings"], case["stage"], opened, closed, None, None, None,
                   case["exit_reason"])

    def children(self) -> Iterator[tuple]:
        for i, (tpl, shift) in enumerate(self.shifts, start=1):
            for n, key in enumerate(tpl.children):
                yield (i, key, GIVEN[(i + n) % len(GIVEN)], FAMILY[(i // 7) % len(FAMILY)],
                       date(2025, 6, 1) + timedelta(days=shift + i % 300), None)

    def tasks(self) -> Iterator[tuple]:
        for i, (tpl, shift) in enumerate(self.shifts, start=1):
            d = timedelta(days=shift)
            who = {role: self.rng.choice(ids) for role, ids in self.staff.items()}
            for t in tpl.tasks:
                stamp = self._instant(t["due"] + d, time(9))
                yield (i, t["key"], t["spec_id"], t["stage"], t["title"], t["role"],
                       t["caregiver"], t["child"], t["occurrence"], t["anchor"], t["after"],
                       t["due"] + d,
                       t["due_explanation"], t["state"], who.get(t["role"]), t["outcome"],
                       t["completed_on"] + d if t["completed_on"] else None, t["completed_by"],
                       stamp, stamp)

    def timers(self) -> Iterator[tuple]:
        start, count = self.c.window_start, 0
        for i, (tpl, shift) in enumerate(self.shifts, start=1):
            d = timedelta(days=shift)
            ref = f"NIM-2025-{i:06d}"
            for tm in tpl.timers:
                if self.c.max_timers is not None and count >= self.c.max_timers:
                    return
                due_at = (self.c.window_end if self.c.all_due
                          else self._instant(tm["day"] + d, tm["at"]))
                detail = tm["detail"]
                if detail and "due" in detail and shift:
                    detail = {**detail, "due": str(date.fromisoformat(detail["due"]) + d)}
                count += 1
                yield (ref + tm["suffix"], i, tm["task_key"], tm["kind"], tm["role"], due_at,
                       json.dumps(detail), due_at if due_at <= start else None, None)


# -- writers ------------------------------------------------------------------------------------

def sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):  # SQLAlchemy's SQLite DATETIME text, UTC (UTCDateTime)
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    return v


def populate_sqlite(url: str, rows: Rows) -> dict[str, int]:
    """Bulk-insert the cohort into a migrated SQLite store with plain sqlite3."""
    import sqlite3

    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("PRAGMA synchronous=OFF")
    counts: dict[str, int] = {}
    for table, columns, source in _tables(rows):
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        before = db.total_changes
        db.executemany(sql, (tuple(sqlite_value(v) for v in r) for r in source))
        counts[table] = db.total_changes - before
    db.commit()
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so no measured run pays the load's checkpoint
    db.close()
    return counts


def populate_postgres(url: str, rows: Rows) -> dict[str, int]:
    """Bulk-load the cohort into a migrated PostgreSQL store with COPY."""
    import psycopg

    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            for table, columns, source in _tables(rows):
                n = 0
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for r in source:
                        copy.write_row(r)
                        n += 1
                counts[table] = n
            for table in ("pathway_version", "practitioner", "nim_case"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return counts


def _tables(rows: Rows) -> Iterator[tuple[str, tuple[str, ...], Iterator[tuple]]]:
    yield "pathway_version", ("id", "profile", "version", "sha256", "spec_json",
                              "stored_at", "installed_at", "seal"), rows.pathways()
    yield "practitioner", Rows.PRACTITIONER, rows.practitioners()
    yield "nim_case", Rows.CASE, rows.cases()
    yield "child", Rows.CHILD, rows.children()
    yield "task", Rows.TASK, rows.tasks()
    yield "timer", Rows.TIMER, rows.timers()


def populate(url: str, templates: Templates, cohort: Cohort) -> dict[str, int]:
    """Migrate `url` and fill it with the cohort; returns rows per table."""
    from store.db import get_engine, migrate

    migrate(url)
    with get_engine(url).begin() as conn:  # the cohort brings its own team, ids from 1
        conn.exec_driver_sql("DELETE FROM practitioner WHERE kind = 'service'")
    get_engine(url).dispose()
    rows = Rows(templates, cohort)
    if url.startswith("sqlite"):
        return populate_sqlite(url, rows)
    return populate_postgres(url, rows)
