"""Node processes following the shared change logs see every committed change, even
changes committed out of id order by a long transaction on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.http.appkeys import SERVICES
from tests.conftest import PostgresCluster, async_wait_for, make_config_env, migrate, run_cli
from tests.images import jpeg, reencoded
from tests.integration.test_federation_endpoints import start_node


def _rows(n: int, seed: int, source: str) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [dict(pdq=f"{rnd.getrandbits(256):064x}", pdq_quality=100,
                 phash=f"{rnd.getrandbits(64):016x}", sha256=None, label="csam_suspect",
                 source=source) for _ in range(n)]


@pytest.mark.postgres
async def test_an_import_committed_after_a_later_change_reaches_every_process(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await asyncio.to_thread(migrate, url)
    nodes = [await start_node(tmp_path / name, url) for name in ("a", "b")]
    engine = create_engine(url)
    store = Store(engine)
    try:
        indexes = [n.app[SERVICES].index for n in nodes]
        # A long import takes ids 1..3001 and has not committed yet ...
        async with engine.begin() as slow:
            await store.add_entries(slow, _rows(3001, 1, "list:big"))
            # ... while another change takes a later id and commits at once.
            await store.add_hash_entries(_rows(1, 2, "list:small"))
            assert await async_wait_for(lambda: all(len(i) == 1 for i in indexes),
                                        timeout=15), [len(i) for i in indexes]
            await asyncio.sleep(2.5)  # a few follower ticks past the later id
        # The import commits now, below the id every process has already read.
        assert await async_wait_for(lambda: all(len(i) == 3002 for i in indexes),
                                    timeout=20), [len(i) for i in indexes]
        # A process started now has them all too.
        late = await start_node(tmp_path / "c", url)
        nodes.append(late)
        assert len(late.app[SERVICES].index) == 3002
    finally:
        for n in nodes:
            await n.runner.cleanup()
        await engine.dispose()


async def test_an_image_blocked_from_the_cli_is_rejected_by_the_very_next_check(
        tmp_path: Path, db_url: str) -> None:
    """The running node has no time to poll: the next check after the command returns
    already sees the block, for re-encoded copies (perceptual) and the exact bytes."""
    node = await start_node(tmp_path / "node", db_url)
    _, env = make_config_env(tmp_path / "cli", db_url)
    try:
        for seed in range(5000, 5006):
            original = jpeg(seed, (160, 120))
            copy = reencoded(original)
            # Both known to the node first, so nothing it cached may hide the block.
            for data in (original, copy):
                status, _ = await _scan(node, data)
                assert status == 200
            path = tmp_path / f"{seed}.jpg"
            path.write_bytes(original)
            code, out = await asyncio.to_thread(run_cli, env, "override", "block", str(path),
                                                "--note", "test")
            assert code == 0, out
            for data in (copy, original):
                status, body = await _scan(node, data)
                assert status == 406, (seed, body)
    finally:
        await node.runner.cleanup()


async def _scan(node: Any, data: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=data,
                          headers={"Content-Type": "image/jpeg"}) as r:
            return r.status, await r.json()
