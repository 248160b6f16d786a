"""The audit fails closed (issue 28, D): a missing or empty key file stops the service with
one line saying what to do (keys are made only for a new site); `audit verify` fails when it
cannot show the log complete (no checkpoint, a trimmed or older one, a cut tail); a failed
checkpoint write says the change was committed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from models.errors import ConfigError
from nim_pathway.settings import Settings
from store.db import get_engine
from tests.security.conftest import site_env

CLI = str(Path(sys.executable).parent / "nim-pathway")


def _cli(svc, data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **site_env(data, svc.ctx.url), "NIM_CLOCK": svc.clock.now().isoformat()}
    for name in ("NIM_AUDIT_KEY", "NIM_SECRET_KEY", "NIM_AUDIT_KEY_FILE", "NIM_SECRET_KEY_FILE"):
        env.pop(name, None)
    proc = subprocess.run([CLI, *args], env=env, text=True, capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.parametrize("name", ["audit.key", "secret.key"])
def test_a_deleted_key_stops_the_service_instead_of_being_remade(site, name):
    svc, data = site
    (data / name).unlink()
    with pytest.raises(ConfigError, match=f"{name} is missing.*restore the key from its backup"):
        s = Settings.from_env(site_env(data, svc.ctx.url))
        s.audit_key, s.secret_key  # noqa: B018
    assert not (data / name).exists()  # nothing made in its place
    proc = _cli(svc, data, "audit", "verify")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "restore the key from its backup" in proc.stderr


@pytest.mark.parametrize("name", ["audit.key", "secret.key"])
def test_an_empty_key_file_is_refused(site, name, tmp_path):
    svc, data = site
    (data / name).write_text("")
    with pytest.raises(ConfigError, match="is empty: restore it from its backup"):
        s = Settings.from_env(site_env(data, svc.ctx.url))
        s.audit_key, s.secret_key  # noqa: B018
    named = tmp_path / "named.key"
    named.write_text("\n")
    env = "NIM_AUDIT_KEY_FILE" if name == "audit.key" else "NIM_SECRET_KEY_FILE"
    with pytest.raises(ConfigError, match=f"{env} .* is empty"):
        s = Settings.from_env(site_env(data, svc.ctx.url, **{env: str(named)}))
        s.audit_key, s.secret_key  # noqa: B018


def test_keys_are_made_once_for_a_new_site_only(tmp_path):
    data = tmp_path / "fresh"
    settings = Settings.from_env({"NIM_DATA_DIR": str(data)})
    assert settings.audit_key and settings.secret_key
    assert sorted(p.name for p in data.iterdir()) == ["audit.key", "secret.key", "totp.key"]
    assert (data / "audit.key").stat().st_mode & 0o777 == 0o600


def _cut_tail(svc, n: int) -> None:
    engine = get_engine(svc.ctx.url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        last = conn.execute(text("SELECT max(id) FROM audit_event")).scalar_one()
        conn.execute(text("DELETE FROM audit_event WHERE id > :i"), {"i": last - n})
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))


def test_verify_fails_when_the_tail_is_cut_and_the_checkpoint_deleted(site):
    svc, data = site
    assert svc.queries.verify_audit() == []
    _cut_tail(svc, 2)
    (data / "audit.checkpoint").unlink()
    proc = _cli(svc, data, "audit", "verify")
    assert proc.returncode == 1 and "audit chain intact" not in proc.stdout
    assert "no checkpoint of this database was found" in proc.stderr


def test_verify_fails_with_a_trimmed_or_older_checkpoint(site):
    svc, data = site
    checkpoint = data / "audit.checkpoint"
    older = checkpoint.read_text()
    from models.schemas import PractitionerIn
    from nim_pathway.demo import DEMO_ADMIN

    svc.admin.add_practitioner(PractitionerIn(handle="new.one", display_name="N One",
                                              role="psychologist", team="nim"), DEMO_ADMIN.handle)
    lines = checkpoint.read_text().splitlines()
    checkpoint.write_text("\n".join(lines[:-1]) + "\n")  # trimmed
    problems = svc.queries.verify_audit()
    assert problems and "newest checkpoint covers rows up to" in problems[0]
    checkpoint.write_text(older)  # an older copy put back
    assert "cannot be shown complete" in _cli(svc, data, "audit", "verify").stderr


def test_a_failed_checkpoint_write_says_the_change_was_committed(site, monkeypatch):
    """A full disk when the checkpoint is appended (the one write that cannot be made to fail
    for real under root: it is injected)."""
    from models.schemas import PractitionerIn
    from nim_pathway.demo import DEMO_ADMIN
    from store import context

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(context, "write_checkpoint", disk_full)
    with pytest.raises(ConfigError, match="the change WAS committed") as err:
        svc, _ = site
        svc.admin.add_practitioner(PractitionerIn(handle="x.two", display_name="X",
                                                  role="psychologist", team="nim"),
                                   DEMO_ADMIN.handle)
    assert "do not repeat the command" in str(err.value) and "No space left" in str(err.value)
    assert "x.two" in {p.handle for p in svc.queries.practitioners()}  # it was committed
