"""Node processes following the shared change logs see every committed change, even
changes committed out of id order by a long transaction on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.http.appkeys import SERVICES
from tests.conftest import PostgresCluster, async_wait_for, migrate
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
