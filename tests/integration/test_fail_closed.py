"""Issue 16 items 1-3: an image the node could not hash is never let in as "unknown".

A real node on each database; slowness is simulated by a hasher that sleeps (a real
hostile GIF takes longer to decode than a test should wait), everything else is real.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image

from attestd.http import create_app
from attestd.http.appkeys import INDEX, PIPELINE, SERVICES, STORE
from scanner import ImageHashes, UnreadableImage, sha256_hex
from tests.conftest import CALLER, async_wait_for, make_config
from tests.images import expensive_gif, jpeg, reencoded, scene

SCAN = f"/api/v1/scan/{CALLER}"
HashFn = Callable[..., Awaitable[ImageHashes]]


async def _post(client: Any, data: bytes, ctype: str = "image/jpeg") -> tuple[int, Any]:
    resp = await client.post(SCAN, data=data, headers={"Content-Type": ctype})
    return resp.status, await resp.json()


def _slow(hasher: HashFn, delay_s: float) -> tuple[HashFn, list[str]]:
    calls: list[str] = []

    async def slow(data: bytes, *, caller: str = "") -> ImageHashes:
        calls.append(caller)
        await asyncio.sleep(delay_s)
        return await (hasher(data, caller=caller) if caller else hasher(data))

    return slow, calls


async def _block(node: Any, data: bytes) -> None:
    """An admin blocks ``data`` (and so its near-copies)."""
    hashes = await node.app[SERVICES].pool.hash(data)
    await node.app[STORE].set_override(hashes.sha256, "block", "test", "pytest", hashes.frames)
    n = len(node.app[INDEX])
    assert await async_wait_for(lambda: len(node.app[INDEX]) > n, timeout=5)


async def test_an_image_not_hashed_by_the_deadline_is_rejected_then_answered_from_its_hashes(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    # The defaults otherwise: on_unknown = accept, so before issue 16 this copy passed.
    node = await aiohttp_client(create_app(make_config(tmp_path, db_url,
                                                       policy={"deadline_s": 0.5})))
    blocked = jpeg(70, (800, 600))
    await _block(node, blocked)
    pipeline = node.app[PIPELINE]
    pipeline.hasher, calls = _slow(pipeline.hasher, 1.5)

    copy = reencoded(blocked)
    status, body = await _post(node, copy)
    assert status == 503, body
    assert (body["decision"], body["source"]) == ("reject", "policy:on_unhashable")
    assert "could not be hashed" in body["reason"] and "policy.deadline_s" in body["reason"]
    assert body["detail"] == {"unhashable": "deadline"}

    # Hashing went on in the background; the next try is answered from its result.
    async def rejected_as_blocked() -> bool:
        s, b = await _post(node, copy)
        assert s in (503, 406), b
        return s == 406 and b["label"] == "blocked"

    assert await async_wait_for(rejected_as_blocked, timeout=10, interval=0.3)
    assert len(calls) == 1, "the same bytes were decoded again"

    metrics = await (await node.get("/metrics")).text()
    assert re.search(r'^attestd_unhashable_total\{why="deadline"\} [1-9]', metrics, re.M)

    async def audited() -> bool:
        entries = await node.app[STORE].recent_audit()
        return any(e.source == "policy:on_unhashable" and e.decision == "reject"
                   for e in entries)

    assert await async_wait_for(audited, timeout=5)


async def test_on_unhashable_accept_must_be_chosen_and_says_so(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    cfg = make_config(tmp_path, db_url, policy={"deadline_s": 0.3, "on_unhashable": "accept"})
    node = await aiohttp_client(create_app(cfg))
    pipeline = node.app[PIPELINE]
    pipeline.hasher, _ = _slow(pipeline.hasher, 1.0)
    status, body = await _post(node, jpeg(71))
    assert status == 200 and body["source"] == "policy:on_unhashable"
    assert "policy.on_unhashable = accept" in body["reason"]


async def test_a_decoder_timeout_or_crash_is_unhashable_not_unreadable_to_accept(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    # An admin who lets unreadable files through (actions.unreadable = accept) still must
    # not let through a file the decoder gave up on: a listed image could be behind it.
    cfg = make_config(tmp_path, db_url, policy={"actions.unreadable": "accept"})
    node = await aiohttp_client(create_app(cfg))
    seen: list[bytes] = []

    async def failing(data: bytes, *, caller: str = "") -> ImageHashes:
        seen.append(data)
        kind = "timeout" if len(seen) == 1 else "crashed"
        raise UnreadableImage(kind, f"simulated decoder {kind}")

    node.app[PIPELINE].hasher = failing
    first, second = jpeg(72), jpeg(73)
    status, body = await _post(node, first)
    assert status == 422, body
    assert (body["source"], body["detail"]) == ("policy:on_unhashable", {"unhashable": "timeout"})
    status, body = await _post(node, second)
    assert status == 422 and body["detail"] == {"unhashable": "crashed"}
    # The result is remembered: the same bytes are answered without decoding again.
    status, body = await _post(node, first)
    assert status == 422 and len(seen) == 2
    # A file the decoder gave up on waits for a human, with its copy.
    review = node.app[SERVICES].review
    item = await review.get(sha256_hex(first))
    assert item is not None and item.kind == "unreadable" and "timeout" in item.reason
    assert await review.copy(sha256_hex(first)) == first


async def test_busy_decoders_never_mean_accept(tmp_path: Path, db_url: str,
                                               aiohttp_client: Any) -> None:
    node = await aiohttp_client(create_app(make_config(tmp_path, db_url)))

    async def busy(data: bytes, *, caller: str = "") -> ImageHashes:
        raise UnreadableImage("busy", "the decoders are busy: simulated")

    node.app[PIPELINE].hasher = busy
    status, body = await _post(node, jpeg(74))
    assert status == 503 and body["source"] == "policy:on_unhashable", body
    assert body["detail"] == {"unhashable": "busy"}


def blocked_in_frames(blocked: Image.Image, total: int, first: int, last: int) -> bytes:
    """A ``total``-frame GIF of ``blocked`` in frames ``first``..``last`` and a harmless
    picture elsewhere. Each frame differs by one pixel, so no encoder merges them."""
    harmless = scene(500, blocked.size)
    frames = []
    for i in range(total):
        f = (blocked if first <= i <= last else harmless).copy()
        f.putpixel((i % f.width, 0), (i % 256, 255 - i % 256, 0))
        frames.append(f)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    return buf.getvalue()


async def test_an_image_hidden_between_sampled_frames_is_found(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    node = await aiohttp_client(create_app(make_config(tmp_path, db_url)))
    picture = scene(77, (96, 72))
    still = io.BytesIO()
    picture.save(still, "GIF")
    await _block(node, still.getvalue())
    animation = blocked_in_frames(picture, 1000, 10, 55)
    assert Image.open(io.BytesIO(animation)).n_frames == 1000
    status, body = await _post(node, animation, "image/gif")
    assert status == 406, body
    assert body["label"] == "blocked" and "perceptually" in body["reason"]
    # Every frame was looked at, but near-identical neighbours were hashed once.
    assert body["frames"] <= 6, body


async def test_a_flood_of_expensive_animations_lets_no_blocked_copy_in(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    # Real expensive GIFs against a real pool of two decoders; the deadline is short so
    # the test is, and the frame budget shorter than the deadline.
    cfg = make_config(tmp_path, db_url, policy={"deadline_s": 3.0},
                      scanner={"frame_budget_s": 1.0})
    node = await aiohttp_client(create_app(cfg))
    blocked = jpeg(80, (800, 600))
    await _block(node, blocked)
    flood = [expensive_gif(seed, 4900) for seed in range(4)]
    posts = [asyncio.create_task(_post(node, g, "image/gif")) for g in flood]
    await asyncio.sleep(0.3)  # the flood has reached the decoders
    copy_status, copy_body = await _post(node, reencoded(blocked))
    new_status, new_body = await _post(node, jpeg(81))
    answers = await asyncio.gather(*posts)
    # Before issue 16 the copy waited behind the flood and passed as "unknown".
    assert copy_status == 406 and copy_body["label"] == "blocked", copy_body
    # An ordinary upload is still hashed and answered, not turned away as busy.
    assert new_status == 200 and new_body["source"] == "policy:on_unknown", new_body
    # The flood itself is never accepted: each is over its budget or refused as busy.
    assert {s for s, _ in answers} <= {422, 503}, answers
    assert {b["detail"]["unhashable"] for _, b in answers} <= {"budget", "busy", "deadline"}
