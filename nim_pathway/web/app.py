"""The workbench's routes: sign-in and sign-out, My work and a task's form. The board and
case pages are in board.py, the coordinator's forms in actions.py (the case's own),
family_forms.py and court_forms.py."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from models.errors import AlreadyDone, CommandError
from models.refs import TaskRef
from nim_pathway.app import Service
from nim_pathway.web import actions, board, court_forms, enrol, family_forms
from nim_pathway.web.forms import field_errors, outcome_fields, outcome_from_form, task_label
from nim_pathway.web.session import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    FormTooLarge,
    Person,
    csrf_ok,
    new_signin_token,
    person,
    read_form,
    render,
    set_cookie,
    signin_csrf_ok,
    to_signin,
)
from store.views import TaskView

Handler = Callable[[Request, Service, Person], Awaitable[Response]]
MAX_HANDLE = 60


def signed_in(svc: Service, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route for signed-in people only: others go to the sign-in page; a POST without its
    session's CSRF token is refused (403), nothing done."""

    async def endpoint(request: Request) -> Response:
        me = await run_in_threadpool(person, svc, request)
        if me is None:
            return to_signin()
        if request.method == "POST":
            try:
                form = await read_form(request)
            except FormTooLarge:
                return render("error.html.j2", 413, me=me, title="Refused",
                              error="this form is larger than the workbench takes")
            request.state.form = form
            if not await run_in_threadpool(csrf_ok, svc, request, form):
                return render("error.html.j2", 403, me=me, title="Refused",
                              error="this form's security token is missing or out of date; "
                                    "open the page again and resend it")
        return await handler(request, svc, me)

    return endpoint


def create_app(svc: Service) -> Starlette:
    """The workbench over one service (its clock, its store, its policy)."""

    async def home(request: Request) -> Response:
        me = await run_in_threadpool(person, svc, request)
        return RedirectResponse("/work" if me else "/signin", status_code=303)

    async def signin(request: Request) -> Response:
        if request.method == "GET":
            return _signin_page(request)
        try:
            form = await read_form(request)
        except FormTooLarge:
            form = {}
        handle = str(form.get("handle") or "").strip()[:MAX_HANDLE]
        code = str(form.get("code") or "").strip()
        if not signin_csrf_ok(request, form):
            return _signin_page(request, handle, "this form's security token is missing or out "
                                "of date; enter your code again", 403)
        if not handle:
            return _signin_page(request, handle, "enter your handle")
        if not (code.isascii() and code.isdigit() and len(code) == 6):
            return _signin_page(request, handle, "the one-time code is the 6 digits (0-9) your "
                                "authenticator app shows")
        try:
            login = await run_in_threadpool(svc.identity.login, handle, code,
                                            svc.settings.web_session_minutes)
        except CommandError as exc:
            return _signin_page(request, handle, str(exc))
        previous = request.cookies.get(SESSION_COOKIE, "")
        if previous and len(previous) <= 200:  # signing in again ends the session it replaces
            await run_in_threadpool(svc.identity.logout, previous)
        response = RedirectResponse("/work", status_code=303)
        set_cookie(response, request, SESSION_COOKIE, login.token,
                   svc.settings.web_session_minutes * 60)
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        return response

    async def signout(request: Request, svc: Service, me: Person) -> Response:
        await run_in_threadpool(svc.identity.logout, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    routes = [
        Route("/", home),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signed_in(svc, signout), methods=["POST"]),
        *enrol.routes(svc),  # /enrol: a person's own enrolment, with the code sent to them
        Route("/work", signed_in(svc, my_work)),
        Route("/tasks/{ref}/{key}", signed_in(svc, task_form), methods=["GET", "POST"]),
        *[Route(path, signed_in(svc, h), methods=methods)  # /cases/new before /cases/{ref}
          for path, h, methods in (actions.ROUTES + family_forms.ROUTES + court_forms.ROUTES
                                    + board.ROUTES)],
    ]
    return Starlette(routes=routes)


def _signin_page(request: Request, handle: str = "", error: str | None = None,
                 status: int = 200) -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or new_signin_token()
    response = render("signin.html.j2", 401 if error and status == 200 else status,
                      title="Sign in", handle=handle, error=error, csrf=token, me=None)
    set_cookie(response, request, SIGNIN_COOKIE, token, 3600)
    return response


def my_tasks(svc: Service, me: Person) -> list[TaskView]:
    """The person's open work, as `task list` decides it: assigned to them, or their role's
    and assigned to nobody; soonest due first."""
    mine = {(t.ref, t.key): t for t in svc.queries.tasks(assignee=me.handle)}
    for t in svc.queries.tasks(role=me.role):
        if t.assignee in (None, me.handle):
            mine[(t.ref, t.key)] = t
    return sorted(mine.values(), key=lambda t: (t.due, t.ref, t.key))


def rag_of(svc: Service, task: TaskView) -> tuple[str, str]:
    """(colour, words) of a task's urgency, on the board's rule (working days)."""
    from reports.oversight import rag

    colour = rag(task.working_days_to_due, svc.settings.rag_amber_working_days)
    days = task.working_days_to_due
    words = {"red": f"overdue by {-days} working day{'s' if days != -1 else ''}",
             "amber": f"due soon: {days} working day{'s' if days != 1 else ''}",
             "green": f"on track: {days} working days"}[colour]
    return colour, words


async def my_work(request: Request, svc: Service, me: Person) -> Response:
    tasks = await run_in_threadpool(my_tasks, svc, me)
    rows = [{"task": t, "label": task_label(t), "rag": rag_of(svc, t)} for t in tasks]
    done = request.query_params.get("done", "")
    done = done if re.fullmatch(r"[A-Z]+-\d{4}-\d{4,}/[a-z0-9-]{1,80}", done) else ""
    return render("work.html.j2", me=me, title="My work", rows=rows, today=svc.queries.today(),
                  done=done)


async def task_form(request: Request, svc: Service, me: Person) -> Response:
    ref, key = request.path_params["ref"], request.path_params["key"]
    try:
        task = await run_in_threadpool(svc.queries.task, ref, key)
        spec = await run_in_threadpool(svc.queries.pathway, ref)
    except CommandError as exc:
        return render("error.html.j2", 404, me=me, title="Not found", error=str(exc))
    fields = outcome_fields(spec, task.spec_id)
    values: dict[str, Any] = {}
    error, errors = None, {}
    if request.method == "POST":
        form = request.state.form
        values = {k: v for k, v in form.items() if k != "csrf"}
        try:
            outcome = outcome_from_form(spec, task.spec_id, form)
            result = await run_in_threadpool(svc.tasks.complete_task, TaskRef(ref, key),
                                             me.handle, outcome)
            return RedirectResponse(f"/work?done={result.ref}/{key}", status_code=303)
        except ValidationError as exc:
            errors = field_errors(exc)
            error = "check the fields marked below"
        except AlreadyDone as exc:  # "… was already completed on … by …; nothing was changed"
            error = str(exc)
        except CommandError as exc:
            error = str(exc)
    return render("task.html.j2", 400 if error else 200, me=me, title=f"{ref} {key}",
                  task=task, label=task_label(task), fields=fields, values=values,
                  error=error, errors=errors, rag=rag_of(svc, task))
