"""Message kinds are one registry (`notifications/kinds.py`): every kind the code uses is in it and
has its template, and docs/ARCHITECTURE.md's recipe for a new kind (one entry, one template)
works as written. The recipe test applies the page's entry and template to a copy of
`notifications/` and drives a timer of the new kind through the real store, sweep and
dispatcher in a process that imports that copy: nothing else is changed."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import select

from models.schemas import Referral
from nim_pathway.demo import DEMO_ADMIN
from notifications.kinds import KINDS, MESSAGE_KINDS
from notifications.render import _TEXT_ENV, TEMPLATES
from store.db import session_scope
from store.tables import Case, Outbox, Task, Timer
from tests.conftest import referral_data

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
CODE = ("notifications", "store", "nim_pathway", "flows", "tasks", "reports", "models",
        "orchestration")
IDENTITY_KEYS = re.compile(r"child_name|date_of_birth|\bdob\b|address|mother_name|father_name|"
                           r"surname|given_name|family_name", re.I)
IDENTITY = ("Sentinel-Given", "Sentinel-Family", "Sentinel-Mother", "Sentinel-Father",
            "Sentinel-Carer", "Sentinel Address", "2025-06-01")


# -- the registry ---------------------------------------------------------------------------------

def test_every_registered_kind_has_its_template_and_every_template_a_kind():
    assert len(KINDS) == len(MESSAGE_KINDS), "a kind is registered twice"
    for kind in MESSAGE_KINDS:
        path = TEMPLATES / kind.template
        assert path.is_file(), f"{kind.name}: no template {path.name}"
        blocks = set(_TEXT_ENV.get_template(kind.template).blocks)
        assert {"subject", "text", "html"} <= blocks, f"{kind.name}: blocks {sorted(blocks)}"
        assert not IDENTITY_KEYS.search(path.read_text()), kind.name
    templates = {p.name for p in TEMPLATES.glob("*.j2") if not p.name.startswith("_")}
    assert templates == {k.template for k in MESSAGE_KINDS}


def test_fields_only_timers_read_are_set_on_timer_kinds_only():
    for kind in MESSAGE_KINDS:
        if kind.context is None:
            assert not kind.to_assignee and kind.catch_up_rank is None and not kind.breach, kind
    ranks = [k.catch_up_rank for k in MESSAGE_KINDS if k.catch_up_rank is not None]
    assert len(ranks) == len(set(ranks)), "two kinds share a catch-up rank"


def _constants(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _kind_strings(arg: ast.AST, scope: ast.AST) -> set[str]:
    """The strings a kind argument can be: its constants, or those assigned to its name in
    the enclosing function (`kind = "gate" if … else "handoff"`)."""
    if not isinstance(arg, ast.Name):
        return _constants(arg)
    return {s for n in ast.walk(scope) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == arg.id for t in n.targets)
            for s in _constants(n.value)}


# where a message kind is named: (call, index of the kind argument)
KIND_ARGUMENT = {"enqueue": 2, "render_message": 0, "message_row": 0, "message_kind": 0,
                 "TimerPlan": 1}


def kinds_used_in_code() -> dict[str, set[str]]:
    """Every message kind the project's code names, with where: kinds passed to the functions
    that queue, render or look up a message, kinds the engine plans timers of, and kinds a
    timer's kind is compared with."""
    used: dict[str, set[str]] = {}
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]

            def scope_of(node: ast.AST, scopes=scopes, tree=tree) -> ast.AST:
                inner = [s for s in scopes if s.lineno <= node.lineno <= (s.end_lineno or s.lineno)]
                return max(inner, key=lambda s: s.lineno) if inner else tree

            for node in ast.walk(tree):
                found: set[str] = set()
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in KIND_ARGUMENT:
                        index = KIND_ARGUMENT[name]
                        args = [k.value for k in node.keywords if k.arg == "kind"]
                        args += node.args[index:index + 1]
                        for arg in args:
                            found |= _kind_strings(arg, scope_of(node))
                elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) \
                        and node.left.attr == "kind" and "timer" in ast.unparse(node.left.value):
                    for right in node.comparators:
                        found |= _constants(right)
                for kind in found:
                    used.setdefault(kind, set()).add(f"{path.relative_to(ROOT)}:{node.lineno}")
    return used


def test_every_kind_used_in_code_is_registered():
    used = kinds_used_in_code()
    unknown = {k: sorted(where) for k, where in used.items() if k not in KINDS}
    assert not unknown, f"kinds used but not in notifications/kinds.py: {unknown}"
    # the scan sees each way a kind is named (so an empty result cannot pass by accident)
    assert {"reminder", "due", "escalation", "clock-warning", "clock-breach", "handoff", "gate",
            "reassigned", "exit", "digest", "dead-letter", "test", "audit-checkpoint"} <= set(used)


