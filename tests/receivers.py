"""Real local receivers for the notification tests: an SMTP server (the product's own, from
the local inbox) and an HTTP endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from notifications.inbox import SmtpReceiver, serve_http, stop_http
from tests.prefect_stack import free_port

__all__ = ["HttpReceiver", "SmtpReceiver"]


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

        self._server = serve_http(Handler, self.port)
        return self

    def stop(self) -> None:
        stop_http(self._server)
        self._server = None
