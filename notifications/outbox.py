"""What to tell whom: timers and handoffs become outbox rows, in the caller's transaction.

Each row is rendered once (what was sent is what is stored), addressed to one recipient,
and carries a dedupe key, so a replayed command, a re-run sweep or a racing sweep never
queues the same message twice. Free text never leaves the case store: a message says that a
handover note was left and where to read it, never what it says (redaction by matching the
case's identity misses nicknames, partial addresses and other date formats).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from models.calendar import WorkingCalendar
from notifications.config import NotifyConfig
from notifications.kinds import Firing, link_for, message_kind, task_context
from store.tables import Case, Outbox, Practitioner, Task, Timer
from store.views import OutboxRow

if TYPE_CHECKING:
    from store.queries import Queries

DATE_KEYS = ("due", "clock_due")


def revive(context: dict[str, Any]) -> dict[str, Any]:
    """A stored context back to what the templates take (dates as dates)."""
    return {k: date.fromisoformat(v) if k in DATE_KEYS and isinstance(v, str) else v
            for k, v in context.items()}


NOTE_LEFT = ("A handover note was left with this task: read it in NIM pathway (`nim-pathway "
             "task list --case {ref} --json`). Notes stay in the case store; they are not sent "
             "by message.")


class Directory:
    """Who can be addressed: practitioners by id and by role, and role channels. A sweep batch
    loads its assignees in one query and each role it needs once, not a row per timer."""

    def __init__(self, session: Session, config: NotifyConfig,
                 assignee_ids: Iterable[int] | None = None) -> None:
        self.session, self.config = session, config
        self.by_id: dict[int, str] = {}
        self.by_role: dict[str, list[str]] = {}
        self.digest: set[str] = set()
        if assignee_ids is not None:
            self._load(Practitioner.id.in_(set(assignee_ids)))

    def _load(self, where: Any) -> list[str]:
        rows = self.session.exec(select(Practitioner.id, Practitioner.handle,
                                        Practitioner.digest)
                                 .where(where, Practitioner.active)
                                 .order_by(Practitioner.handle)).all()
        for pid, handle, digest in rows:
            self.by_id[pid] = handle
            if digest:
                self.digest.add(f"practitioner:{handle}")
        return [handle for _, handle, _ in rows]

    def _holders(self, role: str) -> list[str]:
        if role not in self.by_role:
            self.by_role[role] = self._load(Practitioner.role == role)
        return self.by_role[role]

    def recipients(self, role: str, assignee_id: int | None) -> list[str]:
        """The assignee; else the role's channels; else everyone holding the role."""
        if assignee_id is not None and assignee_id not in self.by_id:
            self._load(Practitioner.id == assignee_id)
        if assignee_id in self.by_id:
            return [f"practitioner:{self.by_id[assignee_id]}"]
        if self.config.roles.get(role):
            return [f"channel:{c}" for c in self.config.roles[role]]
        # nobody holds the role: address it anyway so delivery fails loudly and is dead-lettered
        return [f"practitioner:{h}" for h in self._holders(role)] or [f"role-unstaffed:{role}"]

    def held(self, recipient: str) -> bool:
        """Whether this recipient takes reminders as a daily digest."""
        if recipient.startswith("practitioner:") and recipient not in self.digest:
            self._load(Practitioner.handle == recipient.partition(":")[2])
        return recipient in self.digest


def refresh_links(session: Session, config: NotifyConfig, contexts: list[dict[str, Any]]) -> None:
    """Work is announced in the transaction that creates it, before its Prefect run exists
    (or, after a reassignment, while the run with the old owner's form still waits). At send
    time, point each task's link at the task's run now: the practitioner lands on the current
    Resume form. One query for all `contexts`."""
    stale = [c for c in contexts if c.get("task_key") and c.get("case_ref")]
    if not stale:
        return
    runs = {(ref, key): run for ref, key, run in session.exec(
        select(Case.ref, Task.key, Task.flow_run_id).join(Case, Case.id == Task.case_id)
        .where(Task.flow_run_id.is_not(None), Case.ref.in_({c["case_ref"] for c in stale}),
               Task.key.in_({c["task_key"] for c in stale})))}
    for c in stale:
        if (c["case_ref"], c["task_key"]) in runs:
            c["link"] = link_for(config, c["case_ref"], runs[c["case_ref"], c["task_key"]])


