"""Database engine, sessions and migrations for the case store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from store.files import private_sqlite
from store.worklist import MIGRATIONS_DIR, at_head


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the single writer
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA secure_delete=ON")  # erased identity is overwritten, not left in pages
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        private_sqlite(url)  # 0600 before SQLite makes it: its -wal/-shm take the file's mode
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        # writers take the lock at BEGIN so two of them queue instead of failing mid-way;
        # read-only sessions begin deferred and read a snapshot without blocking anyone
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(
            "BEGIN" if conn.get_execution_options().get("nim_read_only") else "BEGIN IMMEDIATE"))

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.isolation_level = None

        return engine
    # never SQL parameters (names, dates of birth) in an error message or a log
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def alembic_config(url: str):  # noqa: ANN201 - alembic type imported lazily
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("sqlalchemy.hide_parameters", "true")
    return cfg


def migrate(url: str) -> None:
    """Bring the case store schema to the newest migration (idempotent, cheap when current)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with get_engine(url).connect() as conn:
            if at_head(conn.connection.driver_connection):
                return
    except DBAPIError:
        pass  # not reachable now: Alembic below says why
    from alembic import command

    command.upgrade(alembic_config(url), "head")


@contextmanager
def session_scope(url: str, read_only: bool = False) -> Iterator[Session]:
    """One transaction: committed if the block succeeds, rolled back whole if not."""
    engine = get_engine(url)
    if read_only:
        engine = engine.execution_options(nim_read_only=True)
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
