"""The local inbox: where the demo's and the local stack's messages go, so they can be read.

An SMTP receiver on 127.0.0.1 stores each message it is sent as one JSON file in a private
folder (0700, files 0600), and a read-only web page on 127.0.0.1 lists each practitioner's
messages, newest first; `nim-pathway inbox` reads the same files. Messages are addressed to
`<handle>@inbox.local` (dead-letter alerts to `admin@inbox.local`) and carry case references
only, never a child's identity. Production targets never point here: only the demo and the
local stack (`nim-pathway up`) address the inbox.

Run as `python -m notifications.inbox` (the local stack does), with NIM_INBOX_PORT,
NIM_INBOX_WEB_PORT and NIM_DATA_DIR from nim_pathway/settings.py.
"""

from __future__ import annotations

import email
import hashlib
import html
import json
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from models.clock import UK, Clock
from notifications import IDEMPOTENCY_HEADER
from store.files import PRIVATE_FILE, private_dir

DOMAIN = "inbox.local"
ADMIN_BOX = "admin"  # where the local stack sends dead-letter alerts
HOST = "127.0.0.1"  # never another interface: the inbox has no login


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def inbox_url(box: str, port: int) -> str:
    """The Apprise URL that delivers to `box` in the inbox on `port`: plain SMTP on 127.0.0.1,
    no TLS, no login, so nothing secret is stored in a contact."""
    return f"mailto://{HOST}:{port}/{box}@{DOMAIN}?from=nim@{DOMAIN}&mode=insecure"


# -- the store ----------------------------------------------------------------------------

@dataclass(frozen=True)
class InboxMessage:
    id: int
    received_at: str  # ISO instant, from the injected clock
    to: list[str]  # handles (the local part of <handle>@inbox.local), else whole addresses
    subject: str
    body: str  # the plain-text part


