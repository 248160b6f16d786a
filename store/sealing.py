"""Identity and free text at rest: sealed under the case's data key, opened on load.

Names, dates of birth and addresses (`Child`, `Caregiver`), and what people type about a case
(handover notes, outcome notes and text fields, rationales, reasons, causes, a staged
referral) are written to the database as `nim1:<ref>:<base64 nonce + AES-GCM ciphertext>`,
with the case reference as associated data. The ORM seals them at flush and opens them when a
row is loaded, so commands and queries handle plain values; the database file, its backups
and whoever reads the tables without the site's secret key see ciphertext. `erase` destroys
the case's key (store/crypto.py): every sealed value of the case, in the live database and in
any backup, is unreadable from then on.

A session seals only with a `Sealer` in `session.info` (the store context puts one there);
writing identity without one is refused rather than stored in clear. Values written before
sealing existed (or by the benchmarks' bulk loaders) are read as they are and sealed the next
time they are written.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, attributes

from store.crypto import ERASED, _aead, case_key, typed_text
from store.keystore import Keystore
from store.tables import (
    Caregiver,
    Case,
    CaseAnchor,
    Child,
    CourtExtension,
    Decision,
    Intake,
    Placement,
    Task,
)
from store.views import TaskView

PREFIX = "nim1:"
# table -> columns sealed whole; Task.outcome's free-text keys and Intake.referral are below
SEALED_COLUMNS: dict[type, tuple[str, ...]] = {
    Child: ("given_name", "family_name", "date_of_birth", "address"),
    Caregiver: ("name",),
    Task: ("handover_note",),
    Decision: ("rationale",),
    Placement: ("reason",),
    CaseAnchor: ("cause",),
    CourtExtension: ("reason",),
}
DATE_COLUMNS = {(Child, "date_of_birth")}
TEXT_NAMES = {"handover_note": "the handover note", "rationale": "the rationale",
              "reason": "the reason", "cause": "the cause", "address": "the address"}



class SealingUnavailable(RuntimeError):
    """Identity was about to be written without the site's key."""


@dataclass
class Sealer:
    """The site's secret key and the case keys this session has opened."""

    secret_key: bytes = field(repr=False)
    now: datetime
    # a task's free-text outcome fields (`notes` and the `type: text` fields its pathway
    # declares), from the case's pathway id and the task's spec id
    text_fields: Callable[[Session, int, str], set[str]]
    keystore: Keystore | None = None
    _keys: dict[str, bytes | None] = field(default_factory=dict, repr=False)
    _cases: dict[int, tuple[str, int]] = field(default_factory=dict)

    def key(self, session: Session, ref: str, create: bool = False) -> bytes | None:
        if ref not in self._keys or (create and self._keys[ref] is None):
            self._keys[ref] = case_key(session, ref, self.secret_key,
                                       created_at=self.now if create else None, flush=False,
                                       keystore=self.keystore)
        return self._keys[ref]

    def case_of(self, session: Session, case_id: int) -> tuple[str, int]:
        """(reference, pathway id) of a case."""
        if case_id not in self._cases:
            with session.no_autoflush:
                row = session.execute(select(Case.ref, Case.pathway_id)
                                      .where(Case.id == case_id)).one()
            self._cases[case_id] = (row[0], row[1])
        return self._cases[case_id]

    def seal(self, session: Session, ref: str, value: object) -> str:
        text = value.isoformat() if isinstance(value, date) else json.dumps(value) \
            if isinstance(value, dict | list) else str(value)
        key = self.key(session, ref, create=True)
        if key is None:  # the case was erased: nothing typed about it is kept any more
            return ERASED
        nonce = os.urandom(12)
        blob = base64.b64encode(nonce + _aead(key).encrypt(nonce, text.encode(), ref.encode()))
        return f"{PREFIX}{ref}:{blob.decode()}"

    def open(self, session: Session, value: object) -> str | None:
        """The plain text of a sealed value; ERASED once its case's key is gone; anything
        not sealed as it is."""
        if not is_sealed(value):
            return value  # type: ignore[return-value]
        ref, blob = str(value)[len(PREFIX):].rsplit(":", 1)
        key = self.key(session, ref)
        if key is None:
            return ERASED
        raw = base64.b64decode(blob)
        return _aead(key).decrypt(raw[:12], raw[12:], ref.encode()).decode()


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealer_of(session: Session) -> Sealer | None:
    return session.info.get("sealer")


def _case_ref(session: Session, sealer: Sealer, obj: object) -> str:
    if isinstance(obj, Intake):
        return obj.handle  # a staged referral has its own key until the case opens
    return sealer.case_of(session, obj.case_id)[0]  # type: ignore[attr-defined]


def _outcome_text_keys(session: Session, sealer: Sealer, task: Task) -> set[str]:
    pathway_id = sealer.case_of(session, task.case_id)[1]
    return {k for k in sealer.text_fields(session, pathway_id, task.spec_id)
            if isinstance(task.outcome.get(k), str) and task.outcome[k]
            and task.outcome[k] != ERASED and not is_sealed(task.outcome[k])}


