"""The manager's board (open cases as cards grouped by stage, RAG in colour and words, the
programme's own lateness apart from the LA's and the court's), KPI charts, a case's page with
its timeline picture, and the pathway as a picture."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from models.errors import CommandError
from nim_pathway.app import Service
from nim_pathway.web import diagram
from nim_pathway.web.session import Person, render
from reports import charts
from reports.oversight import caseload_board, kpis
from store.queries import CaseSnapshot, Queries
from store.views import BoardRow


class OneRead:
    """`svc.queries` for one page: every case's snapshot is loaded once (the board and the
    KPIs each read them all, the breach count inside the KPIs again), then filtered here as
    `Queries.snapshots` filters; every other read goes to the real queries."""

    def __init__(self, queries: Queries) -> None:
        self._queries = queries
        self._all: dict[str | None, list[CaseSnapshot]] = {}

    def snapshots(self, open_only: bool = False, ref: str | None = None,
                  programme: str | None = None) -> list[CaseSnapshot]:
        if programme not in self._all:
            self._all[programme] = self._queries.snapshots(programme=programme)
        return [s for s in self._all[programme] if (not open_only or s.closed_on is None)
                and (ref is None or s.ref == ref)]

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the real queries' reads
        return getattr(self._queries, name)


RAG_WORDS = {"red": "red: own work overdue", "amber": "amber: own work due soon",
             "green": "green: on track"}


_CACHE: weakref.WeakKeyDictionary[Queries, OrderedDict[tuple, dict]] = \
    weakref.WeakKeyDictionary()
CACHED_BOARDS = 16  # per store: the filters a team uses
_LOCK = threading.Lock()  # pages are served from a thread pool


def board_data(svc: Service, programme: str | None, nation: str | None) -> dict:
    """The board for these filters, computed again only when the store changed (a new audit
    event: every command audits) or the day turned (RAG counts working days from today);
    otherwise the same cards and charts as the last request, without reading every case."""
    key = (svc.queries.last_audit(), svc.queries.today(), programme, nation,
           svc.settings.rag_amber_working_days)
    with _LOCK:
        boards = _CACHE.setdefault(svc.queries, OrderedDict())
        kept = boards.get(key)
        if kept is not None:
            boards.move_to_end(key)
            return kept
    data = compute_board(svc, programme, nation)  # two requests at once may both compute it
    with _LOCK:
        boards[key] = data
        while len(boards) > CACHED_BOARDS:
            boards.popitem(last=False)
    return data


def compute_board(svc: Service, programme: str | None, nation: str | None) -> dict:
    """The board's cards by stage (in the pathways' stage order), its filters and charts."""
    specs = svc.queries.installed_specs()
    programmes = sorted({s.programme for s in specs.values()})
    nations = sorted({j for s in specs.values() for j in s.jurisdictions})
    programme = programme if programme in programmes else None
    nation = nation if nation in nations else None
    queries: Any = OneRead(svc.queries)
    rows: list[BoardRow] = [r for r in caseload_board(
        queries, programme, svc.settings.rag_amber_working_days)
        if nation is None or r.jurisdiction == nation]
    order: list[str] = []
    for spec in specs.values():
        order += [s.id for s in spec.stages if s.id not in order]
    columns: dict[str, list[BoardRow]] = {}
    for r in rows:
        columns.setdefault(r.stage or "no stage", []).append(r)
    ranked = sorted(columns, key=lambda s: (order.index(s) if s in order else len(order), s))
    data = kpis(queries, programme)
    return {"columns": [(s, columns[s]) for s in ranked], "count": len(rows),
            "programmes": programmes, "nations": nations, "programme": programme or "",
            "nation": nation or "", "rag_words": RAG_WORDS, "profiles": list(specs),
            "red": sum(r.rag == "red" for r in rows),
            "la_late": sum(r.la_late for r in rows), "court_late": sum(r.court_late for r in rows),
            "own_late": sum(r.overdue for r in rows),
            "on_time_chart": charts.on_time_by_role(data),
            "exits_chart": charts.exits_by_reason(data)}


async def board(request: Request, svc: Service, me: Person) -> Response:
    q = request.query_params
    data = await run_in_threadpool(board_data, svc, q.get("programme"), q.get("nation"))
    return render("board.html.j2", me=me, title="Board", **data)


def case_data(svc: Service, ref: str) -> dict:
    view = svc.queries.show(ref)
    snap = svc.queries.snapshot(ref)
    today = svc.queries.today()
    return {"case": view, "timeline_chart": charts.timeline(snap.spec, snap.state, today),
            "exits": sorted(snap.spec.exits), "profile": view.pathway.split("@")[0],
            "today": today}


async def case_page(request: Request, svc: Service, me: Person) -> Response:
    ref = request.path_params["ref"]
    try:
        data = await run_in_threadpool(case_data, svc, ref)
    except CommandError as exc:
        return render("error.html.j2", 404, me=me, title="Not found", error=str(exc))
    return render("case.html.j2", me=me, title=ref, done=request.query_params.get("done"),
                  **data)


async def pathway_page(request: Request, svc: Service, me: Person) -> Response:
    profile = request.path_params["profile"]
    specs = await run_in_threadpool(svc.queries.installed_specs)
    if profile not in specs:
        return render("error.html.j2", 404, me=me, title="Not found",
                      error=f"no installed pathway {profile[:40]!r}; installed: "
                            f"{', '.join(specs)}")
    return render("pathway.html.j2", me=me, title=f"Pathway {profile}", profile=profile,
                  spec=specs[profile], picture=diagram.svg(specs[profile]),
                  profiles=list(specs))


ROUTES = [("/board", board, ["GET"]), ("/cases/{ref:str}", case_page, ["GET"]),
          ("/pathway/{profile}", pathway_page, ["GET"])]
