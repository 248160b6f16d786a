"""What a flow run checks before it loads any code: prefect.yaml's pull step.

A worker started without the settings a flow run needs would otherwise run every flow
against a fresh SQLite file in its own folder (NIM_DATABASE_URL unset), or crash on a missing
code folder with a FileNotFoundError that names neither. Here the run fails at once with one
message naming the variable and where it is documented (docs/DEPLOY.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ConfigError

if TYPE_CHECKING:
    from nim_pathway.settings import Settings

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


def code_dir(settings: Settings) -> Path:
    """NIM_PROJECT_DIR if set, else the folder this package was installed from (a checkout
    or an image's /app): it must hold flows/pathway_flows.py, the deployments' entrypoint."""
    folder = settings.project_dir
    if not (folder / ENTRYPOINT).is_file():
        where = ("NIM_PROJECT_DIR" if settings.env.get("NIM_PROJECT_DIR")
                 else "the installed package's folder")
        raise WorkerMisconfigured(
            f"{where} {folder} has no {ENTRYPOINT}: set NIM_PROJECT_DIR on the worker to the "
            "nim-pathway checkout (docs/DEPLOY.md)")
    return folder


def check_settings(settings: Settings) -> None:
    """Every setting a flow run reads, checked now: a missing or unusable one is named."""
    from notifications.config import load_config

    for name, what in REQUIRED.items():
        if not settings.env.get(name):
            raise WorkerMisconfigured(
                f"{name} is not set on this worker ({what}): set it in the worker's "
                "environment or the work pool's job variables (docs/DEPLOY.md)")
    for name in ("database_url", "keystore_url", "clock", "closure_days", "audit_key",
                 "secret_key", "totp_key", "intake_days", "prefect_history_days"):
        getattr(settings, name)  # each raises a ConfigError naming its variable
    load_config(settings.notify_config_path, settings.notify_env)


def prepare_flow_run() -> dict[str, str]:
    """prefect.yaml's pull step: check the settings, then work in the code folder."""
    from nim_pathway.settings import Settings

    settings = Settings.from_env()  # this process's composition root
    try:
        folder = code_dir(settings)
        check_settings(settings)
    except ConfigError as exc:
        _fail_run(settings, str(exc))
        raise
    os.chdir(folder)
    return {"directory": str(folder)}


def _fail_run(settings: Settings, message: str) -> None:
    """Mark this flow run Failed with the message. Left alone, Prefect reports only "Process
    exited with status code: 1" (the cause is in the worker's log): the UI, `status` and the
    CLI's sync show this message instead. The runner's later Crashed is refused (terminal)."""
    run_id = settings.env.get("PREFECT__FLOW_RUN_ID")
    if not run_id:
        return
    from uuid import UUID

    from prefect.states import Failed

    from orchestration.prefect_api import prefect_client

    try:
        with prefect_client(settings) as client:
            client.set_flow_run_state(UUID(run_id), Failed(message=message), force=True)
    except Exception:  # noqa: BLE001, S110 - the raise that follows still stops the run
        pass
