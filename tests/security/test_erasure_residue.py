"""Erasure is final (issue 28, A): after `erase`, nothing of the case is left in any file of
the data folder (case store, key store, their -wal/-shm, packs, logs), the case's key is in
none of them, and no sealed value of the case opens with the site's keys."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from models.refs import TaskRef
from models.schemas import Referral
from store.crypto import _aead, master_key
from store.db import get_engine
from store.keystore import KEYS
from tests.conftest import referral_data
from tests.test_erasure import at_rest
from tests.test_oversight import drive

# one sentinel per free-text field a person can fill in about a case
SENTINELS = {
    "given_name": "Qzgivensentinel", "family_name": "Qzfamilysentinel",
    "address": "9 Qzaddresssentinel Row", "mother": "Qzmothersentinel",
    "father": "Qzfathersentinel", "carer": "Qzcarersentinel",
    "handover": "Qzhandoversentinel", "notes": "Qznotessentinel",
    "cause": "Qzcausesentinel", "pause": "Qzpausesentinel",
    "placement": "Qzplacementsentinel", "extension": "Qzextensionsentinel",
}
DOB = "2025-03-17"


def _files(data: Path) -> list[Path]:
    """Every regular file the site wrote (never a link: the project follows none)."""
    return [p for p in data.rglob("*") if p.is_file() and not p.is_symlink()]


def _sealed_blobs(raw: bytes) -> list[tuple[str, bytes]]:
    """(associated data, nonce + ciphertext) of every sealed value found in raw bytes."""
    found = []
    for m in re.finditer(rb"nim1:([A-Za-z0-9-]+):([A-Za-z0-9+/=]{24,})", raw):
        found.append((m.group(1).decode(), m.group(2)))
    for m in re.finditer(rb"v1:([A-Za-z0-9+/=]{24,})", raw):
        found.append(("", m.group(1)))
    return [(ad, base64.b64decode(b + b"=" * (-len(b) % 4))) for ad, b in found
            if len(b) % 4 != 1]


def _opens(key: bytes, ad: str, blob: bytes, refs: list[str]) -> bool:
    for aad in {ad, *refs}:
        try:
            _aead(key).decrypt(blob[:12], blob[12:], aad.encode())
            return True
        except Exception:  # noqa: BLE001, S112 - any failure: it does not open
            continue
    return False


def _fill_every_free_text_field(svc, clock) -> str:
    ref = svc.cases.open_case(Referral.model_validate(referral_data(
        child={"given_name": SENTINELS["given_name"], "family_name": SENTINELS["family_name"],
               "date_of_birth": DOB, "address": SENTINELS["address"]},
        caregivers=[{"relationship": "mother", "name": SENTINELS["mother"]},
                    {"relationship": "father", "name": SENTINELS["father"]},
                    {"relationship": "foster-carer", "name": SENTINELS["carer"]}])),
        "coord.ali").ref
    today = svc.queries.today()
    svc.tasks.reassign(TaskRef(ref, "triage"), "mgr.okafor", "mgr.okafor",
                       SENTINELS["handover"])
    svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor",
                            {"accepted": True, "notes": SENTINELS["notes"]})
    svc.cases.move_date(ref, "final_hearing", today + timedelta(weeks=20), SENTINELS["cause"],
                        "coord.ali")
    svc.cases.pause(ref, SENTINELS["pause"], "coord.ali")
    svc.cases.resume(ref, "coord.ali")
    svc.family.change_placement(ref, "kinship", today, SENTINELS["placement"], "coord.ali")
    svc.court.extend_timetable(ref, today, 4, SENTINELS["extension"], "coord.ali")
    return ref


def test_after_erase_no_file_holds_the_case_or_its_key(site, clock):
    svc, data = site
    if not svc.settings.keystore_url.startswith("sqlite"):
        pytest.skip("the key store's files are searched on SQLite (the default key store)")
    ref = _fill_every_free_text_field(svc, clock)
    drive(svc, clock, ref, "treatment")  # D1 made: the assessment pack can be written
    pack, _ = svc.admin.write_pack(ref, "assessment", "html", data / "packs", "coord.ali")
    assert SENTINELS["given_name"] in pack.read_text()
    with svc.ctx.read() as s:
        key = svc.ctx.sealer().key(s, ref)
    with get_engine(svc.settings.keystore_url).connect() as conn:
        wrapped = [r[0] for r in conn.execute(text(f"SELECT wrapped FROM {KEYS.name}"))]
    before = b"".join(p.read_bytes() for p in _files(data)) + at_rest(svc.ctx.url).encode()
    stored = b"".join(p.read_bytes() for p in _files(data) if p != pack)
    # before erasure too, the database files hold ciphertext only (the pack carries identity
    # by design, and is deleted by erasure)
    assert [k for k, v in SENTINELS.items() if v.encode() in stored] == []
    assert key is not None
    assert any(w.encode() in before for w in wrapped)  # and its wrapped form is on disk

    svc.admin.erase(ref, "mgr.okafor", reason="court order")

    after = {p: p.read_bytes() for p in _files(data)}
    assert not pack.exists()
    needles = {**{k: v.encode() for k, v in SENTINELS.items()}, "dob": DOB.encode(),
               "key": key, "key-b64": base64.b64encode(key),
               **{f"wrapped-{i}": w.encode() for i, w in enumerate(wrapped)}}
    hits = [(str(p.relative_to(data)), name) for p, raw in after.items()
            for name, needle in needles.items() if needle in raw]
    assert hits == []
    # every sealed value in every file (nim.db, nim.db-wal, ...), tried with every key the
    # site's secret key still unwraps: none opens
    with get_engine(svc.settings.keystore_url).connect() as conn:
        left = conn.execute(text(f"SELECT id, wrapped FROM {KEYS.name}")).all()
    wrap = _aead(master_key(svc.ctx.secret_key))
    keys = []
    for key_id, w in left:
        raw = base64.b64decode(w)
        keys.append(wrap.decrypt(raw[:12], raw[12:], key_id.encode()))
    blobs = [b for raw in [*after.values(), at_rest(svc.ctx.url).encode()]
             for b in _sealed_blobs(raw)]
    assert blobs  # the audit keeps its ciphertext (the chain covers it)
    blobs += _sealed_blobs(before)  # and a copy of the files taken before erasure
    assert len(blobs) >= 20
    assert [ad for k in keys for ad, b in blobs if _opens(k, ad, b, [ref])] == []


@pytest.mark.postgres
def test_a_postgresql_key_store_forgets_the_key_row_and_its_dead_versions(tmp_path, clock,
                                                                           own_pg_url):
    """With the key store on PostgreSQL the key row is overwritten, deleted and the table
    rewritten (VACUUM FULL): no live or dead version of it is left to read."""
    from nim_pathway.app import build_service
    from nim_pathway.demo import seed_team
    from nim_pathway.settings import Settings
    from store.db import migrate
    from tests.security.conftest import site_env

    # a database of its own: the key store's table must not enter the session's case store
    # (tests/test_migrations.py compares that database with the models)
    pg_url = own_pg_url
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'nim.db'}"
    migrate(url)
    svc = build_service(url, clock, migrate=False, settings=Settings.from_env(
        site_env(data, url, NIM_KEYSTORE_URL=pg_url)))
    seed_team(svc)
    ref = _fill_every_free_text_field(svc, clock)
    engine = get_engine(pg_url)
    file_of = text(f"SELECT pg_relation_filenode('{KEYS.name}')")
    with engine.connect() as conn:
        before = conn.execute(text(f"SELECT count(*) FROM {KEYS.name}")).scalar()
        old_file = conn.execute(file_of).scalar()
    svc.admin.erase(ref, "mgr.okafor", reason="court order")
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {KEYS.name}")).scalar() == before - 1
        # rewritten: a new file, the old one (with every dead version) dropped
        assert conn.execute(file_of).scalar() != old_file
    # and the statistics agree once they catch up (reported asynchronously: a loaded
    # machine showed the two dead versions for a moment after the rewrite)
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            dead = conn.execute(text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE "
                                     f"relname = '{KEYS.name}'")).scalar()
        if not dead or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not dead, f"{dead} dead versions of the key table still counted after 30 s"
    assert svc.queries.case_record(ref).children[0].given_name is None


def test_a_key_store_backup_from_before_erasure_still_opens_the_case(site, clock, tmp_path):
    """What erasure cannot reach, shown rather than claimed: a copy of the key store taken
    before `erase`, with the secret key, still opens the case's sealed values in a case-store
    copy of the same age. Erasure is final once key-store backups older than it have expired
    (SECURITY.md, "Backups of the key store")."""
    import sqlite3

    svc, data = site
    if not svc.settings.keystore_url.startswith("sqlite"):
        pytest.skip("the key store's backup is taken with SQLite's backup API")
    ref = _fill_every_free_text_field(svc, clock)
    backup = sqlite3.connect(tmp_path / "keys-backup.db")
    sqlite3.connect(data / "keys.db").backup(backup)
    old_case_store = at_rest(svc.ctx.url).encode()
    svc.admin.erase(ref, "mgr.okafor", reason="court order")
    wrap = _aead(master_key(svc.ctx.secret_key))
    keys = []
    for key_id, w in backup.execute(f"SELECT id, wrapped FROM {KEYS.name}"):
        raw = base64.b64decode(w)
        keys.append(wrap.decrypt(raw[:12], raw[12:], key_id.encode()))
    blobs = _sealed_blobs(old_case_store)
    assert any(_opens(k, ad, b, [ref]) for k in keys for ad, b in blobs)
