"""The node's storage, behind narrow methods that take and return plain dataclasses.

One SQLAlchemy implementation serves SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attestd.db import schema as t
from attestd.db.rows import audit_row as _audit_row
from attestd.db.rows import insert_ignore as _insert_ignore
from attestd.model import (
    INDEXED_LABELS,
    AuditEntry,
    HashEntry,
    Lookup,
    Override,
    Verdict,
    as_utc,
    utcnow,
)
from attestd.sanitise import clean_json, clean_text
from attestd.trust import COUNTED, PeerClaim, claim_live
from scanner import FrameHashes, ImageHashes


class Store:
    """Reads and writes the node's tables."""

    def __init__(self, engine: AsyncEngine, *, cache_size: int = 100_000) -> None:
        self.engine = engine
        # An image's hashes never change once computed, so they are cached freely.
        self._hash_cache: OrderedDict[str, ImageHashes] = OrderedDict()
        # Overrides and verdicts do change: cached look-ups are dropped by this process's
        # writes at once, and by other processes' writes when a ChangeFollower sees them.
        self._lookups: OrderedDict[str, Lookup] = OrderedDict()
        self._cache_size = cache_size
        # SQLite allows one writer; queueing writers here instead of in SQLite's busy
        # handler (which sleeps up to 100 ms between tries) keeps tail latency low.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    # -- images ---------------------------------------------------------------------------

    async def lookup(self, sha256: str) -> Lookup:
        """The stored hashes, override and newest live verdict for ``sha256``."""
        cached = self._lookups.get(sha256)
        if cached is not None:
            self._lookups.move_to_end(sha256)
            if cached.hashes is None and sha256 in self._hash_cache:
                cached = dataclasses.replace(cached, hashes=self._hash_cache[sha256])
            return cached
        found = await self._query_lookup(sha256)
        _put(self._lookups, sha256, found, self._cache_size)
        return found

    def forget(self, sha256: str) -> None:
        """Drop what is cached about ``sha256``'s judgements (it changed)."""
        self._lookups.pop(sha256, None)

    def forget_all(self) -> None:
        self._lookups.clear()

    async def _query_lookup(self, sha256: str) -> Lookup:
        # One round trip for the common case (a new image: nothing found anywhere).
        ov_id = select(t.overrides.c.id).where(t.overrides.c.sha256 == sha256).scalar_subquery()
        v_id = (select(t.verdicts.c.id)
                .where(and_(t.verdicts.c.sha256 == sha256, t.verdicts.c.retracted_at.is_(None)))
                .order_by(t.verdicts.c.id.desc()).limit(1).scalar_subquery())
        img = select(t.images.c.sha256).where(t.images.c.sha256 == sha256).scalar_subquery()
        att = (select(t.attestations.c.id).where(t.attestations.c.sha256 == sha256)
               .limit(1).scalar_subquery())
        listed = (select(t.hash_entries.c.id).where(and_(
            t.hash_entries.c.sha256 == sha256, t.hash_entries.c.active.is_(True),
            t.hash_entries.c.source.like("list:%"))).limit(1).scalar_subquery())
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(ov_id.label("o"), v_id.label("v"),
                                             img.label("i"), att.label("a"),
                                             listed.label("l")))).one()
            list_hit = None
            if row.l is not None:
                list_hit = _entry((await conn.execute(
                    select(t.hash_entries).where(t.hash_entries.c.id == row.l))).one())
            claims: tuple[PeerClaim, ...] = ()
            if row.a is not None:
                claims = tuple(await self._claims(conn, t.attestations.c.sha256 == sha256))
            override = verdict = None
            if row.o is not None:
                override = _override((await conn.execute(
                    select(t.overrides).where(t.overrides.c.id == row.o))).one())
            if row.v is not None:
                verdict = _verdict((await conn.execute(
                    select(t.verdicts).where(t.verdicts.c.id == row.v))).one())
            hashes = self._hash_cache.get(sha256)
            if hashes is None and row.i is not None:
                hashes = await self._load_hashes(conn, sha256)
        return Lookup(hashes=hashes, override=override, verdict=verdict, claims=claims,
                      list_hit=list_hit)

    async def _claims(self, conn: AsyncConnection, where: Any, match: str = "sha256",
                      distances: dict[int, tuple[str, int]] | None = None) -> list[PeerClaim]:
        """Live attestations (not retracted, not expired) from peers whose trust counts
        (the rules are trust.py's: ``COUNTED``, ``claim_live``)."""
        now = utcnow()
        a, p = t.attestations, t.peers
        rows = (await conn.execute(
            select(a.c.id, a.c.object_id, a.c.issuer, a.c.label, a.c.method, a.c.expires,
                   p.c.trust)
            .join(p, p.c.actor == a.c.issuer)
            .where(and_(where, a.c.retracted_at.is_(None), p.c.trust.in_(sorted(COUNTED)))))).all()
        out = []
        for r in rows:
            if not claim_live(as_utc(r.expires), now):
                continue
            kind, distance = (distances or {}).get(int(r.id), (match, 0))
            out.append(PeerClaim(attestation=r.object_id, issuer=r.issuer, trust=r.trust,
                                 label=r.label, method=r.method, match=kind, distance=distance))
        return out

    async def claims_for_rows(self, found: dict[int, tuple[str, int]]) -> list[PeerClaim]:
        """Claims for attestation rows matched perceptually: row id → (match kind, distance)."""
        if not found:
            return []
        async with self.engine.connect() as conn:
            return await self._claims(conn, t.attestations.c.id.in_(list(found)),
                                      distances=found)

    async def get_hashes(self, sha256: str) -> ImageHashes | None:
        """The stored hashes of ``sha256``, if it was ever hashed."""
        cached = self._hash_cache.get(sha256)
        if cached is not None:
            return cached
        async with self.engine.connect() as conn:
            return await self._load_hashes(conn, sha256)

    async def _load_hashes(self, conn: AsyncConnection, sha256: str) -> ImageHashes | None:
        img = (await conn.execute(select(t.images).where(t.images.c.sha256 == sha256))).first()
        if img is None:
            return None
        rows = (await conn.execute(
            select(t.image_frames).where(t.image_frames.c.sha256 == sha256)
            .order_by(t.image_frames.c.frame_index))).all()
        hashes = ImageHashes(
            sha256=img.sha256, media_type=img.media_type, width=img.width, height=img.height,
            frame_count=img.frame_count,
            frames=tuple(FrameHashes(pdq=r.pdq, pdq_quality=r.pdq_quality, phash=r.phash)
                         for r in rows),
        )
        self._remember(hashes)
        return hashes

    def _remember(self, hashes: ImageHashes) -> None:
        _put(self._hash_cache, hashes.sha256, hashes, self._cache_size)

    def remember(self, hashes: ImageHashes) -> None:
        """Cache hashes about to be saved, so this process never hashes them twice."""
        self._remember(hashes)

    async def save_image(self, hashes: ImageHashes) -> None:
        """Record an image's hashes; a second save of the same sha256 changes nothing."""
        await self.write_batch([hashes], [])

    async def write_batch(self, images: Sequence[ImageHashes],
                          audit: Sequence[AuditEntry],
                          received: Sequence[dict[str, Any]] = ()) -> None:
        """Save images' hashes (ignoring ones already saved), audit entries and received
        activities (ignoring ids already kept), in one transaction."""
        if not images and not audit and not received:
            return
        async with self.writing() as conn:
            if received:
                await conn.execute(
                    _insert_ignore(conn)(t.received_activities).on_conflict_do_nothing(),
                    [_storable_received(r) for r in received])
            if images:
                await self._insert_images(conn, images)
            if audit:
                await conn.execute(insert(t.audit_log), [_audit_row(e) for e in audit])
        for h in images:
            self._remember(h)

    async def _insert_images(self, conn: AsyncConnection, images: Sequence[ImageHashes]) -> None:
        insert_ignore = _insert_ignore(conn)
        await conn.execute(insert_ignore(t.images).on_conflict_do_nothing(), [
            {"sha256": h.sha256, "media_type": h.media_type, "width": h.width,
             "height": h.height, "frame_count": h.frame_count, "first_seen": utcnow()}
            for h in images])
        frames = [{"sha256": h.sha256, "frame_index": i, "pdq": f.pdq,
                   "pdq_quality": f.pdq_quality, "phash": f.phash}
                  for h in images for i, f in enumerate(h.frames)]
        if frames:
            await conn.execute(insert_ignore(t.image_frames).on_conflict_do_nothing(), frames)

    # -- verdicts -------------------------------------------------------------------------

    async def supersede_verdicts(self, sha256: str) -> int:
        """Retract every live own verdict of ``sha256`` and its hash entries (a human
        reviewed the image, or retracted our judgement); returns how many."""
        async with self.writing() as conn:
            n = await self.supersede_in(conn, sha256)
        self.forget(sha256)
        return n

    async def supersede_in(self, conn: AsyncConnection, sha256: str) -> int:
        """``supersede_verdicts`` inside the caller's transaction (the caller forgets
        ``sha256`` once it committed)."""
        v = t.verdicts
        ids = (await conn.execute(select(v.c.id).where(and_(
            v.c.sha256 == sha256, v.c.retracted_at.is_(None))))).scalars().all()
        if ids:
            await conn.execute(update(v).where(v.c.id.in_(ids)).values(retracted_at=utcnow()))
            for vid in ids:
                await self._deactivate(conn, f"verdict:{vid}")
            await self._judgement_changed(conn, sha256)
        return len(ids)

    async def add_verdict(self, sha256: str, label: str, method: str, source: str,
                          model: str | None = None, detail: dict[str, Any] | None = None) -> Verdict:
        """Record a verdict of this node's own."""
        async with self.writing() as conn:
            verdict = await self.insert_verdict(conn, sha256, label, method, source, model,
                                                detail)
        self.forget(sha256)
        return verdict

    async def record_verdict(self, hashes: ImageHashes, label: str, method: str, source: str,
                             model: str | None = None,
                             detail: dict[str, Any] | None = None) -> Verdict:
        """Record an own verdict; a bad label also indexes the image's perceptual hashes."""
        async with self.writing() as conn:
            verdict = await self.insert_verdict(conn, hashes.sha256, label, method, source,
                                                model, detail, hashes=hashes)
        self.forget(hashes.sha256)
        return verdict

    async def insert_verdict(self, conn: AsyncConnection, sha256: str, label: str, method: str,
                             source: str, model: str | None = None,
                             detail: dict[str, Any] | None = None,
                             hashes: ImageHashes | None = None) -> Verdict:
        """Record an own verdict inside the caller's transaction (the caller forgets
        ``sha256`` once it committed); with ``hashes``, a bad label indexes them too."""
        now = utcnow()
        vid = (await conn.execute(insert(t.verdicts).values(
            sha256=sha256, label=label, method=method, source=source, model=model,
            detail=detail, created_at=now).returning(t.verdicts.c.id))).scalar_one()
        if hashes is not None and label in INDEXED_LABELS:
            await self._add_entries(conn, [
                dict(pdq=f.pdq, pdq_quality=f.pdq_quality, phash=f.phash, sha256=sha256,
                     label=label, source=f"verdict:{vid}") for f in hashes.frames])
        await self._judgement_changed(conn, sha256)
        return Verdict(id=vid, sha256=sha256, label=label, method=method, source=source,
                       model=model, created_at=now)

    async def hashes_in(self, conn: AsyncConnection, sha256: str) -> ImageHashes | None:
        """The stored hashes of ``sha256``, read inside the caller's transaction."""
        cached = self._hash_cache.get(sha256)
        return cached if cached is not None else await self._load_hashes(conn, sha256)

    # -- overrides ------------------------------------------------------------------------

    async def set_override(self, sha256: str, action: str, note: str, created_by: str,
                           frames: Sequence[FrameHashes] = ()) -> Override:
        """Allow or block ``sha256``, replacing any earlier override of it.

        A block also indexes ``frames`` so perceptual near-copies are blocked too.
        """
        async with self.writing() as conn:
            ov = await self.set_override_in(conn, sha256, action, note, created_by, frames)
        self.forget(sha256)
        return ov

    async def set_override_in(self, conn: AsyncConnection, sha256: str, action: str, note: str,
                              created_by: str, frames: Sequence[FrameHashes] = ()) -> Override:
        """``set_override`` inside the caller's transaction (the caller forgets
        ``sha256`` once it committed)."""
        now = utcnow()
        old = (await conn.execute(
            select(t.overrides.c.id).where(t.overrides.c.sha256 == sha256))).scalar()
        if old is not None:
            await self._deactivate(conn, f"override:{old}")
            await conn.execute(delete(t.overrides).where(t.overrides.c.id == old))
        oid = (await conn.execute(insert(t.overrides).values(
            sha256=sha256, action=action, note=note, created_by=created_by,
            created_at=now).returning(t.overrides.c.id))).scalar_one()
        if action == "block":
            await self._add_entries(conn, [
                dict(pdq=f.pdq, pdq_quality=f.pdq_quality, phash=f.phash, sha256=sha256,
                     label="blocked", source=f"override:{oid}") for f in frames
            ])
        await self._judgement_changed(conn, sha256)
        return Override(id=oid, sha256=sha256, action=action,  # type: ignore[arg-type]
                        note=note, created_by=created_by, created_at=now)

    async def remove_override(self, *, override_id: int | None = None,
                              sha256: str | None = None) -> Override | None:
        """Remove an override by id or sha256; returns what was removed, or None."""
        async with self.writing() as conn:
            removed = await self.remove_override_in(conn, override_id=override_id, sha256=sha256)
        if removed is not None:
            self.forget(removed.sha256)
        return removed

    async def remove_override_in(self, conn: AsyncConnection, *, override_id: int | None = None,
                                 sha256: str | None = None) -> Override | None:
        """``remove_override`` inside the caller's transaction (the caller forgets the
        image once it committed)."""
        cond = t.overrides.c.id == override_id if override_id is not None \
            else t.overrides.c.sha256 == sha256
        row = (await conn.execute(select(t.overrides).where(cond))).first()
        if row is None:
            return None
        await self._deactivate(conn, f"override:{row.id}")
        await conn.execute(delete(t.overrides).where(t.overrides.c.id == row.id))
        await self._judgement_changed(conn, row.sha256)
        return _override(row)

    async def list_overrides(self) -> list[Override]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.overrides).order_by(t.overrides.c.id))).all()
        return [_override(r) for r in rows]

    async def _judgement_changed(self, conn: AsyncConnection, sha256: str) -> None:
        """Log that judgements of ``sha256`` changed (``*``: of many images, e.g. a peer's
        trust changed), so every process drops what it cached."""
        await conn.execute(insert(t.judgement_events).values(sha256=sha256))

    async def judgement_changed(self, conn: AsyncConnection, sha256: str) -> None:
        await self._judgement_changed(conn, sha256)
        if sha256 == "*":
            self.forget_all()
        else:
            self.forget(sha256)

    async def add_entries(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Add hash entries inside the caller's transaction."""
        await self._add_entries(conn, rows)

    async def deactivate(self, conn: AsyncConnection, source: str) -> None:
        """Deactivate the hash entries of ``source`` inside the caller's transaction."""
        await self._deactivate(conn, source)

    async def last_judgement_event(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.max(t.judgement_events.c.id)))).scalar() or 0)

    async def judgement_events_since(self, after: int, limit: int = 10_000,
                                     gaps: Sequence[tuple[int, int]] = ()
                                     ) -> list[tuple[int, str]]:
        """(event id, sha256) of judgement changes after ``after`` or in ``gaps`` (id
        ranges, inclusive), oldest first."""
        ids = t.judgement_events.c.id
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(t.judgement_events).where(_after_or_in(ids, after, gaps))
                .order_by(ids).limit(limit))).all()
        return [(int(r.id), r.sha256) for r in rows]

    async def log_heads(self) -> tuple[int, int]:
        """The newest ids of hash_events and judgement_events, in one cheap round trip
        (each a primary-key index's last entry)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(
                select(func.max(t.hash_events.c.id)).scalar_subquery().label("h"),
                select(func.max(t.judgement_events.c.id)).scalar_subquery().label("j"),
            ))).one()
        return int(row.h or 0), int(row.j or 0)

    async def log_gaps(self, log: str) -> tuple[int, list[tuple[int, int]]]:
        """The newest id of change log ``log`` (hash_events, judgement_events) and the id
        ranges below it that are missing: rolled back, or not committed yet."""
        table = {"hash_events": t.hash_events, "judgement_events": t.judgement_events}[log]
        nxt = func.lead(table.c.id).over(order_by=table.c.id)
        inner = select(table.c.id.label("id"), nxt.label("nxt")).subquery()
        async with self.engine.connect() as conn:
            last = int((await conn.execute(select(func.max(table.c.id)))).scalar() or 0)
            first = int((await conn.execute(select(func.min(table.c.id)))).scalar() or 0)
            rows = (await conn.execute(select(inner.c.id, inner.c.nxt)
                                       .where(inner.c.nxt > inner.c.id + 1))).all()
        gaps = [(1, first - 1)] if first > 1 else []
        gaps += [(int(r.id) + 1, int(r.nxt) - 1) for r in rows]
        # Read in separate statements: ids committed meanwhile above ``last`` are simply
        # read as new later.
        return last, [(lo, min(hi, last)) for lo, hi in gaps if lo <= last]

    async def transaction_bounds(self) -> tuple[int, int] | None:
        """(oldest running transaction id, next transaction id) on PostgreSQL; None on
        SQLite, whose single writer commits ids in order."""
        if self.engine.dialect.name != "postgresql":
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, "
                "pg_snapshot_xmax(s)::text::bigint AS xmax "
                "FROM pg_current_snapshot() AS s"))).one()
        return int(row.xmin), int(row.xmax)

    # -- the perceptual index's source ----------------------------------------------------

    async def add_hash_entries(self, entries: Iterable[dict[str, Any]]) -> None:
        async with self.writing() as conn:
            await self._add_entries(conn, list(entries))

    async def _add_entries(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        now = utcnow()
        for row in rows:
            eid = (await conn.execute(insert(t.hash_entries).values(
                active=True, created_at=now, **row).returning(t.hash_entries.c.id))).scalar_one()
            await conn.execute(insert(t.hash_events).values(entry_id=eid, op="add"))

    async def _deactivate(self, conn: AsyncConnection, source: str) -> None:
        ids = (await conn.execute(select(t.hash_entries.c.id).where(and_(
            t.hash_entries.c.source == source, t.hash_entries.c.active.is_(True))))).scalars().all()
        if not ids:
            return
        await conn.execute(update(t.hash_entries).where(t.hash_entries.c.id.in_(ids))
                           .values(active=False))
        await conn.execute(insert(t.hash_events), [{"entry_id": i, "op": "remove"} for i in ids])

    async def import_list(self, source: str, label: str, rows: Iterable[dict[str, Any]],
                          batch: int = 5000) -> int:
        """Add a hash list's rows under ``source`` (``list:NAME``) in batches; returns how
        many. Every node process's index picks them up from the change log."""
        total = 0
        chunk: list[dict[str, Any]] = []

        async def flush() -> None:
            nonlocal total
            if not chunk:
                return
            async with self.writing() as conn:
                before = (await conn.execute(select(func.max(t.hash_entries.c.id)))).scalar() or 0
                await conn.execute(insert(t.hash_entries), chunk)
                await conn.execute(insert(t.hash_events).from_select(
                    ["entry_id", "op"],
                    select(t.hash_entries.c.id, literal("add")).where(and_(
                        t.hash_entries.c.id > before, t.hash_entries.c.source == source))
                    .order_by(t.hash_entries.c.id)))
            total += len(chunk)
            chunk.clear()

        now = utcnow()
        for row in rows:
            chunk.append({"pdq": None, "pdq_quality": None, "phash": None, "sha256": None,
                          "md5": None,
                          **row, "label": row.get("label") or label, "source": source,
                          "active": True, "created_at": now})
            if len(chunk) >= batch:
                await flush()
        await flush()
        return total

    async def replace_list(self, source: str, label: str, rows: Iterable[dict[str, Any]],
                           batch: int = 5000) -> ListChange:
        """Make ``source``'s active entries exactly ``rows``, in one transaction: rows
        already there are kept (not stored twice), new ones added, the rest dropped.
        Every node process's index follows from the change log."""
        e = t.hash_entries
        now = utcnow()
        wanted: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            full = {"pdq": None, "pdq_quality": None, "phash": None, "sha256": None,
                    "md5": None, **row,
                    "label": row.get("label") or label}
            wanted.setdefault(_list_key(full), full)
        async with self.writing() as conn:
            existing: dict[tuple[Any, ...], list[int]] = {}
            for r in (await conn.execute(
                    select(e.c.id, e.c.pdq, e.c.pdq_quality, e.c.phash, e.c.sha256, e.c.md5,
                           e.c.label)
                    .where(and_(e.c.source == source, e.c.active.is_(True))))).all():
                existing.setdefault(_list_key(r._mapping), []).append(r.id)
            # An entry stored twice by an older import keeps one copy.
            drop = [i for key, ids in existing.items()
                    for i in (ids if key not in wanted else ids[1:])]
            add = [{**row, "source": source, "active": True, "created_at": now}
                   for key, row in wanted.items() if key not in existing]
            for at in range(0, len(drop), batch):
                ids = drop[at:at + batch]
                await conn.execute(update(e).where(e.c.id.in_(ids)).values(active=False))
                await conn.execute(insert(t.hash_events), [{"entry_id": i, "op": "remove"}
                                                           for i in ids])
            before = (await conn.execute(select(func.max(e.c.id)))).scalar() or 0
            for at in range(0, len(add), batch):
                await conn.execute(insert(e), add[at:at + batch])
            if add:
                await conn.execute(insert(t.hash_events).from_select(
                    ["entry_id", "op"],
                    select(e.c.id, literal("add")).where(and_(e.c.id > before, e.c.source == source))
                    .order_by(e.c.id)))
            if drop:
                await self._judgement_changed(conn, "*")
        if drop:
            self.forget_all()
        return ListChange(added=len(add), kept=len(wanted) - len(add), dropped=len(drop))

    async def list_sources(self) -> list[tuple[str, str, int]]:
        """(source, label, active entries) for every imported list."""
        e = t.hash_entries
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(e.c.source, e.c.label, func.count())
                .where(and_(e.c.source.like("list:%"), e.c.active.is_(True)))
                .group_by(e.c.source, e.c.label).order_by(e.c.source))).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def remove_source(self, source: str) -> int:
        """Deactivate every entry of ``source``; returns how many."""
        async with self.writing() as conn:
            n = (await conn.execute(select(func.count()).select_from(t.hash_entries).where(and_(
                t.hash_entries.c.source == source, t.hash_entries.c.active.is_(True))))).scalar_one()
            await self._deactivate(conn, source)
            await self._judgement_changed(conn, "*")
        self.forget_all()
        return int(n)

    async def export_entries(self, source: str | None = None) -> AsyncIterator[
            tuple[str | None, int | None, str | None, str | None, str, str, str | None]]:
        """Active entries (pdq, quality, phash, sha256, label, source, md5), in id order."""
        e = t.hash_entries
        q = select(e.c.pdq, e.c.pdq_quality, e.c.phash, e.c.sha256, e.c.label, e.c.source,
                   e.c.md5).where(e.c.active.is_(True)).order_by(e.c.id)
        if source:
            q = q.where(e.c.source == source)
        async with self.engine.connect() as conn:
            result = await conn.stream(q)
            async for r in result:
                yield (r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    async def load_active_entries(self) -> tuple[list[HashEntry], int]:
        """Every active entry and the newest event id (where to follow from)."""
        async with self.engine.connect() as conn:
            last = (await conn.execute(select(func.max(t.hash_events.c.id)))).scalar() or 0
            rows = (await conn.execute(
                select(t.hash_entries).where(t.hash_entries.c.active.is_(True)))).all()
        return [_entry(r) for r in rows], int(last)

    async def entry_events_since(self, after: int, limit: int = 10_000,
                                 gaps: Sequence[tuple[int, int]] = ()
                                 ) -> list[tuple[int, bool, HashEntry]]:
        """Events after ``after`` or in ``gaps`` (id ranges, inclusive) as (event id,
        entry active now, entry), oldest first."""
        ids = t.hash_events.c.id
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(ids.label("event_id"), t.hash_entries)
                .join(t.hash_entries, t.hash_entries.c.id == t.hash_events.c.entry_id)
                .where(_after_or_in(ids, after, gaps)).order_by(ids).limit(limit))).all()
        return [(int(r.event_id), bool(r.active), _entry(r)) for r in rows]

    # -- jobs and audit -------------------------------------------------------------------

    async def enqueue_job(self, sha256: str, reason: str,
                          hashes: ImageHashes | None = None) -> None:
        """Queue ``sha256`` for classification once. With ``hashes``, they are saved in
        the same commit (unless saved already), so whichever process records the
        result indexes them, even if this one's batched writes never land."""
        async with self.writing() as conn:
            if hashes is not None:
                await self._insert_images(conn, [hashes])
            await conn.execute(_insert_ignore(conn)(t.jobs).values(
                sha256=sha256, state="queued", reason=reason, created_at=utcnow(),
                attempts=0).on_conflict_do_nothing())
            if reason == "accept_and_rescan":
                # The check gave up waiting and let the image in: whatever the job was
                # queued for, its result now concerns an image already in storage.
                await conn.execute(update(t.jobs).where(
                    (t.jobs.c.sha256 == sha256) & t.jobs.c.state.in_(("queued", "leased")))
                    .values(reason=reason))

    async def queue_depth(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(t.jobs)
                .where(t.jobs.c.state.in_(("queued", "leased"))))).scalar_one())

    async def write_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self.write_batch([], entries)

    async def audit_in(self, conn: AsyncConnection, entries: Sequence[AuditEntry]) -> None:
        """Audit entries of a change, in the change's own transaction."""
        if entries:
            await conn.execute(insert(t.audit_log), [_audit_row(e) for e in entries])

    async def recent_audit(self, limit: int = 100, sha256: str | None = None) -> list[AuditEntry]:
        q = select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if sha256:
            q = q.where(t.audit_log.c.sha256 == sha256)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [AuditEntry(actor=r.actor, action=r.action, at=r.at, sha256=r.sha256,
                           decision=r.decision, label=r.label, source=r.source, reason=r.reason,
                           detail=r.detail) for r in rows]


