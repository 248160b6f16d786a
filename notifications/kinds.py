"""Message kinds: the one registry. A kind is one `MessageKind` entry in `MESSAGE_KINDS` below
plus one template, `notifications/templates/<name>.j2`, with the blocks `subject`, `text` and
`html` (the template is the message: its subject too). Nothing else names what a kind does:

- `render.render_message` renders the entry's `template`, runs its `check` and attaches an
  .ics event when its `calendar` says so;
- `outbox.message_row` holds a `digestible` kind for a practitioner who takes a daily digest;
- `outbox.timer_messages` builds a fired timer's context with the entry's `context` and sends
  it to the task's assignee when `to_assignee`;
- `store.timers.superseded` ranks a task's due timers by `catch_up_rank` after a catch-up;
- the sweep flow (`flows/pathway_flows.py`) emits `nim.deadline.breached` for a `breach` kind.

Timer kinds are planned by the engine (`planned_timers`, a pathway rule). Kinds that
code queues itself (handoffs, digests, dead letters, audit checkpoints) build their context
where they queue it: their entry has no `context`.

At run time this module imports only the standard library (the types it names are imported
for type checking only), so every layer may read it, the store's timer claims included. The
contexts it builds carry the case reference and staff only, never a child's or family
member's name, date of birth or address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from models.calendar import WorkingCalendar
    from notifications.config import NotifyConfig

Context = dict[str, Any]


class Firing(NamedTuple):
    """What a timer kind's `context` builder reads."""

    timer: Any  # store.timers.DueTimer: key, kind, task_key, role, due_at, detail
    ref: str  # the case reference
    task: Any  # store.timers.TaskForMessage, or None (clock timers; a task row gone)
    today: date  # the day the message is queued (UK)
    config: NotifyConfig
    calendar: WorkingCalendar  # the case's working calendar
    escalated_before: bool = True  # False: a lower escalation tier was skipped in a catch-up


@dataclass(frozen=True)
class MessageKind:
    """One kind of message; see the module docstring for who reads which field."""

    name: str
    # a file in notifications/templates/ with blocks subject, text and html; "" is <name>.j2
    template: str = ""
    # held for a practitioner who takes reminders as a daily digest, then sent in it
    digestible: bool = False
    # attach an .ics all-day event on the task's `due` date (when the context has one); a
    # function of the context decides message by message
    calendar: bool | Callable[[Context], bool] = False
    # for a kind that timers fire: its context from the fired timer (timer_context,
    # escalation_context, clock_context or your own); None for kinds only code queues
    context: Callable[[Firing], Context] | None = None
    # a timer's message goes to the task's assignee when it has one (else the timer's role)
    to_assignee: bool = False
    # catching up, a task sends only its due timer of the highest rank; None: never skipped
    catch_up_rank: int | None = None
    # firing means a deadline was missed: the sweep flow emits nim.deadline.breached
    breach: bool = False
    # raises ValueError for a context this kind cannot take, before anything is rendered
    check: Callable[[Context], None] | None = None

    def __post_init__(self) -> None:
        if not self.template:
            object.__setattr__(self, "template", f"{self.name}.j2")

    def wants_calendar(self, context: Context) -> bool:
        return self.calendar(context) if callable(self.calendar) else self.calendar


# -- context builders -------------------------------------------------------------------------

def link_for(config: NotifyConfig, ref: str, flow_run_id: str | None) -> str:
    """The task's own run (its Resume form) if it has one, else the case's runs. Both open in
    the UI Prefect 3.9 shows by default, the v2 UI (under /v2), as every link and view does:
    its form shows the one-time code as a password field (the classic UI's, as plain text)."""
    if flow_run_id:
        return f"{config.ui_url}/v2/runs/flow-run/{flow_run_id}"
    return f"{config.ui_url}/v2/runs?tags=case:{ref}"


def task_label(title: str, caregiver: str | None = None, child: str | None = None) -> str:
    """A task's title as people read it: whose work it is by the caregiver's role and the
    child's position ("Relationship assessment (father 2, child 2)"), never a name or an
    internal key."""
    whose = [w.replace("-", " ") for w in (caregiver, child) if w]
    return f"{title} ({', '.join(whose)})" if whose else title


