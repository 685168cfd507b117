"""Hash lists fetched from a URL: imported through the guarded fetcher, refreshed by
`attestd serve`, and kept as they were when a refresh fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from attestd.config import HashListsConfig, HashListSourceConfig
from attestd.http import create_app
from attestd.http.appkeys import INDEX
from tests.conftest import CALLER, async_wait_for, make_config_env, run_cli
from tests.images import jpeg

SCAN = f"/api/v1/scan/{CALLER}"
LISTED, OTHER = jpeg(401), jpeg(402)


class ListServer:
    """A loopback web server whose one list answers what the test says."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.hits = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if request.path == "/moved":
            raise web.HTTPFound("/list.csv")
        return web.Response(status=self.status, body=self.body, content_type="text/csv")


@pytest.fixture
async def lists() -> AsyncIterator[ListServer]:
    server = ListServer()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def _sha_csv(*images: bytes) -> bytes:
    import hashlib
    return ("sha256\n" + "".join(hashlib.sha256(i).hexdigest() + "\n" for i in images)).encode()


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    return await asyncio.to_thread(run_cli, env, *args)


async def test_import_from_a_url_and_a_failed_import_keeps_the_list(
        lists: ListServer, tmp_path: Path, db_url: str) -> None:
    _, env = make_config_env(tmp_path, db_url)
    lists.body = _sha_csv(LISTED)
    code, out = await _cli(env, "hashes", "import", f"{lists.url}/moved", "--source", "remote",
                           "--label", "csam_suspect")
    assert code == 0 and "imported 1 hashes into list:remote" in out, out
    lists.status, lists.body = 500, b"oops"
    code, out = await _cli(env, "hashes", "import", f"{lists.url}/list.csv?token=s3cret",
                           "--source", "remote", "--label", "csam_suspect")
    assert code != 0 and "answered 500" in out and "nothing was imported" in out, out
    assert "s3cret" not in out
    assert "remote  csam_suspect  1" in (await _cli(env, "hashes", "list-sources"))[1]
    code, out = await _cli(env, "hashes", "sources")
    assert code == 0 and "remote" in out and "answered 500" in out, out
    assert "s3cret" not in out


async def test_the_guard_refuses_private_addresses_plain_http_and_oversized_lists(
        lists: ListServer, tmp_path: Path, db_url: str) -> None:
    lists.body = _sha_csv(LISTED)
    _, guarded = make_config_env(tmp_path / "a", db_url,
                                 federation={"allow_private_addresses": False})
    for url in (lists.url.replace("http:", "https:") + "/list.csv",
                "https://[::ffff:127.0.0.1]/list.csv", "https://0x7f000001/list.csv"):
        code, out = await _cli(guarded, "hashes", "import", url, "--source", "x",
                               "--label", "nsfw")
        assert code != 0 and ("non-public" in out or "loopback" in out), out
    code, out = await _cli(guarded, "hashes", "import", lists.url + "/list.csv",
                           "--source", "x", "--label", "nsfw")
    assert code != 0 and "HTTPS" in out, out
    _, small = make_config_env(tmp_path / "b", db_url, hash_lists={"max_bytes": 1024})
    lists.body = _sha_csv(*(jpeg(i, (16, 16)) for i in range(20)))
    code, out = await _cli(small, "hashes", "import", lists.url + "/list.csv",
                           "--source", "x", "--label", "nsfw")
    assert code != 0 and "over 1024 bytes" in out, out
    assert lists.hits >= 1
    assert "no hash lists imported" in (await _cli(small, "hashes", "list-sources"))[1]


async def test_serve_refreshes_a_configured_source_and_keeps_it_when_a_refresh_fails(
        lists: ListServer, tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    lists.body = _sha_csv(LISTED)
    source = {"name": "feed", "url": f"{lists.url}/list.csv", "label": "csam_suspect",
              "refresh_hours": 0.0005}  # 1.8 s
    cfg, env = make_config_env(tmp_path, db_url)
    cfg = cfg.model_copy(update={"hash_lists": HashListsConfig(
        sources=(HashListSourceConfig(**source),))})
    node = await aiohttp_client(create_app(cfg))

    async def status(data: bytes) -> int:
        resp = await node.post(SCAN, data=data, headers={"Content-Type": "image/jpeg"})
        return resp.status

    assert await async_wait_for(lambda: len(node.app[INDEX]) >= 1, timeout=10)
    assert await status(LISTED) == 406 and await status(OTHER) == 200
    lists.status = 503
    hits = lists.hits
    assert await async_wait_for(lambda: lists.hits > hits + 1, timeout=15)
    assert await status(LISTED) == 406  # the failed refresh kept the list
    code, out = await _cli(env, "hashes", "sources")
    assert "feed" in out and "answered 503" in out, out
    lists.status, lists.body = 200, _sha_csv(OTHER)

    async def swapped() -> bool:
        return await status(OTHER) == 406 and await status(LISTED) == 200

    for _ in range(60):
        if await swapped():
            break
        await asyncio.sleep(0.3)
    assert await swapped()
