"""Real local receivers for the notification tests: an SMTP server and an HTTP endpoint."""

from __future__ import annotations

import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.prefect_stack import free_port


class HttpReceiver:
    """Accepts Apprise `json://127.0.0.1:PORT/path` posts; can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1; keeps every message parsed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
                receiver.messages.append(email.message_from_bytes(
                    envelope.content, policy=policy.default))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def target(self) -> str:
        """A named-target template for practitioners whose contact is `email:<address>`."""
        return (f"mailto://127.0.0.1:{self.port}?from=nim@example.org&to={{to}}"
                "&mode=insecure")

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
