"""Deliveries queued when the node is killed are delivered after it restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from attestd.db import schema as t
from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.federation.store import FederationStore
from tests.conftest import async_wait_for, stop_server
from tests.e2e.test_cli_and_serve import _get
from tests.peers import Peer, free_port

ATTESTD = str(Path(sys.executable).with_name("attestd"))


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


async def _attempted(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.deliveries)
                                       .where(t.deliveries.c.attempts > 0))).scalar_one())


async def test_kill_with_deliveries_queued_then_restart(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update(ATTESTD_CONFIG=str(tmp_path / "config.toml"), ATTESTD_SERVER__PORT=str(port),
               ATTESTD_NODE__BASE_URL=base, ATTESTD_DATABASE__URL=db_url,
               ATTESTD_FEDERATION__ALLOW_PRIVATE_ADDRESSES="true",
               ATTESTD_FEDERATION__RETRY_BASE_S="0.3", ATTESTD_SCANNER__WORKERS="1")
    subprocess.run([ATTESTD, "init"], env=env, check=True, capture_output=True)


    peer = Peer(name="follower")  # down for now
    engine = create_engine(db_url)
    store = Store(engine)
    fed = FederationStore(store)
    ids = [f"{base}/activities/{i}" for i in range(25)]
    for aid in ids:
        await fed.enqueue([peer.inbox], {"@context": "https://www.w3.org/ns/activitystreams",
                                         "id": aid, "type": "Create", "actor": f"{base}/actor",
                                         "object": {"type": "Note", "content": aid}})
    log = tmp_path / "serve.log"
    proc = _start(env, log)
    try:
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30)
        # The node tries, fails (the follower is down), and is killed without warning.
        assert await async_wait_for(lambda: _attempted(store), timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert (await fed.counts()).get("queued") == 25

        await peer.start()
        proc = _start(env, log)
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30)
        assert await async_wait_for(lambda: len({a["id"] for a in peer.received}) == 25,
                                    timeout=60), log.read_text()[-3000:]
        assert sorted({a["id"] for a in peer.received}) == sorted(ids)
        assert await async_wait_for(
            lambda: _counts(fed, {"delivered": 25}), timeout=10)
    finally:
        code = stop_server(proc)
        await peer.stop()
        await engine.dispose()
    assert code is not None, "attestd serve did not stop within 15 s of SIGTERM"


async def _counts(fed: FederationStore, expected: dict[str, int]) -> bool:
    return await fed.counts() == expected


pytestmark = pytest.mark.timeout(240)
_ = asyncio
