"""Each logical change commits once (issue 17, items 1-2): the node dies (an injected
crash) just before or just after each of a change's commits, and what is stored after a
restart is the whole change or none of it; the delivery loop then sends what was queued.

The changes: a classifier result (job done, verdict, index entries, review item,
attestation, outbox entry, deliveries), a worker's failure (job failed, review item), a
reviewer's confirm, mark-ok and quarantine, an override set and removed, an attestation
received from a peer and deleted by it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from attestd import overrides, review_actions
from attestd.blobs import BlobStore
from attestd.db import schema as t
from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.federation.attestations import Attestation, build_attestation, parse_attestation
from attestd.http.admin_context import quarantine_target, reviewer
from attestd.http.appkeys import FEDERATION, PIPELINE, STORE
from attestd.http.jobs import JOBS
from attestd.jobs.queue import JobQueue
from attestd.jobs.store import JobStore
from attestd.model import utcnow
from scanner import DecodeLimits, ImageHashes, hash_image_bytes
from scanner.classifier import Classification
from tests.conftest import async_wait_for
from tests.faults import CommitFaults, Crash, When
from tests.images import jpeg
from tests.integration.test_federation_endpoints import Node, start_node
from tests.peers import Peer

BAD = Classification("csam_suspect", "m", {"csam_suspect": 0.9})


@dataclass
class Image:
    data: bytes
    hashes: ImageHashes
    job_id: int | None = None

    @property
    def sha256(self) -> str:
        return self.hashes.sha256


Step = Callable[[Node, Image], Awaitable[Any]]


async def _queued(node: Node, img: Image) -> None:
    """As a check leaves an unknown image: hashed, queued, leased to worker gpu."""
    await node.app[STORE].save_image(img.hashes)
    queue = node.app[JOBS]
    await queue.submit(img.sha256, img.data, "unknown")
    claimed = await queue.claim("gpu", 1, wait_s=0)
    assert [j.sha256 for j in claimed] == [img.sha256]
    img.job_id = claimed[0].id


async def _classified(node: Node, img: Image) -> None:
    await _queued(node, img)
    await _result(node, img)


async def _result(node: Node, img: Image) -> None:
    assert img.job_id is not None
    outcome, _ = await node.app[JOBS].complete("gpu", img.job_id, BAD)
    assert outcome == "done"


async def _failed(node: Node, img: Image) -> None:
    assert img.job_id is not None
    assert await node.app[JOBS].fail("gpu", img.job_id, "the model ran out of memory")


async def _saved(node: Node, img: Image) -> None:
    await node.app[STORE].save_image(img.hashes)


async def _blocked(node: Node, img: Image) -> None:
    await _saved(node, img)
    await _block(node, img)


async def _block(node: Node, img: Image) -> None:
    await overrides.set_override(node.app[STORE], "block", img.sha256, img.hashes, "test",
                                 "admin", img.sha256)


async def _unblock(node: Node, img: Image) -> None:
    await overrides.remove_override(node.app[STORE], "admin", sha256=img.sha256)


async def _confirm(node: Node, img: Image) -> None:
    await review_actions.confirm(reviewer(node.app), img.sha256, img.hashes, "csam_suspect",
                                 actor="admin")


async def _quarantine(node: Node, img: Image) -> None:
    await review_actions.quarantine(reviewer(node.app), img.sha256, img.hashes,
                                    quarantine_target(node.app), actor="admin", node="test")


async def _mark_ok(node: Node, img: Image) -> None:
    await review_actions.mark_ok(reviewer(node.app), img.sha256, actor="admin")


PEER = "http://127.0.0.1:9/users/peer"  # never fetched: its proofs are taken as checked


async def _peer_trusted(node: Node, img: Image) -> None:
    fed = node.app[FEDERATION]
    await fed.peers.add(PEER, f"{PEER}/inbox", None, "full", f"{PEER}#follow")

    async def verified(obj: dict[str, Any]) -> Attestation:
        return parse_attestation(obj)

    fed.handler.verify = verified  # type: ignore[method-assign]


async def _attestation_received(node: Node, img: Image) -> None:
    obj = build_attestation(
        object_id=f"http://127.0.0.1:9/attestations/{img.sha256}", issuer=PEER,
        audience=f"{PEER}/followers", sha256=img.sha256, frames=img.hashes.frames,
        label="csam_suspect", method="classifier", model="m", published=utcnow())
    handled = await node.app[FEDERATION].handler.handle(PEER, {
        "id": f"http://127.0.0.1:9/activities/{img.sha256}", "type": "Create", "actor": PEER,
        "object": obj})
    assert handled.status == "accepted", handled


async def _attestation_held(node: Node, img: Image) -> None:
    await _peer_trusted(node, img)
    await _attestation_received(node, img)


async def _attestation_deleted(node: Node, img: Image) -> None:
    handled = await node.app[FEDERATION].handler.handle(PEER, {
        "id": f"http://127.0.0.1:9/activities/delete-{img.sha256}", "type": "Delete",
        "actor": PEER, "object": f"http://127.0.0.1:9/attestations/{img.sha256}"})
    assert handled.status == "accepted", handled


CHANGES: dict[str, tuple[Step, Step, int]] = {
    # name: (what the image went through before, the change, its commits)
    "classifier result": (_queued, _result, 1),
    "worker failure": (_queued, _failed, 1),
    "review confirm": (_classified, _confirm, 1),
    "review mark ok": (_classified, _mark_ok, 1),
    # (The evidence is written to the quarantine folder before the one commit.)
    "review quarantine": (_classified, _quarantine, 1),
    "override block": (_saved, _block, 1),
    "override remove": (_blocked, _unblock, 1),
    # The first commit is the peer's last-seen time, no part of the change.
    "attestation received": (_peer_trusted, _attestation_received, 2),
    "attestation deleted": (_attestation_held, _attestation_deleted, 2),
}


async def snapshot(engine: AsyncEngine, sha256: str) -> dict[str, Any]:
    """What the database holds about one image (counts and kinds, no ids)."""
    async with engine.connect() as conn:
        def rows(q: Any) -> Any:
            return conn.execute(q)

        pa = (await rows(select(t.published_attestations.c.object_id,
                                t.published_attestations.c.retracted_at)
                         .where(t.published_attestations.c.sha256 == sha256))).all()
        ours = {r.object_id for r in pa}

        def names_ours(activity: dict[str, Any]) -> bool:
            obj = activity.get("object")
            return isinstance(obj, dict) and obj.get("id") in ours

        outbox = [a["type"] for a in (await rows(select(t.outbox.c.activity))).scalars()
                  if names_ours(a)]
        deliveries = [json.loads(bytes(b))["type"] for b in
                      (await rows(select(t.deliveries.c.body))).scalars()
                      if names_ours(json.loads(bytes(b)))]
        verdicts = (await rows(select(t.verdicts.c.method, t.verdicts.c.retracted_at)
                               .where(t.verdicts.c.sha256 == sha256))).all()
        return {
            "job": (await rows(select(t.jobs.c.state).where(t.jobs.c.sha256 == sha256))).scalar(),
            "received": sorted(r is None for r in (await rows(select(
                t.attestations.c.retracted_at).where(t.attestations.c.sha256 == sha256))
            ).scalars()),
            "verdicts": sorted((v.method, v.retracted_at is None) for v in verdicts),
            "entries": sorted((await rows(select(t.hash_entries.c.label).where(
                (t.hash_entries.c.sha256 == sha256) & t.hash_entries.c.active.is_(True))
            )).scalars()),
            "overrides": sorted((await rows(select(t.overrides.c.action).where(
                t.overrides.c.sha256 == sha256))).scalars()),
            "review": sorted((r.kind, r.resolved_at is None) for r in (await rows(
                select(t.review_items).where(t.review_items.c.sha256 == sha256))).all()),
            "audit": sorted(a for a in (await rows(select(t.audit_log.c.action).where(
                t.audit_log.c.sha256 == sha256))).scalars() if a != "check"),
            "attestations": sorted(r.retracted_at is None for r in pa),
            "outbox": sorted(outbox),
            "deliveries": sorted(deliveries),
        }


def _images(start: int, n: int) -> list[Image]:
    out = []
    for i in range(start, start + n):
        data = jpeg(i, (96, 72))
        out.append(Image(data, hash_image_bytes(data, DecodeLimits())))
    return out


async def _node(tmp_path: Path, db_url: str) -> Node:
    return await start_node(tmp_path, db_url, workers={"enabled": True},
                            federation={"allow_private_addresses": True, "retry_base_s": 0.3},
                            sweep={"quarantine": str(tmp_path / "quarantine")})


@pytest.mark.parametrize("name", list(CHANGES))
async def test_a_change_is_whole_or_absent_at_every_commit_boundary(
        tmp_path: Path, db_url: str, name: str) -> None:
    setup, change, expected_commits = CHANGES[name]
    follower = await Peer(name="follower").start()
    node = await _node(tmp_path, db_url)
    engine = create_engine(db_url)
    try:
        await node.app[FEDERATION].store.add_follower(follower.actor_id, follower.inbox, None,
                                                      state="accepted")
        faults = CommitFaults(node.app[STORE])
        # An untouched run shows what the whole change stores, and how many commits it makes.
        control, = _images(7000, 1)
        await setup(node, control)
        await node.app[PIPELINE].writes.flush()
        absent = await snapshot(engine, control.sha256)
        faults.arm(None)
        await change(node, control)
        commits = faults.count
        faults.disarm()
        # What the change left to batched writes counts as stored (a kill loses it).
        await node.app[PIPELINE].writes.flush()
        whole = await snapshot(engine, control.sha256)
        assert whole != absent
        boundaries: list[tuple[int, When]] = [(k, w) for k in range(1, commits + 1)
                                              for w in ("before", "after")]
        rest = _images(7001, len(boundaries))
        tried: list[tuple[Image, str]] = []
        for img, (k, when) in zip(rest, boundaries, strict=False):
            await setup(node, img)
            await node.app[PIPELINE].writes.flush()
            assert await snapshot(engine, img.sha256) == absent
            faults.arm(k, when)
            with pytest.raises(Crash):
                await change(node, img)
            faults.disarm()
            await node.app[PIPELINE].writes.flush()
            where = f"{name}: killed {when} commit {k} of {commits}"
            state = await snapshot(engine, img.sha256)
            assert state in (absent, whole), f"{where}: half a change is stored: {state}"
            tried.append((img, where))
        faults.restore()
        assert commits == expected_commits, f"{name} is {commits} commits, not {expected_commits}"

        # Restart: what a worker retries (its result was never acknowledged) lands whole,
        # and the delivery loop of the new process sends everything that was queued.
        await node.runner.cleanup()
        node = await _node(tmp_path, db_url)
        for img, where in tried:
            if name == "classifier result" and await snapshot(engine, img.sha256) == absent:
                await change(node, img)
            state = await snapshot(engine, img.sha256)
            assert state in (absent, whole), f"{where}, after restart: {state}"
        expected = 0
        for img in [control, *(i for i, _ in tried)]:
            expected += len((await snapshot(engine, img.sha256))["deliveries"])

        async def all_delivered() -> bool:
            async with engine.connect() as conn:
                states = (await conn.execute(select(t.deliveries.c.state))).scalars().all()
            return all(s == "delivered" for s in states) and len(follower.received) >= expected

        assert await async_wait_for(all_delivered, timeout=30), \
            f"{len(follower.received)} of {expected} activities reached the follower"
    finally:
        await node.runner.cleanup()
        await follower.stop()
        await engine.dispose()


pytestmark = pytest.mark.timeout(180)


async def test_a_result_recorded_by_another_process_indexes_the_image(
        tmp_path: Path, db_url: str) -> None:
    """The job of an unknown image is queued with its hashes, in one commit: a worker's
    result that lands on another node process before this one's batched hash writes
    (or after this one was killed) still indexes the image's perceptual hashes."""
    node = await start_node(tmp_path, db_url, workers={"enabled": True},
                            policy={"deadline_s": 20})
    other = create_engine(db_url)
    try:
        store = node.app[STORE]
        # This process's batch of image hashes never lands (it is killed first, or slow).
        node.app[PIPELINE].writes.image = store.remember  # type: ignore[method-assign]
        img, = _images(7100, 1)
        async with aiohttp.ClientSession() as s:
            async def check() -> int:
                async with s.post(f"{node.base}/api/v1/scan/IPADDR", data=img.data,
                                  headers={"Content-Type": "image/jpeg"}) as r:
                    return r.status

            checking = asyncio.create_task(check())
            elsewhere = JobQueue(Store(other), JobStore(Store(other)),
                                 BlobStore(tmp_path / "elsewhere"))
            job, = await elsewhere.claim("gpu", 1, wait_s=20)
            outcome, verdict = await elsewhere.complete("gpu", job.id, BAD)
            assert outcome == "done" and verdict is not None
            assert await checking == 406
        state = await snapshot(other, img.sha256)
        assert state["entries"] == ["csam_suspect"] * len(img.hashes.frames), state
    finally:
        await node.runner.cleanup()
        await other.dispose()
