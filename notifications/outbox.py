"""What to tell whom: timers and handoffs become outbox rows, in the caller's transaction.

Each row is rendered once (what was sent is what is stored), addressed to one recipient,
and carries a dedupe key, so a replayed command, a re-run sweep or a racing sweep never
queues the same message twice. Free text (handover notes) is checked against the case's
identity fields and redacted before it leaves the case store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from models.tables import Caregiver, Child, Outbox, Practitioner, Task
from notifications.config import NotifyConfig, load_config
from notifications.render import render_message

DIGESTIBLE = {"reminder", "due", "handoff"}


def redact(text: str | None, identities: Iterable[str]) -> str | None:
    """Replace any identity value (name, date of birth, address) found in free text."""
    if not text:
        return text
    for value in sorted({v for v in identities if v and len(v) >= 2}, key=len, reverse=True):
        text = re.sub(re.escape(value), "[redacted]", text, flags=re.IGNORECASE)
    return text


def case_identities(session: Session, case_id: int) -> list[str]:
    out: list[str] = []
    child = session.exec(select(Child).where(Child.case_id == case_id)).first()
    if child:
        out += [child.given_name or "", child.family_name or "", child.address or ""]
        if child.date_of_birth:
            dob = child.date_of_birth
            out += [dob.isoformat(), dob.strftime("%d/%m/%Y"), f"{dob.day} {dob:%B %Y}"]
    for carer in session.exec(select(Caregiver).where(Caregiver.case_id == case_id)):
        out += (carer.name or "").split() + [carer.name or ""]
    return out


def recipients(session: Session, config: NotifyConfig, role: str,
               assignee_id: int | None) -> list[str]:
    """The assignee; else the role's channels; else everyone holding the role."""
    if assignee_id is not None:
        who = session.get(Practitioner, assignee_id)
        if who is not None and who.active:
            return [f"practitioner:{who.handle}"]
    if config.roles.get(role):
        return [f"channel:{c}" for c in config.roles[role]]
    staff = session.exec(select(Practitioner.handle).where(
        Practitioner.role == role, Practitioner.active).order_by(Practitioner.handle)).all()
    # nobody holds the role: address it anyway so delivery fails loudly and is dead-lettered
    return [f"practitioner:{h}" for h in staff] or [f"role-unstaffed:{role}"]


def link_for(config: NotifyConfig, ref: str, task: Task | None) -> str:
    if task is not None and task.flow_run_id:
        return f"{config.ui_url}/runs/flow-run/{task.flow_run_id}"
    return f"{config.ui_url}/runs?tag=case:{ref}"


def task_context(ref: str, task: Task, today: date, config: NotifyConfig) -> dict[str, Any]:
    return {"case_ref": ref, "task_key": task.key, "task_title": task.title,
            "role": task.role, "due": task.due, "due_explanation": task.due_explanation,
            "days_to_due": (task.due - today).days, "link": link_for(config, ref, task),
            "handed_over_by": None, "handover_note": None}


def enqueue(session: Session, config: NotifyConfig, kind: str, key: str, ref: str | None,
            recipient: str, context: dict[str, Any], now: datetime) -> Outbox | None:
    """Render and queue one message unless its dedupe key is already queued."""
    if session.exec(select(Outbox.id).where(Outbox.dedupe_key == key)).first() is not None:
        return None
    context = {**context, "recipient": recipient.partition(":")[2] or recipient,
               "dedupe_key": key}
    msg = render_message(kind, context)
    status = "pending"
    if kind in DIGESTIBLE and recipient.startswith("practitioner:"):
        who = session.exec(select(Practitioner).where(
            Practitioner.handle == recipient.partition(":")[2])).first()
        status = "held" if who is not None and who.digest else "pending"
    meta = {k: str(context[k]) if context.get(k) is not None else None
            for k in ("task_key", "task_title", "due", "days_to_due", "link")}
    row = Outbox(dedupe_key=key, case_ref=ref, kind=kind, recipient=recipient,
                 subject=msg.subject, body_text=msg.text, body_html=msg.html, ics=msg.ics,
                 meta=meta, status=status, next_attempt_at=now, created_at=now)
    session.add(row)
    return row


