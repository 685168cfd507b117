"""The alert queue's table: each hit waiting to be told, until a message about it was
sent. A process holds its rows under a lease it renews; rows whose lease ran out (their
process was killed, or stopped before its channels answered) are adopted by the next
process that runs a notifier, so a hit is told late rather than never."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select, update
from uuid6 import uuid7

from attestd.alerts.message import AlertEvent
from attestd.db import schema as t
from attestd.db.store import Store
from attestd.model import utcnow

ADOPT_LIMIT = 10_000


class AlertQueue:
    def __init__(self, store: Store, *, lease_s: float = 120.0) -> None:
        self.store = store
        self.owner = str(uuid7())
        self.lease = timedelta(seconds=lease_s)

    async def add(self, event: AlertEvent) -> int:
        now = utcnow()
        async with self.store.writing() as conn:
            res = await conn.execute(t.alert_queue.insert().values(
                event=event.as_json(), owner=self.owner, lease_until=now + self.lease,
                created_at=now).returning(t.alert_queue.c.id))
            return int(res.scalar_one())

    async def renew(self) -> None:
        q = t.alert_queue
        async with self.store.writing() as conn:
            await conn.execute(update(q).where(q.c.owner == self.owner)
                               .values(lease_until=utcnow() + self.lease))

    async def adopt(self) -> list[tuple[int, AlertEvent]]:
        """Take over rows whose owner's lease ran out; oldest first."""
        q = t.alert_queue
        now = utcnow()
        async with self.store.writing() as conn:
            ids = [r.id for r in (await conn.execute(
                select(q.c.id).where(q.c.lease_until < now).order_by(q.c.id)
                .limit(ADOPT_LIMIT))).all()]
            if not ids:
                return []
            # Only rows still expired: another process may have adopted some meanwhile.
            await conn.execute(update(q).where(q.c.id.in_(ids), q.c.lease_until < now)
                               .values(owner=self.owner, lease_until=now + self.lease))
            rows = (await conn.execute(select(q.c.id, q.c.event).where(
                q.c.id.in_(ids), q.c.owner == self.owner).order_by(q.c.id))).all()
        return [(int(r.id), AlertEvent.from_json(dict(r.event))) for r in rows]

    async def done(self, refs: Sequence[int]) -> None:
        """The hits of a message that was sent (or given up on after its retries)."""
        q = t.alert_queue
        async with self.store.writing() as conn:
            for i in range(0, len(refs), 500):
                await conn.execute(delete(q).where(q.c.id.in_(list(refs[i:i + 500]))))
