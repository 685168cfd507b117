"""Publishing this node's own verdicts as signed attestations to its followers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid6 import uuid7

from attestd.db import schema as t
from attestd.db.store import Store
from attestd.federation.attestations import ATTESTED_LABELS, activity, build_attestation, sign_attestation
from attestd.federation.store import FederationStore
from attestd.model import Verdict, utcnow
from scanner import FrameHashes, ImageHashes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signs: the node's actor URLs and its Ed25519 key."""

    actor: str
    followers: str
    key_id: str
    key: ed25519.Ed25519PrivateKey

    @property
    def base(self) -> str:
        return self.actor.rsplit("/actor", 1)[0]


def publishable(verdict: Verdict, detail: dict[str, Any] | None) -> str | None:
    """Why ``verdict`` must not be attested, or None when it may be.

    A node attests only what it judged itself or its admins reviewed: never a verdict of
    a random-weight model, never a peer's verdict, never an override or a hash list.
    """
    return not_attested(verdict.label, verdict.method, detail)


def not_attested(label: str, method: str, detail: dict[str, Any] | None) -> str | None:
    """``publishable`` for a verdict about to be recorded."""
    if label not in ATTESTED_LABELS:
        return f"label {label} is not attested"
    if method == "human_review":
        return None
    if method != "classifier":
        return f"method {method} is not attested"
    if detail is not None and detail.get("publishable") is False:
        return "the classifier has no trained weights (allow_random_weights)"
    return None


@dataclass(frozen=True, slots=True)
class Signed:
    """An attestation signed ahead of the transaction that records its verdict (signing
    holds no write lock); ``publish_verdict_in`` writes it, or signs again if what it was
    signed for changed meanwhile."""

    uid: str
    sha256: str
    label: str
    method: str
    model: str | None
    frames: tuple[FrameHashes, ...]
    replaces: bool  # an Update of our live attestation with this uid
    doc: dict[str, Any]
    at: datetime

    def fits(self, verdict: Verdict, hashes: ImageHashes | None, live: str | None) -> bool:
        """True if this is still what ``verdict`` must be attested as."""
        return ((verdict.sha256, verdict.label, verdict.method, verdict.model)
                == (self.sha256, self.label, self.method, self.model)
                and self.frames == _frames(hashes)
                and live == (self.uid if self.replaces else None))


def _frames(hashes: ImageHashes | None) -> tuple[FrameHashes, ...]:
    return tuple(hashes.frames) if hashes is not None else ()


