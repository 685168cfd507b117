"""Federated attestations between real nodes on loopback (issue 6's acceptance).

A classifies (through a stand-in worker with fixed labels on the real worker API), B has
no classifier and follows A with full trust, C follows A with bad_only, and M is a node
B follows with bad_only that also forges A's attestations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from sqlalchemy import func, select
from uuid6 import uuid7

from activitypub import create_proof
from attestd.cli import cli
from attestd.db import schema as t
from attestd.federation.attestations import activity, build_attestation
from attestd.http import create_app
from attestd.http.appkeys import FEDERATION, SERVICES, STORE
from attestd.http.jobs import JOBS
from attestd.model import utcnow
from scanner import sha256_hex
from scanner.classifier import Classification
from scanner.worker import Job
from scanner.worker_client import HttpJobClient
from tests.conftest import CALLER, async_wait_for, free_port, make_config_env, migrate
from tests.images import jpeg, reencoded

pytestmark = pytest.mark.timeout(600)


@dataclass
class Node:
    name: str
    tmp: Path
    db_url: str
    port: int
    sections: dict[str, dict[str, Any]]
    env: dict[str, str]
    app: web.Application | None = None
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actor(self) -> str:
        return f"{self.base}/actor"

    async def start(self) -> Node:
        cfg, self.env = make_config_env(self.tmp, self.db_url,
                                        node={"base_url": self.base}, **self.sections)
        self.app = create_app(cfg)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def cli(self, *args: str) -> str:
        """Run an ``attestd`` command against this node's configuration."""
        result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=self.env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    async def check(self, data: bytes) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.post(
                f"{self.base}/api/v1/scan/{CALLER}", data=data,
                headers={"Content-Type": "image/jpeg"}) as r:
            body: dict[str, Any] = await r.json()
            return body

    async def count(self, table: Any, *where: Any) -> int:
        assert self.app is not None
        async with self.app[STORE].engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(table).where(*where))).scalar_one())


def _node(name: str, tmp: Path, db_url: str | None = None, **sections: dict[str, Any]) -> Node:
    folder = tmp / name
    folder.mkdir()
    if db_url is None:
        db_url = f"sqlite:///{folder / 'attestd.db'}"
    fed = {"retry_base_s": 600.0, **sections.pop("federation", {})}
    return Node(name, folder, db_url, free_port(), {"federation": fed, **sections}, {})


@pytest.fixture
async def nodes(tmp_path: Path, db_url: str) -> AsyncIterator[dict[str, Node]]:
    a = _node("a", tmp_path, workers={"enabled": True},
              policy={"deadline_s": 1.0})
    # B runs on each database backend; the others on SQLite files of their own.
    b = _node("b", tmp_path, db_url, policy={"on_unknown": "reject"})
    c = _node("c", tmp_path, policy={"on_unknown": "reject"})
    m = _node("m", tmp_path, federation={"auto_approve": [f"127.0.0.1:{b.port}"]})
    a.sections["federation"]["auto_approve"] = [f"http://127.0.0.1:{c.port}/actor"]
    found = {n.name: n for n in (a, b, c, m)}
    for n in (a, c, m):
        await asyncio.to_thread(migrate, n.db_url)
    for n in found.values():
        await n.start()
    yield found
    for n in found.values():
        await n.stop()


async def _classify(node: Node, labels: dict[str, str]) -> list[float]:
    """A stand-in worker on A's real worker API: fixed labels, as a trained model's would
    be published. Returns the times it posted each verdict."""
    assert node.app is not None
    token = await node.app[JOBS].jobs.add_worker(f"fixed-{uuid7()}")
    posted = []
    async with aiohttp.ClientSession() as s:
        client = HttpJobClient(s, node.base, token)
        pending = set(labels)
        give_up = time.monotonic() + 120
        while pending:
            assert time.monotonic() < give_up, f"no job for {sorted(pending)} on {node.name}"
            for job in await client.claim(8, 5.0):
                await client.image(Job(job.id, job.sha256))
                await client.result(job, Classification(
                    label=labels[job.sha256], scores={}, model_id="fixed-labels-test",
                    publishable=True))
                posted.append(time.monotonic())
                pending.discard(job.sha256)
    return posted