def _after_or_in(ids: Any, after: int, gaps: Sequence[tuple[int, int]]) -> Any:
    return or_(ids > after, *[ids.between(lo, hi) for lo, hi in gaps])


def _storable_received(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": clean_text(str(row["id"]), 2000), "actor": clean_text(str(row["actor"])),
            "type": clean_text(str(row["type"]), 64),
            "body": None if row.get("body") is None else clean_json(row["body"])}


def _put(cache: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


def _override(r: Any) -> Override:
    return Override(id=int(r.id), sha256=r.sha256, action=r.action, note=r.note,
                    created_by=r.created_by, created_at=r.created_at)


def _verdict(r: Any) -> Verdict:
    return Verdict(id=int(r.id), sha256=r.sha256, label=r.label, method=r.method,
                   source=r.source, model=r.model, created_at=r.created_at)


def _entry(r: Any) -> HashEntry:
    return HashEntry(id=int(r.id), label=r.label, source=r.source, pdq=r.pdq,
                     pdq_quality=r.pdq_quality, phash=r.phash, sha256=r.sha256, md5=r.md5)


@dataclasses.dataclass(frozen=True, slots=True)
class ListChange:
    """What re-importing a hash list changed."""

    added: int
    kept: int
    dropped: int


def _list_key(row: Any) -> tuple[Any, ...]:
    return (row["pdq"], row["pdq_quality"], row["phash"], row["sha256"], row["md5"],
            row["label"])
