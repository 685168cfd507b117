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
from urllib.parse import quote

from sqlalchemy import Row, case, delete, func, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.blobs import Blobs
from attestd.config import ReviewConfig
from attestd.db import schema as t
from attestd.db.rows import insert_ignore
from attestd.db.store import Store
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


# Aliases kept per item (a pict-rs image rarely has more than a few).
MAX_ALIASES = 20


@dataclass(frozen=True, slots=True)
class ReviewItem:
    sha256: str
    kind: str
    reason: str
    created_at: datetime
    resolved_at: datetime | None
    label: str | None = None
    # pict-rs aliases a sweep found the image under; why no copy is kept, when none is.
    aliases: tuple[str, ...] = ()
    copy_note: str | None = None


def lemmy_image_url(base_url: str, alias: str) -> str:
    """Where Lemmy serves the pict-rs image ``alias`` (through its /pictrs proxy)."""
    return f"{base_url.rstrip('/')}/pictrs/image/{quote(alias, safe='')}"


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
                  data: bytes | None = None, caller: str | None = None,
                  aliases: Sequence[str] = (), copy_note: str | None = None) -> bool:
        """Queue ``sha256`` for review, keeping ``data`` for the reviewer (within the
        ``limits``); an open item for it stays as it is (gaining ``aliases``, and a copy
        if it had none), a resolved one opens again. ``copy_note`` says why no ``data``
        came. False if an unreadable upload was not queued because the queue holds as
        many as ``limits`` allow."""
        if kind == "unreadable" and self.limits is not None:
            return await self._add_unreadable(sha256, reason[:1000], data, caller)
        if data is not None:
            # Before the transaction: a rolled-back one leaves a copy its retry puts again.
            await self.keep_copy(sha256, data)
        async with self.store.writing() as conn:
            kept = await self.add_in(conn, sha256, kind, reason, label=label,
                                     size=None if data is None else len(data),
                                     aliases=aliases, copy_note=copy_note)
        if data is not None and not kept:
            await self.drop_copy(sha256)  # no room for it (the item says so)
        return True

    async def keep_copy(self, sha256: str, data: bytes) -> None:
        """Keep the bytes a reviewer will see, ahead of the transaction that queues the
        item (``add_in`` with their ``size`` accounts for them, or says why not)."""
        if self.copies is not None:
            await self.copies.put(sha256, data)

    async def add_in(self, conn: AsyncConnection, sha256: str, kind: str, reason: str, *,
                     label: str | None = None, size: int | None = None,
                     aliases: Sequence[str] = (), copy_note: str | None = None) -> bool:
        """Queue the item inside the caller's transaction (not for unreadable uploads,
        whose caps ``add`` checks). ``size``: the bytes of a copy kept by ``keep_copy``
        before. True when the item holds a copy (this one, or one it had); False means a
        copy just kept is to be dropped once this commits (no room: the item says so)."""
        c = t.review_items.c
        note = copy_note[:300] if size is None and copy_note else None
        await conn.execute(insert_ignore(conn)(t.review_items).values(
            sha256=sha256, kind=kind, reason=reason[:1000], label=label,
            created_at=utcnow(), copy_note=note).on_conflict_do_nothing())
        row = (await conn.execute(select(c.resolved_at, c.copy_bytes, c.aliases, c.copy_note)
                                  .where(c.sha256 == sha256))).one()
        reopen = row.resolved_at is not None
        kept = bool(row.copy_bytes) and not reopen
        values: dict[str, Any] = {}
        if reopen:
            values = dict(kind=kind, reason=reason[:1000], label=label, created_at=utcnow(),
                          resolved_at=None, copy_bytes=None, copy_note=note)
        known = () if reopen else _aliases(row.aliases)
        merged = tuple(dict.fromkeys([*known, *aliases]))[:MAX_ALIASES]
        if merged != known:
            values["aliases"] = list(merged)
        if size is not None and self.copies is not None and (reopen or not row.copy_bytes):
            why = await self._no_room(conn, size)
            if why is None:
                values.update(copy_bytes=size, copy_note=None)
                kept = True
            else:
                values["copy_note"] = why
        elif note is not None and not reopen and not row.copy_bytes:
            values["copy_note"] = note
        if values:
            await conn.execute(update(t.review_items).where(c.sha256 == sha256)
                               .values(**values))
        return kept

    async def copy_fits(self, sha256: str, size: int | None) -> bool:
        """Whether a copy of ``size`` bytes (unknown: None) would be kept for the open
        or new item of ``sha256``, which has none yet: for a caller that would have to
        download the bytes first."""
        if self.copies is None:
            return False
        c = t.review_items.c
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(c.resolved_at, c.copy_bytes)
                                      .where(c.sha256 == sha256))).first()
            if row is not None and row.resolved_at is None and row.copy_bytes:
                return False  # already kept
            return await self._no_room(conn, size or 0) is None

    async def _no_room(self, conn: AsyncConnection, size: int) -> str | None:
        """Why a copy of ``size`` bytes of a readable image is not kept, or None."""
        if self.limits is None:
            return None
        c = t.review_items.c
        kept = int((await conn.execute(select(func.coalesce(func.sum(c.copy_bytes), 0)).where(
            (c.kind != "unreadable") & c.resolved_at.is_(None)))).scalar() or 0)
        if kept + size <= self.limits.copy_max_bytes:
            return None
        log.warning("queued an image for review without its copy: copies of open items hold "
                    "%d of review.copy_max_bytes = %d bytes", kept, self.limits.copy_max_bytes,
                    extra={REPEAT_KEY: "review:copy_max_bytes"})
        return (f"not kept: copies of open items already hold {kept} of "
                f"review.copy_max_bytes = {self.limits.copy_max_bytes} bytes")

    async def expire_copies(self, older_than: timedelta) -> int:
        """Drop the copies (not the items) of open readable items queued longer than
        ``older_than`` ago; returns how many."""
        c = t.review_items.c
        stale = (c.kind != "unreadable") & c.resolved_at.is_(None) & c.copy_bytes.is_not(None) & (
            c.created_at <= utcnow() - older_than)
        days = older_than.total_seconds() / 86400
        async with self.store.writing() as conn:
            shas = [str(s) for s in (await conn.execute(select(c.sha256).where(stale))).scalars()]
            if shas:
                await conn.execute(update(t.review_items).where(stale & c.sha256.in_(shas))
                                   .values(copy_bytes=None, copy_note=(
                                       f"dropped after {days:g} days (review.copy_expire_days)")))
        if self.copies is not None:
            for sha in shas:
                await self.copies.delete(sha)
        return len(shas)

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
            note = None
            if size and await self._kept_bytes(conn) + size > self.limits.unreadable_max_bytes:
                self._not_kept("copy", caller)
                size = 0
                note = (f"not kept: copies of open unreadable items hold review."
                        f"unreadable_max_bytes = {self.limits.unreadable_max_bytes} bytes")
            values = dict(kind="unreadable", reason=reason, label=None, created_at=utcnow(),
                          resolved_at=None, caller=caller[:100] if caller else None,
                          copy_bytes=size or None, copy_note=note)
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
    """``expire_unreadable`` (and ``expire_copies`` after ``review.copy_expire_days``)
    every ``interval_s``, until cancelled."""
    while True:
        try:
            if n := await review.expire_unreadable(older_than):
                log.info("dropped %d unreadable review items older than %s", n, older_than)
            if review.limits is not None:
                copies = timedelta(days=review.limits.copy_expire_days)
                if n := await review.expire_copies(copies):
                    log.info("dropped the copies of %d review items older than %s", n, copies)
        except Exception:  # the database may be briefly unreachable; try again later
            log.exception("could not expire review items")
        await asyncio.sleep(interval_s)


def _aliases(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(a for a in value if isinstance(a, str))


def _item(r: Row[Any]) -> ReviewItem:
    return ReviewItem(r.sha256, r.kind, r.reason, as_utc(r.created_at) or utcnow(),
                      as_utc(r.resolved_at), r.label, _aliases(r.aliases), r.copy_note)
