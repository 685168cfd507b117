"""The job queue and worker API, with real servers and worker processes on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from attestd.db import schema as t
from attestd.http.appkeys import PIPELINE, SERVICES, STORE
from attestd.http.jobs import JOBS
from scanner import sha256_hex
from scanner.classifier import Classification
from tests.conftest import async_wait_for
from tests.images import jpeg
from tests.integration.test_federation_endpoints import Node, start_node

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, workers={"enabled": True, "lease_s": 5},
                         policy={"deadline_s": 20})
    yield n
    await n.runner.cleanup()


async def _token(node: Node, name: str) -> str:
    return await node.app[JOBS].jobs.add_worker(name)


async def _queue_images(node: Node, n: int, start: int = 0) -> list[str]:
    """Hash and queue ``n`` new images as a check would."""
    queue, pool = node.app[JOBS], None
    shas = []
    from scanner import DecodeLimits, hash_image_bytes

    for i in range(start, start + n):
        data = jpeg(i, (96, 72))
        hashes = hash_image_bytes(data, DecodeLimits())
        await node.app[STORE].save_image(hashes)
        await queue.submit(hashes.sha256, data, "test")
        shas.append(hashes.sha256)
    _ = pool
    return shas


async def test_worker_api_refuses_bad_requests(node: Node) -> None:
    token = await _token(node, "gpu-a")
    other = await _token(node, "gpu-b")
    # A token pasted on a command line must never look like an option.
    assert token.startswith("attestd_wk_") and token != other
    await _queue_images(node, 2)
    api = f"{node.base}/api/v1/jobs"
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"}):
            async with s.post(f"{api}/claim", headers=headers) as r:
                assert r.status == 401 and "token" in (await r.json())["error"]
        async with s.post(f"{api}/claim?max=1", headers=auth) as r:
            job = (await r.json())["jobs"][0]
        async with s.get(f"{node.base}{job['image']}", headers=auth) as r:
            assert r.status == 200 and r.headers["X-Sha256"] == job["sha256"]
        ok = {"label": "ok", "model_id": "m", "scores": {}}
        # A forged id, an id that is no job, another worker's lease.
        async with s.post(f"{api}/abc/result", json=ok, headers=auth) as r:
            assert r.status == 400
        async with s.post(f"{api}/999999/result", json=ok, headers=auth) as r:
            assert r.status == 404
        async with s.post(f"{api}/{job['id']}/result", json=ok,
                          headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 409 and "not leased to this worker" in (await r.json())["error"]
        async with s.get(f"{node.base}{job['image']}",
                         headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 409
        # Oversized and malformed results.
        big = {"label": "ok", "model_id": "m", "scores": {f"k{i}": 0.1 for i in range(10000)}}
        async with s.post(f"{api}/{job['id']}/result", json=big, headers=auth) as r:
            assert r.status == 413
        for bad in ({"label": "evil", "model_id": "m"}, {"label": "ok"},
                    {"label": "ok", "model_id": "m", "scores": {"a": "high"}}):
            async with s.post(f"{api}/{job['id']}/result", json=bad, headers=auth) as r:
                assert r.status == 400, bad
        async with s.post(f"{api}/{job['id']}/result", data=b"{nope", headers=auth) as r:
            assert r.status == 400
        # The real result, then the same again (idempotent), then a different one (refused).
        async with s.post(f"{api}/{job['id']}/result", json=ok, headers=auth) as r:
            assert r.status == 200 and (await r.json())["status"] == "done"
        async with s.post(f"{api}/{job['id']}/result", json=ok, headers=auth) as r:
            assert r.status == 200 and (await r.json())["status"] == "repeat"
        async with s.post(f"{api}/{job['id']}/result", json={**ok, "label": "nsfw"},
                          headers=auth) as r:
            assert r.status == 409


async def test_expired_lease_is_requeued_and_late_result_refused(node: Node) -> None:
    jobs = node.app[JOBS].jobs
    await _token(node, "slow")
    await _token(node, "fast")
    await _queue_images(node, 1)
    [job] = await jobs.claim("slow", 1, lease_s=0.3)
    assert await jobs.claim("fast", 1, lease_s=30) == []
    await asyncio.sleep(0.5)
    [again] = await jobs.claim("fast", 1, lease_s=30)
    assert again.id == job.id
    assert (await jobs.complete("slow", job.id, "ok"))[0] == "not_yours"
    assert (await jobs.complete("fast", job.id, "ok"))[0] == "done"


async def test_a_check_waits_for_the_workers_verdict(node: Node) -> None:
    """workers.enabled: an unknown upload is classified by a worker within the deadline."""
    token = await _token(node, "gpu")
    queue = node.app[JOBS]
    img = jpeg(4242, (200, 150))
    woken_after: list[float] = []

    async def fake_worker() -> None:
        jobs: list[Any] = []
        while not jobs:
            jobs = await queue.claim("gpu", 4, wait_s=5)
        t0 = time.perf_counter()
        await queue.complete("gpu", jobs[0].id, Classification("csam_suspect", "m", {"x": 0.3}))
        woken_after.append(t0)

    task = asyncio.create_task(fake_worker())
    async with aiohttp.ClientSession() as s:
        started = time.perf_counter()
        async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=img,
                          headers={"Content-Type": "image/jpeg"}) as r:
            body = await r.json()
            answered = time.perf_counter()
    await task
    assert r.status == 406 and body["label"] == "csam_suspect", body
    assert body["source"].startswith("verdict:")
    # Woken by the result, not by a polling loop.
    assert answered - woken_after[0] < 0.5 and answered - started < 20
    # The next upload of the same image is answered from the stored verdict at once.
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=img,
                          headers={"Content-Type": "image/jpeg"}) as r:
            assert r.status == 406
    _ = token


def _spawn_worker(node: Node, token: str, slow: float = 0.0,
                  log: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Output goes to a file: an unread pipe fills up and blocks the worker mid-write.
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_proc", "--node", node.base, f"--token={token}",
         "--batch", "8", "--slow", str(slow)],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


async def _exit_code(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    # In a thread: the node under test runs on this event loop and must keep serving.
    return await asyncio.to_thread(proc.wait, timeout)


@pytest.mark.timeout(420)
async def test_two_workers_drain_200_jobs_even_when_one_is_killed(node: Node,
                                                                   tmp_path: Path) -> None:
    shas = await _queue_images(node, 200)
    jobs = node.app[JOBS].jobs
    steady_log, doomed_log = tmp_path / "steady.log", tmp_path / "doomed.log"
    steady = _spawn_worker(node, await _token(node, "steady"), log=steady_log)
    doomed = _spawn_worker(node, await _token(node, "doomed"), slow=3.0, log=doomed_log)
    try:
        # Starting torch can take minutes on a cold machine; wait until both are up.
        assert await async_wait_for(
            lambda: all(f.exists() and "ready" in f.read_text() for f in (steady_log, doomed_log)),
            timeout=300, interval=0.5), (steady_log.read_text(), doomed_log.read_text())
        # Kill the slow worker while it holds a batch it has not answered.
        async def doomed_holds_leases() -> bool:
            async with node.app[STORE].engine.connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(t.jobs).where(
                    (t.jobs.c.lease_owner == "doomed") & (t.jobs.c.state == "leased")))).scalar()
            return bool(n)

        assert await async_wait_for(doomed_holds_leases, timeout=180, interval=0.05)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)

        async def all_done() -> bool:
            return (await jobs.counts()) == {"done": 200}

        assert await async_wait_for(all_done, timeout=240, interval=0.5), (
            await jobs.counts(), steady_log.read_text()[-3000:])
    finally:
        for p in (steady, doomed):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        try:
            code = await _exit_code(steady)
        except subprocess.TimeoutExpired:
            steady.kill()
            code = -1
    out = steady_log.read_text()
    assert code == 0, out[-2000:]
    assert "done " in out
    # None lost, none done twice: exactly one classifier verdict per image.
    async with node.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(select(t.verdicts.c.sha256, func.count())
                                   .group_by(t.verdicts.c.sha256))).all()
    assert sorted(r[0] for r in rows) == sorted(shas)
    assert all(r[1] == 1 for r in rows)
    _ = PIPELINE


@pytest.mark.timeout(300)
async def test_sigterm_finishes_the_batch_in_hand(node: Node, tmp_path: Path) -> None:
    await _queue_images(node, 8, start=500)
    jobs = node.app[JOBS].jobs
    log = tmp_path / "polite.log"
    proc = _spawn_worker(node, await _token(node, "polite"), slow=1.5, log=log)
    try:
        async def holds() -> bool:
            return (await jobs.counts()).get("leased", 0) > 0

        assert await async_wait_for(holds, timeout=180, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        code = await _exit_code(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()[-2000:]
    counts = await jobs.counts()
    # (The batch takes well under the 5 s lease, so its results were accepted.)
    # Whatever it had claimed was either answered or handed back; nothing is stuck leased.
    assert counts.get("leased", 0) == 0 and counts.get("done", 0) >= 1, counts


@pytest.mark.timeout(300)
async def test_in_node_classifier_answers_checks(tmp_path: Path, db_url: str) -> None:
    """classifier.enabled: the node classifies through its own queue (random ViT-B-32)."""
    n = await start_node(tmp_path, db_url, classifier={
        "enabled": True, "model": "ViT-B-32", "pretrained": "none",
        "allow_random_weights": True, "device": "cpu", "batch_size": 4},
        policy={"deadline_s": 60})
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{n.base}/api/v1/scan/IPADDR", data=jpeg(77),
                              headers={"Content-Type": "image/jpeg"}) as r:
                body = await r.json()
        assert body["source"].startswith("verdict:"), body
        assert body["label"] in ("ok", "nsfw", "csam_suspect")
        async with n.app[STORE].engine.connect() as conn:
            v = (await conn.execute(select(t.verdicts))).one()
        assert "RANDOM-WEIGHTS" in v.model and v.detail["publishable"] is False
        assert v.detail["worker"] == "in-node"
    finally:
        await n.runner.cleanup()


async def test_an_image_let_in_then_judged_bad_waits_for_review_with_its_copy(
        tmp_path: Path, db_url: str) -> None:
    """accept_and_rescan: a check that gave up waiting lets the image in; when a worker
    later finds it bad, it is already in storage, so it goes to review as ``rescan``
    with a copy for the reviewer, and the job's own copy is gone."""
    node = await start_node(tmp_path, db_url, workers={"enabled": True},
                            policy={"on_unknown": "accept_and_rescan", "deadline_s": 0.3})
    try:
        queue, review = node.app[JOBS], node.app[SERVICES].review
        hits: list[Any] = []

        async def on_hit(hit: Any) -> None:
            hits.append(hit)

        node.app[SERVICES].hits.subscribe("test", on_hit)
        # Decoders started, so the 0.3 s deadline cuts short the wait for a classifier,
        # not the first hashing (that would be on_unhashable, rejected).
        await node.app[SERVICES].pool.hash(jpeg(5150, (200, 150)))
        bad, fine = jpeg(5151, (200, 150)), jpeg(5152, (200, 150))
        async with aiohttp.ClientSession() as s:
            for img in (bad, fine):
                async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=img,
                                  headers={"Content-Type": "image/jpeg"}) as r:
                    assert r.status == 200 and (await r.json())["decision"] == "accept"
        await _token(node, "gpu")
        jobs = await queue.claim("gpu", 4, wait_s=5)
        by_sha = {j.sha256: j for j in jobs}
        sha_bad, sha_fine = sha256_hex(bad), sha256_hex(fine)
        assert set(by_sha) == {sha_bad, sha_fine}
        await queue.complete("gpu", by_sha[sha_bad].id,
                             Classification("csam_suspect", "m", {"csam": 0.9}))
        await queue.complete("gpu", by_sha[sha_fine].id, Classification("nsfw", "m", {"x": 0.1}))
        item = await review.get(sha_bad)
        assert item is not None and item.kind == "rescan" and item.label == "csam_suspect"
        assert "after it was accepted" in item.reason
        assert await review.copy(sha_bad) == bad
        assert await queue.blobs.get(sha_bad) is None and await queue.blobs.get(sha_fine) is None
        # nsfw is accepted by this policy: nothing for a human to do.
        assert await review.get(sha_fine) is None
        # What acts on stored media judged bad hears of the bad one, with its bytes.
        assert [(h.sha256, h.origin, h.label, h.data) for h in hits] == [
            (sha_bad, "rescan", "csam_suspect", bad)]
    finally:
        await node.runner.cleanup()
