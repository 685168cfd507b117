"""kill -9 of ``attestd serve`` at the commit of a classifier result (issue 17, item 2):
after a restart the result is stored whole (job done, verdict, index entry, review item,
attestation, outbox entry, delivery) or not at all, the worker's retry of an
unacknowledged result lands whole, and the delivery loop sends the attestation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from attestd.db import schema as t
from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.federation.store import FederationStore
from attestd.jobs.store import JobStore
from tests.conftest import CALLER, async_wait_for, stop_server
from tests.e2e.test_cli_and_serve import _get
from tests.images import jpeg
from tests.integration.test_unit_of_work import snapshot
from tests.peers import Peer, free_port

ATTESTD = str(Path(sys.executable).with_name("attestd"))
KILLPOINT = Path(__file__).with_name("killpoint")
BAD = {"label": "csam_suspect", "model_id": "m", "scores": {"csam_suspect": 0.9}}

ABSENT = {"job": "leased", "received": [], "verdicts": [], "entries": [], "overrides": [], "review": [],
          "audit": [], "attestations": [], "outbox": [], "deliveries": []}
WHOLE = {"job": "done", "received": [], "verdicts": [("classifier", True)], "entries": ["csam_suspect"],
         "overrides": [], "review": [("flagged", True)], "audit": [], "attestations": [True],
         "outbox": ["Create"], "deliveries": ["Create"]}


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_kill_9_at_the_commit_of_a_classifier_result(tmp_path: Path, db_url: str,
                                                           when: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update(ATTESTD_CONFIG=str(tmp_path / "config.toml"), ATTESTD_SERVER__PORT=str(port),
               ATTESTD_NODE__BASE_URL=base, ATTESTD_DATABASE__URL=db_url,
               ATTESTD_PICTRS__ALLOWED_CALLERS=f'["{CALLER}"]', ATTESTD_SCANNER__WORKERS="1",
               ATTESTD_WORKERS__ENABLED="true", ATTESTD_POLICY__DEADLINE_S="30",
               ATTESTD_FEDERATION__ALLOW_PRIVATE_ADDRESSES="true",
               ATTESTD_FEDERATION__RETRY_BASE_S="0.3")
    subprocess.run([ATTESTD, "init"], env=env, check=True, capture_output=True)
    follower = await Peer(name="follower").start()
    engine = create_engine(db_url)
    store = Store(engine)
    await FederationStore(store).add_follower(follower.actor_id, follower.inbox, None,
                                              state="accepted")
    token = await JobStore(store).add_worker("gpu")
    auth = {"Authorization": f"Bearer {token}"}
    dying = {**env, "KILLPOINT_AT_COMMIT": when,
             "PYTHONPATH": os.pathsep.join([str(KILLPOINT), env.get("PYTHONPATH", "")])}
    log = tmp_path / "serve.log"
    proc = _start(dying, log)
    data = jpeg(4711, (96, 72))
    try:
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30), \
            log.read_text()[-3000:]
        async with aiohttp.ClientSession() as s:
            async def check() -> None:
                try:
                    async with s.post(f"{base}/api/v1/scan/{CALLER}", data=data,
                                      headers={"Content-Type": "image/jpeg"}) as r:
                        await r.read()
                except aiohttp.ClientError:
                    pass  # the node died while the check waited

            waiting = asyncio.create_task(check())
            jobs: list[dict[str, object]] = []
            for _ in range(40):
                async with s.post(f"{base}/api/v1/jobs/claim?max=1&wait=1", headers=auth) as r:
                    jobs = (await r.json())["jobs"]
                if jobs:
                    break
            assert jobs, log.read_text()[-3000:]
            job = jobs[0]
            with pytest.raises(aiohttp.ClientError):  # killed while recording the result
                async with s.post(f"{base}/api/v1/jobs/{job['id']}/result", json=BAD,
                                  headers=auth) as r:
                    await r.read()
            await waiting
        assert proc.wait(timeout=10) == -signal.SIGKILL
        state = await snapshot(engine, str(job["sha256"]))
        assert state == (ABSENT if when == "before" else WHOLE), state

        proc = _start(env, log)
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30)
        async with aiohttp.ClientSession() as s:
            # The worker never had an answer, so it sends the result again.
            async with s.post(f"{base}/api/v1/jobs/{job['id']}/result", json=BAD,
                              headers=auth) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["status"] == ("done" if when == "before" else "repeat")
        assert await snapshot(engine, str(job["sha256"])) == WHOLE

        async def delivered() -> bool:
            async with engine.connect() as conn:
                states = (await conn.execute(select(t.deliveries.c.state))).scalars().all()
            return states == ["delivered"] and any(
                a.get("type") == "Create" for a in follower.received)

        assert await async_wait_for(delivered, timeout=30), log.read_text()[-3000:]
    finally:
        code = stop_server(proc)
        await follower.stop()
        await engine.dispose()
    assert code is not None, "attestd serve did not stop within 15 s of SIGTERM"


pytestmark = pytest.mark.timeout(240)
