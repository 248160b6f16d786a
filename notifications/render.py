"""Message content for notifications: subject, plain text, HTML and an optional calendar event.

Apprise delivers the messages elsewhere; this module only turns a message kind and a context
into text. The kinds are the registry in `notifications/kinds.py`; templates live in
`notifications/templates/`, one per kind (its entry's `template`, `<kind>.j2`) with the blocks
`subject`, `text` and `html`, and `_common.j2` for the shared parts. A missing key raises
`jinja2.UndefinedError` (StrictUndefined), so a caller cannot silently send a half-empty message.

Context values are plain strings, numbers and dates about the case and the staff involved; they
never include a child's or family member's name, date of birth or address, and the templates
never look for such keys.

Keys every kind needs: `recipient` (practitioner or role channel, staff only) and `dedupe_key`
(shown as "ref: <dedupe_key>" in every footer so receivers can drop duplicates).

Task keys: `case_ref`, `task_key`, `task_title`, `role`, `due` (date), `due_explanation` (may be
None), `link`. Optional task keys (absent or None): `handed_over_by`, `handover_note`.
`days_to_due` counts calendar days from today to the due date (negative when overdue).
Optional for reminder, due and escalation: `working_days_to_due`, the same in working days
(the case's calendar); when given, lateness is said in working days ("overdue by 3 working
days"), "today" being the day the message was queued.

=============  ===============================================================================
kind           keys besides `recipient` and `dedupe_key`
=============  ===============================================================================
reminder       task keys + `days_to_due` (> 0 on time; a sweep catching up may send one
               late, <= 0)
due            task keys + `days_to_due` (0 on time; < 0 when sent late: "overdue by …")
escalation     task keys + `days_to_due` (< 0), `tier` (1 or 2), `owner_role`
               (role holding the task; `role` is the manager role it is escalated to);
               optional `escalated_before` (default true: tier 2 says tier 1 went out)
handoff        task keys, but `due` and `due_explanation` may both be absent (no deadline yet)
reassigned     as handoff + `audience` ("new" or "previous" owner)
gate           task keys (the task is the professionals meeting / decision D1 or D2)
clock-warning  `case_ref`, `clock_title`, `clock_due` (date), `due_explanation` (may be None),
               `link`, `days_to_due` (to `clock_due`); optional `task_title`, `task_key` (the
               clock's target task), `clock_kind` (maximum, target, window: the wording)
clock-breach   as clock-warning, without `days_to_due`
dead-letter    `attempts`, `last_error`, `message_id`; optional, about the undelivered message:
               `kind`, `recipient_name` (staff or role), `case_ref`, `task_title`, `task_key`,
               `due`, `due_explanation`, `link`
digest         `items`: list of dicts with `case_ref`, `task_key`, `task_title`, `due`,
               `days_to_due`, `link` (optional `due_explanation`; ISO date strings are accepted);
               optional `link` (work list)
test           optional `link`
exit           `case_ref`, `exit_label`, `keeps_statutory` (bool), `link`; `programme` (NIM
               if absent: rows queued before programmes existed)
audit-checkpoint
               to the admins: `checkpoint` (the audit log's signed head as one JSON line,
               shown verbatim), `row_id`, `rows` (audit rows up to it); no case
=============  ===============================================================================

Keys a kind does not use may be absent and are ignored. `ics` is set when `due` is given and the
kind's entry asks for a calendar event (reminder, due, handoff; reassigned to audience "new").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined

from notifications.kinds import KINDS, message_kind  # noqa: F401 - KINDS: the registry, by name

TEMPLATES = Path(__file__).resolve().parent / "templates"

SMS_LIMIT = 160
CHAT_LIMIT = 4000
_SMS_SCHEMES = frozenset({
    "sms", "twilio", "sns", "clickatell", "bulksms", "msg91", "smseagle", "d7sms", "kavenegar",
    "plivo", "sinch", "vonage", "nexmo",
})
_CHAT_SCHEMES = frozenset({"msteams", "slack"})
_EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    ics: str | None
    link: str | None = None  # kept apart so short channels can still carry it


# -- template helpers ---------------------------------------------------------------------------

def _uk_date(d: date | str) -> str:
    if isinstance(d, str):  # stored rows (digest items) keep dates as ISO text
        d = date.fromisoformat(d)
    # Attribute access, not format(), so a missing date raises UndefinedError like any other key.
    return f"{d.strftime('%A')} {d.day} {d.strftime('%B %Y')}"


def _explained(reason: str | None) -> str:
    """' (reason)' after a date. The key must exist, but None (no explanation) is allowed."""
    if reason is None:
        return ""
    text = str(reason)  # raises UndefinedError when the key is missing
    return f" ({text})" if text else ""


def _due_phrase(days: int | str, working_days: Any = None) -> str:
    """Calendar days, as the date shown beside it makes plain; negative means overdue. Given
    `working_days` (working days to due, negative when overdue), lateness is told in working
    days: "overdue" alone when none has passed yet (due Friday, sent on the Saturday). Absent
    or None (digest items, rows queued before it was recorded), calendar days as before."""
    days = int(days)
    if days == 0:
        return "due today"
    unit = "day" if abs(days) == 1 else "days"
    if days > 0:
        return f"due in {days} {unit}"
    if not _given(working_days):
        return f"overdue by {-days} {unit}"
    late = -int(working_days)
    if late <= 0:
        return "overdue"
    return f"overdue by {late} working day{'' if late == 1 else 's'}"


def _clock_phrase(days: int) -> str:
    """Whole weeks read better for statutory clocks (26 weeks, 6 months)."""
    if days <= 0:
        return "runs out today" if days == 0 else "has run out"
    if days % 7 == 0:
        weeks = days // 7
        return f"runs out in {weeks} week{'' if weeks == 1 else 's'}"
    return f"runs out in {days} day{'' if days == 1 else 's'}"


def _given(value: Any) -> bool:
    """Optional keys may be absent or None; `is given` lets templates test both."""
    return not isinstance(value, Undefined) and value is not None and value != ""


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ukdate=_uk_date, explained=_explained, due_phrase=_due_phrase,
                       clock_phrase=_clock_phrase)
    env.tests["given"] = _given
    return env


# Autoescape is per template, not per block, so HTML blocks come from their own environment.
_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


def _block(env: Environment, template_name: str, name: str, context: dict) -> str:
    template = env.get_template(template_name)
    return "".join(template.blocks[name](template.new_context(dict(context))))


def _tidy(text: str) -> str:
    """Drop trailing spaces and runs of blank lines left by template logic."""
    lines = [line.rstrip() for line in text.strip().split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def render_message(kind: str, context: dict) -> Rendered:
    """Render one message of `kind` (a name in the registry, `notifications/kinds.py`); see
    the module docstring for the keys each kind needs."""
    entry = message_kind(kind)  # ValueError naming the valid kinds
    if entry.check is not None:
        entry.check(context)
    subject = " ".join(_block(_TEXT_ENV, entry.template, "subject", context).split())
    text = _tidy(_block(_TEXT_ENV, entry.template, "text", context))
    html = _tidy(_block(_HTML_ENV, entry.template, "html", context))
    ics = None
    if entry.wants_calendar(context) and context.get("due") is not None:
        ref, key, due = context["case_ref"], context["task_key"], context["due"]
        # One UID per task and deadline, so each reminder updates the same calendar entry.
        uid = f"{ref}.{key}.{due:%Y%m%d}@nim-pathway"
        ics = ics_event(ref, key, context["task_title"], due, context["link"], uid)
    return Rendered(subject, text, html, ics, context.get("link"))


# -- calendar event -----------------------------------------------------------------------------

def _ics_text(value: str) -> str:
    """Escape an RFC 5545 TEXT value."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Fold at 75 octets (RFC 5545 3.1) without splitting a UTF-8 character."""
    parts, current, size = [], "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            parts.append(current)
            current, size = " ", 1  # the continuation's leading space counts too
        current += char
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def ics_event(case_ref: str, task_key: str, title: str, due: date, link: str, uid: str) -> str:
    """A VCALENDAR with one all-day event on `due`; DTSTAMP comes from `due`, not the wall clock."""
    return ics_calendar([{"case_ref": case_ref, "task_key": task_key, "title": title,
                          "due": due, "link": link, "uid": uid}])