def _plain_values(session: Session, sealer: Sealer | None, obj: object) -> dict[str, object]:
    """The values of `obj` to seal, by attribute, as the code set them."""
    state = attributes.instance_state(obj)
    fresh = state.key is None
    out: dict[str, object] = {}
    for name in SEALED_COLUMNS.get(type(obj), ()):
        value = getattr(obj, name)
        changed = fresh or state.attrs[name].history.has_changes()
        if changed and value is not None and value != ERASED and not is_sealed(value):
            out[name] = value
    if isinstance(obj, Task) and obj.outcome and (fresh or state.attrs["outcome"]
                                                  .history.has_changes()):
        typed = _outcome_text_keys(session, sealer, obj) if sealer else \
            {"notes"} & {k for k, v in obj.outcome.items() if v and not is_sealed(v)}
        if typed:
            out["outcome"] = obj.outcome
    if isinstance(obj, Intake) and obj.referral and not obj.referral.get("erased") \
            and "sealed" not in obj.referral:
        out["referral"] = obj.referral
    return out


@event.listens_for(Session, "before_flush")
def _seal_before_flush(session: Session, _context: Any, _instances: Any) -> None:  # noqa: ANN401
    pending: list[tuple[object, str, object]] = []
    for obj in list(session.new) + list(session.dirty):
        if type(obj) not in SEALED_COLUMNS and not isinstance(obj, Intake):
            continue
        sealer = sealer_of(session)
        plain = _plain_values(session, sealer, obj)
        if not plain:
            continue
        if sealer is None:
            raise SealingUnavailable(
                f"{type(obj).__name__} holds identity or free text but this session has no "
                "key to seal it; write through the store context (StoreContext.write)")
        ref = _case_ref(session, sealer, obj)
        for name, value in plain.items():
            if name == "outcome":
                typed = _outcome_text_keys(session, sealer, obj)  # type: ignore[arg-type]
                for k in typed:
                    typed_text(f"the outcome's {k}", value[k])
                sealed: object = {k: (sealer.seal(session, ref, v) if k in typed else v)
                                  for k, v in value.items()}
            elif name == "referral":
                sealed = {"sealed": sealer.seal(session, ref, value)}
            else:
                if isinstance(value, str):
                    typed_text(TEXT_NAMES.get(name, name.replace("_", " ")), value)
                sealed = sealer.seal(session, ref, value)
            setattr(obj, name, sealed)
            pending.append((obj, name, value))
    session.info.setdefault("sealed_plain", []).extend(pending)


@event.listens_for(Session, "after_flush_postexec")
def _plain_after_flush(session: Session, _context: Any) -> None:  # noqa: ANN401
    """Give the code back the values it set (the database keeps the sealed ones)."""
    for obj, name, value in session.info.pop("sealed_plain", []):
        attributes.set_committed_value(obj, name, value)


def _open_on_load(target: object, context: Any, *_: Any) -> None:  # noqa: ANN401
    session = context.session
    sealer = sealer_of(session) if session is not None else None
    if sealer is None:
        return  # read without the key: sealed values stay sealed
    opened = open_row(session, sealer, target)
    for name, value in opened.items():
        attributes.set_committed_value(target, name, value)


def open_row(session: Session, sealer: Sealer, obj: object) -> dict[str, object]:
    """Plain values for `obj`'s sealed attributes (only those that were sealed)."""
    out: dict[str, object] = {}
    state = attributes.instance_state(obj)
    for name in SEALED_COLUMNS.get(type(obj), ()):
        value = state.dict.get(name)
        if is_sealed(value):
            plain = sealer.open(session, value)
            if (type(obj), name) in DATE_COLUMNS:
                plain = None if plain == ERASED else date.fromisoformat(plain)
            out[name] = plain
        elif (type(obj), name) in DATE_COLUMNS and isinstance(value, str):
            # written before sealing (ISO text), or after the case's key was destroyed
            out[name] = None if value == ERASED else date.fromisoformat(value)
    if isinstance(obj, Task) and isinstance(state.dict.get("outcome"), dict):
        outcome = state.dict["outcome"]
        if any(is_sealed(v) for v in outcome.values()):
            out["outcome"] = open_outcome(session, sealer, outcome)
    if isinstance(obj, Intake) and isinstance(state.dict.get("referral"), dict) \
            and "sealed" in state.dict["referral"]:
        text = sealer.open(session, state.dict["referral"]["sealed"])
        out["referral"] = {"erased": True} if text == ERASED else json.loads(text)
    return out


def open_outcome(session: Session, sealer: Sealer, outcome: dict) -> dict:
    return {k: sealer.open(session, v) for k, v in outcome.items()}


for _table in (*SEALED_COLUMNS, Intake):
    event.listen(_table, "load", _open_on_load)
    event.listen(_table, "refresh", _open_on_load)


def open_task_view(session: Session, sealer: Sealer | None, view: TaskView) -> TaskView:
    """A work-queue row (read without the ORM) with its note and typed outcome opened."""
    if sealer is None or not (is_sealed(view.handover_note)
                              or any(is_sealed(v) for v in (view.outcome or {}).values())):
        return view
    return replace(view, handover_note=sealer.open(session, view.handover_note),
                   outcome=open_outcome(session, sealer, view.outcome)
                   if view.outcome else view.outcome)
