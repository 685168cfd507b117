"""Peers this node follows and the attestations they sent: the database side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from activitypub import same_origin
from attestd.db import schema as t
from attestd.db.store import Store
from attestd.decisions import ATTESTATION_SOURCE
from attestd.federation.attestations import Attestation, AttestationError, parse_attestation
from attestd.model import INDEXED_LABELS, AuditEntry, as_utc, utcnow
from attestd.trust import UNTRUSTED, Trust, indexed_from_peer

Stored = Literal["stored", "updated", "unchanged", "retracted_earlier"]


@dataclass(frozen=True, slots=True)
class Peer:
    actor: str
    inbox: str
    outbox: str | None
    trust: Trust
    perceptual_ok: bool
    state: str
    follow_id: str | None
    outbox_cursor: str | None
    created_at: datetime
    last_seen_at: datetime | None
    last_error: str | None
    attestations: int = 0
    disagreements: int = 0


class PeerStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # -- peers --------------------------------------------------------------------------

    async def add(self, actor: str, inbox: str, outbox: str | None, trust: Trust,
                  follow_id: str, perceptual_ok: bool = False) -> None:
        """Record a peer we sent a Follow to (or re-sent one: the row is updated)."""
        async with self.store.writing() as conn:
            exists = (await conn.execute(select(t.peers.c.id)
                                         .where(t.peers.c.actor == actor))).first()
            values = dict(inbox=inbox, outbox=outbox, trust=trust, follow_id=follow_id,
                          perceptual_ok=perceptual_ok, state="pending", last_error=None)
            if exists is None:
                await conn.execute(t.peers.insert().values(actor=actor, created_at=utcnow(),
                                                           **values))
            else:
                await conn.execute(update(t.peers).where(t.peers.c.id == exists.id)
                                   .values(**values))
            await self._reindex(conn, actor, trust, perceptual_ok)

    async def get(self, actor: str) -> Peer | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.peers).where(t.peers.c.actor == actor))).first()
        return _peer(row) if row is not None else None

    async def all(self) -> list[Peer]:
        """Every peer with how many live attestations it sent and how many of them
        disagree with this node's own verdicts (ok against bad or the reverse)."""
        a, v = t.attestations, t.verdicts
        live = and_(a.c.retracted_at.is_(None))
        received = (select(a.c.issuer, func.count().label("n")).where(live)
                    .group_by(a.c.issuer).subquery())
        disagree = (select(a.c.issuer, func.count(func.distinct(a.c.id)).label("n"))
                    .join(v, and_(v.c.sha256 == a.c.sha256, v.c.retracted_at.is_(None)))
                    .where(and_(live, (a.c.label == "ok") != (v.c.label == "ok")))
                    .group_by(a.c.issuer).subquery())
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(t.peers, func.coalesce(received.c.n, 0).label("n_received"),
                       func.coalesce(disagree.c.n, 0).label("n_disagree"))
                .outerjoin(received, received.c.issuer == t.peers.c.actor)
                .outerjoin(disagree, disagree.c.issuer == t.peers.c.actor)
                .order_by(t.peers.c.actor))).all()
        return [_peer(r, int(r.n_received), int(r.n_disagree)) for r in rows]

    async def set_state(self, actor: str, state: str, error: str | None = None) -> bool:
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.peers).where(t.peers.c.actor == actor)
                                     .values(state=state, last_error=error))
        return bool(res.rowcount)

    async def set_trust(self, actor: str, trust: Trust, perceptual_ok: bool) -> bool:
        """Change a peer's trust; what its attestations make of images changes at once."""
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.peers).where(t.peers.c.actor == actor)
                                     .values(trust=trust, perceptual_ok=perceptual_ok))
            if not res.rowcount:
                return False
            await self._reindex(conn, actor, trust, perceptual_ok)
            await self.store.judgement_changed(conn, "*")
        return True

    async def remove(self, actor: str) -> Peer | None:
        """Forget a peer and every attestation it sent (they stop counting everywhere)."""
        peer = await self.get(actor)
        if peer is None:
            return None
        async with self.store.writing() as conn:
            await self._reindex(conn, actor, UNTRUSTED, False)
            await conn.execute(delete(t.attestations).where(t.attestations.c.issuer == actor))
            await conn.execute(delete(t.peers).where(t.peers.c.actor == actor))
            await self.store.judgement_changed(conn, "*")
        return peer

    async def seen(self, actor: str) -> None:
        """Note contact from ``actor`` (nothing happens if it is not a peer)."""
        async with self.store.writing() as conn:
            await conn.execute(update(t.peers).where(t.peers.c.actor == actor)
                               .values(last_seen_at=utcnow()))

    async def set_cursor(self, actor: str, cursor: str | None, error: str | None = None) -> None:
        values: dict[str, Any] = {"last_backfill_at": utcnow(), "last_error": error}
        if cursor is not None:
            values["outbox_cursor"] = cursor
        async with self.store.writing() as conn:
            await conn.execute(update(t.peers).where(t.peers.c.actor == actor).values(**values))

    # -- attestations -------------------------------------------------------------------

    async def store_attestation(self, att: Attestation, body: dict[str, Any], *,
                                replace: bool = False, peer: Peer | None = None,
                                audit: Callable[[Stored], AuditEntry] | None = None) -> Stored:
        """Keep a verified attestation from a peer and index its hashes as its trust allows.

        A Create of an id already kept changes nothing; ``replace`` (an Update) rewrites it.
        An id retracted earlier stays retracted. ``peer`` is the issuer's row, if the
        caller already read it. ``audit`` makes the audit entry of the outcome, written
        in the same commit as the attestation and its index entries.
        """
        if peer is None or peer.actor != att.issuer:
            peer = await self.get(att.issuer)
        async with self.store.writing() as conn:
            result = await self._store_in(conn, att, body, replace, peer)
            if audit is not None:
                await self.store.audit_in(conn, [audit(result)])
        return result

    async def _store_in(self, conn: AsyncConnection, att: Attestation, body: dict[str, Any],
                        replace: bool, peer: Peer | None) -> Stored:
        trust: Trust = peer.trust if peer is not None else UNTRUSTED
        perceptual_ok = peer.perceptual_ok if peer is not None else False
        a = t.attestations
        values = dict(issuer=att.issuer, sha256=att.sha256, label=att.label, method=att.method,
                      model=att.model, published=att.published, expires=att.expires, body=body)
        old = (await conn.execute(select(a.c.id, a.c.retracted_at, a.c.sha256, a.c.issuer,
                                         a.c.published)
                                  .where(a.c.object_id == att.id))).first()
        if old is not None and old.issuer != att.issuer:
            # Kept before tombstones and ids were bound to their issuer: someone else's
            # claim on this id; the issuer's own object takes its place.
            await self.store.deactivate(conn, f"{ATTESTATION_SOURCE}{old.id}")
            if old.sha256:
                await self.store.judgement_changed(conn, old.sha256)
            await conn.execute(delete(a).where(a.c.id == old.id))
            old = None
        if old is not None and old.retracted_at is not None:
            return "retracted_earlier"
        if old is not None and not replace:
            return "unchanged"
        old_published = as_utc(old.published) if old is not None else None
        if (old_published is not None and att.published is not None
                and att.published <= old_published):
            # A replayed older version must not undo a newer relabel.
            return "unchanged"
        if old is None:
            row_id = (await conn.execute(a.insert().values(
                object_id=att.id, received_at=utcnow(), **values).returning(a.c.id))).scalar_one()
        else:
            row_id = int(old.id)
            await conn.execute(update(a).where(a.c.id == row_id).values(**values))
            await self.store.deactivate(conn, f"{ATTESTATION_SOURCE}{row_id}")
            if old.sha256 != att.sha256:
                await self.store.judgement_changed(conn, old.sha256)
        await self.store.add_entries(conn, _entries(row_id, att, trust, perceptual_ok))
        await self.store.judgement_changed(conn, att.sha256)
        return "stored" if old is None else "updated"

    async def retract(self, object_id: str, issuer: str,
                      audit: Callable[[str | None], AuditEntry] | None = None) -> str | None:
        """Retract an attestation its issuer deleted; returns its sha256 if it was live.

        A Delete that arrives before its Create leaves a tombstone, so the late Create
        is not applied; but only a peer's Delete of an id on its own host does: a tombstone
        binds to its issuer, and nobody else may pre-empt the issuer's object. ``audit``
        makes the audit entry of the outcome (the sha256 retracted, or None), written in
        the same commit.
        """
        async with self.store.writing() as conn:
            sha = await self._retract_in(conn, object_id, issuer)
            if audit is not None:
                await self.store.audit_in(conn, [audit(sha)])
        return sha

    async def _retract_in(self, conn: AsyncConnection, object_id: str, issuer: str
                          ) -> str | None:
        a = t.attestations
        row = (await conn.execute(select(a.c.id, a.c.issuer, a.c.sha256, a.c.retracted_at)
                                  .where(a.c.object_id == object_id))).first()
        if row is None:
            if not same_origin(object_id, issuer) or (await conn.execute(
                    select(t.peers.c.id).where(t.peers.c.actor == issuer))).first() is None:
                return None
            await conn.execute(a.insert().values(
                object_id=object_id, issuer=issuer, sha256="", label="", method="",
                retracted_at=utcnow(), received_at=utcnow()))
            return None
        if row.issuer != issuer or row.retracted_at is not None:
            return None
        await conn.execute(update(a).where(a.c.id == row.id).values(retracted_at=utcnow()))
        await self.store.deactivate(conn, f"{ATTESTATION_SOURCE}{row.id}")
        await self.store.judgement_changed(conn, row.sha256)
        return str(row.sha256)

    async def expire(self) -> int:
        """Drop expired attestations from the index; returns how many expired."""
        a = t.attestations
        now = utcnow()
        async with self.store.writing() as conn:
            rows = (await conn.execute(select(a.c.id, a.c.sha256).where(and_(
                a.c.retracted_at.is_(None), a.c.expires.is_not(None), a.c.expires <= now)))).all()
            for r in rows:
                await conn.execute(update(a).where(a.c.id == r.id).values(retracted_at=now))
                await self.store.deactivate(conn, f"{ATTESTATION_SOURCE}{r.id}")
                await self.store.judgement_changed(conn, r.sha256)
        return len(rows)

    async def _reindex(self, conn: AsyncConnection, actor: str, trust: Trust,
                       perceptual_ok: bool) -> None:
        """Make the index hold exactly what ``trust`` lets this peer's attestations say."""
        a = t.attestations
        rows = (await conn.execute(select(a).where(and_(
            a.c.issuer == actor, a.c.retracted_at.is_(None))))).all()
        for r in rows:
            await self.store.deactivate(conn, f"{ATTESTATION_SOURCE}{r.id}")
            if r.body is None:
                continue
            try:
                att = parse_attestation(r.body)
            except AttestationError:  # kept before a format change; it no longer indexes
                continue
            await self.store.add_entries(conn, _entries(int(r.id), att, trust, perceptual_ok))


def _entries(row_id: int, att: Attestation, trust: Trust,
             perceptual_ok: bool) -> list[dict[str, Any]]:
    """Hash entries for an attestation: bad labels from any trusted peer; ok only from a
    full peer opted into perceptual ok. Nothing from a peer trusted none."""
    if not indexed_from_peer(trust, att.label, perceptual_ok):
        return []
    if att.label != "ok" and att.label not in INDEXED_LABELS:
        return []
    return [dict(pdq=f.pdq, pdq_quality=f.pdq_quality, phash=f.phash, sha256=att.sha256,
                 label=att.label, source=f"{ATTESTATION_SOURCE}{row_id}") for f in att.frames]


def _peer(r: Any, received: int = 0, disagreements: int = 0) -> Peer:
    return Peer(actor=r.actor, inbox=r.inbox, outbox=r.outbox, trust=r.trust,
                perceptual_ok=bool(r.perceptual_ok), state=r.state, follow_id=r.follow_id,
                outbox_cursor=r.outbox_cursor, created_at=as_utc(r.created_at) or utcnow(),
                last_seen_at=as_utc(r.last_seen_at), last_error=r.last_error,
                attestations=received, disagreements=disagreements)
