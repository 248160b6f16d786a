"""Case commands: stage a referral, open a case, decide a gate, move a key date, pause,
resume or exit early, transfer to another site. One transaction each."""

from __future__ import annotations

import re
import secrets
from datetime import date

from sqlalchemy import func, text
from sqlmodel import Session, select

from models import engine as eng
from models.errors import Invalid
from models.pathway import PathwaySpec
from models.schemas import (
    Referral,
    case_date_problems,
    eligibility_problems,
)
from nim_pathway.commands.base import DELAY_CAUSES, CommandBase, Result, run_engine
from nim_pathway.policy import Target
from notifications.outbox import queue_handoffs
from store import mapping
from store.tables import Caregiver, Case, Child, Intake, Placement, Practitioner, Task

# key dates `move-date` sets or corrects (hearings among them); the final order, placements
# and the end of being looked after have commands of their own (they carry more than a date)
MOVABLE_DATES = ("care_entry", "referral", "la_referral", "proceedings_issued",
                 "case_management_hearing", "cmh_held", "issues_resolution_hearing",
                 "final_hearing")
# A later child's own dates (`cmh_held@child-2`): the day they became looked after, and their
# own application's issue and hearings (docs/STATUTORY-CLOCKS.md EN-6)
CHILD_DATES = ("care_entry", "proceedings_issued", "case_management_hearing", "cmh_held",
               "issues_resolution_hearing", "final_hearing")


