"""Hostile JSON bodies (issue 16, items 5-7): every JSON endpoint answers 400 with the
reason, nothing half-done is left behind, and the node keeps writing afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from attestd.admin_tokens import AdminTokens
from attestd.db import schema as t
from attestd.http.appkeys import STORE
from attestd.http.jobs import JOBS
from scanner import DecodeLimits, hash_image_bytes
from scanner.classifier import MODEL_ID_MAX
from tests.conftest import CALLER, async_wait_for
from tests.images import jpeg
from tests.integration.test_federation_endpoints import Node, start_node
from tests.peers import Peer


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, db_url, workers={"enabled": True, "lease_s": 60},
                         policy={"deadline_s": 20})
    yield n
    await n.runner.cleanup()


@pytest.fixture
async def plain_node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    """A node without a classifier: checks are answered at once."""
    n = await start_node(tmp_path, db_url)
    yield n
    await n.runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer().start()
    yield p
    await p.stop()


def nested(depth: int) -> bytes:
    """A JSON object whose "x" is nested ``depth`` levels deep."""
    return b'{"x": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def follow(peer: Peer, node: Node, **extra: Any) -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{peer.actor_id}/follows/{uuid.uuid4()}", "type": "Follow",
            "actor": peer.actor_id, "object": f"{node.base}/actor", **extra}


def deep_activity(peer: Peer, node: Node, depth: int) -> bytes:
    """A well-formed Follow whose ``content`` is nested ``depth`` levels deep."""
    head = json.dumps(follow(peer, node)).encode()[:-1]
    return head + b', "content": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def signed_raw(peer: Peer, url: str, body: bytes) -> dict[str, str]:
    from activitypub import sign_request

    return sign_request(method="POST", url=url, key_id=peer.key_id, private_key=peer.key,
                        body=body, headers={"Content-Type": "application/activity+json"})


async def _leased_job(node: Node) -> tuple[int, str, dict[str, str]]:
    """Queue one image and lease it to a worker: (job id, sha256, auth headers)."""
    token = await node.app[JOBS].jobs.add_worker("gpu")
    data = jpeg(7, (96, 72))
    hashes = hash_image_bytes(data, DecodeLimits())
    await node.app[STORE].save_image(hashes)
    await node.app[JOBS].submit(hashes.sha256, data, "unknown")
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, \
            s.post(f"{node.base}/api/v1/jobs/claim?max=1", headers=auth) as r:
        job = (await r.json())["jobs"][0]
    return int(job["id"]), hashes.sha256, auth


async def _count(node: Node, table: Any) -> int:
    async with node.app[STORE].engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_deep_nesting_and_huge_numbers_get_400_everywhere(node: Node, peer: Peer) -> None:
    job_id, _, worker = await _leased_job(node)
    admin = {"Authorization": "Bearer "
             + await AdminTokens(node.app[STORE].engine).create("ops")}
    result_url = f"{node.base}/api/v1/jobs/{job_id}/result"
    ok = {"label": "ok", "model_id": "m", "scores": {}}
    async with aiohttp.ClientSession() as s:
        posts = [(result_url, worker), (f"{node.base}/api/v1/admin/overrides", admin),
                 (node.inbox, None)]
        # 30 000 deep still fits the 64 KiB limits; the inbox takes 1 MiB.
        for url, auth, depth in [(u, a, d) for d in (990, 5000, 30_000) for u, a in posts] + [
                (node.inbox, None, 100_000)]:
            body = nested(depth) if auth is not None else deep_activity(peer, node, depth)
            headers = signed_raw(peer, url, body) if auth is None else {
                **auth, "Content-Type": "application/json"}
            async with s.post(url, data=body, headers=headers) as r:
                payload = await r.json()
                assert r.status == 400, (url, depth, r.status, payload)
                assert "nested deeper than" in payload["error"], payload
        # Numbers a float cannot hold: the reason, not an internal error.
        for raw in (b'{"label": "ok", "model_id": "m", "scores": {"csam": 1' + b"0" * 400 + b"}}",
                    b'{"label": "ok", "model_id": "m", "scores": {"csam": 1e400}}',
                    b'{"label": "ok", "model_id": "m", "scores": {"csam": NaN}}'):
            async with s.post(result_url, data=raw, headers=worker) as r:
                payload = await r.json()
                assert r.status == 400, (raw[-30:], payload)
                assert "number" in payload["error"] or "digits" in payload["error"], payload
        # A lone surrogate in a signed activity's id is refused at the door.
        bad_id = json.dumps(follow(peer, node)).replace('/follows/', '/follows/\\ud800').encode()
        async with s.post(node.inbox, data=bad_id, headers=signed_raw(peer, node.inbox,
                                                                      bad_id)) as r:
            payload = await r.json()
            assert r.status == 400 and "surrogate" in payload["error"], payload
        # None of it left a mark, and the job still takes its real result.
        async with s.post(result_url, json=ok, headers=worker) as r:
            assert r.status == 200 and (await r.json())["status"] == "done"
    assert await _count(node, t.overrides) == 0
    assert await _count(node, t.received_activities) == 0


async def test_surrogate_model_id_leaves_the_job_leased_for_the_real_result(node: Node) -> None:
    job_id, sha, worker = await _leased_job(node)
    url = f"{node.base}/api/v1/jobs/{job_id}/result"
    bad = b'{"label": "csam_suspect", "model_id": "clip-\\ud800", "scores": {}}'
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=bad, headers=worker) as r:
            payload = await r.json()
            assert r.status == 400, payload
            assert "surrogate" in payload["error"], payload
        # Longer than any peer would take in an attestation: refused here too.
        async with s.post(url, json={"label": "ok", "model_id": "m" * (MODEL_ID_MAX + 1)},
                          headers=worker) as r:
            payload = await r.json()
            assert r.status == 400 and "over the limit" in payload["error"], payload
        async with node.app[STORE].engine.connect() as conn:
            state = (await conn.execute(select(t.jobs.c.state)
                                        .where(t.jobs.c.id == job_id))).scalar_one()
        assert state == "leased"
        # The worker's corrected retry is recorded, not answered "repeat".
        good = {"label": "csam_suspect", "model_id": "clip-v1", "scores": {"csam": 0.97}}
        async with s.post(url, json=good, headers=worker) as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "done", body
    lookup = await node.app[STORE].lookup(sha)
    assert lookup.verdict is not None and lookup.verdict.label == "csam_suspect"


async def test_a_verdict_that_cannot_be_recorded_leaves_the_job_leased(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Completing a job and recording its verdict is one transaction: when the verdict
    cannot be written, the job is not marked done (and the retry records it)."""
    job_id, sha, worker = await _leased_job(node)
    store = node.app[STORE]
    real = store._judgement_changed

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_judgement_changed", broken)
    url = f"{node.base}/api/v1/jobs/{job_id}/result"
    result = {"label": "csam_suspect", "model_id": "clip-v1", "scores": {"csam": 0.97}}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=result, headers=worker) as r:
            assert r.status == 500
        async with store.engine.connect() as conn:
            row = (await conn.execute(select(t.jobs.c.state).where(t.jobs.c.id == job_id))).one()
            verdicts = (await conn.execute(select(func.count()).select_from(t.verdicts))).scalar()
        assert row.state == "leased" and verdicts == 0
        monkeypatch.setattr(store, "_judgement_changed", real)
        async with s.post(url, json=result, headers=worker) as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "done", body
    lookup = await store.lookup(sha)
    assert lookup.verdict is not None and lookup.verdict.label == "csam_suspect"


async def test_poison_activity_does_not_stop_audit_writing(plain_node: Node, peer: Peer) -> None:
    """A signed activity built to break the write-behind is refused, and checks sent
    after it still reach the audit log."""
    async with aiohttp.ClientSession() as s:
        for body in (deep_activity(peer, plain_node, 970),
                     json.dumps(follow(peer, plain_node)).replace("/follows/", "/follows/\\ud800")
                     .encode(),
                     json.dumps(follow(peer, plain_node, summary="a\u0000b")).encode()):
            async with s.post(plain_node.inbox, data=body,
                              headers=signed_raw(peer, plain_node.inbox, body)) as r:
                assert r.status == 400, await r.text()
        for i in range(3):
            async with s.post(f"{plain_node.base}/api/v1/scan/{CALLER}", data=jpeg(100 + i, (64, 48)),
                              headers={"Content-Type": "image/jpeg"}) as r:
                assert r.status in (200, 406)

    async def audited() -> bool:
        async with plain_node.app[STORE].engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.audit_log)
                                           .where(t.audit_log.c.action == "check"))
                        ).scalar_one()) == 3
    assert await async_wait_for(audited, timeout=10)
