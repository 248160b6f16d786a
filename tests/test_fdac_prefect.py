"""Integration: an FDAC case through a real Prefect server with the deployments served, as
tests/test_orchestration.py runs a NIM case: opened from the open-case form, its work
completed half through the UI's Resume form and half through the CLI path, up to the
trial-for-change gate, decided "extend" in the gate task's form."""

from __future__ import annotations

import json

import pytest

from models.schemas import Referral
from models.simulate import sample_outcome
from tests.conftest import referral_data
from tests.prefect_stack import running_stack, wait_for
from tests.test_orchestration import (
    HANDLES,
    SENTINELS,
    case_runs,
    complete_cli,
    complete_ui,
    next_code,
    open_tasks,
    task_run,
)

pytestmark = pytest.mark.slow

DECISIONS = {"trial-for-change": "extend"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fdac-stack")
    with running_stack(tmp, f"sqlite:///{tmp / 'cases.db'}") as s:
        yield s


def test_fdac_case_runs_to_the_trial_for_change_gate(stack):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    store = stack.store
    referral = Referral.model_validate(referral_data(
        programme="fdac", care_entry="2026-01-08", proceedings_issued="2026-01-05",
        placement={"kind": "home", "start": "2026-01-08"},
        caregivers=[{"relationship": "mother", "name": "Sentinel-Mother"}],
        settings={"nlr_count": 1}))
    handle = store.cases.stage_intake(referral, "coord.ali")
    run_deployment("open-case/open-case", timeout=0,
                   parameters={"form": {"intake": handle, "coordinator": "coord.ali",
                                        "code": next_code(store, "coord.ali")}})
    ref = wait_for(lambda: next((c.ref for c in store.queries.cases()), None), "the case to open")
    shown = store.queries.show(ref)
    assert (shown.programme, shown.pathway) == ("fdac", "fdac-england@2026.3")

    spec = store.queries.pathway(ref)
    via_ui = True
    while store.queries.show(ref).stage in ("introduction", "sign-up", "trial-for-change"):
        tasks = open_tasks(store, ref)
        assert tasks, store.queries.show(ref)
        for t in tasks:
            if t.spec_id == "decision-meeting":  # the gate's form offers FDAC's outcomes
                run = task_run(ref, t.key)
                with get_client(sync_client=True) as client:
                    schema = client.read_flow_run_input(
                        run.id, run.state.state_details.run_input_keyset["schema"])
                assert {"continue", "extend", "stop"} <= set(
                    json.loads(schema)["properties"]["decision"]["enum"])
            outcome = sample_outcome(spec, t.spec_id, DECISIONS)
            (complete_ui if via_ui else complete_cli)(store, ref, t.key, HANDLES[t.role],
                                                     outcome)
            via_ui = not via_ui
        asked = {t.key for t in tasks}
        wait_for(lambda asked=asked: not asked & {t.key for t in open_tasks(store, ref)},
                 "the completions to be recorded")

    assert store.queries.show(ref).stage == "extended-trial"
    assert store.queries.show(ref).decisions == DECISIONS
    for t in store.queries.tasks(case=ref, state="done"):
        task_run(ref, t.key, "Completed")
    wait_for(lambda: all(task_run(ref, t.key) for t in open_tasks(store, ref)),
             "runs for the extension's work")
    runs = case_runs(ref)
    task_runs = [r for r in runs if "kind:task" in r.tags and r.state.name != "Cancelled"]
    for r in task_runs:
        key = next(t[5:] for t in r.tags if t.startswith("task:"))
        row = next(t for t in store.queries.tasks(case=ref, state=None) if t.key == key)
        assert r.name == f"due {row.due} · {ref} · {row.stage} · {key}"
        assert {f"case:{ref}", f"stage:{row.stage}", f"role:{row.role}",
                "programme:fdac"} <= set(r.tags)
    roles = {next(t[5:] for t in r.tags if t.startswith("role:")) for r in task_runs}
    assert {"fdac-team-manager", "fdac-social-worker", "substance-misuse-worker",
            "fdac-clinician", "parent-mentor"} <= roles
    assert all("programme:fdac" in r.tags for r in runs if "kind:stage" in r.tags)

    def stages() -> dict[str, str]:
        return {r.name: r.state.name for r in case_runs(ref) if "kind:stage" in r.tags}

    # the stage run finishes once a worker has run its resumed flow: wait for it, not a moment
    wait_for(lambda: stages().get(f"{ref} · trial-for-change") == "Completed",
             "the trial-for-change stage run to complete after its gate was decided")
    assert f"{ref} · extended-trial" in stages()
    blob = json.dumps([r.model_dump_json() for r in runs])
    assert not [s for s in SENTINELS if s in blob]
