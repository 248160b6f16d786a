"""What a flow run checks before it loads any code: prefect.yaml's pull step.

A worker started without the settings a flow run needs would otherwise run every flow
against a fresh SQLite file in its own folder (NIM_DATABASE_URL unset), or crash on a missing
code folder with a FileNotFoundError that names neither. Here the run fails at once with one
message naming the variable and where it is documented (docs/DEPLOY.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from models.errors import ConfigError

# Without these a flow run silently works on other data: a SQLite store and key files of its
# own. PREFECT_API_URL is set by the worker for the runs it starts; a bare process needs it.
REQUIRED = {
    "NIM_DATABASE_URL": "the case store the CLI uses",
    "NIM_DATA_DIR": "the data folder (key files, audit checkpoint) shared with the CLI",
    "PREFECT_API_URL": "the Prefect server's API",
}
ENTRYPOINT = Path("flows") / "pathway_flows.py"


class WorkerMisconfigured(ConfigError):
    """A flow run's environment lacks a setting (the message names it)."""


def code_dir() -> Path:
    """NIM_PROJECT_DIR if set, else the folder this package was installed from (a checkout
    or an image's /app): it must hold flows/pathway_flows.py, the deployments' entrypoint."""
    from nim_pathway.settings import PROJECT_DIR

    named = os.environ.get("NIM_PROJECT_DIR")
    folder = Path(named) if named else PROJECT_DIR
    if not (folder / ENTRYPOINT).is_file():
        where = "NIM_PROJECT_DIR" if named else "the installed package's folder"
        raise WorkerMisconfigured(
            f"{where} {folder} has no {ENTRYPOINT}: set NIM_PROJECT_DIR on the worker to the "
            "nim-pathway checkout (docs/DEPLOY.md)")
    return folder


def check_settings() -> None:
    """Every setting a flow run reads, checked now: a missing or unusable one is named."""
    from nim_pathway import settings
    from notifications.config import load_config

    for name, what in REQUIRED.items():
        if not os.environ.get(name):
            raise WorkerMisconfigured(
                f"{name} is not set on this worker ({what}): set it in the worker's "
                "environment or the work pool's job variables (docs/DEPLOY.md)")
    for read in (settings.database_url, settings.keystore_url, settings.clock,
                 settings.closure_days, settings.audit_key, settings.secret_key,
                 settings.intake_days, settings.prefect_history_days, load_config):
        read()  # each raises a ConfigError naming its variable


def prepare_flow_run() -> dict[str, str]:
    """prefect.yaml's pull step: check the settings, then work in the code folder."""
    try:
        folder = code_dir()
        check_settings()
    except ConfigError as exc:
        _fail_run(str(exc))
        raise
    os.chdir(folder)
    return {"directory": str(folder)}


def _fail_run(message: str) -> None:
    """Mark this flow run Failed with the message. Left alone, Prefect reports only "Process
    exited with status code: 1" (the cause is in the worker's log): the UI, `status` and the
    CLI's sync show this message instead. The runner's later Crashed is refused (terminal)."""
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not run_id:
        return
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Failed

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id), Failed(message=message), force=True)
    except Exception:  # noqa: BLE001, S110 - the raise that follows still stops the run
        pass
