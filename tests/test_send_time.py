# ruff: noqa: F811 - the fixtures of tests/test_notifications.py are imported by name
"""A message about a task is checked when it is to be sent (issue 27): one about work that was
completed, cancelled (the case exited) or re-owned since it was queued is dropped, never
delivered, and the outbox says why; a digest never lists such work. Real Apprise delivery to a
local HTTP receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlmodel import select

from models.refs import TaskRef
from models.schemas import PractitionerIn
from nim_pathway.demo import DEMO_ADMIN
from notifications.outbox import outbox_listing
from store.db import session_scope
from store.tables import Practitioner
from tests.test_notifications import (  # noqa: F401 - fixtures
    at,
    dispatcher,
    http,
    open_case,
    outbox,
    smtp,
    team,
)


def queued_triage_reminder(store, clock, http):
    """A case whose triage handoff went out, and whose 5-working-day triage reminder (Monday
    12 January) is queued for mgr.okafor but not yet sent. The case opens at 08:30, before
    that reminder is due (09:00): opened later, the handoff itself says "due in 7 days" and
    the reminder is settled with it (tests/test_notifications.py)."""
    at(clock, "2026-01-12", hour=8, minute=30)
    ref = open_case(store)
    dispatcher(store, clock).run_until_idle()
    store.timers.fire_due_timers(at(clock, "2026-01-12"))
    reminders = [o for o in outbox(store) if o.kind == "reminder"
                 and o.meta["task_key"] == "triage" and o.status == "pending"]
    assert [o.recipient for o in reminders] == ["practitioner:mgr.okafor"]
    http.received.clear()
    return ref, reminders[0].id


def row(store, message_id):
    return next(o for o in outbox(store) if o.id == message_id)


def triage_reminders_received(http):
    return [m for m in http.received if "/triage/reminder-" in m["message"]]


def test_control_a_reminder_still_true_is_delivered(team, clock, http):
    store = team
    _, reminder = queued_triage_reminder(store, clock, http)
    report = dispatcher(store, clock).run_until_idle()
    assert report.dropped == 0
    assert [m["path"] for m in triage_reminders_received(http)] == ["/mgr.okafor"]
    assert row(store, reminder).status == "sent" and row(store, reminder).last_error is None


def test_a_reminder_for_work_cancelled_by_an_exit_is_dropped(team, clock, http):
    store = team
    ref, reminder = queued_triage_reminder(store, clock, http)
    store.cases.exit_case(ref, "disengaged", "no contact for 6 weeks", "coord.ali")
    report = dispatcher(store, clock).run_until_idle()
    assert not triage_reminders_received(http)
    dropped = row(store, reminder)
    assert (dropped.status, dropped.last_error) == ("dropped", "task cancelled: case exited")
    assert dropped.attempts == 0 and dropped.sent_at is None
    assert report.dropped >= 1  # with the case's other cancelled work queued that day
    # the exit itself is still told (the message that is true goes)
    assert any(ref in m["title"] + m["message"] for m in http.received)
    listed = {r.id: r for r in outbox_listing(store.queries)}[reminder]
    assert (listed.status, listed.last_error) == ("dropped", "task cancelled: case exited")
    assert reminder not in {r.id for r in outbox_listing(store.queries, failed=True)}
    # a second pass leaves it alone
    assert dispatcher(store, clock).run_until_idle().dropped == 0


def test_a_reminder_for_work_completed_before_sending_is_dropped(team, clock, http):
    store = team
    ref, reminder = queued_triage_reminder(store, clock, http)
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    report = dispatcher(store, clock).run_until_idle()
    assert not triage_reminders_received(http)
    assert row(store, reminder).last_error == "task completed before sending"
    assert report.dropped == 1
    # the work completing triage created is still announced
    assert len([m for m in http.received if m["path"] == "/sw.jones"]) == 3


def test_a_reminder_for_work_re_owned_goes_to_nobody_but_the_new_owner_is_told(team, clock,
                                                                              http):
    store = team
    store.admin.add_practitioner(PractitionerIn(handle="mgr.two", display_name="M Two",
                                                role="nim-service-manager", team="nim",
                                                contact=http.url("mgr.two")), DEMO_ADMIN.handle)
    ref, reminder = queued_triage_reminder(store, clock, http)
    store.tasks.reassign(TaskRef(ref, "triage"), "mgr.two", "mgr.okafor", "")
    dispatcher(store, clock).run_until_idle()
    assert not triage_reminders_received(http)
    assert (row(store, reminder).status, row(store, reminder).last_error) == (
        "dropped", "re-owned to mgr.two")
    # the reassignment messages (new and previous owner) are true and go
    assert {m["path"] for m in http.received} >= {"/mgr.two", "/mgr.okafor"}


def _digest_for(store, handle):
    with session_scope(store.url) as s:
        p = s.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
        p.digest = True
        s.add(p)


def test_a_digest_never_lists_work_done_before_it_was_bundled(team, clock, http):
    store = team
    _digest_for(store, "sw.jones")
    ref = open_case(store)
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    held = {o.meta["task_key"]: o.id for o in outbox(store) if o.status == "held"}
    assert {"consent-mother", "consent-father", "consent-foster-carer"} <= set(held)
    store.tasks.complete_task(TaskRef(ref, "consent-mother"), "sw.jones", {"consent": "given"})
    assert store.timers.queue_digests() == 1
    assert row(store, held["consent-mother"]).status == "dropped"
    assert row(store, held["consent-mother"]).last_error == "task completed before sending"
    assert row(store, held["consent-father"]).status == "digested"
    dispatcher(store, clock).run_until_idle()
    digest = [m for m in http.received if m["path"] == "/sw.jones"]
    assert len(digest) == 1
    assert "(father)" in digest[0]["message"]  # whose consent, by role (no internal keys)
    assert "(mother)" not in digest[0]["message"]


def test_a_digest_drops_items_done_after_it_was_bundled_and_goes_unsent_if_none_is_left(
        team, clock, http):
    store = team
    _digest_for(store, "sw.jones")
    ref = open_case(store)
    store.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    assert store.timers.queue_digests() == 1
    store.tasks.complete_task(TaskRef(ref, "consent-father"), "sw.jones", {"consent": "given"})
    dispatcher(store, clock).run_until_idle()
    digest = [m for m in http.received if m["path"] == "/sw.jones"]
    assert len(digest) == 1 and "(mother)" in digest[0]["message"]
    assert "(father)" not in digest[0]["message"]

    # every item done before the next digest goes: the digest itself is dropped
    http.received.clear()
    store.tasks.complete_task(TaskRef(ref, "consent-mother"), "sw.jones", {"consent": "given"})
    pending = [o for o in outbox(store) if o.status == "held"]
    if pending:
        assert store.timers.queue_digests() <= 1
    ref2 = open_case(store, child={"given_name": "Other", "family_name": "Child",
                                   "date_of_birth": "2025-07-01"})
    store.tasks.complete_task(TaskRef(ref2, "triage"), "mgr.okafor", {"accepted": True})
    at(clock, "2026-01-13")
    assert store.timers.queue_digests() == 1
    store.cases.exit_case(ref2, "disengaged", "", "coord.ali")
    report = dispatcher(store, clock).run_until_idle()
    digests = [o for o in outbox(store) if o.kind == "digest"]
    assert digests[-1].status == "dropped" and "every item" in digests[-1].last_error
    assert report.dropped >= 1
    assert not [m for m in http.received if m["path"] == "/sw.jones"
                and ref2 in m["message"]]
