"""Integration: deployed exactly as docs/DEPLOY.md says, with Prefect's own CLI (not
`nim-pathway up`): a server on PostgreSQL, `prefect work-pool create`, `prefect --no-prompt
deploy --all`, `prefect worker start`; the case store and key store on PostgreSQL.

A case is opened through the CLI while no worker is online (the CLI says so); a worker
missing NIM_DATABASE_URL fails its runs naming the variable (and `doctor` says so); with a
well-configured worker the next command says the earlier runs failed, and the case's runs
reach their suspend on the worker. `status` never shows the case store's password.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from models.clock import FileClock
from nim_pathway.settings import Settings
from nim_pathway.stack import stop_group, wait_healthy
from tests.cli_team import as_person, log_in_team
from tests.conftest import PG_ADMIN_URL, referral_data
from tests.prefect_stack import ROOT, free_port, wait_for
from tests.receivers import HttpReceiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BIN = Path(sys.executable).parent
PASSWORD = "s3cretPW"  # trust auth ignores it; it must never be printed


def _database(name: str, extension: str | None = None) -> str:
    admin = create_engine("postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1],
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    if extension:
        db = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
        with db.begin() as conn:
            conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {extension}"))
        db.dispose()
    return url


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


@pytest.fixture
def deployment(tmp_path, pg_url):
    """Server, pool and deployments as the guide's steps make them; workers are the test's."""
    suffix = uuid.uuid4().hex[:8]
    prefect_db = _database(f"nim_prefect_{suffix}", "pg_trgm")
    port = free_port()
    receiver = HttpReceiver().start()
    (tmp_path / "keys").mkdir(mode=0o700)
    for key in ("audit", "secret", "totp"):
        (tmp_path / "keys" / f"{key}.key").write_text(uuid.uuid4().hex * 2)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NIM_", "PREFECT_"))}
    env = {  # what the guide's table lists for the CLI and the workers
        **clean,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "WARNING",
        "NIM_WORK_POOL": "nim-ops-test",  # not the default: the name is configurable
        "NIM_DATABASE_URL": _with_password(_database(f"nim_cases_{suffix}")),
        "NIM_KEYSTORE_URL": _database(f"nim_keys_{suffix}"),
        "NIM_DATA_DIR": str(tmp_path / "data"),
        "NIM_AUDIT_KEY_FILE": str(tmp_path / "keys" / "audit.key"),
        "NIM_SECRET_KEY_FILE": str(tmp_path / "keys" / "secret.key"),
        "NIM_TOTP_KEY_FILE": str(tmp_path / "keys" / "totp.key"),  # CLI here: the service's
        "NIM_UI_URL": "https://pathway.example.org",
        "NIM_ADMIN_TARGETS": receiver.url("admin"),
        "NIM_CLOCK_FILE": str(tmp_path / "clock"),  # virtual time shared with the workers
        "COLUMNS": "200",
    }
    FileClock(env["NIM_CLOCK_FILE"]).set(datetime(2026, 1, 12, 10, tzinfo=UTC))
    server_env = {**env, **Settings.from_env().prefect_server_env,
                  "PREFECT_SERVER_DATABASE_CONNECTION_URL":
                      "postgresql+asyncpg://" + prefect_db.split("://", 1)[1]}
    procs: list[subprocess.Popen] = []

    def spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        return proc

    def prefect(*args: str) -> None:
        subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=180)

    spawn("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], server_env)
    try:
        wait_healthy(env["PREFECT_API_URL"], 180)
        prefect("work-pool", "create", env["NIM_WORK_POOL"], "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        log_in_team(env, tmp_path / "sessions")
        yield env, spawn, receiver
    finally:
        for proc in reversed(procs):  # workers before the server
            stop_group(proc)
        receiver.stop()


def _cli(env: dict[str, str], tmp_path: Path, *args: str, code: int | None = 0
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "nim-pathway"), *args], capture_output=True, text=True,
                          timeout=240, env=as_person(env, args, tmp_path / "sessions"),
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert code is None or proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    return proc


def _case_runs(env: dict[str, str], ref: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from orchestration.prefect_api import read_case_runs

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        return read_case_runs(client, ref)


def test_deployed_as_the_guide_says(deployment, tmp_path):
    env, spawn, receiver = deployment
    ref = "NIM-2026-0001"
    worker = [str(BIN / "prefect"), "worker", "start", "--pool", env["NIM_WORK_POOL"]]

    before = json.loads(_cli(env, tmp_path, "status", "--json", code=1).stdout)
    assert before["prefect"]["state"] == "healthy"
    assert before["case store"]["state"] == "reachable"
    assert ":***@" in before["case store"]["url"]
    assert set(before["deployments"].values()) == {"pool nim-ops-test"}
    assert before["work pool"]["workers online"] == 0
    assert any("no worker is online" in p for p in before["problems"])

    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data()))
    opened = _cli(env, tmp_path, "case", "open", "--file", str(referral), "--as", "coord.ali")
    started = re.search(rf"orchestration: {ref}: (\d+) started", opened.stdout)
    assert started and int(started.group(1)) >= 2, opened.stdout  # the stage and its task
    assert "warning: no worker is online in work pool 'nim-ops-test'" in opened.stdout

    # A worker without NIM_DATABASE_URL: the stage run it picks up fails at once, naming the
    # variable (task runs are created Suspended with their forms: no worker runs them until
    # someone answers)
    broken = spawn("worker-broken", worker,
                   {k: v for k, v in env.items() if k != "NIM_DATABASE_URL"})
    failed = wait_for(lambda: [r for r in _case_runs(env, ref) if r.state.name == "Failed"],
                      "the stage run to fail on the misconfigured worker", 180)
    assert [r.name for r in failed] == [f"{ref} · referral"]
    assert {r.state.name for r in _case_runs(env, ref) if "kind:task" in r.tags} == {
        "Suspended"}
    assert all("NIM_DATABASE_URL is not set on this worker" in r.state.message for r in failed)
    doctor = _cli(env, tmp_path, "doctor", "--timeout", "90", "--no-notify", code=1)
    assert "probe run failed: NIM_DATABASE_URL is not set" in doctor.stderr
    stop_group(broken)

    spawn("worker", worker, env)
    done = _cli(env, tmp_path, "task", "complete", f"{ref}/triage", "--as", "mgr.okafor",
                "--field", "accepted=true")
    assert f"warning: {len(failed)} earlier run(s) of this case failed (NIM_DATABASE_URL is " \
        "not set" in done.stdout, done.stdout
    assert "stage-entered" in done.stdout and "started" in done.stdout

    def suspended() -> list:
        runs = [r for r in _case_runs(env, ref) if "stage:consent" in r.tags]
        return runs if runs and all(r.state.name == "Suspended" for r in runs) else []

    assert len(wait_for(suspended, "the consent stage's runs to suspend on the worker", 180)) >= 2

    after = _cli(env, tmp_path, "status", "--json")
    shown = json.loads(after.stdout)
    assert shown["problems"] == [] and shown["work pool"]["workers online"] >= 1
    assert shown["orchestration journal"]["with errors"] == 0
    assert any("NIM_DATABASE_URL" in r["message"] for r in shown["failed runs"])
    table = _cli(env, tmp_path, "status")
    assert "workers online: " in table.stdout and "postgresql://" in table.stdout

    healthy = _cli(env, tmp_path, "doctor", "--timeout", "120")
    assert "probe run completed through pool nim-ops-test" in healthy.stdout
    assert "deployment healthy" in healthy.stdout
    assert wait_for(lambda: [m for m in receiver.received if m["path"] == "/admin"],
                    "the admin test message", 30)
