"""Notification content: every kind renders, carries what staff need, leaks nothing about the family,
and fits SMS, chat and email channels; calendar events are valid RFC 5545."""

from __future__ import annotations

import re
from datetime import date

import pytest
from jinja2 import UndefinedError

from notifications.render import (
    KINDS,
    TEMPLATES,
    Rendered,
    fit_for_channel,
    ics_event,
    is_email,
    is_sms,
    render_message,
)

DUE = date(2026, 3, 23)
DUE_TEXT = "Monday 23 March 2026"
CLOCK_DUE = date(2026, 7, 6)
CLOCK_DUE_TEXT = "Monday 6 July 2026"
LINK = "https://prefect.example.org/runs/flow-run/7f3a"

COMMON = {"recipient": "Sam Okafor (psychologist)", "dedupe_key": "NIM-2026-0001/wmci-mother/reminder-5wd"}
TASK = {
    "case_ref": "NIM-2026-0001",
    "task_key": "wmci-mother",
    "task_title": "Working Model of the Child Interview with mother",
    "role": "psychologist",
    "due": DUE,
    "due_explanation": "6 weeks after stage assessment 2026-02-09",
    "link": LINK,
}
CLOCK = {
    "case_ref": "NIM-2026-0001",
    "clock_title": "Care proceedings decided within 26 weeks",
    "clock_due": CLOCK_DUE,
    "due_explanation": "26 weeks after proceedings issued 2026-01-05",
    "link": LINK,
}
ITEMS = [
    {"case_ref": "NIM-2026-0001", "task_key": "wmci-mother", "task_title": "WMCI with mother", "due": DUE,
     "days_to_due": -2, "link": LINK + "/1"},
    {"case_ref": "NIM-2026-0002", "task_key": "triage", "task_title": "Triage referral",
     "due": date(2026, 3, 25), "days_to_due": 0, "link": LINK + "/2"},
]

# The keys each kind cannot do without (besides COMMON), and the optional ones it can show.
REQUIRED: dict[str, dict] = {
    "reminder": {**TASK, "days_to_due": 5},
    "due": {**TASK, "days_to_due": 0},
    "escalation": {**TASK, "role": "nim-service-manager", "days_to_due": -2, "tier": 1,
                   "owner_role": "psychologist"},
    "clock-warning": {**CLOCK, "days_to_due": 28},
    "clock-breach": CLOCK,
    "handoff": {k: v for k, v in TASK.items() if k not in ("due", "due_explanation")},
    "reassigned": {**{k: v for k, v in TASK.items() if k not in ("due", "due_explanation")},
                   "audience": "new"},
    "gate": {**TASK, "task_key": "d1-professionals-meeting", "task_title": "Professionals meeting (D1)",
             "role": "nim-service-manager"},
    "dead-letter": {"attempts": 5, "last_error": "SMTP 550 mailbox unavailable", "message_id": "msg-0042"},
    "digest": {"items": ITEMS},
    "test": {},
    "exit": {"case_ref": "NIM-2026-0001", "exit_label": "Family disengaged",
             "keeps_statutory": True, "link": LINK},
    "audit-checkpoint": {"checkpoint": '{"db": "0123abcd0123abcd", "id": 42, "hash": "hmac:ab", '
                                       '"at": "2026-03-23T09:00:00+00:00", "rows": 42, "mac": "cd"}',
                         "row_id": 42, "rows": 42},
    "sign-in-slowed": {"handle": "psy.chen", "failures": 5, "until": "09:00:30 UK time"},
    "enrolment": {"handle": "psy.chen", "expires": "09:00:00 UK time on 13 Jan"},
    "role-grant": {"handle": "psy.chen", "role": "nim-service-manager", "state": "requested",
                   "asked_by": "it.admin"},
}
HANDOVER = {"handed_over_by": "coordinator-jb", "handover_note": "Interpreter booked for the session."}
DUE_KEYS = {"due": DUE, "due_explanation": TASK["due_explanation"]}
OPTIONAL: dict[str, dict] = {
    "reminder": HANDOVER,
    "due": HANDOVER,
    "escalation": HANDOVER,
    "clock-warning": {"task_key": "recommendation-signoff", "task_title": "Recommendation signed off"},
    "clock-breach": {"task_key": "recommendation-signoff", "task_title": "Recommendation signed off"},
    "handoff": {**HANDOVER, **DUE_KEYS},
    "reassigned": {**HANDOVER, **DUE_KEYS},
    "gate": HANDOVER,
    "dead-letter": {k: v for k, v in TASK.items() if k != "role"},
    "digest": {"link": LINK},
    "test": {"link": LINK},
    "exit": {},
    "audit-checkpoint": {},
    "sign-in-slowed": {},
    "enrolment": {"code": "ABCD-EFGH-JKLM-NPQR"},
    "role-grant": {"approved_by": "it.second"},
}


