"""A decoder that crashes or hangs costs one worker, never the node."""

from __future__ import annotations

import os
import time

import pytest

from scanner import DecodeLimits, ImageHashes, UnreadableImage, hash_image_bytes
from scanner.pool import DecodePool
from tests.images import jpeg


def crashing_or_hanging(data: bytes, limits: DecodeLimits) -> ImageHashes:
    if data == b"crash":
        os.abort()
    if data == b"hang":
        time.sleep(3600)
    if data == b"hog":
        _ = bytearray(4 * 1024**3)
    return hash_image_bytes(data, limits)


@pytest.fixture
def pool() -> DecodePool:
    p = DecodePool(DecodeLimits(), workers=2, timeout_s=2, memory_limit_bytes=1024**3,
                   func=crashing_or_hanging)
    yield p
    p.close()


async def test_crash_hang_and_memory_hog_are_contained(pool: DecodePool) -> None:
    good = jpeg(1)
    assert (await pool.hash(good)).media_type == "image/jpeg"
    with pytest.raises(UnreadableImage) as err:
        await pool.hash(b"crash")
    assert err.value.kind == "crashed"
    with pytest.raises(UnreadableImage) as err:
        await pool.hash(b"hang")
    assert err.value.kind == "timeout" and "scanner.decode_timeout_s" in err.value.reason
    with pytest.raises(UnreadableImage) as err:
        await pool.hash(b"hog")
    assert err.value.kind == "too_large"
    # The pool replaced its workers and keeps working.
    for seed in range(4):
        assert (await pool.hash(jpeg(seed))).frames


async def test_hostile_corpus_through_the_pool_keeps_memory_bounded() -> None:
    import psutil

    from tests.images import HOSTILE, hostile_corpus

    corpus = hostile_corpus()
    limit = 512 * 1024**2
    real = DecodePool(DecodeLimits(), workers=2, timeout_s=10, memory_limit_bytes=limit)
    me = psutil.Process()
    try:
        assert (await real.hash(jpeg(2))).frames
        before = me.memory_info().rss
        peak_worker = 0
        for _ in range(2):
            for name in HOSTILE:
                with pytest.raises(UnreadableImage) as err:
                    await real.hash(corpus[name])
                assert err.value.reason, name
                for child in me.children(recursive=True):
                    try:
                        peak_worker = max(peak_worker, child.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
        grown = me.memory_info().rss - before
        # The node's own process does no decoding: it only passes bytes along.
        assert grown < 64 * 1024**2, f"the node grew by {grown / 1024**2:.0f} MiB"
        assert peak_worker < limit, f"a decoder reached {peak_worker / 1024**2:.0f} MiB"
        assert (await real.hash(jpeg(3))).frames  # the pool still works
    finally:
        real.close()


def slow_when_heavy(data: bytes, limits: DecodeLimits) -> ImageHashes:
    """A decoder on which an expensive animation takes 1.5 s (a 4 900-frame GIF on a
    1500² canvas takes many seconds for real); other images decode for real."""
    if data.startswith(b"GIF"):
        time.sleep(1.5)
        return hash_image_bytes(_SMALL, limits)
    return hash_image_bytes(data, limits)


_SMALL = jpeg(6, (64, 48))


def _expensive_gif(seed: int) -> bytes:
    """A small file that claims a 1500x1500 canvas and 40 frames (90 M pixels to decode)."""
    import io

    from PIL import Image

    frames = []
    for i in range(40):
        f = Image.new("P", (1500, 1500), 0)
        f.putpixel((i, seed % 1500), 1 + i % 200)
        frames.append(f)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10)
    return buf.getvalue()


async def test_cheap_images_are_not_starved_by_a_flood_of_expensive_ones() -> None:
    import asyncio

    from scanner.cost import decode_work
    from scanner.scheduling import HEAVY_WORK

    heavy = [_expensive_gif(s) for s in range(3)]
    assert all(decode_work(g) > HEAVY_WORK for g in heavy)
    assert decode_work(jpeg(5)) < HEAVY_WORK
    pool = DecodePool(DecodeLimits(), workers=2, timeout_s=30, func=slow_when_heavy)
    finished: list[str] = []

    async def run(name: str, data: bytes, caller: str) -> None:
        await pool.hash(data, caller=caller)
        finished.append(name)

    try:
        await pool.hash(jpeg(4))  # both workers started
        flood = [asyncio.create_task(run(f"gif{i}", g, "flood")) for i, g in enumerate(heavy)]
        await asyncio.sleep(0.2)  # the flood has taken what it may
        await run("photo", jpeg(5), "pictrs")
        # The photo did not wait for the expensive animations: a decoder was kept for it.
        assert finished == ["photo"], finished
        await asyncio.gather(*flood)
    finally:
        pool.close()


async def test_one_caller_cannot_queue_more_than_its_share_of_expensive_work() -> None:
    import asyncio

    pool = DecodePool(DecodeLimits(), workers=2, timeout_s=30, func=slow_when_heavy)
    try:
        gifs = [_expensive_gif(s) for s in range(5)]
        tasks = [asyncio.create_task(pool.hash(g, caller="flood")) for g in gifs]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        busy = [r for r in done if isinstance(r, UnreadableImage)]
        # One decoding, two waiting; the rest are refused at once as "busy" (not hashed,
        # which the node never treats as unknown), instead of queueing without bound.
        assert len(busy) == 2 and all(r.kind == "busy" for r in busy), done
        assert "decoders are busy" in busy[0].reason
        # Another caller is not refused because of the flood.
        assert (await pool.hash(gifs[0], caller="other")).frames
    finally:
        pool.close()
