"""The soak's actions through the real service commands, and its child processes:
`python -m bench.soak_procs dispatch` (a dispatcher that runs until killed) and
`python -m bench.soak_procs command|sweep ARGS_JSON` (one command or one sweep, which a fault
point set in NIM_FAULT may kill mid-transaction). Settings come from the environment
(NIM_DATABASE_URL, NIM_CLOCK_FILE, NIM_NOTIFY_CONFIG, NIM_DATA_DIR, NIM_FAULT)."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from typing import Any

from bench.soak_script import NOTE

COORDINATOR, MANAGER, SECOND_MANAGER = "coord.ali", "mgr.okafor", "mgr.two"


def execute(svc: Any, action: dict[str, Any], ref: str | None,  # noqa: ANN401 - a Service
            actor: str = MANAGER) -> str:
    """Run one script action through the service's commands; returns the case reference.
    Tasks are completed by `actor` (a manager may complete any task), everything else by the
    coordinator."""
    from models.refs import TaskRef
    from models.schemas import ChildIn, Referral

    kind = action["kind"]
    if kind == "open":
        return svc.cases.open_case(Referral.model_validate(action["referral"]), COORDINATOR).ref
    assert ref is not None
    if kind == "complete":
        svc.tasks.complete_task(TaskRef(ref, action["task"]), actor, action["outcome"])
    elif kind == "add-child":
        child = {k: v for k, v in action["child"].items() if v is not None}
        svc.family.add_child(ref, ChildIn.model_validate(child), COORDINATOR)
    elif kind == "placement":
        svc.family.change_placement(ref, action["placement"], date.fromisoformat(action["start"]),
                                    NOTE, COORDINATOR)
    elif kind == "direction":
        svc.court.add_direction(ref, action["document"], action["role"],
                                date.fromisoformat(action["by"]), COORDINATOR)
    elif kind == "order":
        svc.court.record_final_order(ref, date.fromisoformat(action["made_on"]), action["order"],
                                     False, COORDINATOR, child=action["child"])
    elif kind == "exit":
        svc.cases.exit_case(ref, action["reason"], NOTE, COORDINATOR)
    elif kind == "pause":
        svc.cases.pause(ref, NOTE, COORDINATOR)
    elif kind == "resume":
        svc.cases.resume(ref, COORDINATOR)
    else:
        raise ValueError(f"unknown action {kind}")
    return ref


def _service() -> Any:  # noqa: ANN401 - a Service
    from nim_pathway.app import build_service

    return build_service(closures=frozenset(), migrate=False)


def dispatch_forever() -> None:
    """A dispatcher process: deliver whatever is due on its clock, until it is killed. An
    idle round waits briefly for work to arrive (a service's poll)."""
    import apprise  # noqa: F401 - loaded before the first message

    dispatcher = _service().dispatcher()
    print("ready", flush=True)
    while True:
        report = dispatcher.run_once(limit=50)
        if report.sent + report.failed + report.dead + report.dropped + report.deferred == 0:
            time.sleep(0.02)


def main(argv: list[str]) -> None:
    if argv[0] == "dispatch":
        dispatch_forever()
        return
    args = json.loads(argv[1])
    svc = _service()
    if argv[0] == "command":
        execute(svc, args["action"], args.get("ref"), args.get("actor", MANAGER))
    elif argv[0] == "sweep":
        svc.timers.fire_due_timers(batch=args.get("batch", 5))
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
