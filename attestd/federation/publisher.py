"""Publishing this node's own verdicts as signed attestations to its followers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import and_, select, update
from uuid6 import uuid7

from attestd.db import schema as t
from attestd.db.store import Store
from attestd.federation.attestations import ATTESTED_LABELS, activity, build_attestation, sign_attestation
from attestd.federation.store import FederationStore
from attestd.model import Verdict, utcnow
from scanner import ImageHashes

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
    if verdict.label not in ATTESTED_LABELS:
        return f"label {verdict.label} is not attested"
    if verdict.method == "human_review":
        return None
    if verdict.method != "classifier":
        return f"method {verdict.method} is not attested"
    if detail is not None and detail.get("publishable") is False:
        return "the classifier has no trained weights (allow_random_weights)"
    return None


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
        image); returns the attestation id, or None if the verdict is not attested."""
        why_not = publishable(verdict, detail)
        if why_not is not None:
            log.debug("not attesting verdict %s: %s", verdict.id, why_not)
            return None
        pa = t.published_attestations
        async with self.store.engine.connect() as conn:
            live = (await conn.execute(select(pa.c.id, pa.c.object_id).where(and_(
                pa.c.sha256 == verdict.sha256, pa.c.retracted_at.is_(None)))
                .order_by(pa.c.created_at.desc()))).first()
        now = utcnow()
        uid = live.id if live is not None else str(uuid7())
        object_id = f"{self.identity.base}/attestations/{uid}"
        doc = sign_attestation(build_attestation(
            object_id=object_id, issuer=self.identity.actor, audience=self.identity.followers,
            sha256=verdict.sha256, frames=hashes.frames if hashes is not None else (),
            label=verdict.label, method=verdict.method, model=verdict.model, published=now),
            self.identity.key, self.identity.key_id)
        async with self.store.writing() as conn:
            if live is None:
                await conn.execute(pa.insert().values(
                    id=uid, object_id=object_id, sha256=verdict.sha256, verdict_id=verdict.id,
                    body=doc, created_at=now, updated_at=now))
            else:
                await conn.execute(update(pa).where(pa.c.id == uid).values(
                    verdict_id=verdict.id, body=doc, updated_at=now))
        await self._send("Update" if live is not None else "Create", doc)
        return object_id

    async def retract(self, sha256: str) -> list[str]:
        """Delete our live attestations of ``sha256``; returns their ids."""
        pa = t.published_attestations
        async with self.store.writing() as conn:
            rows = (await conn.execute(select(pa.c.id, pa.c.object_id).where(and_(
                pa.c.sha256 == sha256, pa.c.retracted_at.is_(None))))).all()
            if rows:
                await conn.execute(update(pa).where(pa.c.id.in_([r.id for r in rows]))
                                   .values(retracted_at=utcnow()))
        for r in rows:
            await self._send("Delete", {"id": r.object_id, "type": "Tombstone"})
        return [r.object_id for r in rows]

    async def get(self, uid: str) -> dict[str, Any] | None:
        """A live attestation by the uuid in its id (retracted ones are gone)."""
        pa = t.published_attestations
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(pa.c.body).where(and_(
                pa.c.id == uid, pa.c.retracted_at.is_(None))))).first()
        return dict(row.body) if row is not None else None

    async def _send(self, kind: str, obj: dict[str, Any]) -> None:
        act = activity(kind, activity_id=f"{self.identity.base}/activities/{uuid7()}",
                       actor=self.identity.actor, obj=obj, audience=self.identity.followers,
                       published=utcnow())
        await self.fstore.publish(act)
        inboxes = await self.fstore.accepted_inboxes()
        await self.fstore.enqueue(inboxes, act)
        if self.poke is not None:
            self.poke()
