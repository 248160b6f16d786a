"""Report packs for the court or Children's Hearing: the assessment pack (after D1) and the
final recommendation pack (after D2). The one place identity appears outside the case store:
the files are written to a local folder, never to Prefect, and each file's SHA-256 is audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models import engine as eng
from models.errors import Invalid
from models.schemas import months_between
from reports import charts
from store.queries import Queries

TEMPLATES = Path(__file__).resolve().parent / "templates"
PACKS = {"assessment": "Assessment report pack", "final": "Final permanence recommendation pack"}


def pack_context(queries: Queries, ref: str, kind: str) -> dict[str, Any]:
    title = PACKS[kind]
    today = queries.today()
    shown = queries.show(ref)
    record = queries.case_record(ref)
    spec, state = record.snapshot.spec, record.snapshot.state
    carers, placements = record.caregivers, record.placements
    rep = spec.reporting
    decision = rep.assessment_pack_after if kind == "assessment" else rep.final_pack_after
    if decision is None:
        raise Invalid(f"pathway {spec.profile} makes no {kind} pack (reporting.{kind}"
                      "_pack_after is not set)")
    if decision not in state.decisions:
        raise Invalid(f"the {kind} pack is made after {decision.upper()}; {ref} has no "
                      f"{decision.upper()} yet (stage {state.stage})")
    labels = {s.gate.decision: s.gate.outcomes for s in spec.stages if s.gate}
    done = sorted((t for t in state.tasks.values() if t.state == eng.DONE),
                  key=lambda t: (t.completed_on, t.key))
    assessments = [{"completed_on": t.completed_on, "title": t.title, "caregiver": t.caregiver,
                    "completed_by": t.completed_by,
                    "result": {k: v for k, v in (t.outcome or {}).items()
                               if k not in ("completed_on", "notes") and v not in (None, "")}}
                   for t in done if t.stage in rep.pack_stages and t.spec_id not in
                   rep.pack_excludes]
    deadlines = [{"title": t.title, "caregiver": t.caregiver, "due": t.due,
                  "completed_on": t.completed_on, "due_explanation": t.due_explanation,
                  "status": ("on time" if t.completed_on and t.completed_on <= t.due else
                             f"late by {(t.completed_on - t.due).days} days" if t.completed_on
                             else "overdue" if t.due < today else "open")}
                 for t in sorted(state.tasks.values(), key=lambda t: (t.due, t.key))
                 if t.state in (eng.DONE, eng.OPEN) and t.stage != "statutory"]
    return {
        "title": title, "generated": today, "kind": kind, "programme": spec.programme.upper(),
        "court": "Children's Hearing" if shown.jurisdiction == "scotland" else "court",
        "case": {"ref": ref, "jurisdiction": shown.jurisdiction, "site": shown.site,
                 "pathway": shown.pathway},
        "children": [{
            "key": c.key, "given_name": c.given_name, "family_name": c.family_name,
            "date_of_birth": c.date_of_birth, "address": c.address,
            "age_at_referral": months_between(c.date_of_birth, state.anchors["referral"])
            if c.date_of_birth else None,
            "age_now": months_between(c.date_of_birth, today) if c.date_of_birth else None,
        } for c in record.children],
        "caregivers": carers, "placements": placements,
        "clocks": shown.clocks, "timetable": shown.court,
        "assessments": assessments, "deadlines": deadlines,
        "decisions": [{"kind": d.kind.upper(), "label": labels[d.kind][d.outcome].label
                       if d.outcome in labels.get(d.kind, {}) else d.outcome,
                       "decided_on": d.decided_on, "decided_by": d.decided_by,
                       "rationale": d.rationale} for d in record.decisions],
        "chronology": queries.timeline(ref),
        # the workbench's picture of the case (planned against actual, clocks with their
        # owners, pauses, extensions): task keys and roles only, never identity
        "timeline_svg": charts.timeline(spec, state, today),
    }


def render_pack_html(context: dict[str, Any]) -> str:
    # Jinja2 is imported here, not at the top: every CLI command loads the admin commands,
    # few render a pack, and the import costs ~30 ms per process.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    return env.get_template("pack.html.j2").render(**context)


def render_pack(queries: Queries, ref: str, kind: str, fmt: str) -> bytes:
    """The pack as HTML or PDF bytes (the admin command writes and audits the file)."""
    if kind not in PACKS:
        raise Invalid(f"--kind must be one of {', '.join(PACKS)}")
    if fmt not in ("html", "pdf"):
        raise Invalid("--format must be html or pdf")
    html = render_pack_html(pack_context(queries, ref, kind))
    if fmt == "html":
        return html.encode("utf-8")
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        raise Invalid(f"PDF needs WeasyPrint and its system libraries ({exc}); use "
                      "--format html") from None
    return HTML(string=html).write_pdf()
