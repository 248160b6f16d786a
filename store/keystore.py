"""The key store: per-case data keys kept apart from the case store and its backups.

The case store's `case_key` row names a key here (`ks:<random id>`); the key itself, wrapped
under the site's secret key, lives only in this database (NIM_KEYSTORE_URL; by default
`keys.db` in the data folder, 0600, SQLite with secure_delete). Erasing a case deletes its
key here, so the identity and free text sealed under it are unreadable in the live case store
and in every backup of it. Back the key store up on its own, and keep those backups no longer
than the time within which an erasure must take effect (README, "Privacy").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from models.errors import ConfigError
from store.db import get_engine

_META = MetaData()
KEYS = Table("data_key", _META,
             Column("id", String(64), primary_key=True),
             Column("wrapped", String(200), nullable=False),
             Column("created_at", DateTime(timezone=True), nullable=False))


class Keystore:
    def __init__(self, url: str) -> None:
        self.url = url  # connected on first use: most commands never open a key

    def put(self, key_id: str, wrapped: str, at: datetime) -> None:
        """Store a new key, committed at once (an unused key left by a rolled-back case
        opens nothing)."""
        with self._reach(), _engine(self.url).begin() as conn:
            conn.execute(insert(KEYS).values(id=key_id, wrapped=wrapped, created_at=at))

    def get(self, key_id: str) -> str | None:
        with self._reach(), _engine(self.url).execution_options(
                nim_read_only=True).connect() as conn:
            return conn.execute(select(KEYS.c.wrapped).where(KEYS.c.id == key_id)).scalar()

    def destroy(self, key_id: str) -> bool:
        """Forget a key for good: its row overwritten, then deleted, then the free space and
        the log purged, so no copy of the wrapped key is left in the key store's files (on
        SQLite: the database and its -wal; on PostgreSQL: the table, rewritten). A backup of
        the key store taken before keeps it until that backup expires (SECURITY.md)."""
        engine = _engine(self.url)
        with self._reach():
            with engine.begin() as conn:
                conn.execute(update(KEYS).where(KEYS.c.id == key_id)
                             .values(wrapped="0" * 64))  # the old value's page is rewritten
                found = conn.execute(delete(KEYS).where(KEYS.c.id == key_id)).rowcount > 0
            purge(engine)
        return found

    @contextmanager
    def _reach(self) -> Iterator[None]:
        """A key store that cannot be reached is named as such (never as the case store)."""
        try:
            yield
        except (DBAPIError, OSError) as exc:
            from models.redaction import mask_url

            raise ConfigError(
                f"the key store at {mask_url(self.url)} is unavailable "
                f"({type(getattr(exc, 'orig', exc)).__name__}). Check NIM_KEYSTORE_URL and that "
                "its database is running; nothing was changed.") from None


def purge(engine: Engine, table: str = KEYS.name) -> None:
    """Leave no deleted row behind: on SQLite (secure_delete zeroes freed cells) the WAL is
    checkpointed into the database and truncated to nothing; on PostgreSQL the table is
    rewritten (VACUUM FULL), so dead row versions are gone from its files."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside any transaction: a checkpoint needs that
        try:
            busy = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.close()
        if busy and busy[0]:
            raise OSError("the store's log could not be truncated (a reader holds it)")
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM FULL {table}")


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    """The case store's engine settings (SQLite: 0600, secure_delete, one writer), with the
    key table made on first use."""
    engine = get_engine(url)
    _META.create_all(engine)
    return engine
