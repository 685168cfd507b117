"""The node's inbox and signed GETs accept RFC 9421 HTTP Message Signatures from an
independent client (PyPI ``http-message-signatures``), beside draft-cavage; tampered,
expired and wrong-key requests get 401 with the reason."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from activitypub import ed25519_multibase
from tests.integration.test_federation_endpoints import Node, start_node
from tests.peers import Peer


@dataclass
class ModernPeer(Peer):
    """A peer publishing an Ed25519 Multikey beside its RSA key, as Fedify does."""

    ed_key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @property
    def ed_key_id(self) -> str:
        return f"{self.actor_id}#ed25519-key"

    def actor_document(self) -> dict[str, Any]:
        doc = super().actor_document()
        doc["@context"] = [*doc["@context"], "https://www.w3.org/ns/did/v1",
                           "https://w3id.org/security/multikey/v1"]
        doc["assertionMethod"] = [{"id": self.ed_key_id, "type": "Multikey",
                                   "controller": self.actor_id,
                                   "publicKeyMultibase": ed25519_multibase(self.ed_key)}]
        return doc


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: Any) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key.public_key()


def sign(url: str, key: Any, key_id: str, *, method: str = "POST", body: bytes | None = None,
         created: datetime | None = None, expires: datetime | None = None) -> dict[str, str]:
    host = url.split("/")[2]
    headers = {"Host": host, "Content-Type": "application/activity+json"}
    alg = algorithms.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else algorithms.RSA_V1_5_SHA256
    HTTPMessageSigner(signature_algorithm=alg, key_resolver=Keys(key)).sign(
        SimpleNamespace(method=method, url=url, headers=headers), key_id=key_id, label="sig1",
        covered_component_ids=("@method", "@target-uri", "@authority", "content-type"),
        body=body, created=created or datetime.now(UTC), expires=expires)
    return headers


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url)
    yield n
    await n.runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[ModernPeer]:
    p = ModernPeer(name="modern")
    await p.start()
    yield p
    await p.stop()


def follow(peer: Peer, node: Node) -> bytes:
    return json.dumps({"@context": "https://www.w3.org/ns/activitystreams",
                       "id": f"{peer.actor_id}/follows/{uuid.uuid4()}", "type": "Follow",
                       "actor": peer.actor_id, "object": f"{node.base}/actor"}).encode()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers=headers) as r:
            return r.status, await r.text()


@pytest.mark.parametrize("which", ["ed25519", "rsa-v1_5-sha256"])
async def test_rfc9421_signed_activities_are_accepted(node: Node, peer: ModernPeer,
                                                      which: str) -> None:
    key, key_id = (peer.ed_key, peer.ed_key_id) if which == "ed25519" else (peer.key, peer.key_id)
    body = follow(peer, node)
    status, text = await post(node.inbox, body, sign(node.inbox, key, key_id, body=body))
    assert status == 202, text
    assert json.loads(text)["status"] == "accepted"


async def test_tampered_expired_and_wrong_key_requests_get_401_with_the_reason(
        node: Node, peer: ModernPeer) -> None:
    body = follow(peer, node)
    headers = sign(node.inbox, peer.ed_key, peer.ed_key_id, body=body)
    status, text = await post(node.inbox, body.replace(b"Follow", b"Undo"), headers)
    assert (status, json.loads(text)["error"]) == (
        401, "the Content-Digest field does not match the body")

    headers = sign(node.inbox, peer.ed_key, peer.ed_key_id, body=body)
    headers["Content-Type"] = "application/json"
    status, text = await post(node.inbox, body, headers)
    assert (status, json.loads(text)["error"]) == (
        401, "the signature does not verify with the signer's key")

    past = datetime.now(UTC) - timedelta(minutes=10)
    headers = sign(node.inbox, peer.ed_key, peer.ed_key_id, body=body, created=past,
                   expires=past + timedelta(minutes=2))
    status, text = await post(node.inbox, body, headers)
    assert (status, json.loads(text)["error"]) == (401, "the signature has expired")

    impostor = ed25519.Ed25519PrivateKey.generate()
    headers = sign(node.inbox, impostor, peer.ed_key_id, body=body)
    status, text = await post(node.inbox, body, headers)
    assert status == 401 and "does not verify" in json.loads(text)["error"]


async def test_a_rfc9421_signed_get_identifies_the_signer(node: Node, peer: ModernPeer) -> None:
    url = f"{node.base}/outbox?page=true"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=sign(url, peer.key, peer.key_id, method="GET")) as r:
            # Verified as the peer, who is no follower: refused for that, not the signature.
            assert r.status == 403
            assert "is not an accepted follower" in (await r.json())["error"]
        async with s.get(url) as r:
            assert r.status == 401