# Kinds whose message is about one task (its context names `task_key`): sent only while the
# task is open; and, for those addressed to the task's owner, only while that is who owns it
TASK_KINDS = frozenset({"reminder", "due", "escalation", "handoff", "gate", "reassigned"})
OWNER_KINDS = frozenset({"reminder", "due", "handoff", "gate", "reassigned"})
DROPPED = "dropped"  # a terminal status: the message stopped being true before it was sent


def why_stale(session: Session, messages: list[tuple[str, str, dict[str, Any]]]
              ) -> list[str | None]:
    """For each (kind, recipient, context) about to be sent or bundled, why it must not go
    (None if it still may): the task it is about was completed or cancelled since it was
    queued, its case closed, or it now belongs to someone else than the practitioner it was
    addressed to as owner. One query for all `messages`, read in the caller's transaction
    (the one that claims them). A reason names handles only, never identity."""
    about = [(m.get("case_ref"), m.get("task_key")) if k in TASK_KINDS else (None, None)
             for k, _, m in messages]
    wanted = [(ref, key) for ref, key in about if ref and key]
    now: dict[tuple[str, str], tuple[str, str | None, date | None, str | None]] = {}
    if wanted:
        now = {(ref, key): (state, owner, closed_on, exit_reason)
               for ref, key, state, owner, closed_on, exit_reason in session.exec(
                   select(Case.ref, Task.key, Task.state, Practitioner.handle, Case.closed_on,
                          Case.exit_reason)
                   .join(Case, Case.id == Task.case_id)
                   .join(Practitioner, Practitioner.id == Task.assignee_id, isouter=True)
                   .where(Case.ref.in_({r for r, _ in wanted}),
                          Task.key.in_({k for _, k in wanted})))}
    reasons: list[str | None] = []
    for (kind, recipient, context), (ref, key) in zip(messages, about, strict=True):
        if not (ref and key):
            reasons.append(None)
            continue
        if (ref, key) not in now:
            reasons.append("task no longer exists")
            continue
        state, owner, closed_on, exit_reason = now[ref, key]
        ended = "case exited" if exit_reason else "case closed"
        addressee = recipient.partition(":")[2] if recipient.startswith("practitioner:") else None
        to_owner = kind in OWNER_KINDS and context.get("audience", "new") == "new"
        if state == "done":
            reasons.append("task completed before sending")
        elif state == "cancelled":
            reasons.append(f"task cancelled: {ended}" if closed_on else "task cancelled")
        elif closed_on is not None:
            reasons.append(f"{ended} before sending")
        elif to_owner and addressee and owner is not None and owner != addressee:
            reasons.append(f"re-owned to {owner}")
        else:
            reasons.append(None)
    return reasons


