"""Failed admin logins counted in the database, so every node process behind a load
balancer slows down the same guesses (the delays themselves: http/admin_auth.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import case, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attestd.db import schema as t
from attestd.db.rows import insert_ignore


class LoginFailures:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def read(self, keys: Sequence[str]) -> dict[str, tuple[int, float]]:
        """(failures, time of the last one) for each key that has any."""
        c = t.admin_login_failures.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(c.key, c.count, c.last_at)
                                       .where(c.key.in_(list(keys))))).all()
        return {str(r[0]): (int(r[1]), float(r[2])) for r in rows}

    async def add(self, keys: Sequence[str], now: float, forget_s: float) -> None:
        """One more failure for each key; a count idle for ``forget_s`` starts again at 1.
        One statement per key, so failures landing on two processes at once both count;
        counts idle for longer are dropped here rather than by a timer."""
        table = t.admin_login_failures
        async with self.engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.last_at < now - forget_s))
            for key in keys:
                stmt = insert_ignore(conn)(table).values(key=key, count=1, last_at=now)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={"count": case((table.c.last_at < now - forget_s, 1),
                                        else_=table.c.count + 1),
                          "last_at": now}))

    async def clear(self, keys: Sequence[str]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.admin_login_failures)
                               .where(t.admin_login_failures.c.key.in_(list(keys))))
