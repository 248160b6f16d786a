"""Administration: outbox retries, report packs, erasure (people: identity.py)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select

from models.errors import AlreadyDone, Invalid, NotFound
from models.pathway import PathwaySpec
from nim_pathway.commands.base import CommandBase, Result
from nim_pathway.policy import SERVICE_ACTOR, Target
from reports.packs import render_pack
from store import mapping
from store.crypto import ERASED, destroy_case_key
from store.files import write_private
from store.tables import (
    AuditEvent,
    Caregiver,
    Case,
    CaseAnchor,
    Child,
    CourtExtension,
    Decision,
    Intake,
    Outbox,
    Placement,
    Task,
)


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
            write_private(path, data)  # 0600; in the transaction: no file without its audit row
            self.audit(session, actor, "report-pack", ref,
                       {"kind": kind, "format": fmt, "sha256": digest, "file": path.name,
                        "path": str(path.resolve())})  # erasure deletes it
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
                destroy_case_key(session, intake.handle, self.ctx.now(),  # sealed under it
                                 self.ctx.keystore)
            scrubbed = erase_free_text(session, case, spec)
            packs = self._delete_packs(session, ref)
            shredded = destroy_case_key(session, ref, self.ctx.now(), self.ctx.keystore)
            self.audit(session, actor, "identity-erased", ref, {
                "fields": ["child.given_name", "child.family_name", "child.date_of_birth",
                           "child.address", "caregiver.name", "intake.referral", *scrubbed],
                "packs_deleted": packs, "case_key_destroyed": shredded,
                "caregivers": len(carers), "early": ref not in due,
                "reason_length": len(reason)})
        return Result(ref, f"identity erased from {ref}, with the free text typed on it and "
                           f"{len(packs)} report pack(s); the pathway record and audit remain")

    @staticmethod
    def _delete_packs(session: Session, ref: str) -> list[str]:
        """Delete the report packs written for the case (their paths and hashes are in the
        audit); a file that changed since is left and named, not guessed at."""
        deleted = []
        for row in session.exec(select(AuditEvent).where(AuditEvent.case_ref == ref,
                                                         AuditEvent.action == "report-pack")):
            path = Path((row.detail or {}).get("path") or "")
            if path.name and path.is_file():
                if hashlib.sha256(path.read_bytes()).hexdigest() != row.detail.get("sha256"):
                    raise Invalid(f"report pack {path} changed since it was written; check it "
                                  "and remove it by hand, then erase again")
                path.unlink()
                deleted.append(path.name)
        return deleted

    def expire_intakes(self, days: int) -> int:
        """Delete referrals staged more than `days` ago and never opened (their identity
        should not wait in the store for a case that never comes)."""
        cutoff = self.ctx.now() - timedelta(days=days)
        with self.ctx.write() as session:
            stale = session.exec(select(Intake).where(Intake.case_ref.is_(None),
                                                      Intake.created_at < cutoff)).all()
            for intake in stale:
                session.delete(intake)
                destroy_case_key(session, intake.handle, self.ctx.now(), self.ctx.keystore)
                self.audit(session, SERVICE_ACTOR, "intake-expired", None,
                           {"handle": intake.handle, "days": days})
        return len(stale)

    def publish_checkpoint(self) -> dict | None:
        """Queue the audit chain's signed head (row id, hash, rows up to it) to the admins,
        a place the database owner does not control; returns the entry (for the Prefect
        artifact), or None if the log is empty or this head was sent already. Not audited
        itself: that would move the head on every sweep."""
        import json

        from sqlalchemy.exc import IntegrityError

        from notifications.config import load_config
        from notifications.outbox import enqueue
        from store.audit import head_entry

        try:
            with self.ctx.write() as session:
                entry = head_entry(session, self.ctx.url, self.ctx.audit_key, self.ctx.now())
                if entry is None:
                    return None
                queued = enqueue(session, load_config(), "audit-checkpoint",
                                 f"audit-checkpoint/{entry['db']}/{entry['id']}", None,
                                 "admin", {"checkpoint": json.dumps(entry),
                                           "row_id": entry["id"], "rows": entry["rows"]},
                                 self.ctx.now())
        except IntegrityError:  # a racing sweep queued this head first
            return None
        return entry if queued is not None else None


def erase_free_text(session: Session, case: Case, spec: PathwaySpec) -> list[str]:
    """Blank everything typed into the case as free text (handover notes, outcome notes and
    text fields, rationales, reasons, causes): names get typed there too. Returns what was
    blanked, by table.column."""
    done: set[str] = set()
    for task in session.exec(select(Task).where(Task.case_id == case.id)):
        if task.handover_note:
            task.handover_note = None
            done.add("task.handover_note")
        text_keys = spec.free_text_fields(task.spec_id) if task.outcome else set()
        if any(task.outcome.get(k) for k in text_keys):
            task.outcome = {k: (ERASED if k in text_keys and v else v)
                            for k, v in task.outcome.items()}
            done.add("task.outcome")
        session.add(task)
    for table, column in ((Decision, "rationale"), (Placement, "reason"),
                          (CaseAnchor, "cause"), (CourtExtension, "reason")):
        for row in session.exec(select(table).where(table.case_id == case.id)):
            if getattr(row, column):
                setattr(row, column, ERASED)
                session.add(row)
                done.add(f"{table.__tablename__}.{column}")
    return sorted(done)