def fresh_items(session: Session, recipient: str, items: list[dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """A digest's items that are still true (`why_stale`); an item names the kind it was
    held as (before it did, it was a reminder)."""
    reasons = why_stale(session, [(i.get("kind") or "reminder", recipient, i) for i in items])
    return [i for i, why in zip(items, reasons, strict=True) if why is None]


def _jsonable(value: Any) -> Any:
    """Dates as ISO text, at any depth (scalars are checked inline: a sweep makes thousands)."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, str | int | None) else _jsonable(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.isoformat() if isinstance(value, date) else value


def message_row(kind: str, key: str, ref: str | None, recipient: str, context: dict[str, Any],
                now: datetime, held: bool) -> dict[str, Any]:
    """An outbox row. Its context is frozen now; the dispatcher renders it once, stores the
    text it sent, and so keeps rendering out of the sweep's transaction. A kind missing from
    the registry (`notifications/kinds.py`) is refused here, not when it is sent."""
    digestible = message_kind(kind).digestible
    context = {**context, "recipient": recipient.partition(":")[2] or recipient,
               "dedupe_key": key}
    status = "held" if held and digestible else "pending"
    return {"dedupe_key": key, "case_ref": ref, "kind": kind, "recipient": recipient,
            "subject": "", "body_text": "", "body_html": "", "ics": None,
            "meta": _jsonable(context), "status": status, "attempts": 0, "reclaimed": 0,
            "next_attempt_at": now, "created_at": now}


PREVIEW_CHARS = 120  # enough to read what a message is about in `outbox list`


def preview(row: Outbox) -> tuple[str, str]:
    """A message's subject and the start of its text, as it is or will be sent: the stored
    text once the dispatcher has rendered it, else rendered now from its frozen context by
    the same templates (which carry the case reference, never a child's identity)."""
    from notifications.render import render_message

    if row.subject:
        subject, text = row.subject, row.body_text
    else:
        try:
            rendered = render_message(row.kind, revive(row.meta or {}))
        except Exception as exc:  # noqa: BLE001 - a listing shows the problem, sending will too
            return "", f"(cannot be rendered: {type(exc).__name__})"
        subject, text = rendered.subject, rendered.text
    flat = " ".join(text.split())
    return subject, (flat if len(flat) <= PREVIEW_CHARS
                     else flat[:PREVIEW_CHARS - 1].rstrip() + "…")


def enqueue(session: Session, config: NotifyConfig, kind: str, key: str, ref: str | None,
            recipient: str, context: dict[str, Any], now: datetime,
            directory: Directory | None = None) -> Outbox | None:
    """Queue one message unless its dedupe key is already queued."""
    if session.exec(select(Outbox.id).where(Outbox.dedupe_key == key)).first() is not None:
        return None
    directory = directory or Directory(session, config)
    row = Outbox(**message_row(kind, key, ref, recipient, context, now,
                               directory.held(recipient)))
    session.add(row)
    return row


def timer_messages(timer: Any, ref: str, task: Any, today: date, now: datetime,
                   directory: Directory, calendar: WorkingCalendar,
                   escalated_before: bool = True) -> list[dict[str, Any]]:
    """Outbox rows for one fired timer (reminder, due, escalation, clock warning or breach):
    the context is built by its kind's entry in the registry (`notifications/kinds.py`).
    Each timer fires once and its key is unique, so its rows need no dedupe look-up.

    The text is true on `today`, the day it is queued, whenever the timer was meant to fire:
    past its due date, a task's message says how many working days late it is (the case's
    calendar, as the caseload board counts), never "due today" or "due in N days". A higher
    escalation whose lower tier was skipped in the same catch-up (`escalated_before` False)
    does not claim an earlier escalation."""
    kind = message_kind(timer.kind)
    if kind.context is None:
        raise ValueError(f"message kind {kind.name!r} is not one timers send: its registry entry "
                         "has no context builder")
    context = kind.context(Firing(timer, ref, task, today, directory.config, calendar,
                                  escalated_before))
    assignee = task.assignee_id if task is not None and kind.to_assignee else None
    return [message_row(timer.kind, f"{timer.key}|{r}", ref, r, context, now,
                        r in directory.digest)  # assignees were loaded with their digest flag
            for r in directory.recipients(timer.role, assignee)]


def queue_handoffs(session: Session, config: NotifyConfig, case_id: int, ref: str,
                   effects: list[Any], actor: str, gate_tasks: set[str], today: date,
                   now: datetime) -> int:
    """New or unlocked work tells its owner; a reassignment tells the new and previous owner."""
    tasks = {t.key: t for t in session.exec(select(Task).where(Task.case_id == case_id))}
    directory = Directory(session, config)
    count = 0
    for e in effects:
        if e.kind == "case-exited":  # the roles the exit names are told, once each
            context = {"case_ref": ref, "exit_label": e.detail["label"],
                       "programme": session.get(Case, case_id).programme.upper(),
                       "keeps_statutory": e.detail["keeps_statutory"],
                       "link": link_for(config, ref, None)}
            for role in e.detail["notify"]:
                for recipient in directory.recipients(role, None):
                    count += enqueue(session, config, "exit", f"{ref}/exit|{recipient}", ref,
                                     recipient, context, now, directory) is not None
            continue
        task = tasks.get(e.task or "")
        if task is None or e.kind not in ("task-created", "task-unlocked", "task-reassigned"):
            continue
        if e.kind != "task-reassigned" and task.state != "open":
            continue  # blocked work is announced when it unlocks
        context = task_context(ref, task, today, config)
        context["handed_over_by"] = actor
        if e.kind == "task-reassigned":
            context["handover_note"] = NOTE_LEFT.format(ref=ref) if task.handover_note else None
            pairs = [("new", e.detail["to"])] + ([("previous", e.detail["from"])]
                                                 if e.detail.get("from") else [])
            for audience, handle in pairs:
                key = f"{ref}/{task.key}/reassigned/{e.detail['to']}/{audience}/{now.isoformat()}"
                count += enqueue(session, config, "reassigned", key, ref,
                                 f"practitioner:{handle}", {**context, "audience": audience},
                                 now, directory) is not None
            continue
        kind = "gate" if task.spec_id in gate_tasks else "handoff"
        # a reminder or due notice the next sweep would send now goes in this message
        merged = due_now(session, case_id, task.key, now)
        context["due_soon"] = bool(merged)
        queued = 0
        for recipient in directory.recipients(task.role, task.assignee_id):
            key = f"{ref}/{task.key}/{kind}/{task.due}|{recipient}"
            # never tell people they completed their own part: the next task is just theirs
            told = {**context, "handed_over_by": None} \
                if recipient == f"practitioner:{actor}" else context
            queued += enqueue(session, config, kind, key, ref, recipient, told,
                              now, directory) is not None
        if queued and merged:
            for timer in merged:
                timer.fired_at, timer.skip_reason = now, f"merged into the {kind} message"
                session.add(timer)
        count += queued
    return count


def due_now(session: Session, case_id: int, task_key: str, now: datetime) -> list[Timer]:
    """The task's reminder and due-today timers that are due already: with a new task's
    message they would arrive at once ("New task" then "Due in 2 days"), so the new-task
    message says when it is due and they are settled with it."""
    return list(session.exec(select(Timer).where(
        Timer.case_id == case_id, Timer.task_key == task_key, Timer.kind.in_(("reminder", "due")),
        Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= now)))


def queue_digests(session: Session, config: NotifyConfig, now: datetime, today: date) -> int:
    """Bundle each practitioner's held messages into one daily digest."""
    held = session.exec(select(Outbox).where(Outbox.status == "held")
                        .order_by(Outbox.recipient, Outbox.id)).all()
    by_recipient: dict[str, list[Outbox]] = {}
    for row in held:
        by_recipient.setdefault(row.recipient, []).append(row)
    count = 0
    for recipient, rows in list(by_recipient.items()):
        reasons = why_stale(session, [(r.kind, r.recipient, r.meta or {}) for r in rows])
        for r, why in zip(rows, reasons, strict=True):
            if why is not None:  # a digest never lists work that is no longer true
                r.status, r.last_error = DROPPED, why
                session.add(r)
        rows = [r for r, why in zip(rows, reasons, strict=True) if why is None]
        if not rows:
            continue
        items = [{k: (r.meta or {}).get(k) for k in ("task_key", "task_title", "due",
                                                     "days_to_due", "link")}
                 | {"case_ref": r.case_ref, "kind": r.kind} for r in rows]
        context = {"case_ref": rows[0].case_ref, "items": items,
                   "link": f"{config.ui_url}/runs", "due": today}
        count += enqueue(session, config, "digest", f"digest/{recipient}/{today}/{rows[-1].id}",
                         None, recipient, context, now) is not None
        for r in rows:
            r.status = "digested"
            session.add(r)
    return count


def outbox_listing(queries: Queries, failed: bool = False, limit: int = 200) -> list[OutboxRow]:
    """Messages newest first, each with its subject and a preview: a queued message is
    rendered as the dispatcher will render it, so it can be read before it goes."""
    return [OutboxRow(o.id, o.kind, o.case_ref, o.recipient, o.status, o.attempts, subject,
                      o.last_error, o.next_attempt_at, o.sent_at, text)
            for o in queries.outbox_messages(failed, limit)
            if not (failed and o.status == DROPPED)  # why it was dropped is no failure
            for subject, text in [preview(o)]]
