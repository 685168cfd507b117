"""What one upload may cost the node (issue 16, items 8, 9 and 15): a body that crawls is
cut off, a client that hangs up mid-body is no error, files that are not images get 415,
and unreadable uploads keep only a bounded, de-duplicated, expiring amount of review data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attestd.config import Config
from attestd.http import create_app
from attestd.http.serving import serving
from tests.conftest import CALLER, free_port, make_config
from tests.images import jpeg

SCAN = f"/api/v1/scan/{CALLER}"
PDF = (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n"
       b"<< /Root 1 0 R >>\n%%EOF\n")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from tests.conftest import migrate

    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)
    return url


@dataclass(frozen=True)
class Served:
    host: str
    port: int

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def served(cfg: Config) -> AsyncIterator[Served]:
    """The node as `attestd serve` runs it (its runner and site), on a free port."""
    port = free_port()
    async with serving(create_app(cfg), cfg.server, "127.0.0.1", port):
        yield Served("127.0.0.1", port)


async def _raw(to: Any, head: bytes, body: bytes) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
    host, port = (to.host, to.port) if isinstance(to, Served) else (to.server.host,
                                                                    to.server.port)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head + body)
    await writer.drain()
    return reader, writer


def _head(length: int) -> bytes:
    return (f"POST {SCAN} HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def test_pdf_bytes_labelled_as_jpeg_answer_415(node: Any) -> None:
    resp = await node.post(SCAN, data=PDF, headers={"Content-Type": "image/jpeg"})
    body = await resp.json()
    assert resp.status == 415, body
    assert "PDF" in body["reason"]


async def test_a_body_that_crawls_is_cut_off_with_408(aiohttp_client: Any, tmp_path: Path,
                                                      sqlite_url: str) -> None:
    cfg = make_config(tmp_path, sqlite_url, server={"body_timeout_s": 1})
    client = await aiohttp_client(create_app(cfg))
    reader, writer = await _raw(client, _head(100_000), b"\xff\xd8" + b"\x00" * 998)
    try:
        status = await asyncio.wait_for(reader.readline(), 10)  # the rest never comes
    finally:
        writer.close()
    assert status.split()[1:2] == [b"408"], status


async def test_a_client_that_hangs_up_mid_body_is_not_an_error(
        tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with served(make_config(tmp_path, sqlite_url)) as base:
        for _ in range(3):
            _, writer = await _raw(base, _head(1_000_000), jpeg(1)[:5000])
            await asyncio.sleep(0.2)  # the node is reading the body
            writer.transport.abort()  # gone half-way through it
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http:
            resp = await http.post(base.url(SCAN), data=jpeg(2),
                                   headers={"Content-Type": "image/jpeg"})
            assert resp.status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_connection_that_sends_no_whole_request_is_closed(
        tmp_path: Path, sqlite_url: str) -> None:
    cfg = make_config(tmp_path, sqlite_url, server={"keepalive_timeout_s": 1})
    async with served(cfg) as base:
        reader, writer = await _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"")
        try:
            assert await asyncio.wait_for(reader.read(), 15) == b""  # closed by the node
        finally:
            writer.close()


async def test_at_the_connection_cap_busy_connections_stay_and_a_new_one_gets_503(
        tmp_path: Path, sqlite_url: str) -> None:
    cfg = make_config(tmp_path, sqlite_url, server={"max_connections": 2})
    async with served(cfg) as base:
        # Two uploads in progress (headers read, body on its way): neither is idle.
        busy = [await _raw(base, _head(100_000), b"\xff\xd8") for _ in range(2)]
        await asyncio.sleep(0.3)
        # The answer comes on connecting (a request sent first could be reset unread).
        reader, writer = await _raw(base, b"", b"")
        status = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert status.startswith(b"HTTP/1.1 503"), status
        assert b"server.max_connections" in status
        for _, w in busy:
            w.close()


async def test_at_the_cap_a_body_arriving_too_slowly_on_any_route_makes_room(
        tmp_path: Path, sqlite_url: str) -> None:
    cfg = make_config(tmp_path, sqlite_url, server={"max_connections": 2, "body_timeout_s": 1})
    head = (b"POST /inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/activity+json\r\n"
            b"Content-Length: 5000\r\n\r\n")
    async with served(cfg) as base:
        slow = [await _raw(base, head, b'{"type": ') for _ in range(2)]
        await asyncio.sleep(0.3)
        first = await _raw(base, b"", b"")  # answered on connecting, as above
        assert (await asyncio.wait_for(first[0].read(), 10)).startswith(b"HTTP/1.1 503")
        await asyncio.sleep(1.2)  # now past server.body_timeout_s
        reader, writer = await _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n", b"")
        status = await asyncio.wait_for(reader.read(), 10)
        assert status.startswith(b"HTTP/1.1 200"), status
        assert await asyncio.wait_for(slow[0][0].read(), 10) == b""  # the oldest was closed
        for _, w in [*slow, first, (reader, writer)]:
            w.close()


# -- unreadable uploads in the review queue (item 8) ------------------------------------------

async def _open_unreadable(client: Any) -> list[tuple[str, str | None]]:
    from sqlalchemy import select

    from attestd.db import schema as t
    from attestd.http.appkeys import STORE

    c = t.review_items.c
    async with client.server.app[STORE].engine.connect() as conn:
        return [(r.sha256, r.reason) for r in await conn.execute(select(c.sha256, c.reason).where(
            (c.kind == "unreadable") & c.resolved_at.is_(None)))]


def _kept_bytes(cfg: Config) -> tuple[int, int]:
    files = [p for p in (cfg.node.data_dir / "review").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


async def _flood(client: Any, n: int, path: str = SCAN, size: int = 20_000) -> set[int]:
    statuses = set()
    for _ in range(n):
        resp = await client.post(path, data=os.urandom(size),
                                 headers={"Content-Type": "image/jpeg"})
        statuses.add(resp.status)
    return statuses


async def test_random_bodies_with_one_reason_keep_only_a_few_review_copies(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    cfg = make_config(tmp_path, db_url, review={"unreadable_max_per_reason": 3})
    client = await aiohttp_client(create_app(cfg))
    assert await _flood(client, 40) == {400}  # every one still refused
    items = await _open_unreadable(client)
    assert len(items) == 3 and len({reason for _, reason in items}) == 1
    assert _kept_bytes(cfg)[0] == 3


async def test_unreadable_items_are_capped_per_caller_in_all_and_in_bytes(
        aiohttp_client: Any, tmp_path: Path, sqlite_url: str) -> None:
    cfg = make_config(tmp_path, sqlite_url, review={
        "unreadable_max_per_reason": 1000, "unreadable_max_per_caller": 10,
        "unreadable_max_items": 15, "unreadable_max_bytes": 8 * 20_000})
    client = await aiohttp_client(create_app(cfg))
    await _flood(client, 25)  # one pict-rs caller name
    assert len(await _open_unreadable(client)) == 10
    await _flood(client, 25, "/api/v1/scan/IPADDR")  # another caller: room for 5 more
    assert len(await _open_unreadable(client)) == 15
    copies, size = _kept_bytes(cfg)
    assert copies == 8 and size <= 8 * 20_000  # the rest are queued without a copy


async def test_unreadable_items_expire_with_their_copies(
        aiohttp_client: Any, tmp_path: Path, sqlite_url: str) -> None:
    from datetime import timedelta

    from attestd.http.appkeys import SERVICES

    cfg = make_config(tmp_path, sqlite_url)
    client = await aiohttp_client(create_app(cfg))
    await _flood(client, 3)
    review = client.server.app[SERVICES].review
    assert await review.expire_unreadable(timedelta(days=1)) == 0
    assert len(await _open_unreadable(client)) == 3
    assert await review.expire_unreadable(timedelta(0)) == 3
    assert await _open_unreadable(client) == [] and _kept_bytes(cfg) == (0, 0)
