"""Tombstones bind to their issuer (issue 16, item 11): a Delete sent by anyone but the
issuer cannot pre-empt the issuer's attestation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select
from uuid6 import uuid7

from activitypub import ed25519_multibase, public_key_pem
from activitypub._documents import ActorSpec, actor_document
from attestd.db import schema as t
from attestd.federation.attestations import activity, build_attestation, sign_attestation
from attestd.federation.runtime import Federation
from attestd.http.appkeys import FEDERATION, STORE
from attestd.model import utcnow
from scanner import FrameHashes
from tests.integration.test_federation_endpoints import Node, start_node


class Issuer:
    """A peer's identity: an actor at ``base`` with an Ed25519 assertion key."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.spec = ActorSpec(
            id=f"{base}/actor", preferred_username="attestd", name="peer", summary="",
            public_key_pem=public_key_pem(rsa.generate_private_key(public_exponent=65537,
                                                                   key_size=2048)),
            ed25519_multibase=ed25519_multibase(self.key))

    @property
    def actor(self) -> str:
        return self.spec.id

    def document(self) -> dict[str, Any]:
        return actor_document(self.spec, inbox=f"{self.base}/inbox",
                              outbox=f"{self.base}/outbox", followers=f"{self.base}/followers")

    def create(self, sha256: str, label: str = "csam_suspect",
               object_id: str | None = None) -> dict[str, Any]:
        doc = build_attestation(
            object_id=object_id or f"{self.base}/attestations/{uuid7()}", issuer=self.actor,
            audience=f"{self.base}/followers", sha256=sha256,
            frames=(FrameHashes(pdq="ab" * 32, pdq_quality=100, phash="cd" * 8),),
            label=label, method="human_review", model=None, published=utcnow())
        signed = sign_attestation(doc, self.key, self.spec.ed25519_key_id)
        return activity("Create", activity_id=f"{self.base}/activities/{uuid7()}",
                        actor=self.actor, obj=signed, audience=f"{self.base}/followers",
                        published=utcnow())

    def delete(self, object_id: str) -> dict[str, Any]:
        return {"id": f"{self.base}/activities/{uuid7()}", "type": "Delete",
                "actor": self.actor, "object": {"id": object_id, "type": "Tombstone"}}


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url)
    yield n
    await n.runner.cleanup()


async def _trusted_peer(fed: Federation, base: str, trust: str = "full") -> Issuer:
    peer = Issuer(base)
    fed.keyring.remember(peer.document())
    await fed.peers.add(peer.actor, f"{base}/inbox", f"{base}/outbox", trust,  # type: ignore[arg-type]
                        f"{base}/follows/1")
    await fed.peers.set_state(peer.actor, "accepted")
    return peer


async def _live(node: Node, object_id: str) -> list[Any]:
    async with node.app[STORE].engine.connect() as conn:
        return list((await conn.execute(select(t.attestations).where(
            t.attestations.c.object_id == object_id))).all())


async def test_a_stranger_cannot_preempt_a_peers_attestation(node: Node) -> None:
    fed = node.app[FEDERATION]
    peer = await _trusted_peer(fed, "https://peer.example")
    create = peer.create("11" * 32)
    object_id = create["object"]["id"]
    # Mallory (no peer) and another peer (not the issuer) each send a Delete first.
    mallory = Issuer("https://mallory.example")
    other = await _trusted_peer(fed, "https://other.example")
    for sender in (mallory, other):
        await fed.handler.handle(sender.actor, sender.delete(object_id))
    handled = await fed.handler.handle(peer.actor, create)
    assert handled.status == "accepted" and "stored" in handled.detail, handled
    rows = await _live(node, object_id)
    assert len(rows) == 1 and rows[0].retracted_at is None and rows[0].issuer == peer.actor
    assert rows[0].label == "csam_suspect"


async def test_the_issuer_may_preempt_its_own_attestation(node: Node) -> None:
    fed = node.app[FEDERATION]
    peer = await _trusted_peer(fed, "https://peer.example")
    create = peer.create("22" * 32)
    object_id = create["object"]["id"]
    await fed.handler.handle(peer.actor, peer.delete(object_id))
    handled = await fed.handler.handle(peer.actor, create)
    assert "retracted_earlier" in handled.detail, handled
    rows = await _live(node, object_id)
    assert len(rows) == 1 and rows[0].retracted_at is not None


async def test_an_attestation_id_must_be_on_its_issuers_host(node: Node) -> None:
    # A peer that names its attestation with another peer's id would take that id first.
    fed = node.app[FEDERATION]
    victim = await _trusted_peer(fed, "https://peer.example")
    squatter = await _trusted_peer(fed, "https://squatter.example")
    stolen_id = f"{victim.base}/attestations/{uuid7()}"
    squat = await fed.handler.handle(squatter.actor, squatter.create("33" * 32, "ok", stolen_id))
    assert squat.status == "refused" and "host" in squat.detail, squat
    real = await fed.handler.handle(victim.actor, victim.create("33" * 32, object_id=stolen_id))
    assert real.status == "accepted" and "stored" in real.detail, real