class InboxStore:
    """One JSON file per message, named by its number; written whole or not at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = private_dir(Path(folder))
        self._lock = threading.Lock()

    def add(self, to: list[str], subject: str, body: str, at: datetime,
            key: str | None = None) -> InboxMessage | None:
        """Keep one message; None when its key (the sender's Idempotency-Key) was kept before:
        a message sent again after a dispatcher died mid-send is shown once."""
        with self._lock:
            if key and not self._first(key):
                return None
            number = max((int(p.stem) for p in self.folder.glob("*.json") if p.stem.isdigit()),
                         default=0) + 1
            tmp = self.folder / f".{os.getpid()}-{threading.get_ident()}.tmp"
            while True:
                msg = InboxMessage(number, at.isoformat(), to, subject, body)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(asdict(msg), fh)
                try:  # link fails if the name is taken (another writer): never overwrites
                    os.link(tmp, self.folder / f"{number:09d}.json")
                    return msg
                except FileExistsError:
                    number += 1
                finally:
                    tmp.unlink(missing_ok=True)

    def _first(self, key: str) -> bool:
        """Record `key` as seen; False if it was already (a marker file made exclusively, so
        two receiving threads or processes agree)."""
        seen = private_dir(self.folder / "seen")
        name = hashlib.sha256(key.encode()).hexdigest()
        try:
            os.close(os.open(seen / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             PRIVATE_FILE))
        except FileExistsError:
            return False
        return True

    def _read_all(self) -> list[InboxMessage]:
        out = []
        for path in self.folder.glob("*.json"):
            try:
                out.append(InboxMessage(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue  # not one of ours; the inbox is a convenience, not the record
        return out

    def messages(self, box: str | None = None) -> list[InboxMessage]:
        """Messages to `box` (all when None), newest first."""
        found = [m for m in self._read_all() if box is None or box in m.to]
        return sorted(found, key=lambda m: (m.received_at, m.id), reverse=True)

    def boxes(self) -> set[str]:
        return {box for m in self._read_all() for box in m.to}

    def clear(self) -> int:
        """Remove every message (a new demo starts with an empty inbox); how many went."""
        with self._lock:
            gone = 0
            for path in self.folder.glob("*.json"):
                if path.stem.isdigit():
                    path.unlink(missing_ok=True)
                    gone += 1
            for marker in (self.folder / "seen").glob("*"):  # the keys seen go with them
                if len(marker.name) == 64:
                    marker.unlink(missing_ok=True)
            return gone


def box_of(address: str) -> str:
    """`psy.chen@inbox.local` -> `psy.chen`; another domain's address stays whole."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local if domain.lower() == DOMAIN else address


def plain_text(message: EmailMessage) -> str:
    """The plain part Apprise sends beside the HTML one (its links written out in full)."""
    part = message.get_body(("plain", "html"))
    if part is None:
        return ""
    text = part.get_content().replace("\r\n", "\n")  # SMTP's line ends
    if part.get_content_type() == "text/html":  # tags dropped; shown as text, never as HTML
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return text.strip()


# -- the SMTP receiver (the tests use it too) ----------------------------------------------

class SmtpReceiver:
    """aiosmtpd on 127.0.0.1. Each message, parsed, goes to `on_message` with its envelope
    recipients; without one it is kept in `messages` (the tests read them there)."""

    def __init__(self, port: int | None = None,
                 on_message: Callable[[EmailMessage, list[str]], None] | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
                message = email.message_from_bytes(envelope.content, policy=policy.default)
                if on_message is None:
                    receiver.messages.append(message)
                else:
                    on_message(message, list(envelope.rcpt_tos))
                return "250 OK"

        self._controller = Controller(Handler(), hostname=HOST, port=self.port)

    def target(self) -> str:
        """A named-target template for practitioners whose contact is `email:<address>`."""
        return f"mailto://{HOST}:{self.port}?from=nim@example.org&to={{to}}&mode=insecure"

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


# -- the web page ---------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>\"']+")
_STYLE = ("body{font-family:Arial,sans-serif;max-width:52em;margin:1em auto;color:#0b0c0c}"
          "article{border-top:1px solid #b1b4b6;padding:.5em 0}"
          "pre{white-space:pre-wrap;font-family:inherit}time{color:#505a5f}")


def _linked(text: str) -> str:
    """Escaped text whose http(s) URLs (links into the Prefect UI) are clickable."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        out.append(html.escape(text[last:match.start()]))
        out.append(f'<a href="{html.escape(url)}" rel="noreferrer">{html.escape(url)}</a>')
        last = match.start() + len(url)
    return "".join(out) + html.escape(text[last:])


def shown_time(instant: str) -> str:
    """An instant as the inbox shows it: UK time, to the minute."""
    try:
        return datetime.fromisoformat(instant).astimezone(UK).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return instant


def _page(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="30"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
            "</body></html>").encode()


def render_box(box: str, messages: list[InboxMessage]) -> bytes:
    items = "".join(
        f"<article><h2>{html.escape(m.subject or '(no subject)')}</h2>"
        f"<time>{html.escape(shown_time(m.received_at))}</time>"
        f"<pre>{_linked(m.body)}</pre></article>" for m in messages)
    return _page(f"Inbox of {box}", (items or "<p>No messages yet.</p>")
                 + '<p><a href="/">All inboxes</a></p>')


def render_index(counts: dict[str, int]) -> bytes:
    rows = "".join(f'<li><a href="/{html.escape(b)}">{html.escape(b)}</a> ({n})</li>'
                   for b, n in sorted(counts.items()))
    return _page("Local inbox", f"<ul>{rows}</ul>" if rows else "<p>No inboxes.</p>")


def serve_http(handler: type[BaseHTTPRequestHandler], port: int) -> ThreadingHTTPServer:
    """`handler` served on 127.0.0.1:`port` from a daemon thread (stop with `stop_http`)."""
    server = ThreadingHTTPServer((HOST, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_http(server: ThreadingHTTPServer | None) -> None:
    if server:
        server.shutdown()
        server.server_close()


class InboxWeb:
    """Read-only pages on 127.0.0.1: `/` lists the inboxes, `/<handle>` one practitioner's
    messages. `known` gives the handles that may have an inbox (the case store's
    practitioners); an unknown one is a 404 that says so."""

    def __init__(self, store: InboxStore, port: int | None = None,
                 known: Callable[[], set[str]] = set) -> None:
        self.store, self.port, self.known = store, port or free_port(), known
        self._server: ThreadingHTTPServer | None = None

    def url(self, box: str = "") -> str:
        return f"http://{HOST}:{self.port}/{box}"

    def start(self) -> InboxWeb:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                box = unquote(self.path.split("?", 1)[0].strip("/"))
                boxes = web.known() | {ADMIN_BOX} | web.store.boxes()
                if not box:
                    all_messages = web.store.messages()
                    self._send(200, render_index(
                        {b: sum(b in m.to for m in all_messages) for b in boxes}))
                elif box in boxes:
                    self._send(200, render_box(box, web.store.messages(box)))
                else:
                    self._send(404, _page("Unknown practitioner", (
                        f"<p>No practitioner {html.escape(box)!r} here; "
                        '<a href="/">all inboxes</a>.</p>')))

            def _send(self, status: int, page: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                # a page of plain text and links: no scripts, no referrer, not cached
                self.send_header("Content-Security-Policy",
                                 "default-src 'none'; style-src 'unsafe-inline'")
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:  # paths name practitioners: quiet
                pass

        self._server = serve_http(Handler, self.port)
        return self

    def stop(self) -> None:
        stop_http(self._server)
        self._server = None


# -- both together ----------------------------------------------------------------------------

class Inbox:
    """The SMTP receiver storing into the folder, and the web page reading it."""

    def __init__(self, folder: Path, clock: Clock, smtp_port: int | None = None,
                 web_port: int | None = None, known: Callable[[], set[str]] = set) -> None:
        self.store = InboxStore(folder)
        self.clock = clock
        self.smtp = SmtpReceiver(smtp_port, self._received)
        self.web = InboxWeb(self.store, web_port, known)

    def _received(self, message: EmailMessage, rcpt_tos: list[str]) -> None:
        to = list(dict.fromkeys(box_of(a) for a in rcpt_tos))
        self.store.add(to, str(message.get("Subject", "")), plain_text(message),
                       self.clock.now(), message.get(IDEMPOTENCY_HEADER))

    def address(self, box: str) -> str:
        return inbox_url(box, self.smtp.port)

    def start(self) -> Inbox:
        self.smtp.start()
        try:
            self.web.start()
        except OSError:
            self.smtp.stop()
            raise
        return self

    def stop(self) -> None:
        self.web.stop()
        self.smtp.stop()


def _case_store_handles(url: str) -> set[str]:
    """The practitioners of the case store at `url` (an empty set while it is not there)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import select

    from store.db import session_scope
    from store.tables import Practitioner

    try:
        with session_scope(url, read_only=True) as session:
            return set(session.exec(select(Practitioner.handle)).all())
    except SQLAlchemyError:
        return set()


def serve() -> None:
    """Run the inbox until SIGTERM (the local stack's `down`) or Ctrl-C."""
    import signal
    from functools import partial

    from nim_pathway.settings import Settings

    settings = Settings.from_env()  # this process's composition root
    smtp_port, web_port = settings.inbox_ports
    inbox = Inbox(settings.inbox_dir, settings.clock, smtp_port, web_port,
                  partial(_case_store_handles, settings.database_url)).start()
    print(f"inbox: SMTP on {HOST}:{smtp_port}, pages at {inbox.web.url()}, "
          f"messages in {inbox.store.folder}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):  # a timeout, so signals are handled promptly
            pass
    except KeyboardInterrupt:
        pass
    finally:
        inbox.stop()


if __name__ == "__main__":
    serve()
