"""Wake-ups across node processes: PostgreSQL's LISTEN/NOTIFY on a dedicated connection.

Several node processes share one PostgreSQL database: a verdict posted through one must
wake the check waiting on another, and a job queued by one the claimer long-polling on
another. On SQLite (one host, usually one process) there is no listener; waiters fall
back to a short poll of the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

VERDICT_CHANNEL = "attestd_verdict"  # payload: the image's sha256
JOB_CHANNEL = "attestd_job"

# How often a waiter re-reads the database when nothing wakes it: short without a
# listener (SQLite, or PostgreSQL while reconnecting), long as a safety net with one.
POLL_S_UNLISTENED = 0.25
POLL_S_LISTENING = 5.0


class Wakeups:
    """Sends and receives cross-process wake-ups; a no-op on SQLite."""

    def __init__(self, engine: AsyncEngine, *, reconnect_s: float = 1.0) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        self.reconnect_s = reconnect_s
        # Called with the sha256 whose verdict was stored, and when a job was queued; both
        # also after a reconnect (with None / once) since notifications may have been lost.
        self.on_verdict: Callable[[str | None], None] = lambda _sha: None
        self.on_job: Callable[[], None] = lambda: None
        self.listening = asyncio.Event()
        self.listening_poll_s = POLL_S_LISTENING
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    @property
    def poll_s(self) -> float:
        return self.listening_poll_s if self.listening.is_set() else POLL_S_UNLISTENED

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="wakeups-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def verdict_stored(self, sha256: str) -> None:
        await self._notify(VERDICT_CHANNEL, sha256)

    async def job_queued(self) -> None:
        await self._notify(JOB_CHANNEL, "")

    async def _notify(self, channel: str, payload: str) -> None:
        if not self.enabled:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})
        except Exception:  # waiters still poll; the write itself has committed
            log.warning("could not notify %s; other processes see it on their next poll",
                        channel, exc_info=True)

    def _dsn(self) -> str:
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def _listen(self) -> None:
        import asyncpg  # only with PostgreSQL

        while True:
            conn = None
            try:
                conn = await self._connect(asyncpg)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(VERDICT_CHANNEL, self._received)
                await conn.add_listener(JOB_CHANNEL, self._received)
                self._conn = conn
                self.listening.set()
                # Whatever was notified while we were not listening: everyone looks again.
                self.on_verdict(None)
                self.on_job()
                while not lost.is_set():
                    # A half-open TCP connection is only noticed when used.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10.0)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5.0)
                log.warning("wake-up listener connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wake-up listener: %s; polling every %g s until it reconnects",
                            exc, POLL_S_UNLISTENED)
            finally:
                self.listening.clear()
                self._conn = None
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            await asyncio.sleep(self.reconnect_s)

    async def _connect(self, asyncpg: Any) -> Any:
        # Cancelling asyncpg.connect half-way (a node stopping as it starts) leaves a
        # protocol whose failure nobody retrieves, logged as an error after the node's own
        # last line; so a connect under way is let finish, then closed.
        connecting = asyncio.ensure_future(asyncpg.connect(
            self._dsn(), server_settings={"application_name": "attestd-wakeups"}))
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                conn = await asyncio.wait_for(connecting, 5.0)
                await asyncio.wait_for(conn.close(), 2.0)
            raise

    def _received(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == VERDICT_CHANNEL:
            self.on_verdict(payload)
        else:
            self.on_job()
