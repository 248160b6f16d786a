"""Prefect tells the truth about waiting work, against a real server with the deployments
served: a waiting task run lists under its due date and is not "late" until it is overdue;
an overdue one carries the `overdue` tag (and loses it when done or no longer overdue); the
saved views, "Overdue" among them, list waiting runs only, and link into the v2 UI.

The case store's clock is set to the real date here: Prefect's "late" is counted on the
server's own clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from models.clock import UK
from models.refs import TaskRef
from models.schemas import Referral
from orchestration.naming import OVERDUE
from orchestration.sync import HOLD_S, expected_start, orchestrate_after
from tests.conftest import referral_data
from tests.prefect_stack import running_stack, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from models.clock import FileClock

    tmp = tmp_path_factory.mktemp("views")
    with running_stack(tmp, f"sqlite:///{tmp / 'cases.db'}") as s:
        # the real date, at 10:00 UK: "late" is counted on Prefect's clock
        FileClock(str(s.clock_file)).set(datetime.combine(datetime.now(UK).date(), time(10),
                                                          tzinfo=UK))
        yield s


def client():  # noqa: ANN201
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def runs_of(ref: str) -> dict[str, object]:
    """The case's task runs by task key (the live one where a task has several)."""
    from orchestration.prefect_api import LIVE, read_case_runs

    with client() as c:
        runs = read_case_runs(c, ref)
    out: dict[str, object] = {}
    for r in sorted(runs, key=lambda r: r.state.type.value in LIVE):
        key = next((t[5:] for t in r.tags if t.startswith("task:")), None)
        if key:
            out[key] = r
    return out


def open_case(store, days_ago: int) -> str:  # noqa: ANN001
    """A case referred `days_ago` days before the (real) date, synced to Prefect."""
    today = store.queries.today()
    d = lambda n: str(today - timedelta(days=n))  # noqa: E731
    ref = store.cases.open_case(Referral.model_validate(referral_data(
        referral=d(days_ago), care_entry=d(days_ago + 7), proceedings_issued=d(days_ago + 4),
        placement={"kind": "foster", "start": d(days_ago + 7)})), "coord.ali").ref
    orchestrate_after(store, ref)
    return ref


def test_expected_start_is_the_end_of_the_due_day_or_later():
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert expected_start(now.date() + timedelta(days=3), now) == datetime(
        2026, 3, 5, 23, 59, tzinfo=UK)
    # work already past its due day: held from the workers a while, then shown late
    assert expected_start(now.date() - timedelta(days=3), now) == now + timedelta(
        seconds=HOLD_S)


def test_a_waiting_task_run_lists_under_its_due_day_and_is_not_late(stack):
    store = stack.store
    ref = open_case(store, days_ago=0)
    triage = store.queries.task(ref, "triage")
    run = wait_for(lambda: (r := runs_of(ref).get("triage")) and r.state.name == "Suspended"
                   and r, "the triage run to wait")
    assert triage.due >= store.queries.today()
    assert run.expected_start_time == datetime.combine(triage.due, time(23, 59), tzinfo=UK)
    assert run.estimated_start_time_delta == timedelta(0)  # the UI's "(… late)": none
    assert run.start_time is None and OVERDUE not in run.tags
    # the form is there, and answering it still works: the run completes
    from prefect.flow_runs import resume_flow_run

    from nim_pathway.demo import current_code

    assert run.state.state_details.run_input_keyset["response"] == "suspended-outcome-1-response"
    stack.store.clock.set(stack.store.clock.now() + timedelta(seconds=30))
    resume_flow_run(run.id, run_input={"completed_by": "mgr.okafor", "accepted": True,
                                       "code": current_code(store, "mgr.okafor")})
    wait_for(lambda: store.queries.task(ref, "triage").state == "done", "triage recorded")
    wait_for(lambda: runs_of(ref)["triage"].state.name == "Completed", "the run to complete")


