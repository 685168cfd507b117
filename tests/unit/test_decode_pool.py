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
