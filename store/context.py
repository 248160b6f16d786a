"""What every store user shares: where the database is, the injected clock, the site's closure
days and the pathway versions already read (a case keeps the version it started on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import event
from sqlmodel import Session

from models.clock import Clock, today
from models.pathway import PathwaySpec, pathway_from_json
from store.audit import write_checkpoint
from store.db import session_scope
from store.keystore import Keystore
from store.row_seals import pathway_holds
from store.sealing import Sealer
from store.tables import PathwayVersion


@dataclass
class StoreContext:
    url: str
    clock: Clock
    closures: frozenset[date] = frozenset()
    audit_key: bytes | None = field(default=None, repr=False)  # held outside the database
    audit_checkpoint: Path | None = None  # where the chain's head is written after each write
    secret_key: bytes = field(default=b"", repr=False)  # seals rows, keys session tokens
    keystore: Keystore | None = None  # per-case data keys, apart from the case store
    # the TOTP key (one-time-code secrets), read when a code is first checked or enrolled:
    # only the processes that check codes hold it (None, or raising ConfigError: not here)
    totp_key: Callable[[], bytes] | None = field(default=None, repr=False)
    # the case references' series: None is NIM-<year>-NNNN; the demo's virtual case uses
    # DEMO (DEMO-NNNN), so its messages never name a live case's reference
    ref_series: str | None = None
    _specs: dict[int, PathwaySpec] = field(default_factory=dict, repr=False)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return today(self.clock)

    def spec(self, session: Session, pathway_id: int) -> PathwaySpec:
        """The stored pathway version (parsed once per process)."""
        if pathway_id not in self._specs:
            row = session.get(PathwayVersion, pathway_id)
            if not pathway_holds(session, row, self.secret_key, self.audit_key):
                refuse_altered_pathway(self, session, row)
            self._specs[pathway_id] = pathway_from_json(row.spec_json)
        return self._specs[pathway_id]

    def sealer(self) -> Sealer:
        """Seals identity and free text under case keys at flush, opens them on load."""
        return Sealer(self.secret_key, self.now(), lambda session, pathway_id, spec_id:
                      self.spec(session, pathway_id).free_text_fields(spec_id), self.keystore)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction (the single writer on SQLite); then the audit checkpoint."""
        if self.audit_checkpoint:
            _writable(self.audit_checkpoint)
        info: dict = {}
        try:
            with session_scope(self.url) as session:
                info = session.info
                info["sealer"] = self.sealer()
                info["writable"] = True
                yield session
        finally:  # a refusal commits its audit row before it is raised: checkpointed too
            head = info.get("committed_head")
            if head and self.audit_checkpoint:
                self._checkpoint(head)

    def _checkpoint(self, head: tuple) -> None:
        from models.errors import ConfigError

        try:
            write_checkpoint(self.audit_checkpoint, self.url, head, self.audit_key, self.now())
        except (OSError, ConfigError) as exc:
            raise ConfigError(
                f"the change WAS committed (audit row {head[0]}), but its checkpoint could not "
                f"be written to {self.audit_checkpoint} ({getattr(exc, 'strerror', None) or exc})"
                "; do not repeat the command: fix NIM_AUDIT_CHECKPOINT, then append the line "
                "`nim-pathway audit checkpoint` prints to it") from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot that never blocks a writer."""
        with session_scope(self.url, read_only=True) as session:
            session.info["sealer"] = self.sealer()
            yield session


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    """The audit head this session has committed (what its checkpoint records)."""
    if "audit_head" in session.info:
        session.info["committed_head"] = session.info["audit_head"]


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, _previous: object) -> None:
    """Rows rolled back are no head: the next row counts from the committed one."""
    if "audit_head" in session.info:
        session.info["audit_head"] = session.info.get("committed_head")
        if session.info["audit_head"] is None:
            del session.info["audit_head"]


def refuse_altered_pathway(ctx: StoreContext, session: Session, row: PathwayVersion) -> None:
    """Refuse a pathway version whose stored text or hash was changed in the database; the
    refusal is audited (once an hour per version: reading it again cannot flood the log) and
    committed before it is raised."""
    from datetime import timedelta

    from sqlmodel import select

    from models.errors import Refused
    from store.audit import append
    from store.tables import AuditEvent

    def audit(s: Session) -> None:
        detail = {"profile": row.profile, "version": row.version}
        recent = s.exec(select(AuditEvent.detail).where(
            AuditEvent.action == "refused-altered-pathway",
            AuditEvent.at >= ctx.now() - timedelta(hours=1))).all()
        if detail not in recent:
            append(s, ctx.now(), "svc.pathway", "refused-altered-pathway", None, detail,
                   ctx.audit_key)

    if session.info.get("writable"):
        audit(session)
        session.commit()
    else:
        with ctx.write() as writing:
            audit(writing)
    raise Refused(f"pathway {row.profile}@{row.version} was changed in the database outside "
                  "nim-pathway (its seal does not verify); nothing was done. Restore the case "
                  "store from a backup or ask an admin to check it (`audit verify`)")


def _writable(path: Path) -> None:
    """The checkpoint can be appended to: checked before a write starts, as a failure after
    the commit would leave a change without its checkpoint."""
    import os

    from models.errors import ConfigError
    from store.audit import CHECKPOINT_SETTING
    from store.files import open_private

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{CHECKPOINT_SETTING} {path} cannot be written ({exc.strerror}); "
                          "set NIM_AUDIT_CHECKPOINT to a file the service may append to. "
                          "Nothing was changed") from None
    fd, _ = open_private(path, os.O_WRONLY | os.O_APPEND, CHECKPOINT_SETTING)
    os.close(fd)