class CaseCommands(CommandBase):
    def stage_intake(self, referral: Referral, actor: str) -> str:
        """Keep a referral in the case store and return the handle the Prefect form takes."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "stage-intake",
                           self._installed(session, referral.default_pathway()),
                           Target(doing="stage a referral"))
            handle = f"IN-{secrets.token_hex(4).upper()}"
            session.add(Intake(handle=handle, referral=referral.model_dump(mode="json"),
                               created_by=actor, created_at=self.ctx.now()))
            self.audit(session, actor, "intake-staged", None, {"handle": handle})
        return handle

    def open_from_intake(self, handle: str, actor: str) -> Result:
        """Open the case for a staged referral; running it again returns the same case."""
        with self.ctx.read() as session:
            intake = mapping.find_intake(session, handle)
            if intake.case_ref:
                return Result(intake.case_ref, f"{handle} was opened as {intake.case_ref}")
            referral = Referral.model_validate(intake.referral)
        return self.open_case(referral, actor, intake_handle=handle)

    def open_case(self, referral: Referral, actor: str,
                  intake_handle: str | None = None) -> Result:
        """Open a case on the newest installed version of the referral's pathway."""
        on = self.ctx.today()
        problems = case_date_problems(referral.case_dates(), referral.births(), on)
        if problems:
            raise Invalid("; ".join(problems))
        with self.ctx.read() as session:
            spec = self._installed(session, referral.default_pathway())
        # a named pathway brings its programme; a programme named as well must agree
        if spec.programme != referral.programme and "programme" in referral.model_fields_set:
            raise Invalid(f"pathway {spec.profile} runs programme {spec.programme}, not "
                          f"{referral.programme}; choose a {referral.programme} pathway with "
                          f"--pathway or open on programme {spec.programme} (--programme)")
        if referral.jurisdiction not in spec.jurisdictions:
            raise Invalid(f"pathway {spec.profile} is for {', '.join(spec.jurisdictions)}, not "
                          f"{referral.jurisdiction}; choose another with --pathway")
        unknown = sorted(set(referral.settings) - set(spec.settings))
        if unknown:
            raise Invalid(f"unknown pathway setting(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(spec.settings))}")
        out_of_range = spec.setting_problems(referral.settings)
        if out_of_range:
            raise Invalid(f"pathway setting out of range on {spec.profile}@{spec.version}: "
                          f"{'; '.join(out_of_range)}")
        refused = eligibility_problems(spec, referral)
        if refused:
            raise Invalid("not eligible: " + "; ".join(refused))
        with self.ctx.write() as session:
            self.authorize(session, actor, "open-case", spec, Target(doing="open a case"))
            if intake_handle:  # one case per staged referral, however often the flow runs
                intake = mapping.find_intake(session, intake_handle, lock=True)
                if intake.case_ref:
                    return Result(intake.case_ref, f"{intake_handle} was opened as "
                                  f"{intake.case_ref}")
            version = mapping.find_installed_pathway(session, spec.profile)
            ref = _next_ref(session, on.year, self.ctx.ref_series)  # on PostgreSQL, openings
            # take turns from here
            digests = [self.identity_digest(c) for c in referral.all_children]
            if not referral.new_episode:
                _refuse_open_duplicates(session, referral, digests)
            case = Case(ref=ref, jurisdiction=referral.jurisdiction, site=referral.site,
                        pathway_id=version.id, settings=referral.settings or None,
                        opened_at=self.ctx.now(), legal_status=referral.legal_status,
                        previous_episode=referral.previous_episode,
                        programme=spec.programme)
            session.add(case)
            session.flush()
            anchors = {"care_entry": referral.care_entry, "referral": referral.referral}
            children, kinds = [], {}  # kinds: each child's placement, for its visit cadence
            for n, child in enumerate(referral.all_children, start=1):
                key = f"child-{n}"
                children.append(key)
                session.add(Child(case_id=case.id, key=key, given_name=child.given_name,
                                  family_name=child.family_name,
                                  date_of_birth=child.date_of_birth, address=child.address,
                                  identity_digest=digests[n - 1]))
                placement = referral.placement_of(child)
                if placement:
                    kinds[key] = placement.kind
                    session.add(Placement(case_id=case.id, child=key, kind=placement.kind,
                                          start=placement.start, reason="care entry"))
                anchors[eng.child_anchor("placement_start", key)] = (
                    placement.start if placement else child.looked_after_from
                    or referral.care_entry)
            carers = run_engine(eng.caregiver_keys, [c.relationship for c in referral.caregivers])
            for c, given in zip(carers, referral.caregivers, strict=True):
                c.children = list(given.children)
                session.add(Caregiver(case_id=case.id, key=c.key, relationship=c.relationship,
                                      name=given.name, children=c.children or None))
            for name, day in referral.case_dates().items():  # the family's, each child's own
                if name.partition("@")[0] in ("la_referral", "proceedings_issued",
                                              "final_hearing", "care_entry"):
                    anchors[name] = day
            state = eng.CaseState(ref=ref, jurisdiction=referral.jurisdiction, anchors=anchors,
                                  settings={**spec.settings, **referral.settings},
                                  caregivers=carers, closures=self.ctx.closures,
                                  children=children, placement_kinds=kinds)
            effects = [eng.Effect("case-opened", None, {
                "pathway": f"{spec.profile}@{spec.version}", "programme": spec.programme,
                "jurisdiction": case.jurisdiction,
                "site": case.site, "caregivers": [c.key for c in carers],
                "children": children, "previous_episode": referral.previous_episode})]
            effects += run_engine(eng.open_case, spec, state, on)
            self.commit_state(session, case, spec, state, effects, actor)
            if intake_handle:
                intake.case_ref = ref
                session.add(intake)
        return Result(ref, f"opened {ref} on pathway {spec.profile}@{spec.version}", effects)

    def _installed(self, session: Session, profile: str) -> PathwaySpec:
        """The newest installed version of a profile, by name (never a file)."""
        if not re.fullmatch(r"[a-z][a-z0-9-]*", profile):
            raise Invalid(f"pathway {profile[:80]!r} is not a profile name; cases open only on "
                          "installed pathways (`nim-pathway pathway list`)")
        return self.ctx.spec(session, mapping.find_installed_pathway(session, profile).id)

    def decide(self, ref: str, decision: str, outcome: str, actor: str,
               rationale: str = "", child: str | None = None) -> Result:
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            gate_task = next((t for t in state.tasks.values()
                              if (g := spec.gate_of_task.get(t.spec_id)) and g.decision == decision
                              and t.state != eng.CANCELLED
                              and t.child in (None, child or eng.FIRST_CHILD)), None)
            if gate_task is not None:  # before the gate exists the engine refuses it below
                self.authorize(session, actor, "decide", spec,
                               Target(ref, gate_task.role, doing=f"decide {decision}"))
            effects = run_engine(eng.decide, spec, state, decision, outcome, actor,
                                 self.ctx.today(), {"notes": rationale}, child)
            self.commit_state(session, case, spec, state, effects, actor)
        return Result(ref, f"recorded {decision} = {outcome} for {ref}", effects)

    def move_date(self, ref: str, anchor: str, value: date, cause: str, actor: str,
                  category: str = "court") -> Result:
        """Move a key date; the re-dated tasks record the category of the delay."""
        if not cause.strip():
            raise Invalid("say why the date moved (--cause), e.g. 'hearing adjourned'")
        if category not in DELAY_CAUSES:
            raise Invalid(f"--category must be one of {', '.join(DELAY_CAUSES)}")
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "move-date", spec,
                           Target(ref, doing=f"move the case date {anchor}", date=anchor))
            allowed = set(MOVABLE_DATES) | set(spec.dates) | {
                a for a in state.anchors if a.startswith("stage:")} | {
                f"{name}@{child}" for name in CHILD_DATES for child in state.children[1:]}
            if anchor not in allowed:
                raise Invalid(f"unknown date {anchor!r}; use one of {', '.join(sorted(allowed))}")
            # the rules `case open` applies to a referral's dates, to what this move breaks
            rows = [c for c in session.exec(select(Child).where(Child.case_id == case.id))
                    if c.date_of_birth is not None]  # opened: sealed, or gone with the key
            births = {c.key if len(rows) > 1 else "the child": c.date_of_birth for c in rows}
            before = case_date_problems(state.anchors, births, self.ctx.today())
            broken = [p for p in case_date_problems({**state.anchors, anchor: value}, births,
                                                    self.ctx.today()) if p not in before]
            if broken:
                raise Invalid(f"{anchor} cannot move to {value}: {'; '.join(broken)}")
            effects = run_engine(eng.move_anchor, spec, state, anchor, value, cause)
            self.commit_state(session, case, spec, state, effects, actor)
            moved = [e.task for e in effects if e.kind == "task-redated"]
            for task in session.exec(select(Task).where(Task.case_id == case.id,
                                                        Task.key.in_(moved))):
                task.delay_cause = category
                session.add(task)
        return Result(ref, f"{anchor} is now {value}", effects)

    def exit_case(self, ref: str, reason: str, note: str, actor: str) -> Result:
        """The family leaves the pathway early, for one of the pathway's exit reasons."""
        return self._engine_event(ref, actor, "exit-case", f"exit ({reason})", eng.exit_case,
                                  reason, self.ctx.today(), note)

    def pause(self, ref: str, reason: str, actor: str, caregiver: str | None = None) -> Result:
        """Pause the family's work (its own targets stop), or with `caregiver` (a caregiver's
        or child's key) only the work about that person."""
        if not reason.strip():
            raise Invalid("say why NIM's work is paused (--reason), e.g. 'parent in hospital'")
        whose = f"{caregiver}'s work" if caregiver else "NIM's work"
        return self._engine_event(ref, actor, "pause-case", f"pause {whose}", eng.pause,
                                  self.ctx.today(), reason, _key(caregiver))

    def resume(self, ref: str, actor: str, caregiver: str | None = None) -> Result:
        """Resume: the paused work not yet due when the pause began moves on by the pause."""
        whose = f"{caregiver}'s work" if caregiver else "NIM's work"
        return self._engine_event(ref, actor, "pause-case", f"resume {whose}", eng.resume,
                                  self.ctx.today(), "", _key(caregiver))

    def transfer(self, ref: str, site: str, team: str, actor: str) -> Result:
        """Move a case to another site: the receiving NIM team takes NIM's open work (each
        task to its least-loaded practitioner of that role), the LA keeps its statutory work,
        and the previous and new owners are both told."""
        if not site.strip() or not team.strip():
            raise Invalid("give the receiving --site and its NIM --team")
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec = self.ctx.spec(session, case.pathway_id)
            self.authorize(session, actor, "transfer-case", spec,
                           Target(ref, doing=f"transfer the case to {site}"))
            if case.closed_on:
                raise Invalid(f"{ref} closed on {case.closed_on}; there is no work to transfer")
            moving = [t for t in session.exec(select(Task).where(
                Task.case_id == case.id, Task.state.in_([eng.OPEN, eng.BLOCKED])))
                if t.role in spec.roles and spec.roles[t.role].team == spec.programme]
            staff = {p.role: p for p in session.exec(select(Practitioner).where(
                Practitioner.team == team, Practitioner.active).order_by(Practitioner.handle))}
            missing = sorted({t.role for t in moving} - set(staff))
            if missing:
                raise Invalid(f"team {team!r} has no active {', '.join(missing)}; add them "
                              "(`nim-pathway practitioner add … --team`) before the transfer")
            previous = {p.id: p.handle for p in session.exec(select(Practitioner))}
            effects = []
            for task in moving:
                new = staff[task.role]
                if task.assignee_id == new.id:
                    continue
                effects.append(eng.Effect("task-reassigned", task.key, {
                    "from": previous.get(task.assignee_id), "to": new.handle,
                    "note_length": 0}))
                task.assignee_id, task.handover_note = new.id, None
                task.updated_at = self.ctx.now()
                session.add(task)
            before, case.site = case.site, site
            session.add(case)
            self.audit(session, actor, "case-transferred", ref,
                       {"from": before, "to": site, "team": team, "tasks": len(effects)})
            for e in effects:
                self.audit(session, actor, e.kind, ref, {"task": e.task, **e.detail})
            session.flush()
            queue_handoffs(session, self.notify(), case.id, ref, effects, actor, set(spec.gate_of_task),
                           self.ctx.today(), self.ctx.now())
        return Result(ref, f"{ref} transferred from {before} to {site}: {len(effects)} tasks "
                      f"to team {team}", effects)


