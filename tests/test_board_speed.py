"""What makes the workbench's board fast at 1,000 open cases (bench figure 19a): every case's
engine state read with one query per table (`store.mapping.load_states`), the same state the
per-case read gives; and the board kept until the store changes or the day turns."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from models.refs import TaskRef
from models.schemas import ChildIn
from nim_pathway.web.board import board_data
from store.mapping import find_case, load_state
from store.sealing import is_sealed
from tests.test_workbench import open_case


def busy_cases(svc, clock) -> list[str]:
    """Cases in many states: plain; past triage with notes and consent; a sibling added,
    paused and resumed, a placement move, an extension, a direction, one child's order;
    exited."""
    plain = open_case(svc)
    busy = open_case(svc, referral="2026-01-06")
    svc.tasks.complete_task(TaskRef(busy, "triage"), "mgr.okafor",
                            {"accepted": True, "notes": "typed free text"})
    svc.tasks.complete_task(TaskRef(busy, "consent-mother"), "sw.jones", {"consent": "given"})
    svc.family.add_child(busy, ChildIn.model_validate({
        "given_name": "Sib", "family_name": "Sib", "date_of_birth": "2025-11-01"}), "coord.ali")
    svc.cases.pause(busy, "in hospital", "coord.ali", "father")
    clock.advance(timedelta(days=3))
    svc.cases.resume(busy, "coord.ali", "father")
    svc.family.change_placement(busy, "kinship", date(2026, 1, 14), "moved", "coord.ali")
    svc.court.extend_timetable(busy, date(2026, 1, 14), 8, "expert late", "coord.ali")
    svc.court.add_direction(busy, "final-report", None, date(2026, 5, 1), "coord.ali")
    svc.court.record_final_order(busy, date(2026, 1, 15), "care-order", False, "coord.ali",
                                 "child-2")
    gone = open_case(svc)
    svc.cases.exit_case(gone, "disengaged", "", "coord.ali")
    return [plain, busy, gone]


def test_all_cases_read_at_once_give_the_per_case_state_with_free_text_sealed(store, clock):
    svc = store
    refs = busy_cases(svc, clock)
    snaps = {s.ref: s for s in svc.queries.snapshots()}
    assert sorted(snaps) == sorted(refs)
    with svc.ctx.read() as session:
        for ref in refs:
            case = find_case(session, ref)
            one = load_state(session, case, snaps[ref].spec, svc.ctx.closures)
            many = snaps[ref].state
            # what people typed stays sealed in the many-case read; all else is the same
            assert all(is_sealed(e.reason) for e in many.extensions)
            notes = [t.outcome["notes"] for t in many.tasks.values()
                     if t.outcome and t.outcome.get("notes")]
            assert all(is_sealed(n) for n in notes)
            assert notes or ref != refs[1]
            many = replace(many, extensions=one.extensions, tasks={
                k: replace(t, outcome=one.tasks[k].outcome) for k, t in many.tasks.items()})
            assert many == one, ref
    busy = snaps[refs[1]].state
    assert busy.children == ["child-1", "child-2"] and busy.directions and busy.pauses
    assert busy.placement_kinds["child-1"] == "kinship" and "child-2" in busy.child_orders


def test_the_board_is_kept_until_the_store_changes_or_the_day_turns(store, clock,
                                                                    monkeypatch):
    svc = store
    ref = open_case(svc)
    reads = []
    real = svc.queries.snapshots
    monkeypatch.setattr(svc.queries, "snapshots", lambda **kw: reads.append(kw) or real(**kw))
    first = board_data(svc, None, None)
    assert len(reads) == 1
    assert board_data(svc, None, None) is first and len(reads) == 1  # kept
    assert board_data(svc, "nim", None) is not first and len(reads) == 2  # another filter
    svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    changed = board_data(svc, None, None)  # a command audited: read again
    assert len(reads) == 3
    assert [s for s, _ in changed["columns"]] == ["consent"]
    clock.advance(timedelta(days=1))
    board_data(svc, None, None)  # the day turned: RAG counts from today
    assert len(reads) == 4
    clock.advance(timedelta(hours=1))
    board_data(svc, None, None)
    assert len(reads) == 4
