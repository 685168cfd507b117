"""What one upload may cost the node (issue 16, items 8, 9 and 15): a body that crawls is
cut off, a client that hangs up mid-body is no error, files that are not images get 415,
and unreadable uploads keep only a bounded, de-duplicated, expiring amount of review data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