def full(kind: str, **extra) -> dict:
    return {**COMMON, **REQUIRED[kind], **OPTIONAL[kind], **extra}


def expected_in_body(kind: str, ctx: dict) -> list[str]:
    """What every text and HTML body of this kind must show."""
    want = [f"ref: {ctx['dedupe_key']}", ctx["recipient"]]
    if kind == "digest":
        return want + [s for item in ctx["items"]
                       for s in (item["case_ref"], item["task_title"], item["link"])]
    for key in ("case_ref", "task_title", "due_explanation", "link", "handed_over_by", "handover_note"):
        if ctx.get(key):
            want.append(ctx[key])
    if ctx.get("due"):
        want.append(DUE_TEXT)
    if ctx.get("clock_due"):
        want += [ctx["clock_title"], CLOCK_DUE_TEXT]
    return want


def test_kinds_match_templates():
    kinds = {p.stem for p in TEMPLATES.glob("*.j2") if not p.stem.startswith("_")}
    assert set(KINDS) == set(REQUIRED) == set(OPTIONAL) == kinds


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_what_staff_need(kind):
    ctx = full(kind)
    msg = render_message(kind, ctx)
    assert msg.subject and "\n" not in msg.subject and msg.subject == msg.subject.strip()
    for body in (msg.text, msg.html):
        for piece in expected_in_body(kind, ctx):
            assert piece in body, f"{kind}: {piece!r} missing"
        assert body == body.strip() and "\n\n\n" not in body
        assert not re.search(r"[ \t]+\n", body)
        # internal task keys are not for people (issue 29): the title says whose work it is
        # (the footer's message reference, for tracing a message, still carries its key)
        shown = body.split("ref: ")[0]
        assert "wmci-mother" not in shown and "d1-professionals-meeting" not in shown
    if "case_ref" in ctx:
        assert ctx["case_ref"] in msg.subject
    assert msg.html.startswith("<!DOCTYPE html>")
    assert msg.link == ctx.get("link")


@pytest.mark.parametrize("kind", KINDS)
def test_optional_keys_may_be_absent_or_none(kind):
    render_message(kind, {**COMMON, **REQUIRED[kind]})
    msg = render_message(kind, {**full(kind), **dict.fromkeys(OPTIONAL[kind])})
    assert "Handed over by" not in msg.text and "None" not in msg.text and "None" not in msg.html
    if "due_explanation" in REQUIRED[kind]:  # present but None: the date stands alone
        msg = render_message(kind, full(kind, due_explanation=None))
        assert "None" not in msg.text + msg.html and "()" not in msg.text + msg.html


# task_key travels with a message (the outbox's meta) but is never shown: no internal ids
@pytest.mark.parametrize(("kind", "key"), [(k, key) for k in KINDS for key in [*COMMON, *REQUIRED[k]]
                                           if key != "task_key"])
def test_missing_required_key_raises(kind, key):
    ctx = full(kind)
    del ctx[key]
    with pytest.raises(UndefinedError):
        render_message(kind, ctx)


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(ValueError, match="reminder.*clock-warning.*dead-letter"):
        render_message("nudge", full("due"))


def test_handoff_shows_who_handed_over_and_the_note():
    msg = render_message("handoff", full("handoff"))
    assert "coordinator-jb has completed their part" in msg.text
    assert "Handed over by: coordinator-jb" in msg.text
    assert "Handover note:\nInterpreter booked for the session." in msg.text
    assert "coordinator-jb" in msg.html and "Interpreter booked for the session." in msg.html

    bare = render_message("handoff", full("handoff", handed_over_by=None, handover_note=None))
    assert "Handed over by" not in bare.text and "Handover note" not in bare.html
    assert "is ready for you." in bare.text


def test_dead_letter_says_what_was_not_delivered():
    msg = render_message("dead-letter", {**full("dead-letter"), "kind": "reminder",
                                         "recipient_name": "practitioner:jb"})
    assert "msg-0042" in msg.text and "SMTP 550" in msg.text and "5 attempts" in msg.subject
    assert "Message kind: reminder" in msg.text and "Intended for: practitioner:jb" in msg.text
    assert "practitioner:jb" in msg.html


def test_digest_accepts_items_read_back_from_storage():
    items = [{**ITEMS[0], "due": "2026-03-23", "days_to_due": "-2"}]
    msg = render_message("digest", full("digest", items=items))
    assert DUE_TEXT in msg.text and "overdue by 2 days" in msg.text and "1 item due" in msg.subject


