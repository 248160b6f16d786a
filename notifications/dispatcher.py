"""Deliver the outbox through Apprise: leased, bounded, retried, logged, dead-lettered.

A dispatcher claims due rows under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
single writer on SQLite), sends them with bounded concurrency outside any transaction, then
records each result only if it still holds the lease. So two dispatchers never send the same
row, and a dispatcher killed mid-batch loses nothing: its rows are claimed again when the
lease runs out. The one case that can repeat a message is a kill after Apprise sent it and
before the result was written; such a reclaim is counted in `outbox.reclaimed` and logged.

A message about a task is checked when it is claimed, in the claiming transaction: if the task
was completed or cancelled (its case exited or closed) since it was queued, or it now belongs to
someone else than the owner it was addressed to, the row is `dropped` with the reason in
`last_error` and never sent; a digest keeps only its items that are still true.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select

from models.clock import UK, Clock
from models.redaction import scrub_text
from notifications import IDEMPOTENCY_HEADER
from notifications.config import NotifyConfig
from notifications.outbox import DROPPED, enqueue, fresh_items, refresh_links, revive, why_stale
from notifications.render import Rendered, fit_for_channel, is_email, is_sms, render_message
from store import faults
from store.db import session_scope
from store.tables import DeliveryAttempt, Outbox, Practitioner

RECORD_EVERY = 25  # results written per transaction while a batch is being sent


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    reclaimed: int = 0
    dropped: int = 0  # no longer true when claimed (task done, cancelled or re-owned): not sent
    errors: list[str] = field(default_factory=list)


def _clean(error: str) -> str:
    """Error text without anything that looks like a credential or a full URL."""
    error = re.sub(r"(?i)[a-z][a-z0-9+.-]*://\S+", "<target>", error)
    return scrub_text(error)[:300]  # and `password=...`, `token: ...` outside a URL


_per_thread = threading.local()


def _apprise_for(url: str):  # noqa: ANN202 - apprise is imported lazily
    """One Apprise object per target URL and send thread: parsing the URL and loading its
    plugin cost more than a local send; objects are not shared between threads."""
    import apprise

    apps = _per_thread.__dict__.setdefault("apps", {})
    if url not in apps:
        app = apprise.Apprise()
        apps[url] = app if app.add(url) else None
    return apps[url]


def apprise_send(url: str, title: str, body: str, html: bool, ics: str | None,
                 key: str | None = None) -> str | None:
    """Send one message (with its key, where the target takes headers); None on success, else
    the reason (never the URL)."""
    import apprise

    app = _apprise_for(url)
    if app is None:
        return "target URL not understood by Apprise; check its scheme and fields"
    for plugin in app:  # this thread's own objects: the header is this message's
        headers = getattr(plugin, "headers", None)
        if isinstance(headers, dict):
            headers.pop(IDEMPOTENCY_HEADER, None)
            if key:
                headers[IDEMPOTENCY_HEADER] = key
    with contextlib.ExitStack() as stack:
        attach = None
        if ics:  # a temporary file only when there is a calendar event to attach
            path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "due.ics"
            path.write_text(ics, encoding="utf-8")
            attach = apprise.AppriseAttachment(str(path))
        with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as log:
            ok = app.notify(title=title, body=body, attach=attach,
                            body_format=apprise.NotifyFormat.HTML if html else
                            apprise.NotifyFormat.TEXT)
            detail = log.getvalue().strip().splitlines()
    if ok:
        return None
    return _clean(detail[-1] if detail else "delivery failed")


class Dispatcher:
    def __init__(self, url: str, clock: Clock, config: NotifyConfig,
                 send=apprise_send,  # noqa: ANN001 - a callable like apprise_send
                 open_sealed: Callable[[str], str] | None = None) -> None:
        self.url = url
        self.clock = clock
        self.config = config
        self.send = send
        # opens a message's `sealed_code` (an enrolment code) when it is sent; the text kept
        # on the row never holds it
        self.open_sealed = open_sealed
        self.token = uuid.uuid4().hex

    def run_once(self, limit: int = 500) -> DispatchReport:
        """Claim, send and record one batch of due messages."""
        report = DispatchReport()
        now = self.clock.now()
        claimed = self._claim(now, limit, report)
        if not claimed:
            return report
        faults.reached("dispatch-claimed")  # crash tests: leased, nothing sent yet
        contacts = self._contacts_and_links(claimed)
        results: list[tuple[Outbox, str, Rendered | None, str | None]] = []
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            futures = []
            for row in claimed:
                try:
                    target, url = self._target(row, contacts)
                except ValueError as exc:
                    results.append((row, "unresolved", None, str(exc)))
                    continue
                if is_sms(url) and self.config.quiet_hours.contains(now.astimezone(UK).time()):
                    results.append((row, target, None, "quiet"))
                    continue
                futures.append((row, target, pool.submit(self._deliver, row, url)))
            for row, target, future in futures:
                results.append((row, target, *future.result()))
                if len(results) >= RECORD_EVERY:  # bounds what a kill can make us resend
                    self._record(results, report)
                    results = []
        self._record(results, report)
        return report

    def run_until_idle(self, limit: int = 500, rounds: int = 100) -> DispatchReport:
        total = DispatchReport()
        for _ in range(rounds):
            r = self.run_once(limit)
            for name in ("sent", "failed", "dead", "deferred", "reclaimed", "dropped"):
                setattr(total, name, getattr(total, name) + getattr(r, name))
            total.errors += r.errors
            if r.sent + r.failed + r.dead + r.deferred + r.dropped == 0:
                break
        return total

    # -- steps ----------------------------------------------------------------------------

    def _claim(self, now: datetime, limit: int, report: DispatchReport) -> list[Outbox]:
        with session_scope(self.url) as session:
            stmt = (select(Outbox).where(Outbox.status == "pending",
                                         Outbox.next_attempt_at <= now)
                    .where((Outbox.claimed_until.is_(None)) | (Outbox.claimed_until < now))
                    .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit))
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = session.exec(stmt).all()
            claimed = []
            for row, why in zip(rows, self._stale(session, rows), strict=True):
                if why is not None:  # never sent: the row says why
                    row.status, row.last_error = DROPPED, why
                    row.claim_token = row.claimed_until = None
                    report.dropped += 1
                    session.add(row)
                    continue
                claimed.append(row)
                if row.claimed_until is not None:  # a dispatcher died holding it
                    row.reclaimed += 1
                    report.reclaimed += 1
                row.claim_token = self.token
                row.claimed_until = now + timedelta(seconds=self.config.lease_seconds)
                session.add(row)
            return claimed

    @staticmethod
    def _stale(session, rows: list[Outbox]) -> list[str | None]:  # noqa: ANN001 - a Session
        """Why each claimed row must not be sent (None: send it). A digest not yet rendered
        loses the items that are no longer true, and is dropped when none is left."""
        reasons = why_stale(session, [(r.kind, r.recipient, r.meta or {}) for r in rows])
        for i, row in enumerate(rows):
            items = (row.meta or {}).get("items")
            if row.kind != "digest" or row.subject or not items:
                continue
            kept = fresh_items(session, row.recipient, items)
            if not kept:
                reasons[i] = "every item was completed, cancelled or re-owned before sending"
            elif len(kept) < len(items):
                row.meta = {**row.meta, "items": kept}
        return reasons

    def _contacts_and_links(self, claimed: list[Outbox]) -> dict[str, str | None]:
        """Each practitioner's contact; and, for messages not yet rendered, links to runs
        started since they were queued (a digest's items included)."""
        unrendered = [row.meta for row in claimed if not row.subject and row.meta]
        with session_scope(self.url, read_only=True) as session:
            refresh_links(session, self.config, unrendered + [
                item for meta in unrendered for item in meta.get("items") or []])
            return {p.handle: p.contact for p in session.exec(select(Practitioner))}

    def _target(self, row: Outbox, contacts: dict[str, str | None]) -> tuple[str, str]:
        if row.recipient == "admin":
            if not self.config.admin:
                raise ValueError("no admin target configured (admin: or NIM_ADMIN_TARGETS)")
            return "admin", self.config.admin[0]
        kind, _, name = row.recipient.partition(":")
        if kind == "role-unstaffed":
            raise ValueError(f"nobody holds role {name}; add a practitioner or a role channel")
        return self.config.resolve(row.recipient, contacts.get(name))

    def _deliver(self, row: Outbox, url: str) -> tuple[Rendered | None, str | None]:
        sealed = (row.meta or {}).get("sealed_code")
        if sealed and not row.subject:  # sent with the code opened now; its text is not kept
            if self.open_sealed is None:
                return None, "this dispatcher cannot open the enrolment code (no secret key)"
            context = revive(row.meta or {})
            rendered = render_message(row.kind, {**context, "code": self.open_sealed(sealed)})
            title, body = fit_for_channel(url, rendered)
            error = self.send(url, title, body, is_email(url), None, row.dedupe_key)
            faults.reached("dispatch-sent")
            return (self._rendered(row) if error is None else None), error
        rendered = self._rendered(row)
        title, body = fit_for_channel(url, rendered)
        error = self.send(url, title, body, is_email(url), rendered.ics if is_email(url) else None,
                          row.dedupe_key)
        faults.reached("dispatch-sent")  # crash tests: sent, not yet recorded
        return rendered, error

    @staticmethod
    def _rendered(row: Outbox) -> Rendered:
        """The message text: rendered once from its frozen context, then kept on the row."""
        if row.subject:
            return Rendered(row.subject, row.body_text, row.body_html, row.ics,
                            link=(row.meta or {}).get("link"))
        context = revive(row.meta or {})
        rendered = render_message(row.kind, context)
        return Rendered(rendered.subject, rendered.text, rendered.html, rendered.ics,
                        link=context.get("link"))

    def _record(self, results: list[tuple[Outbox, str, Rendered | None, str | None]],
                report: DispatchReport) -> None:
        """Write the outcome of each send, in one transaction, where we still hold the lease."""
        if not results:
            return
        now = self.clock.now()
        with session_scope(self.url) as session:
            ids = [row.id for row, *_ in results]  # one read for the chunk, not one per row
            rows = {o.id: o for o in session.exec(select(Outbox).where(Outbox.id.in_(ids)))}
            for row, target, rendered, error in results:
                current = rows.get(row.id)
                if current is None or current.claim_token != self.token or \
                        current.status != "pending":
                    continue  # our lease ran out and another dispatcher took over
                current.claim_token = current.claimed_until = None
                session.add(current)
                if error == "quiet":
                    start = now.astimezone(UK)
                    end = datetime.combine(start.date(), self.config.quiet_hours.end, UK)
                    current.next_attempt_at = end if end > start else end + timedelta(days=1)
                    report.deferred += 1
                    continue
                if rendered is not None and not current.subject:  # what was sent is kept
                    current.subject, current.body_text = rendered.subject, rendered.text
                    current.body_html, current.ics = rendered.html, rendered.ics
                current.attempts += 1
                session.add(DeliveryAttempt(outbox_id=current.id, at=now, target=target,
                                            ok=error is None, error=error))
                if error is None:
                    current.status, current.sent_at, current.last_error = "sent", now, None
                    if "sealed_code" in (current.meta or {}):  # delivered: not kept, even sealed
                        current.meta = {k: v for k, v in current.meta.items()
                                        if k != "sealed_code"}
                    report.sent += 1
                    continue
                report.errors.append(error)
                if current.attempts >= self.config.max_attempts:
                    current.status, current.last_error = "dead", error
                    report.dead += 1
                    if current.kind != "dead-letter":  # never alert about an alert
                        enqueue(session, self.config, "dead-letter", f"dead/{current.id}",
                                current.case_ref, "admin",
                                {"case_ref": current.case_ref or "-", "message_id": current.id,
                                 "attempts": current.attempts, "last_error": error,
                                 "link": self.config.ui_url, "kind": current.kind,
                                 "recipient_name": current.recipient}, now)
                else:
                    delay = self.config.backoff_seconds * 2 ** (current.attempts - 1)
                    current.next_attempt_at = now + timedelta(seconds=delay)
                    current.last_error = error
                    report.failed += 1
