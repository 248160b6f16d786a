"""Per-case data keys, for crypto-shredding what people type.

Each case gets its own AES-256-GCM key, stored wrapped (encrypted) under a master key derived
from the secret key held outside the database (NIM_SECRET_KEY_FILE), in the key store
(store/keystore.py), a database apart from the case store and its backups. Free text that must stay
in the append-only audit log (why a date moved, why a child left, a decision's rationale) is
written there as ciphertext under the case's key. Erasing a case destroys its key: every such
value, in the live database and in every backup taken before, becomes unreadable at once,
while the audit chain (which covers the ciphertext) still verifies.
"""

from __future__ import annotations

import base64
import os
import uuid
from datetime import datetime

from sqlmodel import Session, select

from store.keystore import Keystore
from store.tables import CaseKey

# keys in audit details whose values people type (or that embed what they typed)
FREE_TEXT_KEYS = frozenset({"reason", "cause", "note", "notes", "rationale", "why", "text"})
ERASED = "[erased]"


def master_key(secret_key: bytes) -> bytes:
    """The key-wrapping key: HKDF of the site's secret key, for this purpose only."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"nim-pathway case data keys v1").derive(secret_key)


def _aead(key: bytes):  # noqa: ANN202 - cryptography imported late (CLI start-up)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def case_key(session: Session, ref: str, secret_key: bytes,
             created_at: datetime | None = None, flush: bool = True,
             keystore: Keystore | None = None) -> bytes | None:
    """The case's data key (made on first use when `created_at` is given); None once the
    case was erased. With a key store the key lives there and the case store keeps only its
    id (`ks:<id>`); `flush=False` inside a flush (the new row is written with it)."""
    row = session.exec(select(CaseKey).where(CaseKey.case_ref == ref)).first()
    wrap = _aead(master_key(secret_key))
    if row is None:
        if created_at is None:
            return None
        key, nonce = os.urandom(32), os.urandom(12)
        if keystore is not None:
            key_id = uuid.uuid4().hex
            keystore.put(key_id, _b64(nonce + wrap.encrypt(nonce, key, key_id.encode())),
                         created_at)
            wrapped = f"ks:{key_id}"
        else:
            wrapped = _b64(nonce + wrap.encrypt(nonce, key, ref.encode()))
        session.add(CaseKey(case_ref=ref, wrapped=wrapped, created_at=created_at))
        if flush:
            session.flush()
        return key
    if row.wrapped is None:
        return None
    if row.wrapped.startswith("ks:"):
        key_id = row.wrapped[3:]
        if keystore is None:
            raise RuntimeError(f"the key of {ref} is in the key store, which is not configured")
        stored = keystore.get(key_id)
        if stored is None:  # destroyed in the key store: erased
            return None
        raw = base64.b64decode(stored)
        return wrap.decrypt(raw[:12], raw[12:], key_id.encode())
    raw = base64.b64decode(row.wrapped)  # a key kept in the case store (before the key store)
    return wrap.decrypt(raw[:12], raw[12:], ref.encode())


def seal_text(key: bytes, ref: str, text: str) -> dict[str, str]:
    nonce = os.urandom(12)
    return {"enc": "v1:" + _b64(nonce + _aead(key).encrypt(nonce, text.encode(), ref.encode()))}


def open_text(session: Session, ref: str, secret_key: bytes, value: object,
              keystore: Keystore | None = None) -> object:
    """A value as typed, if it was sealed and the case's key still exists; ERASED after."""
    if not (isinstance(value, dict) and str(value.get("enc", "")).startswith("v1:")):
        return value
    key = case_key(session, ref, secret_key, keystore=keystore)
    if key is None:
        return ERASED
    raw = base64.b64decode(value["enc"][3:])
    return _aead(key).decrypt(raw[:12], raw[12:], ref.encode()).decode()


def seal_free_text(session: Session, ref: str | None, secret_key: bytes, detail: dict,
                   now: datetime, keystore: Keystore | None = None) -> dict:
    """`detail` with every free-text value sealed under the case's key (case rows only)."""
    if ref is None or not secret_key:
        return detail
    typed = {k for k, v in detail.items() if k in FREE_TEXT_KEYS and isinstance(v, str) and v}
    if not typed:
        return detail
    for k in typed:
        typed_text(f"the {k}", detail[k])
    key = case_key(session, ref, secret_key, created_at=now, keystore=keystore)
    if key is None:  # erased: nothing typed about the case is kept any more
        return {k: (ERASED if k in typed else v) for k, v in detail.items()}
    return {k: (seal_text(key, ref, v) if k in typed else v) for k, v in detail.items()}


def destroy_case_key(session: Session, ref: str, at: datetime,
                     keystore: Keystore | None = None) -> bool:
    """Crypto-shred: forget the case's key (deleted from the key store at once, before the
    case store commits: a failed commit leaves the case unreadable, never readable). True if
    there was one."""
    row = session.exec(select(CaseKey).where(CaseKey.case_ref == ref)).first()
    if row is None or row.wrapped is None:
        return False
    if row.wrapped.startswith("ks:") and keystore is not None:
        keystore.destroy(row.wrapped[3:])
    row.wrapped, row.destroyed_at = None, at
    session.add(row)
    return True


def typed_text(what: str, value: str) -> str:
    """What someone typed, within the bounds free text keeps (models.schemas.check_free_text:
    length, no control or right-to-left override characters), or Invalid saying which."""
    from models.errors import Invalid
    from models.schemas import check_free_text

    try:
        return check_free_text(what, value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
