"""Who a request acts as, its CSRF token, and how a page is rendered.

The session cookie holds the token `IdentityCommands.login` made (the store keeps its keyed
hash only); each request asks `session_actor` who it belongs to, so a revoked or expired
session, or a locked person, stops at once. A signed-in form's CSRF token is an HMAC of the
session token under the site's secret key; the sign-in form (no session yet) uses a random
double-submit cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from models.errors import Refused
from nim_pathway.app import Service

SESSION_COOKIE = "nim_session"
SIGNIN_COOKIE = "nim_signin"  # the sign-in form's double-submit CSRF value
CSRF_FIELD = "csrf"
TEMPLATES = Path(__file__).parent / "templates"

_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
    ["html", "j2"], default_for_string=True, default=True), trim_blocks=True,
    lstrip_blocks=True)


@dataclass(frozen=True)
class Person:
    """The signed-in practitioner: handle, role, team, and the session's CSRF token."""

    handle: str
    role: str
    team: str
    csrf: str
    managers: frozenset[str]  # every installed pathway's manager roles

    @property
    def is_manager(self) -> bool:
        return self.role in self.managers or self.role == "admin"


def csrf_for(svc: Service, token: str) -> str:
    return hmac.new(svc.ctx.secret_key, b"nim-web-csrf|" + token.encode(),
                    hashlib.sha256).hexdigest()


def person(svc: Service, request: Request) -> Person | None:
    """The practitioner whose live session the request carries, or None."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 200:
        return None
    try:
        handle = svc.identity.session_actor(token)
    except Refused:
        return None
    me = next((p for p in svc.queries.practitioners() if p.handle == handle), None)
    if me is None:
        return None
    managers = frozenset().union(*(s.managers() for s in svc.queries.installed_specs().values()))
    return Person(handle, me.role, me.team, csrf_for(svc, token), managers)


def csrf_ok(svc: Service, request: Request, form: Any) -> bool:  # noqa: ANN401 - a form
    """Whether a signed-in form carries its session's CSRF token."""
    token = request.cookies.get(SESSION_COOKIE, "")
    given = str(form.get(CSRF_FIELD) or "")
    return bool(token and given) and hmac.compare_digest(given, csrf_for(svc, token))


def signin_csrf_ok(request: Request, form: Any) -> bool:  # noqa: ANN401 - a form
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    given = str(form.get(CSRF_FIELD) or "")
    return bool(cookie and given) and hmac.compare_digest(cookie, given)


def new_signin_token() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: Response, request: Request, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:  # noqa: ANN401
    """A page from its template; autoescaped, never cached (it may show a case's work)."""
    response = HTMLResponse(_ENV.get_template(name).render(**context), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'none'; form-action 'self'; frame-ancestors 'none'")
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def to_signin() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


MAX_FORM_BYTES = 64_000  # a referral is a few kilobytes
MAX_FORM_FIELDS = 200


class FormTooLarge(Exception):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """A POSTed URL-encoded form as field -> first value, bounded in size and field count
    (the workbench's forms are all URL-encoded; anything else reads as empty)."""
    from urllib.parse import parse_qsl

    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return {}
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form