def test_overdue_work_is_tagged_by_the_audit_and_untagged_when_done(stack):
    from orchestration.reconcile import reconcile

    store = stack.store
    ref = open_case(store, days_ago=30)  # triage, consent, … all past their due days
    overdue = {t.key for t in store.queries.tasks(case=ref, overdue=True)}
    assert "triage" in overdue
    runs = wait_for(lambda: (r := runs_of(ref)) and overdue <= set(r) and r, "the runs")
    assert {k for k, r in runs.items() if OVERDUE in r.tags} == overdue  # tagged when made
    # made already overdue: held from the workers, then shown late like any overdue work
    assert runs["triage"].expected_start_time > runs["triage"].created

    # a case synced before its work fell due: the nightly audit finds the difference
    fresh = open_case(store, days_ago=0)
    wait_for(lambda: "triage" in runs_of(fresh), "the fresh case's runs")

    def tagged() -> set[str]:
        return {k for k, r in runs_of(fresh).items()
                if OVERDUE in r.tags and r.state.name == "Suspended"}

    def overdue_now() -> set[str]:
        return {t.key for t in store.queries.tasks(case=fresh, overdue=True)}

    assert "triage" not in overdue_now() and tagged() == overdue_now()
    assert fresh not in [r.ref for r in reconcile(store)]  # nothing differs yet
    later = store.clock.now() + timedelta(days=40)
    store.clock.set(later)
    late = overdue_now()
    was = tagged()
    reports = {r.ref: r for r in reconcile(store)}
    assert "triage" in late and sorted(reports[fresh].retagged) == sorted(late - was)
    assert tagged() == late
    assert fresh not in {r.ref for r in reconcile(store)}  # tagged: nothing more to do

    # done (through the CLI path): the run completes and is no longer tagged overdue
    store.tasks.complete_task(TaskRef(fresh, "triage"), "mgr.okafor", {"accepted": True})
    orchestrate_after(store, fresh)
    wait_for(lambda: runs_of(fresh)["triage"].state.name == "Completed", "triage to complete")
    orchestrate_after(store, fresh)  # the completed run's own sync may have raced the resume
    assert OVERDUE not in runs_of(fresh)["triage"].tags

    # no longer overdue (the clock back, as a re-dating would do): the tag goes
    store.clock.set(later - timedelta(days=40))
    assert fresh in {r.ref for r in reconcile(store)}
    assert tagged() == overdue_now() and len(tagged()) < len(late)


def test_saved_views_list_waiting_runs_and_link_into_the_v2_ui(stack):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterTags,
    )

    from orchestration.reconcile import (
        publish_saved_views,
        saved_views,
        view_filters,
        view_link,
        views_markdown,
    )

    store = stack.store
    views = saved_views(store)
    assert views["Overdue"] == OVERDUE and views["My queue: psy.chen"] == "assignee:psy.chen"
    with client() as c:
        # one saved by an earlier version (no state filter) is replaced, the rest added
        c.request("PUT", "/saved_searches/", json={"name": "Queue: psychologist", "filters": [
            view_filters("role:psychologist")[0]]})
        assert publish_saved_views(c, views) == len(views)
        assert publish_saved_views(c, views) == 0  # saved as they should be: nothing to do
        saved = {v["name"]: v["filters"] for v in c.request(
            "POST", "/saved_searches/filter", json={}).json()}
        assert saved["Overdue"] == view_filters(OVERDUE)
        assert saved["Queue: psychologist"] == view_filters("role:psychologist")
        by_property = {f["property"]: f["value"] for f in saved["Overdue"]}
        assert by_property["state"] == ["Suspended", "Paused"]
        assert by_property["range"]["endDate"] > "2099"  # work not due yet is not hidden
        # what the filter finds: waiting overdue runs only
        found = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[OVERDUE]),
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=by_property["state"]))))
    assert found and all(r.state.name == "Suspended" for r in found)
    link = view_link("http://127.0.0.1:4200/", OVERDUE)
    assert link == ("http://127.0.0.1:4200/v2/runs?tags=overdue&state=Suspended"
                    "&sort=START_TIME_ASC")
    table = views_markdown("http://127.0.0.1:4200", views).splitlines()
    assert table[6].startswith("| [Overdue](http://127.0.0.1:4200/v2/runs?tags=overdue&")


def test_a_run_made_but_not_yet_suspended_is_asked_by_the_next_sync(stack):
    """A sync that stopped between making a task's run (Scheduled, for the end of its due day)
    and suspending it leaves a run without a form: the next sync suspends it with its form
    instead of leaving it to start on its due day or making a second run."""
    from prefect.states import Scheduled

    from orchestration.naming import case_tags, run_name, shown_tags
    from orchestration.prefect_api import TASK_DEPLOYMENT, start_run

    store = stack.store
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    t = store.queries.task(ref, "triage")
    with client() as c:
        made = start_run(c, TASK_DEPLOYMENT, state=Scheduled(
            scheduled_time=expected_start(t.due, datetime.now(UTC))),
            parameters={"ref": ref, "task_key": "triage"},
            name=run_name(ref, t.stage, "triage", t.due),
            tags=case_tags(ref, t.stage, "england-and-wales", t.role)
            + ["task:triage", "kind:task", *sorted(shown_tags(t.assignee, t.due))],
            idempotency_key=f"{ref}/triage#1")
    store.timers.record_flow_runs(ref, {"triage": str(made.id)})
    assert runs_of(ref)["triage"].state.name == "Scheduled"
    orchestrate_after(store, ref)
    run = wait_for(lambda: (r := runs_of(ref)["triage"]).state.name == "Suspended" and r,
                   "the run to be suspended with its form")
    assert run.id == made.id
    with client() as c:
        keyset = run.state.state_details.run_input_keyset
        assert "Triage the referral" in c.read_flow_run_input(run.id, keyset["description"])
        from orchestration.prefect_api import read_case_runs

        assert [r.id for r in read_case_runs(c, ref) if "task:triage" in r.tags] == [made.id]