def queue_for_timer(session: Session, timer: Any, ref: str, task: Task | None, today: date,
                    now: datetime, config: NotifyConfig | None = None) -> int:
    """Messages for one fired timer (reminder, due, escalation, clock warning or breach)."""
    config = config or load_config()
    detail = timer.detail or {}
    if task is not None:
        context = task_context(ref, task, today, config)
    else:
        context = {"case_ref": ref, "task_key": None, "task_title": None, "role": timer.role,
                   "due": date.fromisoformat(detail["due"]), "due_explanation": None,
                   "days_to_due": (date.fromisoformat(detail["due"]) - today).days,
                   "link": link_for(config, ref, None)}
    if timer.kind.startswith("clock"):
        context.update(clock_title=detail.get("title", detail.get("clock")),
                       clock_due=date.fromisoformat(detail["due"]),
                       due_explanation=detail.get("explanation"))
    if timer.kind == "escalation":
        context.update(tier=detail.get("tier", 1), owner_role=detail.get("owner"))
    assignee = task.assignee_id if task is not None and timer.kind in ("reminder", "due") else None
    count = 0
    for recipient in recipients(session, config, timer.role, assignee):
        count += enqueue(session, config, timer.kind, f"{timer.key}|{recipient}", ref,
                         recipient, context, now) is not None
    return count


def queue_handoffs(session: Session, case_id: int, ref: str, effects: list[Any], actor: str,
                   gate_tasks: set[str], today: date, now: datetime) -> int:
    """New or unlocked work tells its owner; a reassignment tells the new and previous owner."""
    config = load_config()
    tasks = {t.key: t for t in session.exec(select(Task).where(Task.case_id == case_id))}
    identities: list[str] | None = None
    count = 0
    for e in effects:
        task = tasks.get(e.task or "")
        if task is None or e.kind not in ("task-created", "task-unlocked", "task-reassigned"):
            continue
        if e.kind != "task-reassigned" and task.state != "open":
            continue  # blocked work is announced when it unlocks
        context = task_context(ref, task, today, config)
        context["handed_over_by"] = actor
        if e.kind == "task-reassigned":
            identities = identities if identities is not None else case_identities(session,
                                                                                   case_id)
            context["handover_note"] = redact(task.handover_note, identities)
            pairs = [("new", e.detail["to"])] + ([("previous", e.detail["from"])]
                                                 if e.detail.get("from") else [])
            for audience, handle in pairs:
                key = f"{ref}/{task.key}/reassigned/{e.detail['to']}/{audience}/{now.isoformat()}"
                count += enqueue(session, config, "reassigned", key, ref,
                                 f"practitioner:{handle}", {**context, "audience": audience},
                                 now) is not None
            continue
        kind = "gate" if task.spec_id in gate_tasks else "handoff"
        for recipient in recipients(session, config, task.role, task.assignee_id):
            key = f"{ref}/{task.key}/{kind}/{task.due}|{recipient}"
            count += enqueue(session, config, kind, key, ref, recipient, context,
                             now) is not None
    return count


def queue_digests(session: Session, now: datetime, today: date) -> int:
    """Bundle each practitioner's held messages into one daily digest."""
    config = load_config()
    held = session.exec(select(Outbox).where(Outbox.status == "held")
                        .order_by(Outbox.recipient, Outbox.id)).all()
    by_recipient: dict[str, list[Outbox]] = {}
    for row in held:
        by_recipient.setdefault(row.recipient, []).append(row)
    count = 0
    for recipient, rows in by_recipient.items():
        items = [{"case_ref": r.case_ref, **(r.meta or {})} for r in rows]
        for item in items:  # meta keeps strings; the template wants a date and a number
            item["due"] = date.fromisoformat(item["due"]) if item.get("due") else None
            item["days_to_due"] = int(item["days_to_due"]) if item.get("days_to_due") else 0
        context = {"case_ref": rows[0].case_ref, "items": items,
                   "link": f"{config.ui_url}/runs", "due": today}
        count += enqueue(session, config, "digest", f"digest/{recipient}/{today}/{rows[-1].id}",
                         None, recipient, context, now) is not None
        for r in rows:
            r.status = "digested"
            session.add(r)
    return count