def test_reassigned_differs_for_new_and_previous_owner():
    new = render_message("reassigned", full("reassigned", audience="new"))
    old = render_message("reassigned", full("reassigned", audience="previous"))
    assert "reassigned to you" in new.subject and "no longer assigned to you" in old.subject
    assert "reassigned to you" in new.text and "You no longer need to act on it" in old.text
    assert new.html != old.html
    assert new.ics is not None and old.ics is None
    with pytest.raises(ValueError, match="audience"):
        render_message("reassigned", full("reassigned", audience="both"))


def test_phrasing_of_days():
    assert "Due in 1 day:" in render_message("reminder", full("reminder", days_to_due=1)).subject
    assert "overdue by 2 days" in render_message("escalation", full("escalation")).text
    assert "runs out in 4 weeks" in render_message("clock-warning", full("clock-warning")).subject
    odd = render_message("clock-warning", full("clock-warning", days_to_due=16))
    assert "runs out in 16 days" in odd.text
    tier2 = render_message("escalation", full("escalation", tier=2, role="head-of-service"))
    assert "tier 2" in tier2.subject and "escalated before" in tier2.text


def test_a_due_notice_says_due_today_only_on_the_day():
    today = render_message("due", full("due"))
    assert today.subject.startswith("[NIM-2026-0001] Due today:") and "is due today." in today.text
    # sent late (a sweep catching up): how late, in working days, never "due today"
    late = render_message("due", full("due", days_to_due=-14, working_days_to_due=-8))
    for part in (late.subject, late.text, late.html):
        assert "Overdue by 8 working days" in part or "overdue by 8 working days" in part
        assert "today" not in part.lower()
    assert late.subject == ("[NIM-2026-0001] Overdue by 8 working days: "
                            "Working Model of the Child Interview with mother")


def test_lateness_is_told_in_working_days_when_known():
    reminder = render_message("reminder", full("reminder", days_to_due=-3, working_days_to_due=-1))
    assert "Overdue by 1 working day:" in reminder.subject and "due in" not in reminder.text
    # due on a Friday, queued on the Saturday: late, though no working day has passed yet
    weekend = render_message("due", full("due", days_to_due=-1, working_days_to_due=0))
    assert "is overdue." in weekend.text and "by 0" not in weekend.text
    escalation = render_message("escalation", full("escalation", days_to_due=-4,
                                                   working_days_to_due=-2))
    assert "is overdue by 2 working days" in escalation.text
    # before the date, a reminder counts calendar days beside the date it shows, as before
    on_time = render_message("reminder", full("reminder", days_to_due=3, working_days_to_due=1))
    assert "Due in 3 days:" in on_time.subject


def test_html_escapes_the_handover_note_but_text_keeps_it():
    note = '<script>alert("x")</script> & more'
    msg = render_message("handoff", full("handoff", handover_note=note))
    assert "<script>" not in msg.html
    assert "&lt;script&gt;" in msg.html and "&amp; more" in msg.html
    assert note in msg.text


@pytest.mark.parametrize("kind", KINDS)
def test_ics_only_for_dated_task_kinds(kind):
    msg = render_message(kind, full(kind))
    assert (msg.ics is not None) == (kind in ("reminder", "due", "handoff", "reassigned"))
    if kind in ("handoff", "reassigned"):
        undated = {k: v for k, v in full(kind).items() if k not in DUE_KEYS}
        assert render_message(kind, undated).ics is None


def unfold(ics: str) -> list[str]:
    return ics.replace("\r\n ", "").split("\r\n")


def test_ics_event_is_rfc5545():
    title = "Working Model of the Child Interview, with mother; second session – très long " * 3
    ics = ics_event("NIM-2026-0001", "wmci-mother", title, DUE, LINK, "NIM-2026-0001.wmci-mother@nim-pathway")
    assert ics.endswith("\r\n") and "\n" not in ics.replace("\r\n", "")
    raw = ics.split("\r\n")[:-1]
    assert all(len(line.encode("utf-8")) <= 75 for line in raw)
    assert any(line.startswith(" ") for line in raw), "the long summary should be folded"
    lines = unfold(ics)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR"
    assert lines.count("BEGIN:VEVENT") == 1
    assert "DTSTART;VALUE=DATE:20260323" in lines and "DTEND;VALUE=DATE:20260324" in lines
    assert "DTSTAMP:20260323T000000Z" in lines and "UID:NIM-2026-0001.wmci-mother@nim-pathway" in lines
    summary = next(line for line in lines if line.startswith("SUMMARY:"))
    assert summary.startswith("SUMMARY:NIM-2026-0001: Working Model of the Child Interview\\, with mother\\;")
    assert "second session – très long" in summary
    assert any(line.startswith("DESCRIPTION:") and LINK in line for line in lines)