def test_timer_kinds_the_engine_plans_build_their_context():
    for path in sorted((ROOT / "models").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "planned_timers":
                planned = {s for call in ast.walk(node) if isinstance(call, ast.Call)
                           and getattr(call.func, "id", None) == "TimerPlan"
                           for s in _kind_strings(call.args[1], node)}
                assert planned and all(KINDS[k].context is not None for k in planned), planned
                return
    pytest.fail("planned_timers not found in models/")


# -- the recipe, followed as docs/ARCHITECTURE.md writes it ---------------------------------------

def recipe() -> dict[str, str]:
    """The recipe's section of docs/ARCHITECTURE.md: its steps, entry and template."""
    text = ARCHITECTURE.read_text()
    start = text.index("**A new notification kind**")
    section = text[start:text.index("\n**A new ", start + 1)]
    fences = {lang: textwrap.dedent(body) for lang, body in
              re.findall(r"^ *```(\w+)\n(.*?)^ *```$", section, re.M | re.S)}
    entry = fences["python"].strip("\n")
    name = re.fullmatch(r'\s*MessageKind\("([\w-]+)".*\),', entry).group(1)
    return {"section": section, "steps": re.findall(r"^(\d+)\. ", section, re.M), "name": name,
            "entry": entry, "template": fences["jinja"],
            "template_path": re.search(r"`(notifications/templates/[\w-]+\.j2)`", section).group(1)}


def follow(recipe: dict[str, str], root: Path) -> Path:
    """A copy of notifications/ under `root`, with the recipe's two steps applied as written."""
    shutil.copytree(ROOT / "notifications", root / "notifications",
                    ignore=shutil.ignore_patterns("__pycache__"))
    kinds = root / "notifications" / "kinds.py"
    source = kinds.read_text()
    opening = "MESSAGE_KINDS: tuple[MessageKind, ...] = (\n"
    assert source.count(opening) == 1
    end = source.index("\n)\n", source.index(opening))
    kinds.write_text(source[:end] + "\n" + recipe["entry"] + source[end:])  # step 1
    (root / recipe["template_path"]).write_text(recipe["template"])  # step 2
    return root


def changed_files(copy: Path) -> set[str]:
    """What differs between the copy of notifications/ and the project's."""
    def files(base: Path) -> dict[str, bytes]:
        return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}

    mine, theirs = files(ROOT / "notifications"), files(copy / "notifications")
    return {name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name)}


def test_the_recipe_is_two_steps_an_entry_and_a_template():
    r = recipe()
    assert r["steps"] == ["1", "2"]
    assert "notifications/kinds.py" in r["section"]
    assert r["template_path"] == f"notifications/templates/{r['name']}.j2"
    assert r["name"] not in KINDS
    assert not IDENTITY_KEYS.search(r["template"])


# Run in a process that imports the copy: fire due timers, then dispatch, capturing what is sent.
SWEEP_AND_SEND = """
import json, sys
from datetime import datetime
from models.clock import VirtualClock
from nim_pathway.app import build_service
from notifications import kinds
from notifications.dispatcher import Dispatcher

url, at, copy = sys.argv[1], datetime.fromisoformat(sys.argv[2]), sys.argv[3]
assert kinds.__file__.startswith(copy), kinds.__file__
clock = VirtualClock(at)
svc = build_service(url, clock, migrate=False)
fired = svc.timers.fire_due_timers(at)
sent = []
def send(target, title, body, html, ics, key=None):
    sent.append({"title": title, "body": body, "ics": ics})
Dispatcher(url, clock, svc.notify_config(), send=send).run_until_idle()
print(json.dumps({"fired": [t.kind for t in fired], "sent": sent}))
"""


def test_a_kind_added_by_the_recipe_is_queued_rendered_and_sent(store, clock, tmp_path):
    r = recipe()
    copy = follow(r, tmp_path / "project")
    assert changed_files(copy) == {"kinds.py", f"templates/{r['name']}.j2"}

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    store.admin.update_practitioner("mgr.okafor", DEMO_ADMIN.handle,
                                    contact="json://127.0.0.1:9/mgr.okafor")
    now = clock.now()
    with session_scope(store.url) as session:  # a timer of the new kind, due now
        case_id = session.exec(select(Case.id).where(Case.ref == ref)).one()
        task = session.exec(select(Task).where(Task.case_id == case_id, Task.key == "triage")).one()
        title, due, role = task.title, task.due, task.role
        key = f"{ref}/triage/{r['name']}/{due}"
        session.add(Timer(key=key, case_id=case_id, task_key="triage", kind=r["name"], role=role,
                          due_at=now, detail={"due": str(due)}))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", SWEEP_AND_SEND, store.url, now.isoformat(),
                           str(copy)], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["name"] in result["fired"]

    with session_scope(store.url) as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == r["name"])).all()
        assert len(rows) == 1
        row = rows[0]
        assert (row.status, row.recipient, row.case_ref) == ("sent", "practitioner:mgr.okafor", ref)
        subject, text, html = row.subject, row.body_text, row.body_html
        meta = row.meta
    # the subject and body are the recipe's template, filled from the timer's context
    assert subject == f"[{ref}] Nudge: {title}"
    assert text.startswith(f"A nudge about {title} on case {ref}.")
    assert f"Due: {due:%A} {due.day} {due:%B %Y}" in text
    assert text.endswith(f"ref: {key}|practitioner:mgr.okafor")
    assert "<p>A nudge about" in html and html.startswith("<!DOCTYPE html>")
    assert date.fromisoformat(meta["due"]) == due and meta["working_days_to_due"] is not None
    sent = [m for m in result["sent"] if m["title"] == subject]
    assert len(sent) == 1 and sent[0]["body"] == text and sent[0]["ics"] is None
    # the case reference, never the family's identity
    for piece in IDENTITY:
        assert piece not in subject + text + html + json.dumps(meta), piece
