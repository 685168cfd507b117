"""The review queue: images a human should look at (flagged, disputed, unreadable, and
images accepted before a classifier found them bad).

The bytes of a queued image are kept beside the queue, readable only by the node's user,
so a reviewer can see what was judged; they are deleted when the item is resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, union, update

from attestd.blobs import BlobStore
from attestd.db import schema as t
from attestd.db.store import Store, _insert_ignore
from attestd.model import as_utc, utcnow

# rescan: accepted under policy.on_unknown = accept_and_rescan, then judged bad: the image
# is already in storage and someone must act on it.
REVIEW_KINDS = ("flagged", "disputed", "unreadable", "rescan")
# Never rendered, even obscured, unless the admin opts in for that one image.
NEVER_SHOWN_LABELS = frozenset({"csam_suspect"})


# Own classifier verdicts a human should confirm (a confirmation becomes a human-review
# attestation, which peers weigh above a classifier's).
FLAGGED_LABELS = frozenset({"csam_suspect"})


def kind_for_verdict(label: str, decision: str, job_reason: str | None) -> str | None:
    """The review kind an own classifier verdict needs, or None: ``rescan`` when the image
    was accepted before it was judged bad, ``flagged`` for labels a human should confirm."""
    if job_reason == "accept_and_rescan" and decision == "reject":
        return "rescan"
    return "flagged" if label in FLAGGED_LABELS else None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    sha256: str
    kind: str
    reason: str
    created_at: datetime
    resolved_at: datetime | None
    label: str | None = None


class ReviewQueue:
    def __init__(self, store: Store, copies: BlobStore | None = None) -> None:
        self.store = store
        self.copies = copies

    async def add(self, sha256: str, kind: str, reason: str, *, label: str | None = None,
                  data: bytes | None = None) -> None:
        """Queue ``sha256`` for review, keeping ``data`` for the reviewer; an open item for
        it stays as it is, a resolved one opens again."""
        if data is not None and self.copies is not None:
            await asyncio.to_thread(self.copies.put, sha256, data)
        async with self.store.writing() as conn:
            await conn.execute(_insert_ignore(conn)(t.review_items).values(
                sha256=sha256, kind=kind, reason=reason[:1000], label=label,
                created_at=utcnow()).on_conflict_do_nothing())
            await conn.execute(update(t.review_items).where(
                (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_not(None))
                .values(kind=kind, reason=reason[:1000], label=label, created_at=utcnow(),
                        resolved_at=None))

    async def resolve(self, sha256: str) -> bool:
        """Close the item and delete the kept copy of its image."""
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.review_items).where(
                (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_(None))
                .values(resolved_at=utcnow()))
        if self.copies is not None:
            await asyncio.to_thread(self.copies.delete, sha256)
        return bool(res.rowcount)

    async def copy(self, sha256: str) -> bytes | None:
        """The kept bytes of a queued image, if any."""
        if self.copies is None:
            return None
        return await asyncio.to_thread(self.copies.get, sha256)

    def has_copy(self, sha256: str) -> bool:
        return self.copies is not None and self.copies.path(sha256).is_file()

    async def get(self, sha256: str) -> ReviewItem | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(t.review_items).where(
                t.review_items.c.sha256 == sha256))).first()
        return None if row is None else _item(row)

    async def items(self, kind: str | None = None, *, open_only: bool = True,
                    limit: int = 500) -> list[ReviewItem]:
        q = select(t.review_items).order_by(t.review_items.c.created_at).limit(limit)
        if kind:
            q = q.where(t.review_items.c.kind == kind)
        if open_only:
            q = q.where(t.review_items.c.resolved_at.is_(None))
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [_item(r) for r in rows]

    async def open_count(self) -> int:
        async with self.store.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.review_items).where(
                t.review_items.c.resolved_at.is_(None)))).scalar() or 0)

    async def never_shown(self, sha256: str) -> bool:
        """True if anything this node holds labels the image csam_suspect: its review item,
        its own verdicts, peers' attestations or hash lists."""
        return sha256 in await self.never_shown_of([sha256])

    async def never_shown_of(self, shas: Sequence[str]) -> set[str]:
        """Which of ``shas`` are never shown without an opt-in (see ``never_shown``); one
        query for a whole page of the queue."""
        if not shas:
            return set()
        labels = list(NEVER_SHOWN_LABELS)
        wanted = list(shas)
        q = union(*(select(table.c.sha256).where(table.c.sha256.in_(wanted),
                                                 table.c.label.in_(labels))
                    for table in (t.review_items, t.verdicts, t.attestations, t.hash_entries)))
        async with self.store.engine.connect() as conn:
            return {str(sha) for sha in (await conn.execute(q)).scalars()}


def _item(r: Row[Any]) -> ReviewItem:
    return ReviewItem(r.sha256, r.kind, r.reason, as_utc(r.created_at) or utcnow(),
                      as_utc(r.resolved_at), r.label)
