"""Amplification and isolation (issue 16, item 12): bad signatures do not make the node
refetch keys each time, one slow host does not delay another, an endless outbox does not
stall the backfill of other peers, a rejected follower gets nothing more, and a POST
signature must cover Host."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from activitypub import sign_request
from attestd.db import schema as t
from attestd.federation import manage
from attestd.http.admin_context import federated
from attestd.http.appkeys import FEDERATION, STORE
from tests.conftest import async_wait_for, free_port
from tests.integration.test_federation_endpoints import Node, follow, start_node
from tests.integration.test_tombstones import Issuer
from tests.peers import Peer

pytestmark = pytest.mark.timeout(120)


class CountingPeer(Peer):
    """A Peer that counts how often its actor document is fetched."""

    fetches = 0

    async def _actor(self, request: web.Request) -> web.Response:
        type(self).fetches += 1
        return await super()._actor(request)


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, federation={"deliver": False})
    yield n
    await n.runner.cleanup()


async def test_bad_signatures_do_not_refetch_the_key_every_time(node: Node) -> None:
    CountingPeer.fetches = 0
    peer = await CountingPeer().start()
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                body = json.dumps(follow(peer, node)).encode()
                headers = sign_request(method="POST", url=node.inbox, key_id=peer.key_id,
                                       private_key=wrong, body=body,
                                       headers={"Content-Type": "application/activity+json"})
                async with http.post(node.inbox, data=body, headers=headers) as r:
                    assert r.status == 401
        # The first look-up, and one refetch in case the key rotated; not one per request.
        assert CountingPeer.fetches <= 2, CountingPeer.fetches
    finally:
        await peer.stop()


async def test_keys_that_cannot_be_fetched_are_not_fetched_again_each_time(node: Node) -> None:
    # keyIds naming someone else's server: the node must not become a reflector.
    hits = 0
    port = free_port()

    async def victim(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", victim)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    attacker = await Peer(name="mallory").start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                act = follow(attacker, node)
                act["actor"] = f"http://127.0.0.1:{port}/users/victim"
                body = json.dumps(act).encode()
                headers = sign_request(method="POST", url=node.inbox,
                                       key_id=f"{act['actor']}#main-key",
                                       private_key=attacker.key, body=body,
                                       headers={"Content-Type": "application/activity+json"})
                async with http.post(node.inbox, data=body, headers=headers) as r:
                    assert r.status == 401
        assert hits == 1, hits
    finally:
        await attacker.stop()
        await runner.cleanup()


class NamedPeer(Peer):
    """A Peer whose URLs carry a host name (resolved by the patched getaddrinfo below)."""

    host = "legit.test"

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def slow_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Names under slow.test take until released to resolve; *.test names are loopback."""
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".slow.test"):
            release.wait(30)
            raise socket.gaierror(socket.EAI_NONAME, "no such host")
        if name.endswith(".test"):
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield release
    release.set()


async def test_a_slow_key_host_does_not_delay_another_peer(
        node: Node, slow_dns: threading.Event) -> None:
    # 40 activities whose keys sit on hosts that take long to resolve, then one from a
    # peer whose key is not cached yet.
    peer = await NamedPeer().start()
    attacker = await Peer(name="mallory").start()
    try:
        async with aiohttp.ClientSession() as http:
            async def post_slow(i: int) -> None:
                act = follow(attacker, node)
                act["actor"] = f"http://u{i}.slow.test/users/u{i}"
                body = json.dumps(act).encode()
                headers = sign_request(
                    method="POST", url=node.inbox, key_id=f"{act['actor']}#main-key",
                    private_key=attacker.key, body=body,
                    headers={"Content-Type": "application/activity+json"})
                async with http.post(node.inbox, data=body, headers=headers) as r:
                    await r.read()

            slow_posts = [asyncio.create_task(post_slow(i)) for i in range(40)]
            await asyncio.sleep(0.5)  # let them reach the resolver
            body, headers = peer.signed_post(node.inbox, follow(peer, node))
            legit = asyncio.create_task(http.post(node.inbox, data=body, headers=headers))
            # The peer is answered while the slow names are still unresolved.
            done, _ = await asyncio.wait([legit], timeout=15)
            assert legit in done and not slow_dns.is_set(), "the peer waited for the slow host"
            resp = legit.result()
            assert resp.status == 202, await resp.text()
            resp.release()
            slow_dns.set()
            await asyncio.gather(*slow_posts)
    finally:
        slow_dns.set()
        await peer.stop()
        await attacker.stop()


