"""Identity you can trust: each walk-around an insider tried is a test that no longer gets
through. On SQLite and PostgreSQL (the `store` fixture), with the clock moved, never slept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models.errors import AlreadyDone, Invalid, NotFound, Refused
from models.refs import TaskRef
from models.schemas import PractitionerIn, Referral
from nim_pathway.commands.identity import LOCK_AFTER, code_at
from nim_pathway.demo import DEMO_ADMIN, current_code
from nim_pathway.policy import CAPPED_AUDITS_PER_HOUR, SERVICE_ACTOR
from store.db import session_scope
from store.tables import AuditEvent, Outbox, Practitioner
from tests.conftest import referral_data

ADMIN = DEMO_ADMIN.handle


def audit_rows(url: str, action: str) -> list[AuditEvent]:
    with session_scope(url, read_only=True) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.id)))


def tick(store, seconds: int = 30) -> None:
    """Move the injected clock to the next 30-s code step."""
    store.clock.set(store.clock.now() + timedelta(seconds=seconds))


def open_case(store) -> str:
    return store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref


def test_init_makes_the_first_admin_once(store):
    with pytest.raises(AlreadyDone, match="has an admin already"):
        store.identity.init_site(PractitionerIn(handle="it.two", display_name="I",
                                                role="admin", team="it"))
    assert {p.handle for p in store.queries.practitioners() if p.role == "admin"} == {ADMIN}
    assert {v.profile for v in store.queries.installed_pathways()} == {
        "england", "scotland", "wales", "northern-ireland", "fdac-england"}  # every programme


def test_only_an_admin_grants_roles_and_every_change_is_audited(store, db_url):
    # x.mgr cannot be made head of service by a coordinator, nor by themselves
    with pytest.raises(Refused, match="coord.ali is coordinator and may not "
                                      "manage-practitioners; it needs admin"):
        store.admin.add_practitioner(PractitionerIn(handle="x.mgr", display_name="X",
                                                    role="head-of-service", team="nim"),
                                     "coord.ali")
    with pytest.raises(Refused, match="psy.chen is psychologist and may not"):
        store.admin.change_role("psy.chen", "head-of-service", "psy.chen")
    with pytest.raises(NotFound, match="unknown practitioner 'nobody'"):
        store.admin.change_role("psy.chen", "head-of-service", "nobody")
    assert {r.actor for r in audit_rows(db_url, "refused")} == {"coord.ali", "psy.chen"}
    assert [r.actor for r in audit_rows(db_url, "refused-unknown-actor")] == ["nobody"]
    # the admin may, and the audit keeps before and after (never the secret)
    store.admin.change_role("psy.chen", "clinical-lead", ADMIN)
    changed = audit_rows(db_url, "practitioner-changed")[-1]
    assert changed.actor == ADMIN
    assert (changed.detail["before"]["role"], changed.detail["after"]["role"]) == (
        "psychologist", "clinical-lead")
    assert "secret" not in str(changed.detail).lower()
    with pytest.raises(Invalid, match="unknown role 'wizard'"):
        store.admin.change_role("psy.chen", "wizard", ADMIN)
    with pytest.raises(Refused, match="only active admin"):
        store.admin.deactivate(ADMIN, ADMIN, "leaving")


def test_an_admin_updates_contact_digest_and_activity_and_it_is_audited(store, db_url):
    with pytest.raises(AlreadyDone, match="practitioner update psy.chen"):
        store.admin.add_practitioner(PractitionerIn(handle="psy.chen", display_name="C",
                                                    role="psychologist", team="nim"), ADMIN)
    with pytest.raises(Refused, match="coord.ali is coordinator and may not "
                                      "manage-practitioners; it needs admin"):
        store.admin.update_practitioner("psy.chen", "coord.ali", contact="email:c@nhs.net")
    assert [r.detail["action"] for r in audit_rows(db_url, "refused")] == [
        "manage-practitioners"]
    with pytest.raises(NotFound, match="unknown practitioner 'psy.nobody'.*practitioner list"):
        store.admin.update_practitioner("psy.nobody", ADMIN, digest=True)
    with pytest.raises(Invalid, match="invalid contact: contact must be a named target"):
        store.admin.update_practitioner("psy.chen", ADMIN, contact="not a target")
    secret = "json://hooks.example.org/in?token=s3cr3tvalue"
    with pytest.raises(Invalid, match="must not hold a password, token or key") as refused:
        store.admin.update_practitioner("psy.chen", ADMIN, contact=secret)
    assert "s3cr3tvalue" not in str(refused.value)
    with pytest.raises(Invalid, match="nothing to change"):
        store.admin.update_practitioner("psy.chen", ADMIN)

    done = store.admin.update_practitioner("psy.chen", ADMIN, contact="email:chen@nhs.net",
                                           digest=True)
    assert done.message == ("updated psy.chen: contact email:chen@nhs.net; reminders in a "
                            "daily digest")
    row = next(p for p in store.queries.practitioners() if p.handle == "psy.chen")
    assert row.contact == "email:chen@nhs.net"
    changed = audit_rows(db_url, "practitioner-changed")[-1]
    assert changed.actor == ADMIN and changed.detail["changed"] == ["contact", "digest"]
    assert changed.detail["before"] == {"contact": None, "digest": False}
    assert changed.detail["after"] == {"contact": "email:chen@nhs.net", "digest": True}
    with pytest.raises(AlreadyDone, match="nothing changed"):
        store.admin.update_practitioner("psy.chen", ADMIN, digest=True)

    token = store.identity.login("psy.chen", current_code(store, "psy.chen"), 60)
    store.admin.update_practitioner("psy.chen", ADMIN, active=False)
    with pytest.raises(Refused, match="has ended"):  # as `deactivate`: sessions end
        store.identity.session_actor(token.token)
    store.admin.update_practitioner("psy.chen", ADMIN, active=True, contact="")
    row = next(p for p in store.queries.practitioners() if p.handle == "psy.chen")
    assert row.active and row.contact is None
    tick(store)  # the seal was renewed: they sign in again
    assert store.identity.authenticate("psy.chen", current_code(store, "psy.chen")) == "psy.chen"
    with pytest.raises(Refused, match="only active admin"):
        store.admin.update_practitioner(ADMIN, ADMIN, active=False)


def test_a_code_proves_who_acts_once_and_wrong_codes_slow_sign_in(store, db_url):
    good = current_code(store, "mgr.okafor")
    assert store.identity.authenticate("mgr.okafor", good) == "mgr.okafor"
    with pytest.raises(Refused, match="wrong or reused one-time code"):
        store.identity.authenticate("mgr.okafor", good)  # a code works once
    tick(store)
    # someone typing the manager's handle with their own code is not the manager
    with pytest.raises(Refused, match="wrong or reused"):
        store.identity.authenticate("mgr.okafor", current_code(store, "la.patel"))
    for n in range(LOCK_AFTER - 3):  # the reused and the borrowed code counted too
        with pytest.raises(Refused):
            store.identity.authenticate("mgr.okafor", f"{n:06d}")
    with pytest.raises(Refused, match="next try waits until 09:01:00 UK time"):
        store.identity.authenticate("mgr.okafor", "999999")
    with pytest.raises(Refused, match="too many wrong codes"):  # the right code waits too
        store.identity.authenticate("mgr.okafor", current_code(store, "mgr.okafor"))
    failures = audit_rows(db_url, "refused-code")
    assert len(failures) == LOCK_AFTER and failures[-1].detail["locked"] is True
    assert [r.detail["failures"] for r in audit_rows(db_url, "refused-throttled")] == [6]
    # the person and the admins are told, through the outbox
    with session_scope(db_url, read_only=True) as s:
        told = {o.recipient for o in s.exec(select(Outbox).where(Outbox.kind == "sign-in-slowed"))}
    assert told == {"mgr.okafor", "admin"}
    tick(store, 45)  # the wait doubled with the try above (30 s -> 60 s): still waiting
    with pytest.raises(Refused, match="too many wrong codes"):
        store.identity.authenticate("mgr.okafor", current_code(store, "mgr.okafor"))
    tick(store, 3600)  # never more than an hour after the last checked code
    assert store.identity.authenticate("mgr.okafor", current_code(store, "mgr.okafor"))
    for n in range(LOCK_AFTER):
        with pytest.raises(Refused):
            store.identity.authenticate("mgr.okafor", f"{n:06d}")
    with pytest.raises(Refused, match="may not manage-practitioners"):
        store.identity.unlock("mgr.okafor", "mgr.okafor")
    store.identity.unlock("mgr.okafor", ADMIN)  # an admin lifts the wait at once
    tick(store)
    assert store.identity.authenticate("mgr.okafor", current_code(store, "mgr.okafor"))


def test_codes_from_a_step_either_side_pass_older_ones_do_not(store):
    row = _row(store, "sw.jones")
    secret = store.identity.enrolled_secret(row)
    now = store.clock.now()
    with pytest.raises(Refused):
        store.identity.authenticate("sw.jones", code_at(secret, now - timedelta(seconds=65)))
    assert store.identity.authenticate("sw.jones", code_at(secret, now - timedelta(seconds=30)))
    assert store.identity.authenticate("sw.jones", code_at(secret, now))


def test_the_secret_is_stored_encrypted_under_a_key_outside_the_database(store, db_url):
    row = _row(store, "sw.jones")
    secret = store.identity.enrolled_secret(row)
    assert secret not in row.totp_secret and len(secret) >= 32
    from dataclasses import replace

    from nim_pathway.commands import IdentityCommands

    other = IdentityCommands(replace(store.ctx, secret_key=b"A" * 43 + b"="), store.queries,
                             store.notify_config)
    with pytest.raises(Refused, match="seal does not verify"):  # under the wrong key
        other.authenticate("sw.jones", current_code(store, "sw.jones"))


def test_the_database_owner_cannot_grant_roles_or_forge_sessions(store, db_url):
    """Whoever can write the tables but does not hold the secret key (NIM_SECRET_KEY_FILE)."""
    import hashlib
    from datetime import datetime

    from sqlalchemy import text

    from store.db import get_engine

    ref = open_case(store)
    with get_engine(db_url).begin() as conn:  # psy.chen made a manager behind our back
        conn.execute(text("UPDATE practitioner SET role = 'nim-service-manager' "
                          "WHERE handle = 'psy.chen'"))
    with pytest.raises(Refused, match="changed outside nim-pathway"):
        store.admin.erase(ref, "psy.chen", reason="court order")
    assert [r.actor for r in audit_rows(db_url, "refused-altered-record")] == ["psy.chen"]
    token = "forged-session-token"
    with get_engine(db_url).begin() as conn:  # a session row made without the key
        pid = conn.execute(text("SELECT id FROM practitioner WHERE handle = 'mgr.okafor'"))
        conn.execute(text(
            "INSERT INTO login_session (token_sha256, practitioner_id, created_at, expires_at)"
            " VALUES (:t, :p, :c, :e)"),
            {"t": hashlib.sha256(token.encode()).hexdigest(), "p": pid.scalar_one(),
             "c": datetime(2026, 1, 12), "e": datetime(2030, 1, 1)})
    with pytest.raises(Refused, match="not known here"):
        store.identity.session_actor(token)
    # an admin looks, then saves the record again through the one path that seals it
    store.admin.change_role("psy.chen", "psychologist", ADMIN)
    tick(store)
    assert store.identity.authenticate("psy.chen", current_code(store, "psy.chen"))


def _accept(store, handle: str):
    """The person enrols with the code sent to them (as the demo reads it)."""
    from nim_pathway.commands import people

    with store.ctx.write() as s:
        row = people.person(s, handle)
        code, _ = people.invite(row, store.ctx.secret_key, store.clock.now())
        people.save(s, row, store.ctx.secret_key)
    return store.identity.redeem_enrolment(handle, code)


def test_re_enrolment_retires_old_codes_and_sessions(store):
    token = store.identity.login("sw.jones", current_code(store, "sw.jones"), 60)
    assert store.identity.session_actor(token.token) == "sw.jones"
    old = store.identity.enrolled_secret(_row(store, "sw.jones"))
    assert "old codes and sessions no longer work" in store.identity.reenrol(
        "sw.jones", ADMIN).message
    enrolment = _accept(store, "sw.jones")
    assert enrolment.secret != old and "secret=***" in repr(enrolment)
    with pytest.raises(Refused, match="has ended"):
        store.identity.session_actor(token.token)
    tick(store)
    with pytest.raises(Refused):
        store.identity.authenticate("sw.jones", code_at(old, store.clock.now()))


def test_a_session_is_short_lived_and_only_its_owner(store, db_url):
    token = store.identity.login("coord.ali", current_code(store, "coord.ali"), 60)
    assert store.identity.session_actor(token.token, "coord.ali") == "coord.ali"
    with pytest.raises(Refused, match="logged in as coord.ali, not 'mgr.okafor'"):
        store.identity.session_actor(token.token, "mgr.okafor")
    assert [r.actor for r in audit_rows(db_url, "refused-impersonation")] == ["coord.ali"]
    tick(store, 61 * 60)
    with pytest.raises(Refused, match="has ended; log in again"):
        store.identity.session_actor(token.token)
    with pytest.raises(Refused, match="not known here"):
        store.identity.session_actor("forged-token")
    with session_scope(db_url, read_only=True) as s:  # only the token's hash is kept
        assert token.token not in str(s.exec(select(AuditEvent.detail)).all())


def test_deactivated_people_cannot_sign_in_or_act(store):
    token = store.identity.login("la.patel", current_code(store, "la.patel"), 60)
    store.admin.deactivate("la.patel", ADMIN, "left the authority")
    with pytest.raises(Refused, match="has ended"):  # deactivation ends sessions at once
        store.identity.session_actor(token.token)
    tick(store)
    with pytest.raises(NotFound):
        store.identity.authenticate("la.patel", "123456")


def test_the_service_identity_does_no_human_work(store, db_url):
    ref = open_case(store)
    with pytest.raises(Refused, match="svc.pathway is the service identity and may not "
                                      "complete"):
        store.tasks.complete_task(TaskRef(ref, "triage"), SERVICE_ACTOR, {"accepted": True})
    with pytest.raises(Refused, match="service identity"):
        store.cases.move_date(ref, "final_hearing", store.queries.today(), "x",
                              SERVICE_ACTOR)
    with pytest.raises(Refused, match="cannot sign in"):
        store.identity.authenticate(SERVICE_ACTOR, "123456")
    with pytest.raises(Refused, match="not administered by hand"):
        store.admin.change_role(SERVICE_ACTOR, "admin", ADMIN)
    assert {r.actor for r in audit_rows(db_url, "refused")} == {SERVICE_ACTOR}


def test_unknown_actors_are_refused_by_every_command_and_audited_at_a_capped_rate(
        store, db_url, tmp_path):
    ref = open_case(store)
    nobody = "nobody; rm -rf /"
    attempts = [
        lambda: store.admin.add_practitioner(PractitionerIn(
            handle="x.y", display_name="X", role="coordinator", team="nim"), nobody),
        lambda: store.admin.change_role("psy.chen", "admin", nobody),
        lambda: store.admin.deactivate("psy.chen", nobody, ""),
        lambda: store.admin.update_practitioner("psy.chen", nobody, digest=True),
        lambda: store.identity.reenrol("psy.chen", nobody),
        lambda: store.identity.unlock("psy.chen", nobody),
        lambda: store.identity.install_pathway(tmp_path / "x.yaml", nobody),
        lambda: store.admin.retry_message(1, nobody),
        lambda: store.admin.write_pack(ref, "assessment", "html", tmp_path, nobody),
        lambda: store.admin.erase(ref, nobody, "x"),
        lambda: store.tasks.complete_task(TaskRef(ref, "triage"), nobody, {}),
        lambda: store.cases.move_date(ref, "final_hearing", store.queries.today(), "x",
                                   nobody),
        lambda: store.cases.pause(ref, "x", nobody),
        lambda: store.identity.authenticate(nobody, "123456"),
        lambda: store.admin.permit_read(nobody, "export-data", doing="export"),
    ]
    (tmp_path / "x.yaml").write_text("profile: x\n")
    for attempt in attempts:
        with pytest.raises((NotFound, Invalid), match="unknown practitioner|not valid|x.yaml"):
            attempt()
    assert not list(tmp_path.glob("*.html"))  # no pack written
    rows = audit_rows(db_url, "refused-unknown-actor")
    assert len(rows) >= len(attempts) - 2  # the pack and the install fail their input first
    for _ in range(CAPPED_AUDITS_PER_HOUR):
        with pytest.raises(NotFound):
            store.cases.pause(ref, "x", nobody)
    assert len(audit_rows(db_url, "refused-unknown-actor")) == CAPPED_AUDITS_PER_HOUR


def test_reads_of_identity_and_exports_go_through_the_policy(store, db_url, tmp_path):
    ref = open_case(store)
    with pytest.raises(Refused, match="psy.chen is psychologist and may not write the"):
        store.admin.write_pack(ref, "assessment", "html", tmp_path, "psy.chen")
    with pytest.raises(Refused, match="la.patel is la-social-worker and may not export"):
        store.admin.permit_read("la.patel", "export-data", doing="export all cases")
    assert store.admin.permit_read("mgr.okafor", "export-data", doing="export") == "mgr.okafor"
    assert [r.actor for r in audit_rows(db_url, "data-read")] == ["mgr.okafor"]


def _row(store, handle: str) -> Practitioner:
    with session_scope(store.url, read_only=True) as s:
        return s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
