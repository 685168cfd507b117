"""The review queue: images a human should look at (flagged, disputed, unreadable, and
images accepted before a classifier found them bad).

The bytes of a queued image are kept beside the queue, readable only by the node's user,
so a reviewer can see what was judged; they are deleted when the item is resolved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, delete, func, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.blobs import Blobs
from attestd.config import ReviewConfig
from attestd.db import schema as t
from attestd.db.store import Store, _insert_ignore
from attestd.logs import REPEAT_KEY
from attestd.model import as_utc, utcnow

log = logging.getLogger(__name__)

# rescan: accepted under policy.on_unknown = accept_and_rescan, then judged bad: the image
# is already in storage and someone must act on it. failed: no worker could classify it.
REVIEW_KINDS = ("flagged", "disputed", "unreadable", "rescan", "failed")
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
    def __init__(self, store: Store, copies: Blobs | None = None,
                 limits: ReviewConfig | None = None,
                 on_not_kept: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.copies = copies
        # Bounds on unreadable uploads; None (tools, tests) keeps every one.
        self.limits = limits
        self.on_not_kept = on_not_kept

    async def add(self, sha256: str, kind: str, reason: str, *, label: str | None = None,
                  data: bytes | None = None, caller: str | None = None) -> bool:
        """Queue ``sha256`` for review, keeping ``data`` for the reviewer; an open item for
        it stays as it is, a resolved one opens again. False if an unreadable upload was
        not queued because the queue holds as many as ``limits`` allow."""
        if kind == "unreadable" and self.limits is not None:
            return await self._add_unreadable(sha256, reason[:1000], data, caller)
        if data is not None:
            await self.keep_copy(sha256, data)
        async with self.store.writing() as conn:
            await self.add_in(conn, sha256, kind, reason, label=label)
        return True

    async def keep_copy(self, sha256: str, data: bytes) -> None:
        """Keep the bytes a reviewer will see, ahead of the transaction that queues the
        item (a rolled-back one leaves a copy its retry puts again)."""
        if self.copies is not None:
            await self.copies.put(sha256, data)

    async def add_in(self, conn: AsyncConnection, sha256: str, kind: str, reason: str, *,
                     label: str | None = None) -> None:
        """Queue the item inside the caller's transaction (not for unreadable uploads,
        whose caps ``add`` checks); its copy is kept by ``keep_copy`` before."""
        await conn.execute(_insert_ignore(conn)(t.review_items).values(
            sha256=sha256, kind=kind, reason=reason[:1000], label=label,
            created_at=utcnow()).on_conflict_do_nothing())
        await conn.execute(update(t.review_items).where(
            (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_not(None))
            .values(kind=kind, reason=reason[:1000], label=label, created_at=utcnow(),
                    resolved_at=None))

    async def _add_unreadable(self, sha256: str, reason: str, data: bytes | None,
                              caller: str | None) -> bool:
        # Anyone allowed to upload can send bytes no decoder reads, as fast as they like:
        # what they may leave here is bounded, and the check and the insert are one
        # transaction so concurrent uploads cannot both take the last place.
        assert self.limits is not None
        c = t.review_items.c
        async with self.store.writing() as conn:
            row = (await conn.execute(select(c.resolved_at).where(c.sha256 == sha256))).first()
            if row is not None and row.resolved_at is None:
                return True  # already queued: these bytes are waiting for a reviewer
            why = await self._full(conn, reason, caller)
            if why is not None:
                self._not_kept(why, caller)
                return False
            size = len(data) if data is not None and self.copies is not None else 0
            if size and await self._kept_bytes(conn) + size > self.limits.unreadable_max_bytes:
                self._not_kept("copy", caller)
                size = 0
            values = dict(kind="unreadable", reason=reason, label=None, created_at=utcnow(),
                          resolved_at=None, caller=caller[:100] if caller else None,
                          copy_bytes=size or None)
            if row is None:
                await conn.execute(t.review_items.insert().values(sha256=sha256, **values))
            else:
                await conn.execute(update(t.review_items).where(c.sha256 == sha256)
                                   .values(**values))
        if size and data is not None and self.copies is not None:
            await self.copies.put(sha256, data)
        return True

    async def _full(self, conn: AsyncConnection, reason: str, caller: str | None) -> str | None:
        """Which unreadable cap a new item would break, or None."""
        assert self.limits is not None
        c = t.review_items.c
        row = (await conn.execute(select(
            func.count(),
            func.coalesce(func.sum(case((c.caller == caller, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.reason == reason, 1), else_=0)), 0))
            .where((c.kind == "unreadable") & c.resolved_at.is_(None)))).one()
        total, by_caller, by_reason = (int(v or 0) for v in row)
        if total >= self.limits.unreadable_max_items:
            return "items"
        if caller is not None and by_caller >= self.limits.unreadable_max_per_caller:
            return "caller"
        if by_reason >= self.limits.unreadable_max_per_reason:
            return "reason"
        return None

    async def _kept_bytes(self, conn: AsyncConnection) -> int:
        c = t.review_items.c
        return int((await conn.execute(select(func.coalesce(func.sum(c.copy_bytes), 0)).where(
            (c.kind == "unreadable") & c.resolved_at.is_(None)))).scalar() or 0)

    def _not_kept(self, why: str, caller: str | None) -> None:
        if self.on_not_kept is not None:
            self.on_not_kept(why)
        assert self.limits is not None
        what = {
            "items": f"{self.limits.unreadable_max_items} are open "
                     "(review.unreadable_max_items)",
            "caller": f"{self.limits.unreadable_max_per_caller} from {caller} are open "
                      "(review.unreadable_max_per_caller)",
            "reason": f"{self.limits.unreadable_max_per_reason} with the same reason are "
                      "open (review.unreadable_max_per_reason)",
            "copy": f"copies of open ones hold {self.limits.unreadable_max_bytes} bytes "
                    "(review.unreadable_max_bytes); queued without its copy",
        }[why]
        log.warning("not keeping an unreadable upload for review: %s; the upload was "
                    "refused and audited as usual", what, extra={REPEAT_KEY: f"review:{why}"})

    async def expire_unreadable(self, older_than: timedelta) -> int:
        """Drop open unreadable items queued longer than ``older_than`` ago, with their
        copies; returns how many."""
        c = t.review_items.c
        stale = (c.kind == "unreadable") & c.resolved_at.is_(None) & (
            c.created_at <= utcnow() - older_than)
        async with self.store.writing() as conn:
            shas = [str(s) for s in (await conn.execute(select(c.sha256).where(stale))).scalars()]
            if shas:
                await conn.execute(delete(t.review_items).where(stale & c.sha256.in_(shas)))
        if self.copies is not None:
            for sha in shas:
                await self.copies.delete(sha)
        return len(shas)

    async def resolve(self, sha256: str) -> bool:
        """Close the item and delete the kept copy of its image."""
        async with self.store.writing() as conn:
            resolved = await self.resolve_in(conn, sha256)
        await self.drop_copy(sha256)
        return resolved

    async def resolve_in(self, conn: AsyncConnection, sha256: str) -> bool:
        """Close the item inside the caller's transaction; ``drop_copy`` once it committed."""
        res = await conn.execute(update(t.review_items).where(
            (t.review_items.c.sha256 == sha256) & t.review_items.c.resolved_at.is_(None))
            .values(resolved_at=utcnow()))
        return bool(res.rowcount)

    async def drop_copy(self, sha256: str) -> None:
        """Delete the kept copy of a resolved item's image."""
        if self.copies is not None:
            await self.copies.delete(sha256)

    async def copy(self, sha256: str) -> bytes | None:
        """The kept bytes of a queued image, if any."""
        if self.copies is None:
            return None
        return await self.copies.get(sha256)

    async def has_copy(self, sha256: str) -> bool:
        return self.copies is not None and await self.copies.has(sha256)

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


async def expire_loop(review: ReviewQueue, older_than: timedelta,
                      interval_s: float = 3600.0) -> None:
    """``expire_unreadable`` every ``interval_s``, until cancelled."""
    while True:
        try:
            if n := await review.expire_unreadable(older_than):
                log.info("dropped %d unreadable review items older than %s", n, older_than)
        except Exception:  # the database may be briefly unreachable; try again later
            log.exception("could not expire unreadable review items")
        await asyncio.sleep(interval_s)


def _item(r: Row[Any]) -> ReviewItem:
    return ReviewItem(r.sha256, r.kind, r.reason, as_utc(r.created_at) or utcnow(),
                      as_utc(r.resolved_at), r.label)
