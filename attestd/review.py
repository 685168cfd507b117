"""The review queue: images a human should look at (flagged, disputed, unreadable)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from attestd.db import schema as t
from attestd.db.store import Store, _insert_ignore
from attestd.model import as_utc, utcnow

REVIEW_KINDS = ("flagged", "disputed", "unreadable")


@dataclass(frozen=True, slots=True)
class ReviewItem:
    sha256: str
    kind: str
    reason: str
    created_at: datetime
    resolved_at: datetime | None


class ReviewQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, sha256: str, kind: str, reason: str) -> None:
        """Queue ``sha256`` for review; an open item for it stays as it is, a resolved one
        opens again."""
        async with self.store.writing() as conn:
            await conn.execute(_insert_ignore(conn)(t.review_items).values(
                sha256=sha256, kind=kind, reason=reason[:1000], created_at=utcnow())
                .on_conflict_do_nothing())
            await conn.execute(update(t.review_items).where(
                (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_not(None))
                .values(kind=kind, reason=reason[:1000], created_at=utcnow(), resolved_at=None))

    async def resolve(self, sha256: str) -> bool:
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.review_items).where(
                (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_(None))
                .values(resolved_at=utcnow()))
        return bool(res.rowcount)

    async def items(self, kind: str | None = None, *, open_only: bool = True,
                    limit: int = 500) -> list[ReviewItem]:
        q = select(t.review_items).order_by(t.review_items.c.created_at).limit(limit)
        if kind:
            q = q.where(t.review_items.c.kind == kind)
        if open_only:
            q = q.where(t.review_items.c.resolved_at.is_(None))
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [ReviewItem(r.sha256, r.kind, r.reason, as_utc(r.created_at) or utcnow(),
                           as_utc(r.resolved_at)) for r in rows]