class Outbox:
    """A peer's outbox on loopback: ``endless`` serves a new page with a new item forever."""

    def __init__(self, issuer: Issuer, *, endless: bool) -> None:
        self.issuer = issuer
        self.endless = endless
        self.pages = 0

    def page(self, request: web.Request) -> dict[str, Any]:
        self.pages += 1
        base = self.issuer.base
        min_id = request.query.get("min_id", "0")
        if not self.endless and min_id != "00000000-0000-0000-0000-000000000000":
            return {"id": f"{base}/outbox?page=true", "type": "OrderedCollectionPage",
                    "orderedItems": []}
        item = self.issuer.create(f"{self.pages % 256:02x}" * 32)
        nxt = str(uuid.uuid4())
        return {"id": f"{base}/outbox?page=true&min_id={min_id}",
                "type": "OrderedCollectionPage", "orderedItems": [item],
                "prev": f"{base}/outbox?page=true&min_id={nxt}"}


async def test_an_endless_outbox_does_not_stall_other_peers(node: Node) -> None:
    fed = node.app[FEDERATION]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    endless = Outbox(Issuer(f"{base}/endless"), endless=True)
    good = Outbox(Issuer(f"{base}/good"), endless=False)
    boxes = {"endless": endless, "good": good}

    async def outbox(request: web.Request) -> web.Response:
        box = boxes[request.match_info["who"]]
        return web.Response(text=json.dumps(box.page(request)),
                            content_type="application/activity+json")

    app = web.Application()
    app.router.add_get("/{who}/outbox", outbox)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for box in (endless, good):
            issuer = box.issuer
            fed.keyring.remember(issuer.document())
            await fed.peers.add(issuer.actor, f"{issuer.base}/inbox", f"{issuer.base}/outbox",
                                "full", f"{issuer.base}/follows/1")
            await fed.peers.set_state(issuer.actor, "accepted")
        # The node's own backfiller: the endless peer first, the good one while it reads.
        fed.backfiller.request(endless.issuer.actor)
        assert await async_wait_for(lambda: endless.pages >= 3, 30)
        fed.backfiller.request(good.issuer.actor)

        async def good_applied() -> bool:
            async with node.app[STORE].engine.connect() as conn:
                return (await conn.execute(select(t.attestations.c.id).where(
                    t.attestations.c.issuer == good.issuer.actor))).first() is not None

        assert await async_wait_for(good_applied, 60), (
            f"the good peer's outbox was not read; the endless one served {endless.pages}")
    finally:
        await runner.cleanup()


async def test_rejecting_a_follower_cancels_what_is_queued_for_it(node: Node) -> None:
    fed = node.app[FEDERATION]
    inbox = "https://follower.example/inbox"
    actor = "https://follower.example/actor"
    await fed.store.add_follower(actor, inbox, None, state="accepted",
                                 follow_activity="https://follower.example/follows/1")
    other = "https://other.example/inbox"
    for i in range(3):
        await fed.store.enqueue([inbox, other], {"id": f"https://n.example/a/{i}",
                                                 "type": "Create"})
    assert await manage.answer_follower(federated(node.app), actor, accept=False,
                                        actor="admin:test")
    async with node.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(select(t.deliveries.c.inbox, t.deliveries.c.body).where(
            t.deliveries.c.state == "queued"))).all()
    to_follower = [json.loads(bytes(r.body))["type"] for r in rows if r.inbox == inbox]
    assert to_follower == ["Reject"], to_follower
    assert sum(r.inbox == other for r in rows) == 3


async def test_a_post_signature_must_cover_host(node: Node) -> None:
    peer = await Peer().start()
    try:
        body = json.dumps(follow(peer, node)).encode()
        signed = sign_request(method="POST", url=node.inbox, key_id=peer.key_id,
                              private_key=peer.key, body=body,
                              headers={"Content-Type": "application/activity+json"})
        # Re-sign without host: a signature that another host could replay.
        import base64

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        from activitypub import signing_string

        names = ["(request-target)", "date", "digest", "content-type"]
        lower = {k.lower(): v for k, v in signed.items()}
        text = signing_string("POST", "/inbox", lower, names)
        sig = base64.b64encode(peer.key.sign(text.encode(), padding.PKCS1v15(),
                                             hashes.SHA256())).decode()
        signed["Signature"] = (f'keyId="{peer.key_id}",algorithm="rsa-sha256",'
                               f'headers="{" ".join(names)}",signature="{sig}"')
        async with aiohttp.ClientSession() as http, \
                http.post(node.inbox, data=body, headers=signed) as r:
            text = await r.text()
            assert r.status == 401 and "host" in text, text
    finally:
        await peer.stop()
