"""Engine creation and schema-version checks."""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from attestd.db.failures import describe_failure
from attestd.errors import DatabaseNotReady


def async_url(url: str) -> str:
    """Map a configured ``sqlite:///`` or ``postgresql://`` URL to its async driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for other databases and in-memory SQLite."""
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            return Path(path) if path and path != ":memory:" else None
    return None


def create_engine(url: str) -> AsyncEngine:
    """An async engine for the configured URL; SQLite gets WAL and a busy timeout."""
    aurl = async_url(url)
    if aurl.startswith("sqlite+aiosqlite:///"):
        path = sqlite_path(url)
        if path is not None:
            private_sqlite_file(path)
        engine = create_async_engine(aurl, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(aurl, pool_size=10, max_overflow=10, pool_pre_ping=True)


def private_sqlite_file(path: Path) -> None:
    """Create the database file readable only by the node's user (SQLite copies its mode
    to the -wal and -shm files); tighten one left readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            with contextlib.suppress(OSError):  # not ours to change: leave it, still works
                os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run while a writer commits; NORMAL is durable across crashes of
    # the process (not of the OS) and much faster.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic config pointing at the packaged migrations and ``url``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("attestd").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def head_revision(url: str) -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def check_schema_current(engine: AsyncEngine, url: str) -> None:
    """Raise DatabaseNotReady unless the database is at the code's newest migration."""
    head = head_revision(url)

    def current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    try:
        async with engine.connect() as conn:
            rev = await conn.run_sync(current)
    except Exception as exc:  # connection refused, bad credentials, …
        raise DatabaseNotReady(describe_failure(exc)) from exc
    if rev is None:
        raise DatabaseNotReady("the database has no schema yet: run `attestd db upgrade` first")
    if rev != head:
        raise DatabaseNotReady(
            f"the database schema is at revision {rev}, the code needs {head}: "
            "run `attestd db upgrade` first"
        )
