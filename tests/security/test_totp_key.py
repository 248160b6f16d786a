"""The TOTP key (SECURITY.md: "Keys are separated by who needs them"): one-time-code secrets
are encrypted under a key only the processes that check codes hold. An operator's CLI holding
the secret key and the audit key, and the database, cannot open a secret or make a code; the
old secret-key wrapping is moved once by `keys split-totp`; a missing or empty key stops the
processes that check codes with one line."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import select

from models.errors import ConfigError, Refused
from nim_pathway.app import build_service
from nim_pathway.commands import people
from nim_pathway.commands.people import code_at
from nim_pathway.demo import DEMO_ADMIN
from nim_pathway.settings import Settings
from nim_pathway.worker import check_settings
from store.tables import Practitioner
from tests.security.conftest import site_env

HELD = "does not hold the TOTP key"


def _row(svc, handle: str) -> Practitioner:
    with svc.ctx.read() as s:
        return s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()


def _operator(svc, data, **extra: str):
    """The operator's CLI: the same data folder, case store, secret and audit keys; the TOTP
    key is the service account's (here: a path this process cannot read)."""
    env = site_env(data, svc.url, NIM_TOTP_KEY_FILE=str(data / "service-only" / "totp.key"),
                   **extra)
    return build_service(svc.url, svc.clock, migrate=False, settings=Settings.from_env(env))


def test_a_cli_without_the_totp_key_cannot_open_a_secret_or_make_a_code(site):
    svc, data = site
    op = _operator(svc, data)
    row = _row(op, "mgr.okafor")
    # the attack: every key the operator holds, tried on the stored secret
    assert row.totp_secret.startswith(people.WRAPPED)
    blob = row.totp_secret[len(people.WRAPPED):].encode()
    import base64
    import hashlib

    for key in (op.ctx.secret_key, base64.urlsafe_b64encode(hashlib.sha256(
            op.ctx.audit_key).digest())):
        with pytest.raises(InvalidToken):
            Fernet(key).decrypt(blob)
    with pytest.raises(Refused, match=HELD):
        op.identity.enrolled_secret(row)
    # a code typed into this process is not checked (nor counted): it says where codes are
    with pytest.raises(Refused, match=f"{HELD}.*sign in at the workbench"):
        op.identity.authenticate("mgr.okafor", code_at("JBSWY3DPEHPK3PXP" * 2, svc.clock.now()))
    with pytest.raises(Refused, match=HELD):
        op.identity.login("mgr.okafor", "123456", 60)
    assert _row(op, "mgr.okafor").failed_codes == 0
    # everything else works there: a session made where codes are checked is honoured
    token = svc.identity.login(DEMO_ADMIN.handle, code_at(svc.identity.enrolled_secret(
        _row(svc, DEMO_ADMIN.handle)), svc.clock.now()), 60).token
    admin = op.identity.session_actor(token, DEMO_ADMIN.handle)
    assert op.admin.update_practitioner("psy.chen", admin, digest=True).message.startswith(
        "updated psy.chen")
    assert {p.handle for p in op.queries.practitioners()} >= {"mgr.okafor", "psy.chen"}


def _wrap_the_old_way(svc) -> dict[str, str]:
    """Each person's secret encrypted under the secret key, as a site before the TOTP key
    kept it; their secrets by handle (their authenticator apps keep showing these)."""
    secrets = {}
    with svc.ctx.write() as s:
        for row in s.exec(select(Practitioner).where(Practitioner.totp_secret.is_not(None))):
            secret = people.unwrap_secret(row, svc.ctx.totp_key())
            row.totp_secret = Fernet(svc.ctx.secret_key).encrypt(secret.encode()).decode()
            people.save(s, row, svc.ctx.secret_key)
            secrets[row.handle] = secret
    return secrets


def test_split_totp_moves_old_enrolments_once_and_codes_keep_working(site):
    svc, data = site
    secrets = _wrap_the_old_way(svc)
    (data / "totp.key").unlink()  # the site from before the TOTP key had none
    old = Settings.from_env(site_env(data, svc.url))
    with pytest.raises(ConfigError, match="TOTP key .* is missing.*keys split-totp"):
        _ = old.totp_key
    before = build_service(svc.url, svc.clock, migrate=False, settings=old)
    with pytest.raises(Refused, match=f"{HELD}.*keys split-totp"):
        before.identity.authenticate("psy.chen", code_at(secrets["psy.chen"], svc.clock.now()))

    fresh = Settings.from_env(site_env(data, svc.url))
    assert fresh.make_totp_key() and (data / "totp.key").stat().st_mode & 0o777 == 0o600
    after = build_service(svc.url, svc.clock, migrate=False, settings=fresh)
    assert after.identity.split_totp_key().message.startswith(
        f"{len(secrets)} second factor(s) moved to the TOTP key")
    assert after.identity.split_totp_key().message.startswith("0 second factor(s) moved")
    for handle in secrets:
        row = _row(after, handle)
        with pytest.raises(InvalidToken):  # the secret key opens none of them any more
            Fernet(after.ctx.secret_key).decrypt(row.totp_secret[len(people.WRAPPED):].encode())
    # the same authenticator apps: their codes still sign in
    assert after.identity.authenticate("psy.chen", code_at(secrets["psy.chen"],
                                                           svc.clock.now())) == "psy.chen"
    with after.ctx.read() as s:
        from store.tables import AuditEvent

        moved = s.exec(select(AuditEvent).where(AuditEvent.action == "totp-secrets-moved")).one()
    assert moved.actor == "operator" and moved.detail["moved"] == len(secrets)


def test_an_old_enrolment_is_not_opened_with_the_secret_key_before_the_split(site):
    """Until `split-totp` runs, a secret still under the secret key is refused at sign-in
    (with the instruction), never opened with the secret key by the code checker."""
    svc, _ = site
    secrets = _wrap_the_old_way(svc)
    with pytest.raises(Refused, match="still encrypted under the secret key.*split-totp"):
        svc.identity.authenticate("psy.chen", code_at(secrets["psy.chen"], svc.clock.now()))


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_lost_or_empty_totp_key_stops_the_code_checkers(site, damage):
    svc, data = site
    key = data / "totp.key"
    if damage == "missing":
        key.unlink()
    else:
        key.write_text("")
    env = site_env(data, svc.url, PREFECT_API_URL="http://127.0.0.1:9/api")
    with pytest.raises(ConfigError) as caught:
        check_settings(Settings.from_env(env))  # the worker's start
    said = str(caught.value)
    assert "\n" not in said and "TOTP key" in said and "restore" in said
    named = site_env(data, svc.url, NIM_TOTP_KEY_FILE=str(key))
    if damage == "empty":
        with pytest.raises(ConfigError, match="NIM_TOTP_KEY_FILE .* is empty: restore"):
            _ = Settings.from_env(named).totp_key
    assert not key.exists() or key.read_text() == ""  # never silently made again
