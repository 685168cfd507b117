"""Several node processes on one database: verdicts and jobs wake waiters on any of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from attestd.http.appkeys import STORE
from attestd.http.jobs import JOBS
from scanner.classifier import Classification
from tests.conftest import PostgresCluster, async_wait_for, migrate
from tests.images import jpeg
from tests.integration.test_federation_endpoints import Node, start_node


@contextlib.asynccontextmanager
async def _two_nodes(tmp_path: Path, url: str, **policy: Any
                     ) -> AsyncIterator[tuple[Node, Node]]:
    a = await start_node(tmp_path / "a", url, workers={"enabled": True},
                         policy={"deadline_s": 20, **policy})
    b = await start_node(tmp_path / "b", url, workers={"enabled": True},
                         policy={"deadline_s": 20, **policy})
    try:
        yield a, b
    finally:
        await a.runner.cleanup()
        await b.runner.cleanup()


async def _listener_pids(a: Node) -> set[int]:
    async with a.app[STORE].engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'attestd-wakeups'"))
        return {int(r.pid) for r in rows}


async def _scan(node: Node, data: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=data,
                          headers={"Content-Type": "image/jpeg"}) as r:
            return r.status, await r.json()


@pytest.mark.postgres
async def test_a_verdict_posted_through_another_process_wakes_the_check(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await asyncio.to_thread(migrate, url)
    async with _two_nodes(tmp_path, url) as (a, b):
        qa, qb = a.app[JOBS], b.app[JOBS]
        for q in (qa, qb):
            wakeups = getattr(q, "wakeups", None)
            if wakeups is not None:
                await asyncio.wait_for(wakeups.listening.wait(), 10)
                # No safety poll within the test: only a notification can wake anyone.
                wakeups.listening_poll_s = 600
        await qb.jobs.add_worker("gpu")

        async def round_trip(seed: int) -> None:
            async def worker_on_b() -> None:
                # Long-polls on B; the job is queued by the check on A.
                jobs = await qb.claim("gpu", 4, wait_s=25)
                assert jobs, "the claim on B was not woken by the job queued on A"
                await qb.complete("gpu", jobs[0].id, Classification("csam_suspect", "m", {}))

            task = asyncio.create_task(worker_on_b())
            await asyncio.sleep(0.2)  # the claim is waiting before the job exists
            started = time.perf_counter()
            status, body = await _scan(a, jpeg(seed, (120, 90)))
            answered = time.perf_counter() - started
            await task
            assert status == 406 and body["label"] == "csam_suspect", body
            assert body["source"].startswith("verdict:"), body
            # Woken by the notification, well inside the 20 s deadline.
            assert answered < 10, answered

        await round_trip(7001)
        # A dropped listener connection comes back by itself, and wakes again.
        old = await _listener_pids(a)
        assert len(old) == 2
        async with a.app[STORE].engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = 'attestd-wakeups'"))

        async def reconnected() -> bool:
            pids = await _listener_pids(a)
            return len(pids) == 2 and not pids & old
        assert await async_wait_for(reconnected, timeout=15)
        for q in (qa, qb):
            assert q.wakeups is not None
            await asyncio.wait_for(q.wakeups.listening.wait(), 10)
        await round_trip(7003)


async def test_a_verdict_stored_just_before_the_deadline_decides_the_check(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _two_nodes(tmp_path, db_url, deadline_s=3) as (a, b):
        qa = a.app[JOBS]

        async def verdict_lands_unheard(sha256: str, timeout_s: float) -> None:
            # Stored through process B, and no wake-up reaches A before the deadline.
            await b.app[STORE].add_verdict(sha256, "csam_suspect", "classifier",
                                           "classifier:m")
            await asyncio.sleep(3600)

        monkeypatch.setattr(qa, "wait_for_verdict", verdict_lands_unheard)
        status, body = await _scan(a, jpeg(7002, (120, 90)))
        assert status == 406 and body["label"] == "csam_suspect", body
        assert body["source"].startswith("verdict:"), body