class Publisher:
    def __init__(self, store: Store, fstore: FederationStore, identity: Identity,
                 poke: Callable[[], None] | None = None) -> None:
        self.store = store
        self.fstore = fstore
        self.identity = identity
        self.poke = poke

    async def publish_verdict(self, verdict: Verdict, hashes: ImageHashes | None,
                              detail: dict[str, Any] | None = None) -> str | None:
        """Attest an own verdict (Create, or Update of our live attestation of the same
        image) in one transaction; returns the attestation id, or None if the verdict is
        not attested."""
        why_not = publishable(verdict, detail)
        if why_not is not None:
            log.debug("not attesting verdict %s: %s", verdict.id, why_not)
            return None
        signed = await self.sign(verdict.sha256, verdict.label, verdict.method, verdict.model,
                                 hashes, detail)
        async with self.store.writing() as conn:
            object_id = await self.publish_verdict_in(conn, verdict, hashes, detail, signed)
        self.queued()
        return object_id

    async def sign(self, sha256: str, label: str, method: str, model: str | None,
                   hashes: ImageHashes | None, detail: dict[str, Any] | None = None
                   ) -> Signed | None:
        """The attestation of a verdict about to be recorded, signed now; None if such a
        verdict is not attested."""
        if not_attested(label, method, detail) is not None:
            return None
        async with self.store.engine.connect() as conn:
            live = await self._live(conn, sha256)
        return self._sign(sha256, label, method, model, hashes, live)

    async def publish_verdict_in(self, conn: AsyncConnection, verdict: Verdict,
                                 hashes: ImageHashes | None,
                                 detail: dict[str, Any] | None = None,
                                 signed: Signed | None = None) -> str | None:
        """Write the attestation of ``verdict``, its outbox entry and its deliveries in the
        caller's transaction; call ``queued`` once it committed. ``signed`` (from
        ``sign``) spares signing here."""
        why_not = publishable(verdict, detail)
        if why_not is not None:
            log.debug("not attesting verdict %s: %s", verdict.id, why_not)
            return None
        live = await self._live(conn, verdict.sha256)
        if signed is None or not signed.fits(verdict, hashes, live):
            signed = self._sign(verdict.sha256, verdict.label, verdict.method, verdict.model,
                                hashes, live)
        pa = t.published_attestations
        object_id = self._object_id(signed.uid)
        if not signed.replaces:
            await conn.execute(pa.insert().values(
                id=signed.uid, object_id=object_id, sha256=verdict.sha256,
                verdict_id=verdict.id, body=signed.doc, created_at=signed.at,
                updated_at=signed.at))
        else:
            await conn.execute(update(pa).where(pa.c.id == signed.uid).values(
                verdict_id=verdict.id, body=signed.doc, updated_at=signed.at))
        await self._send_in(conn, "Update" if signed.replaces else "Create", signed.doc)
        return object_id

    async def retract(self, sha256: str) -> list[str]:
        """Delete our live attestations of ``sha256``; returns their ids."""
        async with self.store.writing() as conn:
            ids = await self.retract_in(conn, sha256)
        self.queued()
        return ids

    async def retract_in(self, conn: AsyncConnection, sha256: str) -> list[str]:
        """``retract`` in the caller's transaction; call ``queued`` once it committed."""
        pa = t.published_attestations
        rows = (await conn.execute(select(pa.c.id, pa.c.object_id).where(and_(
            pa.c.sha256 == sha256, pa.c.retracted_at.is_(None))))).all()
        if rows:
            await conn.execute(update(pa).where(pa.c.id.in_([r.id for r in rows]))
                               .values(retracted_at=utcnow()))
        for r in rows:
            await self._send_in(conn, "Delete", {"id": r.object_id, "type": "Tombstone"})
        return [r.object_id for r in rows]

    def queued(self) -> None:
        """Deliveries were committed: wake the delivery loop (it polls anyway)."""
        if self.poke is not None:
            self.poke()

    async def get(self, uid: str) -> dict[str, Any] | None:
        """A live attestation by the uuid in its id (retracted ones are gone)."""
        pa = t.published_attestations
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(pa.c.body).where(and_(
                pa.c.id == uid, pa.c.retracted_at.is_(None))))).first()
        return dict(row.body) if row is not None else None

    async def _live(self, conn: AsyncConnection, sha256: str) -> str | None:
        """The uid of our live attestation of ``sha256``, if any."""
        pa = t.published_attestations
        row = (await conn.execute(select(pa.c.id).where(and_(
            pa.c.sha256 == sha256, pa.c.retracted_at.is_(None)))
            .order_by(pa.c.created_at.desc()))).first()
        return None if row is None else str(row.id)

    def _object_id(self, uid: str) -> str:
        return f"{self.identity.base}/attestations/{uid}"

    def _sign(self, sha256: str, label: str, method: str, model: str | None,
              hashes: ImageHashes | None, live: str | None) -> Signed:
        now = utcnow()
        uid = live if live is not None else str(uuid7())
        doc = sign_attestation(build_attestation(
            object_id=self._object_id(uid), issuer=self.identity.actor,
            audience=self.identity.followers, sha256=sha256,
            frames=_frames(hashes), label=label, method=method,
            model=model, published=now), self.identity.key, self.identity.key_id)
        return Signed(uid=uid, sha256=sha256, label=label, method=method, model=model,
                      frames=_frames(hashes), replaces=live is not None, doc=doc, at=now)

    async def _send_in(self, conn: AsyncConnection, kind: str, obj: dict[str, Any]) -> None:
        act = activity(kind, activity_id=f"{self.identity.base}/activities/{uuid7()}",
                       actor=self.identity.actor, obj=obj, audience=self.identity.followers,
                       published=utcnow())
        await self.fstore.publish_in(conn, act)
        await self.fstore.enqueue_in(conn, await self.fstore.accepted_inboxes_in(conn), act)