def task_context(ref: str, task: Any, today: date, config: NotifyConfig) -> Context:
    """What a message says about a task (a Task row or a row of its columns)."""
    title = task_label(task.title, getattr(task, "caregiver", None), getattr(task, "child", None))
    return {"case_ref": ref, "task_key": task.key, "task_title": title,
            "role": task.role, "due": task.due, "due_explanation": task.due_explanation,
            "days_to_due": (task.due - today).days,
            "link": link_for(config, ref, task.flow_run_id),
            "handed_over_by": None, "handover_note": None}


def timer_context(f: Firing) -> Context:
    """A timer about a task: the task keys (render.py), `days_to_due` and, in the case's
    working days, `working_days_to_due`. Without a task row, the timer's own `due` (detail)."""
    if f.task is not None:
        context = task_context(f.ref, f.task, f.today, f.config)
        context["working_days_to_due"] = f.calendar.working_days_between(f.today, f.task.due)
        return context
    due = date.fromisoformat((f.timer.detail or {})["due"])
    return {"case_ref": f.ref, "task_key": None, "task_title": None, "role": f.timer.role,
            "due": due, "due_explanation": None, "days_to_due": (due - f.today).days,
            "link": link_for(f.config, f.ref, None)}


def escalation_context(f: Firing) -> Context:
    """As `timer_context`, plus the tier, the role that holds the task and whether a lower
    tier went out (not when it was skipped in the same catch-up)."""
    detail = f.timer.detail or {}
    return {**timer_context(f), "tier": detail.get("tier", 1), "owner_role": detail.get("owner"),
            "escalated_before": f.escalated_before}


def clock_context(f: Firing) -> Context:
    """A statutory clock's warning or breach: its title, limit date and explanation."""
    detail = f.timer.detail or {}
    return {**timer_context(f), "clock_title": detail.get("title", detail.get("clock")),
            "clock_due": date.fromisoformat(detail["due"]),
            "due_explanation": detail.get("explanation"),
            "clock_kind": detail.get("kind", "maximum")}


def _audience(context: Context) -> None:
    if context.get("audience", "new") not in ("new", "previous"):
        raise ValueError("context['audience'] must be 'new' or 'previous' for reassigned messages")


def _to_new_owner(context: Context) -> bool:
    return context["audience"] == "new"  # the previous owner has no deadline to keep


# -- the registry -----------------------------------------------------------------------------

MESSAGE_KINDS: tuple[MessageKind, ...] = (
    # timers (the engine's planned_timers plans them; the sweep fires them)
    MessageKind("reminder", digestible=True, calendar=True, context=timer_context,
                to_assignee=True, catch_up_rank=0),
    MessageKind("due", digestible=True, calendar=True, context=timer_context,
                to_assignee=True, catch_up_rank=1),
    MessageKind("escalation", context=escalation_context, catch_up_rank=2, breach=True),
    MessageKind("clock-warning", context=clock_context),
    MessageKind("clock-breach", context=clock_context, breach=True),
    # queued by outbox.queue_handoffs from the engine's effects
    MessageKind("handoff", digestible=True, calendar=True),
    MessageKind("reassigned", calendar=_to_new_owner, check=_audience),
    MessageKind("gate"),
    # queued by the dispatcher (dead-letter), outbox.queue_digests (digest), `notify test` and
    # the health check (test, sent at once), the case exit, the audit checkpoint (admin)
    MessageKind("dead-letter"),
    MessageKind("digest"),
    MessageKind("test"),
    MessageKind("exit"),
    MessageKind("audit-checkpoint"),
    MessageKind("sign-in-slowed"),  # wrong codes: to the person and the admins (identity.py)
    # a one-time enrolment code, to the person's own contact only (people.send_invitation);
    # the code is sealed in the row (`sealed_code`) and kept out of the stored text
    MessageKind("enrolment"),
    # a manager or admin role asked for or granted: to the person, every manager and the
    # admins at once (nim_pathway/commands/grants.py)
    MessageKind("role-grant"),
)

# by name, in the order above
KINDS: dict[str, MessageKind] = {k.name: k for k in MESSAGE_KINDS}
# which of a task's overdue timers a catch-up sweep sends (store/timers.py `superseded`)
CATCH_UP_RANK: dict[str, int] = {k.name: k.catch_up_rank for k in MESSAGE_KINDS
                                 if k.catch_up_rank is not None}


def message_kind(name: str) -> MessageKind:
    """The registry entry of `name`; ValueError naming the valid kinds when there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown message kind {name!r}; valid kinds: "
                         f"{', '.join(KINDS)}") from None
