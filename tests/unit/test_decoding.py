"""Decoding and hashing, in-process (the pool's isolation is tested separately)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from scanner import DecodeLimits, UnreadableImage, hamming_hex, hash_image_bytes, sample_frames
from tests.images import (
    HOSTILE,
    animated_gif,
    animation,
    encode,
    hostile_corpus,
    jpeg,
    png_bomb,
    reencoded,
    scene,
)

LIMITS = DecodeLimits()


@pytest.mark.parametrize("fmt,mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                      ("WEBP", "image/webp"), ("GIF", "image/gif"),
                                      ("AVIF", "image/avif")])
def test_each_still_format_hashes(fmt: str, mime: str) -> None:
    h = hash_image_bytes(encode(scene(1), fmt), LIMITS)
    assert h.media_type == mime and h.frame_count == 1 and len(h.frames) == 1
    assert h.first.pdq_quality >= 50


def test_formats_of_the_same_picture_hash_alike() -> None:
    img = scene(2)
    ref = hash_image_bytes(encode(img, "PNG"), LIMITS).first
    for fmt in ("JPEG", "WEBP"):
        other = hash_image_bytes(encode(img, fmt), LIMITS).first
        assert hamming_hex(ref.pdq, other.pdq) <= 16
        assert hamming_hex(ref.phash, other.phash) <= 4


@pytest.mark.parametrize("seed", range(5))
def test_half_size_low_quality_copies_stay_within_the_thresholds(seed: int) -> None:
    original = jpeg(seed, (1600, 1200))
    a = hash_image_bytes(original, LIMITS).first
    b = hash_image_bytes(reencoded(original, 0.5, 55), LIMITS).first
    assert hamming_hex(a.pdq, b.pdq) <= 31
    assert hamming_hex(a.phash, b.phash) <= 8


def test_different_pictures_are_far_apart() -> None:
    a = hash_image_bytes(jpeg(100), LIMITS).first
    b = hash_image_bytes(jpeg(200), LIMITS).first
    assert hamming_hex(a.pdq, b.pdq) > 60


def test_every_distinct_frame_of_an_animation_is_hashed() -> None:
    # Twenty different scenes: twenty hashes (max_frames is for videos only).
    h = hash_image_bytes(animated_gif(3, frames=20), DecodeLimits(max_frames=4))
    assert h.frame_count == 20 and len(h.frames) == 20
    assert sample_frames(20, 4) == [0, 6, 13, 19]
    assert sample_frames(3, 16) == [0, 1, 2]
    assert sample_frames(100, 1) == [0]


def _repeating_gif(pictures: int, repeats: int) -> bytes:
    """``pictures`` scenes, each shown for ``repeats`` frames that differ by one pixel."""
    frames = []
    for p in range(pictures):
        img = scene(300 + p, (96, 72))
        for r in range(repeats):
            f = img.copy()
            f.putpixel((r % 96, 0), (r * 7 % 256, 0, 0))
            frames.append(f)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=20)
    return buf.getvalue()


def test_near_identical_frames_are_hashed_once() -> None:
    h = hash_image_bytes(_repeating_gif(3, 30), LIMITS)
    assert h.frame_count == 90 and len(h.frames) == 3


def test_more_distinct_frames_than_the_budget_is_not_hashed_in_part() -> None:
    data = _repeating_gif(6, 2)
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data, DecodeLimits(max_distinct_frames=5))
    assert err.value.kind == "budget" and "scanner.max_distinct_frames" in err.value.reason
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data, DecodeLimits(frame_budget_s=1e-9))
    assert err.value.kind == "budget" and "scanner.frame_budget_s" in err.value.reason
    assert len(hash_image_bytes(data, DecodeLimits(max_distinct_frames=6)).frames) == 6


@pytest.mark.parametrize("data,kind", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "corrupt"),
    (b"GIF89a" + b"\xff" * 30, "corrupt"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported"),
])
def test_unreadable_inputs_say_why(data: bytes, kind: str) -> None:
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data, LIMITS)
    assert err.value.kind == kind and err.value.reason


def test_truncated_and_bit_flipped_jpegs() -> None:
    data = jpeg(7)
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data[: len(data) // 2], LIMITS)
    assert err.value.kind == "corrupt"


def test_unsupported_raster_format_is_named() -> None:
    buf = io.BytesIO()
    scene(1, (64, 64)).save(buf, "TIFF")
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(buf.getvalue(), LIMITS)
    assert err.value.kind == "unsupported" and "TIFF" in err.value.reason


def test_pixel_bomb_is_refused_from_its_header() -> None:
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(png_bomb(), LIMITS)
    assert err.value.kind == "too_large" and "scanner.max_pixels" in err.value.reason


def test_byte_limit() -> None:
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(jpeg(1), DecodeLimits(max_bytes=1000))
    assert err.value.kind == "too_large"


def test_sha256_is_of_the_exact_bytes() -> None:
    import hashlib

    data = jpeg(9)
    assert hash_image_bytes(data, LIMITS).sha256 == hashlib.sha256(data).hexdigest()
    assert Image.open(io.BytesIO(data)).format == "JPEG"


@pytest.mark.parametrize("fmt,mime", [("mp4", "video/mp4"), ("webm", "video/webm")])
def test_videos_are_sampled_and_hashed(fmt: str, mime: str) -> None:
    from tests.images import video

    data = video(5, fmt, frames=30)
    h = hash_image_bytes(data, DecodeLimits(max_frames=4))
    assert h.media_type == mime and (h.width, h.height) == (320, 240)
    assert len(h.frames) == 4 and h.frame_count >= 25
    # The clip shows three different scenes: its samples are not all alike.
    assert len({f.pdq for f in h.frames}) >= 2


def test_broken_video_streams_are_unreadable() -> None:
    from tests.images import video

    data = video(6, "mp4")
    for broken in (data[: len(data) // 3], data[:40] + bytes(len(data) - 40),
                   b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 500):
        with pytest.raises(UnreadableImage) as err:
            hash_image_bytes(broken, LIMITS)
        assert err.value.kind == "corrupt" and err.value.reason


@pytest.mark.parametrize("fmt,mime", [("GIF", "image/gif"), ("WEBP", "image/webp"),
                                      ("PNG", "image/png")])
def test_each_animated_format_samples_frames(fmt: str, mime: str) -> None:
    h = hash_image_bytes(animation(fmt), LIMITS)
    assert h.media_type == mime and h.frame_count == 6 and len(h.frames) == 6
    assert len({f.pdq for f in h.frames}) > 1


def test_jpeg_xl_through_its_plugin() -> None:
    pic = scene(9)
    a, b = hash_image_bytes(encode(pic, "JXL"), LIMITS), hash_image_bytes(encode(pic, "PNG"), LIMITS)
    assert a.media_type == "image/jxl"
    assert hamming_hex(a.first.pdq, b.first.pdq) <= 16


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_corpus_is_unreadable_with_a_reason(name: str) -> None:
    data = hostile_corpus()[name]
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data, LIMITS)
    assert len(err.value.reason) > 20, err.value.reason


def test_chance_signature_bytes_are_not_polyglots() -> None:
    # A ZIP signature or "%PDF" inside pixel data, not a file riding along.
    good = bytearray(jpeg(45, (320, 240)))
    good[len(good) // 2:len(good) // 2 + 4] = b"PK\x05\x06"
    good[len(good) // 3:len(good) // 3 + 5] = b"%PDF-"
    try:
        hash_image_bytes(bytes(good), LIMITS)
    except UnreadableImage as exc:
        assert exc.kind != "polyglot", exc.reason