async def _follow(follower: Node, target: str, trust: str, leader: Node,
                  approve: bool = False) -> None:
    out = await follower.cli("peers", "add", target, "--trust", trust)
    assert "following" in out
    if approve:
        assert await async_wait_for(
            lambda: leader.count(t.followers, t.followers.c.actor == follower.actor), 10)
        assert follower.actor in await leader.cli("followers", "list")
        await leader.cli("followers", "approve", follower.actor)
    assert await async_wait_for(lambda: follower.count(
        t.peers, t.peers.c.actor == leader.actor, t.peers.c.state == "accepted"), 15)


async def test_trusted_attestations_decide_and_nothing_untrusted_does(
        nodes: dict[str, Node], tmp_path: Path) -> None:
    a, b, c, m = nodes["a"], nodes["b"], nodes["c"], nodes["m"]
    assert b.app is not None and a.app is not None
    await _follow(b, a.actor, "full", a, approve=True)
    await _follow(b, m.actor, "bad_only", m)  # M auto-approves B
    await _follow(c, f"@attestd@127.0.0.1:{a.port}", "bad_only", a)  # WebFinger; auto-approved

    x, y = jpeg(601), jpeg(602)
    sx, sy = sha256_hex(x), sha256_hex(y)
    # A sees both (pict-rs uploads), classifies X csam_suspect and Y ok. Its decoders are
    # started first, so its short deadline cuts the wait for a classifier, not the first
    # hashing (an image not hashed by the deadline is on_unhashable, rejected).
    await a.app[SERVICES].pool.hash(jpeg(600))
    for data in (x, y):
        assert (await a.check(data))["source"] == "policy:on_unknown"
    posted = await _classify(a, {sx: "csam_suspect", sy: "ok"})
    arrived = await async_wait_for(lambda: b.count(t.attestations), 2.0, interval=0.02)
    assert arrived and await async_wait_for(lambda: _both(b), 2.0, interval=0.02)
    delay = time.monotonic() - max(posted)
    assert delay <= 2.0, f"B learnt A's verdicts {delay:.2f} s after them"

    # B decides both from A's attestations, with no classification of its own.
    await asyncio.sleep(1.1)  # B's index follows its database each second
    bx, by = await b.check(x), await b.check(y)
    assert bx["decision"] == "reject" and bx["label"] == "csam_suspect"
    assert bx["source"].startswith(f"attestation:{a.base}/attestations/")
    assert by["decision"] == "accept" and by["label"] == "ok", by
    assert by["source"].startswith("attestation:") and by["detail"]["issuer"] == a.actor
    assert await b.count(t.jobs) == 0
    # A re-encoded X is caught perceptually; a re-encoded Y is not taken as ok.
    rx = await b.check(reencoded(x))
    assert rx["decision"] == "reject" and rx["detail"]["match"] in ("pdq", "phash")
    ry = await b.check(reencoded(y))
    assert ry["label"] is None and ry["source"] == "policy:on_unknown"
    # C trusts A for bad only: X rejected, Y's ok decides nothing.
    assert await async_wait_for(lambda: _both(c), 5)
    assert (await c.check(x))["source"].startswith("attestation:")
    assert (await c.check(y))["source"] == "policy:on_unknown"

    # M (bad_only at B) attests X ok: nothing changes, and B logs it.
    await m.cli("review", "mark", "--sha256", sx, "--label", "ok")
    assert await async_wait_for(lambda: b.count(t.attestations, t.attestations.c.issuer == m.actor))
    assert (await b.check(x))["decision"] == "reject"
    # M forges A's attestations: A's key id with M's key, or M's key under A's name.
    fed_m = m.app[FEDERATION] if m.app else None
    assert fed_m is not None
    async with aiohttp.ClientSession() as s:
        for method in (f"{a.actor}#ed25519-key", f"{m.actor}#ed25519-key"):
            for sha, label in ((sx, "ok"), (sy, "csam_suspect")):
                doc = build_attestation(
                    object_id=f"{a.base}/attestations/{uuid7()}", issuer=a.actor,
                    audience=f"{a.base}/followers", sha256=sha, frames=(), label=label,
                    method="human_review", model=None, published=utcnow())
                forged = activity("Create", activity_id=f"{m.base}/activities/{uuid7()}",
                                  actor=m.actor, obj=create_proof(doc, fed_m.keys.ed25519, method),
                                  audience=f"{a.base}/followers", published=utcnow())
                status, text = await _signed_post(s, fed_m, b.base + "/inbox", forged)
                assert status == 400 and "attestation refused" in text, text
    assert (await b.check(x))["decision"] == "reject"
    assert (await b.check(y))["label"] == "ok"
    assert await async_wait_for(lambda: _audited(b, "attestation_refused", 4), 5)
    peers = await b.cli("peers", "list")
    assert f"{m.actor}  accepted  trust=bad_only" in peers and "disagreements=0" in peers

    # A retracts X; B follows (exact and perceptual).
    await a.cli("review", "clear", "--sha256", sx)
    assert await async_wait_for(lambda: b.count(
        t.attestations, t.attestations.c.sha256 == sx, t.attestations.c.retracted_at.is_not(None),
        t.attestations.c.issuer == a.actor), 5)
    await asyncio.sleep(1.1)
    assert (await b.check(x))["source"] == "policy:on_unknown"
    assert (await b.check(reencoded(x)))["source"] == "policy:on_unknown"

    # B goes down; A judges Z meanwhile (its push fails and waits 10 min to retry); B
    # restarts and catches up from A's outbox.
    await b.stop()
    z = jpeg(603)
    sz = sha256_hex(z)
    await a.check(z)
    await _classify(a, {sz: "nsfw"})
    assert await async_wait_for(lambda: _failed_delivery(a, b), 10)
    await b.start()
    assert await async_wait_for(lambda: b.count(t.attestations, t.attestations.c.sha256 == sz), 10)
    await asyncio.sleep(1.1)
    bz = await b.check(z)
    assert bz["label"] == "nsfw" and bz["source"].startswith("attestation:")


