"""The node as an ActivityPub actor, with real servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import func, select

from activitypub import load_ed25519_multibase, load_public_key_pem, make_digest, signing_string
from attestd.db import schema as t
from attestd.http import create_app
from attestd.http.appkeys import STORE
from tests.conftest import make_config
from tests.peers import Peer, free_port


class Node:
    def __init__(self, app: web.Application, runner: web.AppRunner, base: str) -> None:
        self.app, self.runner, self.base = app, runner, base

    @property
    def inbox(self) -> str:
        return f"{self.base}/inbox"


async def start_node(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> Node:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = make_config(tmp_path, db_url, node={"base_url": base}, **sections)
    app = create_app(cfg)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Node(app, runner, base)


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, federation={"blocked_hosts": ["blocked.example"]})
    yield n
    await n.runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer().start()
    yield p
    await p.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def follow(peer: Peer, node: Node, **extra: Any) -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{peer.actor_id}/follows/{uuid.uuid4()}", "type": "Follow",
            "actor": peer.actor_id, "object": f"{node.base}/actor", **extra}


async def test_actor_webfinger_and_nodeinfo(node: Node, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{node.base}/actor") as r:
        assert r.status == 200 and r.content_type == "application/activity+json"
        actor = await r.json(content_type=None)
    assert actor["id"] == f"{node.base}/actor" and actor["type"] == "Service"
    assert actor["manuallyApprovesFollowers"] is True
    assert actor["endpoints"]["sharedInbox"] == f"{node.base}/inbox"
    assert actor["publicKey"]["id"] == f"{node.base}/actor#main-key"
    assert load_public_key_pem(actor["publicKey"]["publicKeyPem"]).key_size == 2048  # type: ignore[union-attr]
    method = actor["assertionMethod"][0]
    assert method["type"] == "Multikey" and method["controller"] == actor["id"]
    load_ed25519_multibase(method["publicKeyMultibase"])

    host = node.base.split("//")[1]
    async with http.get(f"{node.base}/.well-known/webfinger",
                        params={"resource": f"acct:attestd@{host}"}) as r:
        assert r.status == 200 and r.content_type == "application/jrd+json"
        jrd = await r.json(content_type=None)
    self_link = [x for x in jrd["links"] if x["rel"] == "self"][0]
    assert self_link["href"] == actor["id"] and self_link["type"] == "application/activity+json"
    for bad, status in ((f"acct:someone@{host}", 404), ("acct:attestd@other.example", 400),
                        ("https://x", 400), ("", 400)):
        async with http.get(f"{node.base}/.well-known/webfinger", params={"resource": bad}) as r:
            assert r.status == status and "error" in await r.json()

    async with http.get(f"{node.base}/.well-known/nodeinfo") as r:
        link = (await r.json())["links"][0]
    assert link["rel"] == "http://nodeinfo.diaspora.software/ns/schema/2.1"
    async with http.get(link["href"]) as r:
        info = await r.json(content_type=None)
    assert info["version"] == "2.1" and info["software"]["name"] == "attestd"


async def test_signed_follow_is_accepted_once(node: Node, peer: Peer,
                                              http: aiohttp.ClientSession) -> None:
    activity = follow(peer, node)
    body, headers = peer.signed_post(node.inbox, activity)
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["status"] == "accepted"
    # A replay of the very same request is not applied twice.
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 202 and (await r.json())["status"] == "duplicate"
    await asyncio.sleep(0.6)  # on SQLite the record is written behind, in a batch
    async with node.app[STORE].engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(t.received_activities))).scalar()
    assert n == 1


async def test_lemmy_shaped_hs2019_request(node: Node, peer: Peer,
                                           http: aiohttp.ClientSession) -> None:
    body = json.dumps(follow(peer, node)).encode()
    now = datetime.now(UTC)
    created, expires = int(now.timestamp()), int(now.timestamp()) + 300
    host = node.base.split("//")[1]
    headers = {"Host": host, "Content-Type": "application/activity+json",
               "Date": email.utils.format_datetime(now, usegmt=True), "Digest": make_digest(body)}
    names = ["(request-target)", "content-type", "date", "digest", "host", "(created)",
             "(expires)"]
    text = signing_string("POST", "/inbox", {k.lower(): v for k, v in headers.items()}, names,
                          created, expires)
    sig = base64.b64encode(peer.key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256()))
    headers["Signature"] = (f'keyId="{peer.key_id}",algorithm="hs2019",created={created},'
                            f'expires={expires},headers="{" ".join(names)}",'
                            f'signature="{sig.decode()}"')
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 202, await r.text()


async def test_bad_inbox_requests(node: Node, peer: Peer, http: aiohttp.ClientSession) -> None:
    impostor = await Peer(name="mallory").start()
    try:
        cases: list[tuple[str, bytes, dict[str, str], int, str]] = []
        body, headers = peer.signed_post(node.inbox, follow(peer, node))
        cases.append(("changed body", body.replace(b"Follow", b"Block!"), headers, 401, "Digest"))
        cases.append(("unsigned", body, {"Content-Type": "application/activity+json"}, 401,
                      "not signed"))
        stale_body, stale = peer.signed_post(node.inbox, follow(peer, node))
        stale["Date"] = email.utils.format_datetime(
            datetime.now(UTC) - timedelta(hours=3), usegmt=True)
        cases.append(("stale date", stale_body, stale, 401, "clock"))
        # Mallory signs an activity claiming to be Alice's.
        forged_body, forged = impostor.signed_post(node.inbox, follow(peer, node))
        cases.append(("signer is not the actor", forged_body, forged, 401, "signed by"))
        bad_json_headers = dict(headers)
        cases.append(("malformed JSON", b"{not json", bad_json_headers, 400, "JSON"))
        blocked = follow(peer, node)
        blocked["actor"] = "https://blocked.example/users/spam"
        b_body, b_headers = peer.signed_post(node.inbox, blocked)
        cases.append(("blocked host", b_body, b_headers, 403, "blocked"))
        no_actor = follow(peer, node)
        del no_actor["actor"]
        n_body, n_headers = peer.signed_post(node.inbox, no_actor)
        cases.append(("no actor", n_body, n_headers, 400, "actor"))
        unknown = follow(peer, node)
        u_body, u_headers = peer.signed_post(node.inbox, unknown)
        u_headers["Signature"] = u_headers["Signature"].replace(peer.key_id,
                                                                f"{peer.base}/users/ghost#main-key")
        cases.append(("unknown key", u_body, u_headers, 401, "signing key"))
        big = follow(peer, node, content="x" * (1024 * 1024 + 10))
        g_body, g_headers = peer.signed_post(node.inbox, big)
        cases.append(("oversized", g_body, g_headers, 413, "over"))
        for name, data, hdrs, status, needle in cases:
            async with http.post(node.inbox, data=data, headers=hdrs) as r:
                payload = await r.json()
                assert r.status == status, (name, payload)
                assert needle in payload["error"], (name, payload)
        async with node.app[STORE].engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(t.received_activities))).scalar()
        assert n == 0
    finally:
        await impostor.stop()


async def test_rotated_key_is_refetched_once(node: Node, peer: Peer,
                                             http: aiohttp.ClientSession) -> None:
    body, headers = peer.signed_post(node.inbox, follow(peer, node))
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 202
    # The peer rotates its key; the node's cached copy is stale.
    from cryptography.hazmat.primitives.asymmetric import rsa

    peer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body, headers = peer.signed_post(node.inbox, follow(peer, node))
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 202, await r.text()


@pytest.mark.parametrize(("change", "why"), [
    ({"sha256": "not hex"}, "sha256"),
    ({"label": "fine"}, "label"),
    ({"proof": None}, "proof"),
    ({"frames": [{"pdq": "ab" * 32, "phash": "cd" * 8}] * 500}, "frames"),
])
async def test_inbox_refuses_malformed_attestations_and_keeps_serving(
        node: Node, peer: Peer, http: aiohttp.ClientSession, change: dict[str, Any],
        why: str) -> None:
    obj: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/activitystreams",
                     {"attestd": "https://attestd.org/ns/v1#"}],
        "id": f"{peer.base}/attestations/{uuid.uuid4()}", "type": ["Object", "Attestation"],
        "attributedTo": peer.actor_id, "sha256": "ab" * 32, "label": "csam_suspect",
        "method": "classifier", "proof": {"type": "DataIntegrityProof"}, **change}
    act = {"@context": "https://www.w3.org/ns/activitystreams",
           "id": f"{peer.actor_id}/activities/{uuid.uuid4()}", "type": "Create",
           "actor": peer.actor_id, "object": obj}
    body, headers = peer.signed_post(node.inbox, act)
    async with http.post(node.inbox, data=body, headers=headers) as r:
        assert r.status == 400
        text = await r.text()
        assert "attestation refused" in text and why in text
    async with node.app[STORE].engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.attestations))).scalar_one() == 0
    async with http.get(f"{node.base}/healthz") as r:
        assert r.status == 200
