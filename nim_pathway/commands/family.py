"""Family commands: children and caregivers joining, leaving and linked, consent withdrawn,
placement moves, referrals on to other services, contact and treatment sessions. One
transaction each."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import select

from models import engine as eng
from models.calendar import WorkingCalendar
from models.errors import Invalid
from models.schemas import PLACEMENT_KINDS, ChildIn
from nim_pathway.commands.base import CommandBase, Result, run_engine
from nim_pathway.policy import Target
from store import mapping
from store.tables import Caregiver, Child, ContactArrangement, Placement, TreatmentSession


class FamilyCommands(CommandBase):
    def add_child(self, ref: str, child: ChildIn, actor: str) -> Result:
        """A sibling joins the family episode (identity to the case store, a key elsewhere)."""
        on = self.ctx.today()
        with self.ctx.read() as session:
            spec = self.ctx.spec(session, mapping.find_case(session, ref).pathway_id)
        if spec.eligibility.max_age_months is not None:
            from models.schemas import months_between

            age = months_between(child.date_of_birth, on)
            if age >= spec.eligibility.max_age_months:
                raise Invalid(f"not eligible: the child is {age} months old; {spec.title} is "
                              f"for children under {spec.eligibility.max_age_months} months")
        placement = child.placement
        result = self._engine_event(ref, actor, "change-family", "add a child", eng.add_child,
                                    on, placement.start if placement else None,
                                    placement.kind if placement else None,
                                    child.looked_after_from, child.proceedings_issued)
        key = next(e.detail["child"] for e in result.effects if e.kind == "child-added")
        with self.ctx.write() as session:  # identity: the row the engine's save created
            case = mapping.find_case(session, ref, lock=True)
            row = session.exec(select(Child).where(Child.case_id == case.id,
                                                   Child.key == key)).one()
            row.given_name, row.family_name = child.given_name, child.family_name
            row.date_of_birth, row.address = child.date_of_birth, child.address
            row.identity_digest = self.identity_digest(child)  # matched like a referral's child
            session.add(row)
            if child.placement:
                session.add(Placement(case_id=case.id, child=key, kind=child.placement.kind,
                                      start=child.placement.start, reason="joined the case"))
        return Result(ref, f"{ref}: added {key}", result.effects)

    def add_caregiver(self, ref: str, relationship: str, name: str | None,
                      children: list[str], actor: str) -> Result:
        """A caregiver identified late, or a new carer: asked for consent, then assessed."""
        result = self._engine_event(ref, actor, "change-family", f"add a {relationship}",
                                    eng.add_caregiver, relationship, children, self.ctx.today())
        key = next(e.detail["caregiver"] for e in result.effects if e.kind == "caregiver-added")
        if name:
            with self.ctx.write() as session:
                case = mapping.find_case(session, ref, lock=True)
                row = session.exec(select(Caregiver).where(Caregiver.case_id == case.id,
                                                           Caregiver.key == key)).one()
                row.name = name
                session.add(row)
        return Result(ref, f"{ref}: added caregiver {key}", result.effects)

    def remove_caregiver(self, ref: str, key: str, reason: str, actor: str) -> Result:
        if not reason.strip():
            raise Invalid("say why the caregiver left the case (--reason)")
        return self._engine_event(ref, actor, "change-family", f"remove caregiver {key}",
                                  eng.remove_caregiver, key, self.ctx.today(), reason)

    def link_caregiver(self, ref: str, caregiver: str, children: list[str], actor: str) -> Result:
        """Say which children a caregiver cares for (all of them if none are named)."""
        return self._engine_event(ref, actor, "change-family", f"link {caregiver}",
                                  eng.link_caregiver, caregiver, children, self.ctx.today())

    def remove_child(self, ref: str, child: str, reason: str, actor: str) -> Result:
        if not reason.strip():
            raise Invalid("say why the child leaves the family episode (--reason)")
        return self._engine_event(ref, actor, "change-family", f"remove {child}",
                                  eng.remove_child, child, self.ctx.today(), reason)

    def withdraw_consent(self, ref: str, caregiver: str, actor: str) -> Result:
        return self._engine_event(ref, actor, "record-consent",
                                  f"record consent withdrawn by {caregiver}",
                                  eng.withdraw_consent, caregiver, self.ctx.today())

    def change_placement(self, ref: str, kind: str, start: date, reason: str,
                         actor: str, child: str | None = None) -> Result:
        """Record a placement move: the current placement ends the day the new one starts, and
        the statutory work that hangs on a placement (visits) starts again."""
        if kind not in PLACEMENT_KINDS:
            raise Invalid(f"unknown placement kind {kind!r}; use {', '.join(PLACEMENT_KINDS)}")
        if not reason.strip():
            raise Invalid("say why the placement changed (--reason)")
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "change-placement", spec,
                           Target(ref, doing="record a placement change"))
            if start > self.ctx.today():
                raise Invalid(f"placement start {start} is in the future")
            if start < state.anchors["care_entry"]:
                raise Invalid(f"placement start {start} is before care entry "
                              f"({state.anchors['care_entry']})")
            child = child or eng.FIRST_CHILD
            effects = run_engine(eng.change_placement, spec, state, start, child, kind)
            current = session.exec(select(Placement).where(
                Placement.case_id == case.id, Placement.child == child,
                Placement.end.is_(None))).first()
            if current is not None:
                if start < current.start:
                    raise Invalid(f"the current placement started {current.start}; a change "
                                  "cannot start before it")
                current.end = start
                session.add(current)
            session.add(Placement(case_id=case.id, child=child, kind=kind, start=start,
                                  reason=reason))
            self.commit_state(session, case, spec, state, effects, actor)
            self.audit(session, actor, "placement-changed", ref,
                       {"child": child, "kind": kind, "start": str(start),
                        "reason": reason})
        return Result(ref, f"placement for {ref} {child}: {kind} from {start}", effects)

    def refer_out(self, ref: str, service: str, role: str, by: date | None, actor: str,
                  caregiver: str | None = None) -> Result:
        """A referral on to another service: a task for the role that makes it (by default
        within 5 working days)."""
        on = self.ctx.today()
        if by is None:
            with self.ctx.read() as session:
                case = mapping.find_case(session, ref)
                calendar = WorkingCalendar(case.jurisdiction, self.ctx.closures)
            by = calendar.add_working_days(on, 5)[0]
        return self._engine_event(ref, actor, "refer-out", f"refer to {service}",
                                  eng.refer_out, service, role, by, on, caregiver)

    def record_contact(self, ref: str, child: str, caregiver: str, per_week: float,
                       supervised: bool, start: date, actor: str) -> Result:
        """A contact arrangement between a child and a caregiver (ends the previous one)."""
        if not 0 <= per_week <= 14:
            raise Invalid("--per-week must be between 0 and 14 sessions a week")
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "record-family-work", spec,
                           Target(ref, doing="record a contact arrangement"))
            _known(state, child, caregiver)
            if not state.anchors["care_entry"] <= start <= self.ctx.today() + timedelta(days=365):
                raise Invalid(f"contact start {start} must be after care entry and within a year")
            current = session.exec(select(ContactArrangement).where(
                ContactArrangement.case_id == case.id, ContactArrangement.child == child,
                ContactArrangement.caregiver == caregiver,
                ContactArrangement.end.is_(None))).all()
            for row in current:
                row.end = start
                session.add(row)
            session.add(ContactArrangement(case_id=case.id, child=child, caregiver=caregiver,
                                           per_week=per_week, supervised=supervised,
                                           start=start, recorded_by=actor,
                                           recorded_at=self.ctx.now()))
            self.audit(session, actor, "contact-arranged", ref, {
                "child": child, "caregiver": caregiver, "per_week": per_week,
                "supervised": supervised, "start": str(start)})
        return Result(ref, f"{ref}: contact {child} with {caregiver}, {per_week:g} a week"
                      f"{', supervised' if supervised else ''}, from {start}")

    def record_session(self, ref: str, kind: str, held_on: date, attended: bool, actor: str,
                       caregiver: str | None = None, child: str | None = None) -> Result:
        """A treatment session offered to the family, attended or missed."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec, state = self.load(session, case)
            self.authorize(session, actor, "record-family-work", spec,
                           Target(ref, doing="record a treatment session"))
            if kind not in spec.session_kinds:
                raise Invalid(f"unknown session kind {kind!r}; use "
                              f"{', '.join(spec.session_kinds)}")
            _known(state, child, caregiver)
            if held_on > self.ctx.today() or held_on < state.anchors["referral"]:
                raise Invalid(f"session date {held_on} must be between the referral and today")
            session.add(TreatmentSession(case_id=case.id, held_on=held_on, kind=kind,
                                         caregiver=caregiver, child=child, attended=attended,
                                         recorded_by=actor, recorded_at=self.ctx.now()))
            self.audit(session, actor, "session-recorded", ref, {
                "kind": kind, "held_on": str(held_on), "attended": attended,
                "caregiver": caregiver, "child": child})
        return Result(ref, f"{ref}: {kind} session on {held_on} "
                      f"{'attended' if attended else 'missed'}")


def _known(state: eng.CaseState, child: str | None, caregiver: str | None) -> None:
    if child is not None and child not in state.children:
        raise Invalid(f"case {state.ref} has no child {child!r}; its children: "
                      f"{', '.join(state.children)}")
    if caregiver is not None and caregiver not in {c.key for c in state.caregivers if c.active}:
        raise Invalid(f"case {state.ref} has no caregiver {caregiver!r}; its caregivers: "
                      f"{', '.join(c.key for c in state.caregivers if c.active)}")
