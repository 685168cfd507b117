"""What re-uploaders do to a blocked image, through the real hashing and matcher (issue 15):
low-texture photos, mirrors, rotations and small crops are still caught; unrelated plain
pictures (flat colours, gradients, text, dark photos) match nothing of each other."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from attestd.bad_hashes import BadHashIndex
from attestd.config import MatchingConfig
from attestd.model import HashEntry
from scanner import DecodeLimits, FrameHashes, hash_image_bytes
from tests.images import scene

LIMITS = DecodeLimits()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _frames(img: Image.Image, quality: int = 90) -> tuple[FrameHashes, ...]:
    return hash_image_bytes(_jpeg(img, quality), LIMITS).frames


def _index(originals: list[Image.Image]) -> BadHashIndex:
    index = BadHashIndex(MatchingConfig())
    for i, img in enumerate(originals):
        f = _frames(img)[0]
        index.add(HashEntry(i, "csam_suspect", "override:1", pdq=f.pdq,
                            pdq_quality=f.pdq_quality, phash=f.phash))
    return index


def _dark(seed: int) -> Image.Image:
    """A night shot: the structure is there, the PDQ quality is under the floor."""
    return Image.fromarray((np.asarray(scene(seed, (800, 600)), dtype=np.float32)
                            * 0.12).astype(np.uint8))


def _foggy(seed: int) -> Image.Image:
    arr = np.asarray(scene(seed, (800, 600)), dtype=np.float32)
    return Image.fromarray((0.15 * arr + 0.85 * 128).astype(np.uint8))


def _plain(i: int) -> Image.Image:
    rng = np.random.default_rng(100 + i)
    c1, c2 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    kind = i % 4
    if kind == 0:
        return Image.new("RGB", (640, 480), c1)
    if kind == 1:
        t = np.linspace(0, 1, 640, dtype=np.float32)[None, :, None]
        arr = np.asarray(c1, np.float32) * (1 - t) + np.asarray(c2, np.float32) * t
        return Image.fromarray(np.repeat(arr, 480, axis=0).astype(np.uint8))
    if kind == 2:
        img = Image.new("RGB", (640, 480), c1)
        ImageDraw.Draw(img).text((40, int(rng.integers(40, 400))), f"message number {i}",
                                 font=ImageFont.load_default(size=36), fill=c2)
        return img
    return _dark(500 + i)


def test_low_texture_photos_are_under_the_floor_yet_match_their_copies() -> None:
    lows = [_dark(s) for s in range(3)] + [_foggy(s) for s in range(3, 6)]
    m = MatchingConfig()
    assert all(_frames(img)[0].pdq_quality < m.pdq_min_quality for img in lows)
    index = _index(lows)
    edits: list[Callable[[Image.Image], tuple[FrameHashes, ...]]] = [
        lambda im: _frames(im, 50),
        lambda im: _frames(im.resize((im.width // 2, im.height // 2),
                                     Image.Resampling.LANCZOS)),
        lambda im: _frames(ImageOps.grayscale(im).convert("RGB")),
    ]
    for i, img in enumerate(lows):
        for edit in edits:
            hits = index.match(edit(img))
            assert [h.entry.id for h in hits] == [i]
            assert hits[0].kind == "pdq+phash"


def test_unrelated_plain_pictures_never_match_each_other() -> None:
    plain = [_plain(i) for i in range(24)]
    index = _index(plain)
    for i, img in enumerate(plain):
        assert [h.entry.id for h in index.match(_frames(img, 85)) if h.entry.id != i] == []


@pytest.mark.parametrize("turn", [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM,
                                  Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                  Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE])
def test_mirrored_and_rotated_copies_match(turn: Image.Transpose) -> None:
    photos = [scene(s, (800, 600)) for s in range(4)] + [_dark(7)]
    index = _index(photos)
    for i, img in enumerate(photos):
        hits = index.match(_frames(img.transpose(turn)))
        assert [h.entry.id for h in hits] == [i]
        assert hits[0].variant != "original"


def test_three_percent_crops_match() -> None:
    photos = [scene(s, (800, 600)) for s in range(10, 16)]
    index = _index(photos)
    for i, img in enumerate(photos):
        dx, dy = int(img.width * 0.03), int(img.height * 0.03)
        cropped = img.crop((dx, dy, img.width - dx, img.height - dy))
        assert [h.entry.id for h in index.match(_frames(cropped))] == [i]
