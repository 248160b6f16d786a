"""Administration: outbox retries, report packs, erasure (people: identity.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlmodel import select

from models.errors import AlreadyDone, Invalid, NotFound
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.policy import Target
from reports.packs import render_pack
from store import mapping
from store.tables import Caregiver, Child, Intake, Outbox


class AdminCommands(CommandBase):
    def retry_message(self, message_id: int, actor: str) -> Result:
        """Put a dead or failing message back in the queue now."""
        with self.ctx.write() as session:
            self.authorize(session, actor, "administer-outbox")
            row = session.get(Outbox, message_id)
            if row is None:
                raise NotFound(f"no outbox message {message_id}; `nim-pathway outbox list`")
            if row.status == "sent":
                raise AlreadyDone(f"message {message_id} was delivered at {row.sent_at}; it is "
                                  "not sent twice")
            row.status, row.attempts, row.next_attempt_at = "pending", 0, self.ctx.now()
            row.claim_token = row.claimed_until = None
            session.add(row)
            self.audit(session, actor, "outbox-retry", row.case_ref, {"message": message_id})
        return Result(row.case_ref or "", f"message {message_id} queued again")

    def write_pack(self, ref: str, kind: str, fmt: str, out_dir: Path,
                   actor: str) -> tuple[Path, str]:
        """Render a report pack, write it, audit its SHA-256; returns (path, sha256). The
        policy is asked before anything of the case is read."""
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref)
            self.authorize(session, actor, "write-report-pack",
                           self.ctx.spec(session, case.pathway_id),
                           Target(ref, doing=f"write the {kind} pack (it holds identity)"))
        data = render_pack(self.queries, ref, kind, fmt)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{ref}-{kind}-{self.ctx.today():%Y%m%d}.{fmt}"
        digest = hashlib.sha256(data).hexdigest()
        with self.ctx.write() as session:
            path.write_bytes(data)  # inside the transaction: no file without its audit row
            self.audit(session, actor, "report-pack", ref,
                       {"kind": kind, "format": fmt, "sha256": digest, "file": path.name})
        return path, digest

    def erase(self, ref: str, actor: str, reason: str = "") -> Result:
        """Remove a case's identity (names, date of birth, address, staged referral); the
        pathway record stays, and the erasure itself is audited."""
        due = {r.case for r in self.queries.retention_review()}
        with self.ctx.write() as session:
            case = mapping.find_case(session, ref, lock=True)
            spec = self.ctx.spec(session, case.pathway_id)
            self.authorize(session, actor, "erase-identity", spec,
                           Target(ref, doing="erase identity"))
            children = session.exec(select(Child).where(Child.case_id == case.id)).all()
            if all(c.erased_at for c in children):
                raise AlreadyDone(f"identity on {ref} was erased on "
                                  f"{children[0].erased_at:%Y-%m-%d}")
            if ref not in due and not reason.strip():
                raise Invalid(f"{ref} is not past its retention date; give --reason (for "
                              "example a court order) to erase it earlier")
            for child in children:
                child.given_name = child.family_name = child.address = None
                child.date_of_birth, child.erased_at = None, self.ctx.now()
                session.add(child)
            carers = session.exec(select(Caregiver).where(Caregiver.case_id == case.id)).all()
            for carer in carers:
                carer.name = None
                session.add(carer)
            for intake in session.exec(select(Intake).where(Intake.case_ref == ref)):
                intake.referral = {"erased": True}
                session.add(intake)
            self.audit(session, actor, "identity-erased", ref, {
                "fields": ["child.given_name", "child.family_name", "child.date_of_birth",
                           "child.address", "caregiver.name", "intake.referral"],
                "caregivers": len(carers), "early": ref not in due, "reason_length": len(reason)})
        return Result(ref, f"identity erased from {ref}; the pathway record and audit remain")