def _refuse_open_duplicates(session: Session, referral: Referral, digests: list[str]) -> None:
    """Refuse a referral whose child is a child of an open case (same identity digest), naming
    the case and how to confirm a new episode; never the child's identity."""
    rows = session.exec(select(Child.identity_digest, Case.ref).join(Case, Case.id == Child.case_id)
                        .where(Child.identity_digest.in_(set(digests)), Case.closed_on.is_(None),
                               Child.removed_on.is_(None), Child.erased_at.is_(None))
                        .order_by(Case.ref)).all()
    if not rows:
        return
    open_refs: dict[str, list[str]] = {}
    for digest, ref in rows:
        open_refs.setdefault(digest, []).append(ref)
    many = len(digests) > 1
    found = [f"{f'child {n}' if many else 'the child'} is on open case "
             f"{', '.join(dict.fromkeys(open_refs[d]))}"
             for n, d in enumerate(digests, start=1) if d in open_refs]
    raise Invalid(f"this referral matches an open case: {'; '.join(found)} (same names and "
                  "date of birth); if it is a new episode, confirm with new_episode: true "
                  "(`case open --new-episode`), else work on the open case")


def _next_ref(session: Session, year: int, series: str | None = None) -> str:
    """The year's next case reference (NIM-2026-0001), or the next of a named series that
    does not restart each year (the demo's DEMO-0001). On PostgreSQL, openings take turns
    here until they commit (a transaction-scoped advisory lock; SQLite has one writer
    already), so two at once cannot take the same number."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(725)"))  # 724: the audit chain's
    prefix = f"{series}-" if series else f"NIM-{year}-"
    last = session.exec(select(Case.ref).where(Case.ref.like(prefix + "%")).order_by(
        func.length(Case.ref).desc(), Case.ref.desc()).limit(1)).first()  # 10000 after 9999
    n = int(last.rsplit("-", 1)[1]) + 1 if last else 1
    return f"{prefix}{n:04d}"


def _key(person: str | None) -> str | None:
    """A caregiver's or child's key as typed (None: the whole family)."""
    if person is None:
        return None
    if not person.strip():
        raise Invalid("give the caregiver's or child's key (--caregiver), e.g. father or "
                      "child-2; leave it out to pause the whole family")
    return person.strip()
