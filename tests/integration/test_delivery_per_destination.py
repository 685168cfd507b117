"""Delivery queues per destination inbox: a dead peer costs one attempt per retry however
much is queued for it, drains in order when it comes back, and a slow peer never holds up
anyone else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from attestd.http.appkeys import FEDERATION
from tests.conftest import async_wait_for
from tests.integration.test_federation_endpoints import Node, follow, start_node
from tests.peers import Peer


@dataclass
class ScriptedPeer(Peer):
    """A peer whose inbox fails its first ``fail_first`` requests (503), or holds each
    request until ``release`` is set (at most 30 s): a slow server."""

    fail_first: int = 0
    release: asyncio.Event | None = None
    holding: int = 0
    requests: list[web.Request] = field(default_factory=list)

    @property
    def sender_waiting(self) -> bool:
        """Whether the node still waits on a held request (it hangs up on a timeout)."""
        return any(r.transport is not None and not r.transport.is_closing()
                   for r in self.requests)

    async def _inbox(self, request: web.Request) -> web.Response:
        activity = json.loads(await request.read())
        self.received.append(activity)
        if len(self.received) <= self.fail_first:
            return web.Response(status=503)
        if self.release is not None:
            self.holding += 1
            self.requests.append(request)
            try:
                await asyncio.wait_for(self.release.wait(), 30)
            except TimeoutError:
                pass
            finally:
                self.holding -= 1
        return web.Response(status=202)


def note(node: Node, n: int) -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams", "type": "Create",
            "id": f"{node.base}/activities/{n}", "actor": f"{node.base}/actor",
            "object": {"type": "Note", "content": str(n)}}


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, federation={"retry_base_s": 0.2})
    yield n
    await n.runner.cleanup()


async def test_a_dead_peer_costs_one_attempt_per_retry_and_drains_in_order(node: Node) -> None:
    fed = node.app[FEDERATION]
    peer = ScriptedPeer(name="dead", fail_first=3)  # down for three retry rounds
    await peer.start()
    try:
        for i in range(50):
            await fed.store.enqueue([peer.inbox], note(node, i))
        fed.deliverer.poke()
        assert await async_wait_for(lambda: len(peer.received) >= 53, timeout=60), \
            len(peer.received)
        assert await async_wait_for(
            lambda: _counts(fed, {"delivered": 50}), timeout=10), await fed.store.counts()
        # Three failed rounds cost three attempts, all of them the oldest activity ...
        ids = [a["id"] for a in peer.received]
        assert ids[:3] == [note(node, 0)["id"]] * 3, ids[:5]
        # ... and once it answers, the queue drains in order, nothing lost or repeated.
        assert ids[3:] == [note(node, i)["id"] for i in range(50)]
    finally:
        await peer.stop()


async def test_a_peer_in_backoff_that_contacts_us_drains_at_once(tmp_path: Path,
                                                                db_url: str) -> None:
    node = await start_node(tmp_path, db_url, federation={"retry_base_s": 3600})
    fed = node.app[FEDERATION]
    peer = ScriptedPeer(name="back", fail_first=1)
    await peer.start()
    try:
        for i in range(5):
            await fed.store.enqueue([peer.inbox], note(node, i))
        fed.deliverer.poke()
        assert await async_wait_for(lambda: len(peer.received) == 1, timeout=10)
        await asyncio.sleep(0.5)
        assert len(peer.received) == 1  # backing off for about an hour
        body, headers = peer.signed_post(node.inbox, follow(peer, node))  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as s:
            async with s.post(node.inbox, data=body, headers=headers) as r:
                assert r.status == 202
        assert await async_wait_for(lambda: len(peer.received) == 6, timeout=15)
        assert [a["id"] for a in peer.received[1:]] == [note(node, i)["id"] for i in range(5)]
        assert await async_wait_for(lambda: _counts(fed, {"delivered": 5}), timeout=10)
    finally:
        await peer.stop()
        await node.runner.cleanup()


async def test_a_parked_destination_keeps_new_activities_parked_until_it_is_back(
        node: Node) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from attestd.db import schema as t

    fed = node.app[FEDERATION]
    away = ScriptedPeer(name="away")  # not started: connection refused
    for i in range(3):
        await fed.store.enqueue([away.inbox], note(node, i))
    async with fed.store.store.writing() as conn:  # failing for four days already
        await conn.execute(update(t.deliveries).values(
            attempts=12, first_failed_at=datetime.now(UTC) - timedelta(days=4)))
    fed.deliverer.poke()
    assert await async_wait_for(lambda: _counts(fed, {"parked": 3}), timeout=10)
    await fed.store.enqueue([away.inbox], note(node, 3))
    fed.deliverer.poke()
    await asyncio.sleep(0.5)
    assert await fed.store.counts() == {"parked": 4}  # no new backoff for the newcomer

    await away.start()
    try:
        body, headers = away.signed_post(node.inbox, follow(away, node))  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as s:
            async with s.post(node.inbox, data=body, headers=headers) as r:
                assert r.status == 202
        assert await async_wait_for(lambda: len(away.received) == 4, timeout=15)
        assert [a["id"] for a in away.received] == [note(node, i)["id"] for i in range(4)]
    finally:
        await away.stop()


async def test_a_slow_peer_does_not_delay_a_healthy_one(node: Node) -> None:
    fed = node.app[FEDERATION]
    release = asyncio.Event()
    slow, healthy = ScriptedPeer(name="slow", release=release), ScriptedPeer(name="healthy")
    await slow.start()
    await healthy.start()
    try:
        await fed.store.enqueue([slow.inbox, healthy.inbox], note(node, 1))
        fed.deliverer.poke()
        assert await async_wait_for(lambda: slow.sender_waiting, timeout=10)
        assert await async_wait_for(lambda: len(healthy.received) == 1, timeout=10)
        # While the node still waits for the slow peer's answer, new deliveries to the
        # healthy one go out (the old loop waited for every attempt of a round to end).
        for i in range(2, 5):
            await fed.store.enqueue([healthy.inbox], note(node, i))
            fed.deliverer.poke()
            assert await async_wait_for(lambda n=i: len(healthy.received) == n, timeout=10), \
                f"delivery {i} waited for the slow peer"
            assert slow.sender_waiting and len(slow.received) == 1
        assert [a["id"] for a in healthy.received] == [note(node, i)["id"] for i in range(1, 5)]
    finally:
        release.set()
        await slow.stop()
        await healthy.stop()


async def _counts(fed: Any, expected: dict[str, int]) -> bool:
    return dict(await fed.store.counts()) == expected
