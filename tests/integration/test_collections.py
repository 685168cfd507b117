"""Outbox and followers: cursor paging, readable only by accepted followers (signed GET)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from activitypub import FetchError
from activitypub.fetch import Fetcher, make_session
from attestd.http.appkeys import FEDERATION
from tests.integration.test_federation_endpoints import Node, start_node
from tests.peers import Peer


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, federation={"deliver": False})
    yield n
    await n.runner.cleanup()


@pytest.fixture
async def follower(node: Node) -> AsyncIterator[tuple[Peer, Fetcher]]:
    peer = await Peer(name="reader").start()
    await node.app[FEDERATION].store.add_follower(peer.actor_id, peer.inbox, None, "accepted")
    session = make_session(allow_private=True)
    yield peer, Fetcher(session, key_id=peer.key_id, private_key=peer.key, allow_private=True)
    await session.close()
    await peer.stop()


async def _publish(node: Node, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        aid = f"{node.base}/activities/{i}"
        await node.app[FEDERATION].store.publish({"id": aid, "type": "Create"})
        ids.append(aid)
    return ids


async def _walk(fetcher: Fetcher, url: str, link: str) -> list[str]:
    seen: list[str] = []
    while url:
        page = await fetcher.get(url)
        seen += [item["id"] for item in page["orderedItems"]]
        url = page.get(link)
    return seen


async def test_outbox_pages_newest_first_and_resumes_from_a_cursor(
        node: Node, follower: tuple[Peer, Fetcher]) -> None:
    _, fetcher = follower
    ids = await _publish(node, 45)
    summary = await fetcher.get(f"{node.base}/outbox")
    assert summary["type"] == "OrderedCollection" and summary["totalItems"] == 45
    seen = await _walk(fetcher, summary["first"], "next")
    assert seen == list(reversed(ids))  # every item once, newest first

    # The follower remembers the newest id it saw; later items are fetched from there.
    first_page = await fetcher.get(summary["first"])
    newest_cursor = first_page["next"].split("max_id=")[1]  # any page's cursor form
    assert newest_cursor
    store = node.app[FEDERATION].store
    from activitypub._collections import PageRequest

    newest = (await store.outbox_page(PageRequest(limit=1))).items[0][0]
    more = await _publish(node, 30, start=45)
    url: str | None = f"{node.base}/outbox?page=true&min_id={newest}"
    got: list[str] = []
    while url:
        page = await fetcher.get(url)
        got = [i["id"] for i in page["orderedItems"]] + got
        url = page.get("prev")
    assert got == list(reversed(more))


async def test_followers_collection_lists_accepted_followers_only(
        node: Node, follower: tuple[Peer, Fetcher]) -> None:
    peer, fetcher = follower
    store = node.app[FEDERATION].store
    await store.add_follower("http://127.0.0.1:1/users/pending", "http://127.0.0.1:1/inbox", None)
    summary = await fetcher.get(f"{node.base}/followers")
    assert summary["totalItems"] == 1
    page = await fetcher.get(summary["first"])
    assert page["orderedItems"] == [peer.actor_id]


async def test_collections_refuse_strangers_and_unsigned_requests(
        node: Node, follower: tuple[Peer, Fetcher]) -> None:
    stranger = await Peer(name="stranger").start()
    session = make_session(allow_private=True)
    try:
        other = Fetcher(session, key_id=stranger.key_id, private_key=stranger.key,
                        allow_private=True)
        for path in ("/outbox", "/followers", "/outbox?page=true"):
            with pytest.raises(FetchError, match="403"):
                await other.get(node.base + path)
        async with aiohttp.ClientSession() as plain:
            async with plain.get(node.base + "/outbox") as r:
                assert r.status == 401 and "not signed" in (await r.json())["error"]
        _, fetcher = follower
        for bad in ("max_id=a&min_id=b", "max_id=%00bad", "limit=lots"):
            with pytest.raises(FetchError, match="404|400"):
                await fetcher.get(f"{node.base}/outbox?page=true&{bad}")
    finally:
        await session.close()
        await stranger.stop()


_ = Any
