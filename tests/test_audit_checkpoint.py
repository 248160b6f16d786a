"""The audit chain's head kept outside the database: sent to the admins, published as a Prefect
artifact, printed by `audit checkpoint`. A database owner with every right on the database but
not the audit key cannot cut the tail, rewrite the chain or drop a row without one of those
copies telling, even after deleting the local checkpoint file too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.app import build_service
from notifications.outbox import revive
from notifications.render import render_message
from store.audit import GENESIS, audit_hash, checkpoint_entry, parse_checkpoints
from store.db import get_engine, session_scope
from store.tables import AuditEvent, Outbox
from tests.conftest import referral_data
from tests.receivers import HttpReceiver

CLI = str(Path(sys.executable).parent / "nim-pathway")


@pytest.fixture
def http():
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def owner(db_url):
    """The database owner's rights: drops the append-only guard when asked, and puts it back
    afterwards for the other tests sharing the PostgreSQL database."""
    engine = get_engine(db_url)
    dropped = []

    def drop_guard():
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("drop trigger audit_event_no_change on audit_event"))
            else:
                conn.execute(text("drop trigger audit_event_no_update"))
                conn.execute(text("drop trigger audit_event_no_delete"))
        dropped.append(True)
        return engine

    yield drop_guard
    if dropped and engine.dialect.name == "postgresql":
        from alembic import command

        from store.db import alembic_config

        command.downgrade(alembic_config(db_url), "0004")
        command.upgrade(alembic_config(db_url), "head")


def some_work(store) -> str:
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    return ref


def audit_rows(url: str) -> list[AuditEvent]:
    with session_scope(url) as s:
        return s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()


def checkpoint_messages(url: str) -> list[Outbox]:
    with session_scope(url) as s:
        return s.exec(select(Outbox).where(Outbox.kind == "audit-checkpoint")
                      .order_by(Outbox.id)).all()


def delete_tail(engine, n: int) -> None:
    with engine.begin() as conn:
        last = conn.execute(text("select max(id) from audit_event")).scalar_one()
        conn.execute(text("delete from audit_event where id > :i"), {"i": last - n})


def rechain_without_key(engine, url: str, edit: dict[int, str] | None = None) -> None:
    """Recompute every row's hash as plain SHA-256 (the old unkeyed chain), as the database's
    owner can without the key; `edit` changes actors first."""
    prev, events = GENESIS, audit_rows(url)
    with engine.begin() as conn:
        for e in events:
            e.actor = (edit or {}).get(e.id, e.actor)
            e.prev_hash = prev
            e.hash = audit_hash(e, None)
            conn.execute(text("update audit_event set actor=:a, prev_hash=:p, hash=:h "
                              "where id=:i"), {"a": e.actor, "p": e.prev_hash, "h": e.hash,
                                               "i": e.id})
            prev = e.hash


def test_published_checkpoint_catches_a_truncated_tail_without_the_local_file(store, db_url,
                                                                              owner):
    some_work(store)
    rows = audit_rows(db_url)
    entry = store.timers.publish_checkpoint()
    assert entry is not None and entry["id"] == rows[-1].id and entry["hash"] == rows[-1].hash
    assert entry["rows"] == len(rows) and len(entry["mac"]) == 64
    assert store.queries.verify_audit([entry]) == []
    # the local checkpoint file keeps the same head, with its row count
    local = json.loads(store.ctx.audit_checkpoint.read_text().splitlines()[-1])
    assert {k: local[k] for k in ("db", "id", "hash", "rows")} == {
        k: entry[k] for k in ("db", "id", "hash", "rows")}

    engine = owner()
    delete_tail(engine, 3)
    store.ctx.audit_checkpoint.unlink()  # and the local copy with it
    # the chain alone looks whole, but nothing proves it complete any more (issue 28)
    assert [p[:40] for p in store.queries.verify_audit()] == [
        "no checkpoint of this database was found"]
    problems = store.queries.verify_audit([entry])
    assert len(problems) == 1, problems
    assert "truncated" in problems[0] and f"row {entry['id']} is missing" in problems[0]
    assert f"ends at row {audit_rows(db_url)[-1].id}:" in problems[0]
    assert "backup" in problems[0]


def test_a_chain_rebuilt_without_the_key_is_caught_by_the_published_checkpoint(store, db_url,
                                                                               owner):
    some_work(store)
    entry = store.timers.publish_checkpoint()
    engine = owner()
    rechain_without_key(engine, db_url, {3: "someone-else"})
    store.ctx.audit_checkpoint.unlink()
    # every row self-consistent, none keyed: only its completeness is unproven
    assert [p[:40] for p in store.queries.verify_audit()] == [
        "no checkpoint of this database was found"]
    problems = store.queries.verify_audit([entry])
    assert problems and all(p.startswith(f"checkpoint of row {entry['id']}") for p in problems)
    assert any("rewritten" in p and "no longer has the hash" in p for p in problems)


def test_a_middle_row_deleted_and_relinked_is_caught(store, db_url, owner):
    some_work(store)
    entry = store.timers.publish_checkpoint()
    rows = audit_rows(db_url)
    middle = rows[len(rows) // 2].id
    engine = owner()
    with engine.begin() as conn:
        conn.execute(text("delete from audit_event where id = :i"), {"i": middle})
    rechain_without_key(engine, db_url)
    store.ctx.audit_checkpoint.unlink()
    assert [p[:40] for p in store.queries.verify_audit()] == [
        "no checkpoint of this database was found"]
    problems = store.queries.verify_audit([entry])
    assert any("rewritten" in p for p in problems), problems
    assert any(f"{entry['rows'] - 1} rows up to row {entry['id']}, but {entry['rows']}" in p
               and "deleted" in p for p in problems), problems
    # and the ids renumbered to close the gap: row `id` is gone from the end
    rows = audit_rows(db_url)
    with engine.begin() as conn:
        for row in rows:
            if row.id > middle:
                conn.execute(text("update audit_event set id = :n where id = :i"),
                             {"n": row.id - 1, "i": row.id})
    problems = store.queries.verify_audit([entry])
    assert any(f"row {entry['id']} is missing" in p for p in problems), problems


def test_row_count_and_signature_of_an_entry_are_checked(store, db_url):
    some_work(store)
    entry = store.timers.publish_checkpoint()
    at = datetime.fromisoformat(entry["at"])
    miscounted = checkpoint_entry(db_url, (entry["id"], entry["hash"], entry["rows"] + 1),
                                  store.ctx.audit_key, at)
    problems = store.queries.verify_audit([miscounted])
    assert len(problems) == 1 and f"{entry['rows']} rows up to row {entry['id']}" in problems[0]
    forged = {**entry, "rows": entry["rows"] - 1}  # the count changed, the MAC kept
    assert "signature does not match" in store.queries.verify_audit([forged])[0]
    other = {**entry, "db": "0" * 16}
    assert "another database" in store.queries.verify_audit([other])[0]
    legacy = checkpoint_entry(db_url, (entry["id"], entry["hash"]), store.ctx.audit_key, at)
    assert "rows" not in legacy and store.queries.verify_audit([legacy]) == []  # older entries


def test_one_message_per_head_at_most_daily(store, clock):
    """The first sweep of a UK day sends the head if it moved; later sweeps that day send
    nothing (the sweep runs every five minutes: a message each time was noise)."""
    from datetime import timedelta

    ref = some_work(store)
    first = store.timers.publish_checkpoint()
    assert first is not None
    assert store.timers.publish_checkpoint() is None  # nothing new: not sent again
    assert len(checkpoint_messages(store.url)) == 1
    store.tasks.complete_task(TaskRef(ref, "consent-mother"), "sw.jones",
                              {"consent": "given"})
    clock.set(clock.now() + timedelta(hours=6))
    assert store.timers.publish_checkpoint() is None  # the head moved, but today's went
    assert len(checkpoint_messages(store.url)) == 1
    clock.set(clock.now() + timedelta(days=1))
    second = store.timers.publish_checkpoint()  # the next day: the head as it is now
    assert second is not None and second["id"] > first["id"]
    assert store.timers.publish_checkpoint() is None
    clock.set(clock.now() + timedelta(days=1))
    assert store.timers.publish_checkpoint() is None  # a new day, but the same head
    messages = checkpoint_messages(store.url)
    assert [m.meta["row_id"] for m in messages] == [first["id"], second["id"]]
    assert len({m.dedupe_key for m in messages}) == 2
    assert all(m.recipient == "admin" and m.case_ref is None for m in messages)
    assert len(audit_rows(store.url)) == second["rows"]  # publishing audits nothing


def test_the_checkpoint_reaches_the_admin_channel_and_verifies(store, clock, http, owner,
                                                               monkeypatch):
    monkeypatch.setenv("NIM_ADMIN_TARGETS", http.url("admin"))
    some_work(store)
    entry = store.timers.publish_checkpoint()
    # a service built after the admin target was set (settings are read once, when built)
    assert build_service(store.url, clock, migrate=False).dispatcher().run_until_idle().sent >= 1
    received = [m for m in http.received if m["path"] == "/admin"]
    assert len(received) == 1 and f"row {entry['id']}" in received[0]["title"]
    body = received[0]["message"]
    assert json.dumps(entry) in body.splitlines()  # verbatim, on a line of its own
    assert "nim-pathway audit verify --checkpoint" in body
    assert parse_checkpoints(body) == [entry]
    assert store.queries.verify_audit(parse_checkpoints(body)) == []
    sent = checkpoint_messages(store.url)[0]
    assert sent.status == "sent" and parse_checkpoints(sent.body_html) == [entry]  # email
    delete_tail(owner(), 1)
    store.ctx.audit_checkpoint.unlink()
    assert any("truncated" in p for p in store.queries.verify_audit(parse_checkpoints(body)))


def test_parser_finds_entries_in_pasted_text():
    entry = {"db": "0123456789abcdef", "id": 7, "hash": "hmac:" + "a" * 64,
             "at": "2026-01-12T09:00:00+00:00", "rows": 7, "mac": "b" * 64}
    line = json.dumps(entry)
    wrapped = line[:70] + "\n" + line[70:140] + "\n" + line[140:]  # a mail program's wrap
    markdown = f"The head:\n\n```json\n{line}\n```\n"
    escaped = "<pre>" + line.replace('"', "&#34;") + "</pre>"
    for pasted in (line, wrapped, markdown, escaped, f"> {line}"):
        assert parse_checkpoints(pasted) == [entry], pasted
    assert parse_checkpoints(f"{line}\n{line}") == [entry, entry]
    assert parse_checkpoints('{"not": "a checkpoint"} and {broken') == []


def test_cli_verify_with_a_checkpoint_copy(store, db_url, clock, owner, tmp_path):
    some_work(store)
    store.timers.publish_checkpoint()
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(store.ctx.audit_key)
    env = {**os.environ, "NIM_DATABASE_URL": db_url, "NIM_DATA_DIR": str(tmp_path / "data"),
           "NIM_AUDIT_CHECKPOINT": str(store.ctx.audit_checkpoint),
           "NIM_AUDIT_KEY_FILE": str(key_file), "NIM_CLOCK": clock.now().isoformat()}
    env.pop("NIM_AUDIT_KEY", None)

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([CLI, "audit", *args], env=env, text=True, capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    # a copy of the admin message, as an admin would save it
    message = checkpoint_messages(db_url)[0]
    email = tmp_path / "admin-message.txt"
    email.write_text(render_message(message.kind, revive(message.meta)).text)
    printed = tmp_path / "head.json"
    printed.write_text(cli("checkpoint").stdout)
    assert parse_checkpoints(printed.read_text()) == parse_checkpoints(email.read_text())
    ok = cli("verify", "--checkpoint", str(email), "--checkpoint", str(printed))
    assert "audit chain intact" in ok.stdout and "2 checkpoint" in ok.stdout

    delete_tail(owner(), 2)
    store.ctx.audit_checkpoint.unlink()
    # the database alone no longer passes: nothing shows its tail was not cut (issue 28)
    assert "cannot be shown complete" in cli("verify", code=1).stderr
    bad = cli("verify", "--checkpoint", str(email), code=1)
    assert "truncated" in bad.stderr and "checkpoint of row" in bad.stderr

    # --prefect with Prefect down: one line saying so and what to do instead
    down = subprocess.run([CLI, "audit", "verify", "--prefect"], text=True, capture_output=True,
                          env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert down.returncode == 2 and "unreachable" in down.stderr and "--checkpoint" in down.stderr
    assert "Traceback" not in down.stderr

    empty = tmp_path / "empty.txt"
    empty.write_text("no JSON here")
    assert "holds no audit checkpoint" in cli("verify", "--checkpoint", str(empty),
                                              code=2).stderr


def test_the_sweep_task_publishes_an_artifact(sqlite_url, clock, monkeypatch, tmp_path):
    """The Prefect task in a flow (as `sweep_flow` calls it), against a throwaway server."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from nim_pathway.demo import seed_team
    from tasks import case_tasks

    monkeypatch.setenv("NIM_AUDIT_CHECKPOINT", str(tmp_path / "audit.checkpoint"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    svc = build_service(sqlite_url, clock, migrate=False)
    seed_team(svc)
    monkeypatch.setattr(case_tasks, "service", lambda: svc)
    @flow
    def sweep_like() -> tuple:
        return case_tasks.publish_audit_checkpoint(), case_tasks.publish_audit_checkpoint()

    with prefect_test_harness(server_startup_timeout=60):
        entry, again = sweep_like()
        assert entry is not None and again is None
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["audit-checkpoint"])))
        # what `audit verify --prefect` reads: the artifact, straight from Prefect's API
        from prefect.settings import PREFECT_API_URL

        from nim_pathway.settings import Settings
        from orchestration.prefect_api import published_checkpoints

        read = published_checkpoints(Settings.from_env({"PREFECT_API_URL": PREFECT_API_URL.value()}))
        assert [c for text in read for c in parse_checkpoints(text)] == [entry]
    assert len(artifacts) == 1  # the second call found the head published already
    assert parse_checkpoints(artifacts[0].data) == [entry]
    assert "audit verify --checkpoint" in artifacts[0].data
    assert svc.queries.verify_audit(parse_checkpoints(artifacts[0].data)) == []
