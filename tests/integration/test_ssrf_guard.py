"""The SSRF guard under attack (issue 16, item 10): hosts spelled in Unicode digits, IP
literals that skip the resolver, blocked hosts in another spelling, and 401 bodies that
must not tell a stranger what a target answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from activitypub import BlockedAddressError, canonical_host
from activitypub.fetch import Fetcher, make_session
from tests.conftest import free_port
from tests.integration.test_federation_endpoints import follow, start_node
from tests.peers import Peer

# 127.0.0.1 as an attacker writes it: fullwidth digits, ideographic full stops, circled digits.
LOOPBACK_SPELLINGS = ["１２７.０.０.１", "127。0。0。1", "①②⑦.⓪.⓪.①", "127.0.0.1"]


class Listener:
    """A bare TCP listener on loopback that counts the connections it sees."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Listener:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    lst = await Listener().start()
    yield lst
    await lst.stop()


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_unicode_digit_hosts_never_reach_loopback(listener: Listener, host: str) -> None:
    session = make_session(allow_private=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    strict = Fetcher(session, key_id="https://node.example/actor#main-key", private_key=key)
    try:
        with pytest.raises(BlockedAddressError):
            await strict.get(f"http://{host}:{listener.port}/actor")
    finally:
        await session.close()
    assert listener.connections == 0


async def test_the_connection_itself_is_checked_not_only_the_url(listener: Listener) -> None:
    # A request that skips check_url (an IP literal, where aiohttp skips the resolver) must
    # still not connect: the address connected to is what counts.
    session = make_session(allow_private=False)
    try:
        for host in LOOPBACK_SPELLINGS:
            with pytest.raises(aiohttp.ClientError) as caught:
                await session.get(f"http://{host}:{listener.port}/actor")
            assert isinstance(caught.value.__cause__, BlockedAddressError), caught.value
    finally:
        await session.close()
    assert listener.connections == 0


def test_hosts_are_normalised_once() -> None:
    assert canonical_host("http://ＢＬＯＣＫＥＤ.example./x") == "blocked.example"
    assert canonical_host("https://bücher.example/actor") == "xn--bcher-kva.example"
    assert canonical_host("http://①②⑦.⓪.⓪.①:8080/") == "127.0.0.1"
    assert canonical_host("http://[::ffff:127.0.0.1]/") == "::ffff:7f00:1"


async def test_blocked_hosts_hold_in_every_spelling(tmp_path: Path, db_url: str) -> None:
    node = await start_node(tmp_path, db_url, federation={"blocked_hosts": ["blocked.example"]})
    peer = await Peer().start()
    try:
        async with aiohttp.ClientSession() as http:
            for spelling in ("ｂｌｏｃｋｅｄ.example", "BLOCKED.example.", "blocked。example"):
                act = follow(peer, node)
                act["actor"] = f"https://{spelling}/users/spam"
                body, headers = peer.signed_post(node.inbox, act)
                async with http.post(node.inbox, data=body, headers=headers) as r:
                    assert r.status == 403, (spelling, await r.text())
    finally:
        await peer.stop()
        await node.runner.cleanup()


@pytest.mark.parametrize("status", [404, 500, 410])
async def test_a_401_does_not_repeat_what_the_key_host_answered(
        tmp_path: Path, db_url: str, status: int) -> None:
    from aiohttp import web

    port = free_port()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text="secret internal page")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    node = await start_node(tmp_path, db_url)
    peer = await Peer().start()
    try:
        act = follow(peer, node)
        body, headers = peer.signed_post(node.inbox, act)
        headers["Signature"] = headers["Signature"].replace(
            peer.key_id, f"http://127.0.0.1:{port}/internal#main-key")
        async with aiohttp.ClientSession() as http, \
                http.post(node.inbox, data=body, headers=headers) as r:
            text = await r.text()
        assert r.status == 401
        assert "signing key" in text
        assert str(status) not in text and "answered" not in text and "secret" not in text
    finally:
        await peer.stop()
        await node.runner.cleanup()
        await runner.cleanup()