def ics_calendar(events: list[dict]) -> str:
    """A VCALENDAR of all-day deadline events (case_ref, task_key, title, due, link, uid)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//nim-pathway//notifications//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for e in events:
        due, case_ref = e["due"], e["case_ref"]
        day = f"{due:%Y%m%d}"
        lines += [
            "BEGIN:VEVENT",
            f"UID:{_ics_text(e['uid'])}",
            f"DTSTAMP:{day}T000000Z",
            f"DTSTART;VALUE=DATE:{day}",
            f"DTEND;VALUE=DATE:{due + timedelta(days=1):%Y%m%d}",
            f"SUMMARY:{_ics_text(case_ref + ': ' + e['title'])}",
            "DESCRIPTION:" + _ics_text(f"Task {e['task_key']} on case {case_ref}. "
                                       f"Open in NIM pathway: {e['link']}"),
            f"URL:{e['link']}",
            "TRANSP:TRANSPARENT",  # a deadline, not a meeting: do not block the day
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)


# -- fitting a message to its channel -----------------------------------------------------------

def _scheme(url: str) -> str:
    return url.split("://", 1)[0].strip().lower() if "://" in url else ""


def is_sms(url: str) -> bool:
    return _scheme(url) in _SMS_SCHEMES


def is_email(url: str) -> bool:
    return _scheme(url) in _EMAIL_SCHEMES


# The link line the templates write last, after any handover note (which could contain URLs).
_LINK_LINE = re.compile(r"^(?:Open in NIM pathway|All your work): (\S+)$", re.MULTILINE)


def _link_of(rendered: Rendered) -> str | None:
    """The deep link, also for a Rendered rebuilt from a stored row without one."""
    if rendered.link:
        return rendered.link
    found = _LINK_LINE.findall(rendered.text)
    return found[-1] if found else None


def _clip(text: str, limit: int, keep: str | None = None) -> str:
    """Cut `text` to `limit` characters with an ellipsis, keeping `keep` (a link) at the end."""
    if len(text) <= limit:
        return text
    tail = f"\n{keep}" if keep and len(keep) < limit // 2 else ""
    return text[: limit - len(tail) - 1].rstrip() + "…" + tail


def fit_for_channel(url: str, rendered: Rendered) -> tuple[str, str]:
    """(title, body) for the Apprise target `url`, within the limits of its kind of channel."""
    scheme = _scheme(url)
    link = _link_of(rendered)
    if scheme in _SMS_SCHEMES:
        if link and len(rendered.subject) + 1 + len(link) <= SMS_LIMIT:
            return "", f"{rendered.subject} {link}"
        return "", _clip(rendered.subject, SMS_LIMIT)
    if scheme in _CHAT_SCHEMES:
        return rendered.subject, _clip(rendered.text, CHAT_LIMIT, link)
    if scheme in _EMAIL_SCHEMES:
        return rendered.subject, rendered.html
    return rendered.subject, rendered.text
