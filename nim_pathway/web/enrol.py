"""The workbench's enrolment page, `/enrol`: a person gives their handle and the one-time
enrolment code an admin had sent to their own contact, and is shown their new authenticator
key once (QR code and text). Nobody else sees the key: the admin's command only sends the
code, and the key is made here, by the workbench, which holds the TOTP key. The page needs no
session (the person cannot sign in yet); the form carries the sign-in form's double-submit
CSRF token."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from models.errors import CommandError
from nim_pathway.app import Service
from nim_pathway.web.session import (
    SIGNIN_COOKIE,
    FormTooLarge,
    new_signin_token,
    read_form,
    render,
    set_cookie,
    signin_csrf_ok,
)

MAX_HANDLE = 60


def _page(request: Request, handle: str = "", error: str | None = None,
          status: int = 200) -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or new_signin_token()
    response = render("enrol.html.j2", 400 if error and status == 200 else status,
                      title="Enrol your authenticator", handle=handle, error=error, csrf=token,
                      me=None, enrolment=None)
    set_cookie(response, request, SIGNIN_COOKIE, token, 3600)
    return response


def routes(svc: Service) -> list[Route]:
    """The enrolment page's route, over one service."""

    async def enrol(request: Request) -> Response:
        if request.method == "GET":
            return _page(request)
        try:
            form = await read_form(request)
        except FormTooLarge:
            form = {}
        handle = str(form.get("handle") or "").strip()[:MAX_HANDLE]
        code = str(form.get("code") or "")[:80]
        if not signin_csrf_ok(request, form):
            return _page(request, handle, "this form's security token is missing or out of "
                         "date; enter your code again", 403)
        if not handle or not code.strip():
            return _page(request, handle, "enter your handle and the enrolment code from "
                         "your message")
        try:
            enrolment = await run_in_threadpool(svc.identity.redeem_enrolment, handle, code)
        except CommandError as exc:
            return _page(request, handle, str(exc))
        import segno

        qr = segno.make(enrolment.uri, error="m").svg_data_uri(scale=5)
        response = render("enrol.html.j2", title="Your authenticator key", handle=handle,
                          error=None, csrf="", me=None, enrolment=enrolment, qr=qr)
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        return response

    return [Route("/enrol", enrol, methods=["GET", "POST"])]
