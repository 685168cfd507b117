"""What strangers' activities may leave in the database (issue 16, item 8): activities
of types the node does not use are logged as a short summary, the log is pruned, pending
follow requests are capped and expire, and the followers list is paged."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, update

from attestd.admin_tokens import AdminTokens
from attestd.db import schema as t
from attestd.http.appkeys import FEDERATION, STORE
from attestd.model import utcnow
from tests.integration.test_admin_pages import login
from tests.integration.test_federation_endpoints import Node, follow, start_node
from tests.peers import Peer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    started = [await Peer(name=f"p{i}", key=KEY).start() for i in range(5)]
    yield started
    for p in started:
        await p.stop()


async def _received(node: Node) -> list[Any]:
    await asyncio.sleep(0.6)  # on SQLite the log is written behind, in a batch
    async with node.app[STORE].engine.connect() as conn:
        return list((await conn.execute(select(t.received_activities))).all())


async def test_an_unused_activity_type_is_logged_as_a_summary_and_the_log_is_pruned(
        tmp_path: Path, db_url: str, peers: list[Peer], http: aiohttp.ClientSession) -> None:
    node = await start_node(tmp_path, db_url)
    try:
        peer = peers[0]
        like = {"@context": "https://www.w3.org/ns/activitystreams", "type": "Like",
                "id": f"{peer.actor_id}/likes/{uuid.uuid4()}", "actor": peer.actor_id,
                "object": "https://elsewhere.example/notes/1", "content": "x" * 900_000}
        for act in (like, follow(peer, node)):
            body, headers = peer.signed_post(node.inbox, act)
            async with http.post(node.inbox, data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
        rows = {r.type: r for r in await _received(node)}
        assert set(rows) == {"Like", "Follow"}
        kept = json.dumps(rows["Like"].body)
        assert len(kept) < 2000 and like["id"] in kept  # a summary, not 900 kB
        assert rows["Follow"].body["object"] == f"{node.base}/actor"  # used: kept whole
        # Rows older than federation.received_retention_days go.
        async with node.app[STORE].engine.begin() as conn:
            await conn.execute(update(t.received_activities).where(
                t.received_activities.c.type == "Like").values(
                received_at=utcnow() - timedelta(days=31)))
        assert await node.app[FEDERATION].store.prune_received(timedelta(days=30)) == 1
        assert {r.type for r in await _received(node)} == {"Follow"}
    finally:
        await node.runner.cleanup()


async def test_pending_follow_requests_are_capped_and_expire(
        tmp_path: Path, db_url: str, peers: list[Peer], http: aiohttp.ClientSession) -> None:
    node = await start_node(tmp_path, db_url, federation={"max_pending_follows": 3})
    try:
        answers = []
        for peer in peers:
            body, headers = peer.signed_post(node.inbox, follow(peer, node))
            async with http.post(node.inbox, data=body, headers=headers) as r:
                answers.append((r.status, await r.text()))
        assert [s for s, _ in answers] == [202, 202, 202, 400, 400], answers
        assert "max_pending_follows" in answers[3][1]
        fstore = node.app[FEDERATION].store
        assert [f["actor"] for f in await fstore.list_followers()] == [
            p.actor_id for p in peers[:3]]
        # One already waiting may ask again.
        body, headers = peers[0].signed_post(node.inbox, follow(peers[0], node))
        async with http.post(node.inbox, data=body, headers=headers) as r:
            assert r.status == 202
        assert await fstore.expire_pending_follows(timedelta(days=1)) == 0
        assert await fstore.expire_pending_follows(timedelta(0)) == 3
        assert await fstore.list_followers() == []
    finally:
        await node.runner.cleanup()


async def test_the_followers_api_and_page_are_paged(aiohttp_client: Any, tmp_path: Path,
                                                    db_url: str) -> None:
    from attestd.http import create_app
    from tests.conftest import make_config

    client = await aiohttp_client(create_app(make_config(tmp_path, db_url)))
    app = client.server.app
    actors = [f"https://f{i}.example/actor" for i in range(5)]
    for a in actors:
        await app[FEDERATION].store.add_follower(a, a + "/inbox", None)
    auth = {"Authorization": f"Bearer {await AdminTokens(app[STORE].engine).create('ops')}"}
    seen: list[str] = []
    after = None
    for _ in range(5):
        params = {"limit": "2", **({"after": after} if after else {})}
        doc = await (await client.get("/api/v1/admin/followers", params=params, headers=auth)).json()
        seen += [f["actor"] for f in doc["followers"]]
        assert len(doc["followers"]) <= 2
        after = doc["next_after"]
        if after is None:
            break
    assert seen == actors
    await login(client)
    page = await (await client.get("/admin/followers", params={"limit": "2"})).text()
    assert actors[1] in page and actors[2] not in page and "after=" in page
    async with app[STORE].engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.followers))).scalar() == 5