async def _both(node: Node) -> bool:
    return await node.count(t.attestations) >= 2


async def _audited(node: Node, action: str, n: int) -> bool:
    # The audit log is written behind, in batches.
    return await node.count(t.audit_log, t.audit_log.c.action == action) == n


async def _failed_delivery(a: Node, b: Node) -> bool:
    return bool(await a.count(t.deliveries, t.deliveries.c.inbox == f"{b.base}/inbox",
                              t.deliveries.c.attempts > 0))


async def _signed_post(s: aiohttp.ClientSession, fed: Any, url: str,
                       act: dict[str, Any]) -> tuple[int, str]:
    import json

    from activitypub import sign_request

    body = json.dumps(act).encode()
    headers = sign_request(method="POST", url=url, key_id=fed.actor.main_key_id,
                           private_key=fed.keys.rsa, body=body,
                           headers={"Content-Type": "application/activity+json"})
    async with s.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


async def test_a_queued_job_is_not_classified_once_a_trusted_peer_decides_it(
        tmp_path: Path, db_url: str) -> None:
    from attestd.federation.attestations import Attestation

    node = _node("solo", tmp_path, db_url, workers={"enabled": True})
    await node.start()
    try:
        assert node.app is not None
        fed, jobs = node.app[FEDERATION], node.app[JOBS]
        await fed.peers.add("https://a.example/actor", "https://a.example/inbox", None,
                            "full", "https://solo.example/activities/1")
        waiting, decided = jpeg(77), jpeg(78)
        for data in (waiting, decided):
            await jobs.submit(sha256_hex(data), data, "unknown")
        att = Attestation(id="https://a.example/attestations/1", issuer="https://a.example/actor",
                          sha256=sha256_hex(decided), label="ok", method="classifier",
                          model=None, frames=(), published=utcnow(), expires=None)
        assert await fed.peers.store_attestation(att, {"id": att.id}) == "stored"
        claimed = await jobs.claim("gpu", 8, 0)
        # Only the image nobody trusted has judged reaches the GPU.
        assert [j.sha256 for j in claimed] == [sha256_hex(waiting)]
        assert (await jobs.jobs.counts()) == {"done": 1, "leased": 1}
    finally:
        await node.stop()