def test_ics_event_is_deterministic():
    args = ("NIM-2026-0001", "triage", "Triage", DUE, LINK, "u1")
    assert ics_event(*args) == ics_event(*args)
    assert render_message("due", full("due")).ics == render_message("due", full("due")).ics


# -- channels -----------------------------------------------------------------------------------

def rendered(subject: str = "[NIM-2026-0001] Due today: Triage", text: str = "body", link: str | None = LINK):
    return Rendered(subject, text, "<p>html</p>", None, link)


@pytest.mark.parametrize("url", ["sms://user@host/07700900123", "twilio://sid:token@447700900000",
                                 "SNS://key/secret/eu-west-2/447700900123", "vonage://key:secret@from/to"])
def test_sms_fits_160_characters(url):
    assert is_sms(url) and not is_email(url)
    assert fit_for_channel(url, rendered()) == ("", f"[NIM-2026-0001] Due today: Triage {LINK}")
    title, body = fit_for_channel(url, rendered(subject="x" * 150))
    assert title == "" and body == "x" * 150  # the link does not fit, the subject does
    title, body = fit_for_channel(url, rendered(subject="word " * 60))
    assert title == "" and len(body) <= 160 and body.endswith("…")
    real = render_message("escalation", full("escalation"))
    assert len(fit_for_channel(url, real)[1]) <= 160


@pytest.mark.parametrize("url", ["msteams://team/tokenA/tokenB/tokenC", "slack://tokenA/tokenB/tokenC/#nim"])
def test_chat_fits_4000_characters_and_keeps_the_link(url):
    msg = render_message("handoff", full("handoff", handover_note="Long note. " * 600))
    title, body = fit_for_channel(url, msg)
    assert title == msg.subject and len(body) <= 4000
    assert body.endswith(LINK) and "…" in body
    short = render_message("due", full("due"))
    assert fit_for_channel(url, short) == (short.subject, short.text)


def test_link_is_found_in_a_message_rebuilt_from_storage():
    msg = render_message("handoff", full("handoff", handover_note="See https://intranet.example/x\n" * 500))
    stored = Rendered(msg.subject, msg.text, msg.html, msg.ics)  # as the outbox keeps it: no link
    assert fit_for_channel("sms://host/07700900123", stored) == ("", f"{msg.subject} {LINK}")
    body = fit_for_channel("slack://a/b/c", stored)[1]
    assert len(body) <= 4000 and body.endswith("\n" + LINK)


@pytest.mark.parametrize("url", ["mailto://user:pass@example.org", "mailtos://user:pass@example.org"])
def test_email_gets_html(url):
    msg = render_message("due", full("due"))
    assert is_email(url) and not is_sms(url)
    assert fit_for_channel(url, msg) == (msg.subject, msg.html)


@pytest.mark.parametrize("url", ["json://localhost:8080/hook", "form://example.org", "xml://example.org"])
def test_other_channels_get_text(url):
    msg = render_message("due", full("due"))
    assert not is_sms(url) and not is_email(url)
    assert fit_for_channel(url, msg) == (msg.subject, msg.text)


# -- privacy ------------------------------------------------------------------------------------

IDENTITY = {
    "child_name": "SENTINEL-CHILD-NAME",
    "date_of_birth": "SENTINEL-DOB-2025-06-01",
    "address": "SENTINEL-ADDRESS",
    "mother_name": "SENTINEL-MOTHER-NAME",
}


def sentinelled(ctx: dict) -> dict:
    """Every string (and string in a list item) replaced by a harmless sentinel naming its key."""
    def swap(key: str, value):
        return f"SENTINEL-{key}" if isinstance(value, str) and key != "audience" else value

    out = {k: swap(k, v) for k, v in ctx.items()}
    if "items" in out:
        out["items"] = [{k: swap(k, v) for k, v in item.items()} for item in out["items"]]
    return out


@pytest.mark.parametrize(("kind", "audience"), [(k, "new") for k in KINDS] + [("reassigned", "previous")])
def test_no_identity_data_reaches_any_message(kind, audience):
    extra = {"audience": audience} if kind == "reassigned" else {}
    ctx = {**sentinelled(full(kind, **extra)), **IDENTITY}
    msg = render_message(kind, ctx)
    outputs = [msg.subject, msg.text, msg.html, msg.ics or ""]
    for sentinel in IDENTITY.values():
        assert all(sentinel not in out for out in outputs), f"{kind} leaked {sentinel}"
    assert "SENTINEL-dedupe_key" in msg.text  # the sentinel context really was used


def test_templates_never_reference_identity_keys():
    pattern = re.compile(r"child_name|date_of_birth|\bdob\b|address|mother_name|father_name|surname", re.I)
    for path in TEMPLATES.glob("*.j2"):
        assert not pattern.search(path.read_text()), path.name
