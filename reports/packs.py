"""Report packs for the court or Children's Hearing: the assessment pack (after D1) and the
final recommendation pack (after D2). The one place identity appears outside the case store:
the files are written to a local folder, never to Prefect, and each file's SHA-256 is audited.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import select

from models import engine as eng
from models.schemas import months_between
from models.tables import Caregiver, Child, Decision, Placement
from nim_pathway.commands import CaseStore, CommandError
from nim_pathway.db import session_scope

TEMPLATES = Path(__file__).resolve().parent / "templates"
PACKS = {"assessment": ("d1", "Assessment report pack"),
         "final": ("d2", "Final permanence recommendation pack")}
ASSESSMENT_STAGES = {"assessment", "formulation", "treatment"}


def pack_context(store: CaseStore, ref: str, kind: str) -> dict[str, Any]:
    decision, title = PACKS[kind]
    today = store._today()
    shown = store.show(ref)
    with session_scope(store.url, read_only=True) as session:
        case = store._case(session, ref)
        spec, state = store._load(session, case)
        child = session.exec(select(Child).where(Child.case_id == case.id)).one()
        carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)
                              .order_by(Caregiver.id)).all()
        placements = session.exec(select(Placement).where(Placement.case_id == case.id)
                                  .order_by(Placement.start)).all()
        decisions = session.exec(select(Decision).where(Decision.case_id == case.id)
                                 .order_by(Decision.decided_on)).all()
    if decision not in state.decisions:
        raise CommandError(f"the {kind} pack is made after {decision.upper()}; {ref} has no "
                           f"{decision.upper()} yet (stage {state.stage})")
    labels = {s.gate.decision: s.gate.outcomes for s in spec.stages if s.gate}
    done = sorted((t for t in state.tasks.values() if t.state == eng.DONE),
                  key=lambda t: (t.completed_on, t.key))
    assessments = [{"completed_on": t.completed_on, "title": t.title, "caregiver": t.caregiver,
                    "completed_by": t.completed_by,
                    "result": {k: v for k, v in (t.outcome or {}).items()
                               if k not in ("completed_on", "notes") and v not in (None, "")}}
                   for t in done if t.stage in ASSESSMENT_STAGES and t.spec_id not in
                   ("court-update", "treatment-plan", "midway-review", "professionals-meeting")]
    deadlines = [{"title": t.title, "caregiver": t.caregiver, "due": t.due,
                  "completed_on": t.completed_on, "due_explanation": t.due_explanation,
                  "status": ("on time" if t.completed_on and t.completed_on <= t.due else
                             f"late by {(t.completed_on - t.due).days} days" if t.completed_on
                             else "overdue" if t.due < today else "open")}
                 for t in sorted(state.tasks.values(), key=lambda t: (t.due, t.key))
                 if t.state in (eng.DONE, eng.OPEN) and t.stage != "statutory"]
    return {
        "title": title, "generated": today, "kind": kind,
        "court": "Children's Hearing" if case.jurisdiction == "scotland" else "court",
        "case": {"ref": ref, "jurisdiction": case.jurisdiction, "site": case.site,
                 "pathway": shown["pathway"]},
        "child": child, "caregivers": carers, "placements": placements,
        "age_at_referral": months_between(child.date_of_birth, state.anchors["referral"])
        if child.date_of_birth else None,
        "age_now": months_between(child.date_of_birth, today) if child.date_of_birth else None,
        "clocks": shown["clocks"], "court_override": shown["court_override"],
        "assessments": assessments, "deadlines": deadlines,
        "decisions": [{"kind": d.kind.upper(), "label": labels[d.kind][d.outcome].label
                       if d.outcome in labels.get(d.kind, {}) else d.outcome,
                       "decided_on": d.decided_on, "decided_by": d.decided_by,
                       "rationale": d.rationale} for d in decisions],
        "chronology": store.timeline(ref),
    }


def render_pack_html(context: dict[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    return env.get_template("pack.html.j2").render(**context)


def write_pack(store: CaseStore, ref: str, kind: str, fmt: str, out_dir: Path,
               actor: str) -> tuple[Path, str]:
    """Render the pack, write it, audit its SHA-256; returns (path, sha256)."""
    if kind not in PACKS:
        raise CommandError(f"--kind must be one of {', '.join(PACKS)}")
    if fmt not in ("html", "pdf"):
        raise CommandError("--format must be html or pdf")
    html = render_pack_html(pack_context(store, ref, kind))
    if fmt == "pdf":
        try:
            from weasyprint import HTML
        except (ImportError, OSError) as exc:
            raise CommandError(f"PDF needs WeasyPrint and its system libraries ({exc}); use "
                               "--format html") from None
        data = HTML(string=html).write_pdf()
    else:
        data = html.encode("utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{ref}-{kind}-{store._today():%Y%m%d}.{fmt}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with session_scope(store.url) as session:
        store._case(session, ref)
        store.audit(session, actor, "report-pack", ref,
                    {"kind": kind, "format": fmt, "sha256": digest, "file": path.name})
    return path, digest


