"""Image bytes shared by node processes on separate hosts: two app instances with their
own data folders on one database, the bytes in S3 (moto's server) or in the database.
A worker claiming through B fetches an image submitted through A, and a job no worker
could classify reaches the review queue with its bytes, seen from either process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attestd.http.appkeys import CONFIG, SERVICES, STORE
from attestd.http.jobs import JOBS
from scanner import DecodeLimits, hash_image_bytes
from tests.conftest import new_bucket
from tests.images import jpeg
from tests.integration.test_federation_endpoints import Node, start_node


@pytest.fixture(params=["s3", "database"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path,
                db_url: str) -> AsyncIterator[tuple[Node, Node]]:
    blobs: dict[str, Any] = {"backend": request.param}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        _, bucket = new_bucket(endpoint)
        blobs.update({"s3.endpoint_url": endpoint, "s3.bucket": bucket, "s3.prefix": "node/",
                      "s3.access_key_id": "testing", "s3.secret_access_key": "testing"})
    started = []
    for name in ("a", "b"):
        started.append(await start_node(tmp_path / name, db_url, blobs=blobs,
                                        workers={"enabled": True, "lease_s": 30}))
    yield started[0], started[1]
    for n in started:
        await n.runner.cleanup()


async def _submit(node: Node, seed: int) -> tuple[str, bytes]:
    data = jpeg(seed, (96, 72))
    hashes = hash_image_bytes(data, DecodeLimits())
    await node.app[STORE].save_image(hashes)
    await node.app[JOBS].submit(hashes.sha256, data, "test")
    return hashes.sha256, data


async def _claim(s: aiohttp.ClientSession, node: Node, auth: dict[str, str]) -> dict[str, Any]:
    async with s.post(f"{node.base}/api/v1/jobs/claim?max=1&wait=5", headers=auth) as r:
        assert r.status == 200
        jobs: list[dict[str, Any]] = (await r.json())["jobs"]
    assert len(jobs) == 1
    return jobs[0]


async def test_worker_fetches_through_b_an_image_submitted_through_a(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sha, data = await _submit(a, 1)
    auth = {"Authorization": f"Bearer {await a.app[JOBS].jobs.add_worker('gpu')}"}
    async with aiohttp.ClientSession() as s:
        job = await _claim(s, b, auth)
        assert job["sha256"] == sha
        async with s.get(f"{b.base}{job['image']}", headers=auth) as r:
            assert r.status == 200, await r.text()
            assert await r.read() == data
        ok = {"label": "ok", "model_id": "m", "scores": {"x": 0.1}}
        async with s.post(f"{b.base}/api/v1/jobs/{job['id']}/result", json=ok,
                          headers=auth) as r:
            assert r.status == 200
    assert (await a.app[STORE].lookup(sha)).verdict is not None
    # Classified: the bytes are gone from the shared store, for both processes.
    assert await a.app[JOBS].blobs.get(sha) is None
    # Nothing was left in A's own folder, which B's host could not reach.
    assert not (a.app[CONFIG].node.data_dir / "blobs").exists()


async def test_a_job_no_worker_could_classify_goes_to_review_with_its_bytes(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sha, data = await _submit(a, 2)
    auth = {"Authorization": f"Bearer {await a.app[JOBS].jobs.add_worker('gpu')}"}
    async with aiohttp.ClientSession() as s:
        job = await _claim(s, b, auth)
        async with s.post(f"{b.base}/api/v1/jobs/{job['id']}/fail",
                          json={"error": "corrupt: truncated"}, headers=auth) as r:
            assert r.status == 200
    for node in (a, b):
        item = await node.app[SERVICES].review.get(sha)
        assert item is not None and item.kind == "failed"
        assert "gpu" in item.reason and "truncated" in item.reason
        assert await node.app[SERVICES].review.copy(sha) == data
        assert await node.app[SERVICES].review.has_copy(sha)
