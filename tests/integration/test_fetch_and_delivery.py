"""The signed fetcher and the delivery queue against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from activitypub import BlockedAddressError, FetchError, RemoteProtocolError
from activitypub.fetch import Fetcher, make_session
from tests.conftest import async_wait_for
from tests.integration.test_federation_endpoints import Node, start_node
from tests.peers import Peer, free_port


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """A server with well- and badly-behaved documents."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def doc(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body: Any = {"id": f"{base}/docs/{name}", "type": "Note"}
        ctype = "application/activity+json"
        if name == "liar":
            body["id"] = "https://victim.example/users/admin"
        elif name == "huge":
            body["content"] = "x" * (2 * 1024 * 1024)
        elif name == "html":
            ctype = "text/html"
        elif name == "list":
            body = [1, 2]
        elif name == "loop":
            raise web.HTTPFound(f"{base}/docs/loop")
        elif name == "moved":
            raise web.HTTPFound(f"{base}/docs/target")
        if "Signature" not in request.headers:
            return web.Response(status=401)
        return web.Response(text=json.dumps(body), content_type=ctype)

    app = web.Application()
    app.router.add_get("/docs/{name}", doc)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield base
    await runner.cleanup()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    session = make_session(allow_private=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield Fetcher(session, key_id="http://127.0.0.1/actor#main-key", private_key=key,
                  allow_private=True)
    await session.close()


async def test_fetcher_signs_and_checks_what_it_gets(origin: str, fetcher: Fetcher) -> None:
    assert (await fetcher.get(f"{origin}/docs/ok"))["type"] == "Note"
    with pytest.raises(RemoteProtocolError, match="claims the id"):
        await fetcher.get(f"{origin}/docs/liar")
    with pytest.raises(FetchError, match="over"):
        await fetcher.get(f"{origin}/docs/huge")
    with pytest.raises(FetchError, match="text/html"):
        await fetcher.get(f"{origin}/docs/html")
    with pytest.raises(RemoteProtocolError, match="not an object"):
        await fetcher.get(f"{origin}/docs/list")
    with pytest.raises(FetchError, match="redirects"):
        await fetcher.get(f"{origin}/docs/loop")
    # A redirect is followed; the document's id must be the URL it ended at.
    assert (await fetcher.get(f"{origin}/docs/moved"))["id"] == f"{origin}/docs/target"


async def test_fetcher_refuses_loopback_by_default(origin: str) -> None:
    session = make_session(allow_private=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    strict = Fetcher(session, key_id="k#main-key", private_key=key)
    try:
        with pytest.raises(BlockedAddressError):
            await strict.get(f"{origin}/docs/ok")
        with pytest.raises(BlockedAddressError):
            await strict.get(origin.replace("127.0.0.1", "localhost") + "/docs/ok")
    finally:
        await session.close()


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, federation={"retry_base_s": 0.2})
    yield n
    await n.runner.cleanup()


def _fed(node: Node) -> Any:
    from attestd.http.appkeys import FEDERATION

    return node.app[FEDERATION]


async def test_deliveries_are_signed_retried_and_stopped(node: Node) -> None:
    ok, flaky, gone = Peer(name="ok"), Peer(name="flaky"), Peer(name="gone")
    flaky.inbox_status = 503
    gone.inbox_status = 410
    for p in (ok, flaky, gone):
        await p.start()
    try:
        fed = _fed(node)
        activity = {"@context": "https://www.w3.org/ns/activitystreams", "type": "Create",
                    "id": f"{node.base}/activities/1", "actor": f"{node.base}/actor",
                    "object": {"type": "Note", "content": "hello"}}
        assert await fed.store.enqueue([ok.inbox, flaky.inbox, gone.inbox, ok.inbox],
                                       activity) == 3
        fed.deliverer.poke()
        # The receivers verify our signature against our actor document.
        assert await async_wait_for(lambda: len(ok.received) == 1, timeout=10)
        assert await async_wait_for(lambda: len(flaky.received) >= 2, timeout=15)
        flaky.inbox_status = 202
        assert await async_wait_for(
            _counts_are(fed, {"delivered": 2, "stopped": 1}), timeout=15)
        assert ok.received[0]["id"] == activity["id"]
        assert len(gone.received) == 1  # a 410 is final: no retries
    finally:
        for p in (ok, flaky, gone):
            await p.stop()


def _counts_are(fed: Any, expected: dict[str, int]) -> Any:
    async def check() -> bool:
        return dict(await fed.store.counts()) == expected
    return check


async def test_unreachable_peer_is_retried_until_it_comes_back(node: Node) -> None:
    late = Peer(name="late")  # not started yet: connection refused
    fed = _fed(node)
    await fed.store.enqueue([late.inbox], {"id": f"{node.base}/a/2", "type": "Create",
                                           "actor": f"{node.base}/actor"})
    fed.deliverer.poke()
    await asyncio.sleep(1.0)
    assert (await fed.store.counts()) == {"queued": 1}
    await late.start()
    try:
        assert await async_wait_for(lambda: len(late.received) == 1, timeout=20)
    finally:
        await late.stop()


async def test_peer_down_for_days_is_parked_then_resumed_when_it_writes_to_us(
        node: Node) -> None:
    from datetime import datetime, timedelta

    import aiohttp
    from sqlalchemy import update

    from attestd.db import schema as t
    from tests.integration.test_federation_endpoints import follow

    away = Peer(name="away")  # down
    fed = _fed(node)
    await fed.store.enqueue([away.inbox], {"id": f"{node.base}/a/3", "type": "Create",
                                           "actor": f"{node.base}/actor"})
    # It has been failing for four days already.
    async with fed.store.store.writing() as conn:
        await conn.execute(update(t.deliveries).values(
            attempts=12, first_failed_at=datetime.now(UTC) - timedelta(days=4)))
    fed.deliverer.poke()
    assert await async_wait_for(_counts_are(fed, {"parked": 1}), timeout=10)

    # Back online, it sends us something: what was parked for it goes out at once.
    await away.start()
    try:
        body, headers = away.signed_post(node.inbox, follow(away, node))
        async with aiohttp.ClientSession() as s:
            async with s.post(node.inbox, data=body, headers=headers) as r:
                assert r.status == 202
        assert await async_wait_for(lambda: len(away.received) == 1, timeout=10)
        assert await async_wait_for(_counts_are(fed, {"delivered": 1}), timeout=5)
    finally:
        await away.stop()
