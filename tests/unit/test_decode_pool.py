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
