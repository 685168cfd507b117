"""PDQ and pHash against their references: pdqhash on the full pixels, and imagehash."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageDraw

from scanner import DecodeLimits, hamming_hex, hash_image_bytes
from scanner.pdq import pdq_of, uncropped
from scanner.phash import phash_of
from tests.images import encode, scene

TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
         Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_LEFT_RIGHT,
         Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE)


def _hex(vector: object) -> str:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex()


def reference(img: Image.Image) -> tuple[str, int]:
    """What python-threatexchange's pdq_from_bytes computes for these pixels."""
    vector, quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    return _hex(vector), int(quality)


def texture(kind: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if kind == "stripes":  # fine detail: where a downscaled rendition drifts most
        v = 128 + 120 * np.sin(x / 1.7) * np.sign(np.sin(y / 9.0))
        return Image.fromarray(np.clip(v, 0, 255).astype(np.uint8)).convert("RGB")
    if kind == "text":
        img = Image.new("RGB", size, (250, 250, 245))
        d = ImageDraw.Draw(img)
        for row in range(0, h, 14):
            d.text((int(rng.integers(0, 20)), row), "the quick brown fox " * 20, fill=(0, 0, 0))
        return img
    if kind == "dark":
        return Image.fromarray((np.asarray(scene(seed, size)) // 8).astype(np.uint8))
    return scene(seed, size)


SIZES = [(5, 5), (7, 300), (64, 64), (100, 37), (640, 480), (1000, 1001), (2400, 1800)]
KINDS = ["scene", "noise", "stripes", "text", "dark"]


# Text needs room for a glyph: below 14 px it would be a blank picture, whose bits are
# rounding noise, so those pairs are not generated at all.
CASES = [(k, s) for k in KINDS for s in SIZES if not (k == "text" and min(s) < 14)]


@pytest.mark.parametrize(("kind", "size"), CASES)
def test_pdq_is_the_reference_bit_for_bit(kind: str, size: tuple[int, int]) -> None:
    img = texture(kind, size)
    ours = pdq_of(img, dihedral=True)
    ref_hash, ref_quality = reference(img)
    assert ours.quality == ref_quality
    # pdqhash sums its box filters in float32; on a periodic pattern many coefficients
    # tie with the median and that rounding decides a few of them. Pictures: exact.
    assert hamming_hex(ours.hash, ref_hash) <= (6 if kind == "stripes" else 0)
    vectors, _ = pdqhash.compute_dihedral(np.asarray(img))
    if kind != "stripes":
        assert ours.dihedral == tuple(_hex(v) for v in vectors[1:])


def test_pdq_of_grey_and_palette_pictures_is_of_their_rgb_pixels() -> None:
    for img in (texture("scene", (300, 200)).convert("L"),
                texture("scene", (300, 200)).convert("P"),
                texture("scene", (300, 200)).convert("RGBA")):
        ours = pdq_of(img)
        assert (ours.hash, ours.quality) == reference(img)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
@pytest.mark.parametrize("kind,size", [("stripes", (2400, 1800)), ("text", (1800, 1200)),
                                       ("scene", (1536, 1152)), ("dark", (1024, 768))])
def test_node_pdq_of_a_file_is_the_reference_for_the_same_bytes(
        fmt: str, kind: str, size: tuple[int, int]) -> None:
    """A listed image's exact bytes must hash as HMA hashed them (issue 15)."""
    data = encode(texture(kind, size), fmt)
    ours = hash_image_bytes(data, DecodeLimits()).first
    with Image.open(io.BytesIO(data)) as im:
        ref_hash, ref_quality = reference(im)
    assert hamming_hex(ours.pdq, ref_hash) <= (6 if kind == "stripes" else 0)
    assert ours.pdq_quality == ref_quality


@pytest.mark.parametrize("seed", range(4))
def test_phash_is_imagehash_and_its_turns_are_imagehash_of_the_turned_copy(seed: int) -> None:
    img = scene(seed, (500, 375))
    ours, turned = phash_of(img, dihedral=True)
    assert ours == str(imagehash.phash(img))
    small = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    assert turned == tuple(str(imagehash.phash(small.transpose(t))) for t in TURNS)


def test_dihedral_variants_are_the_hashes_of_the_turned_picture() -> None:
    img = scene(5, (640, 480))
    ours = pdq_of(img, dihedral=True)
    _, phash_turned = phash_of(img, dihedral=True)
    for t, pdq, ph in zip(TURNS, ours.dihedral, phash_turned, strict=True):
        turned = img.transpose(t)
        assert hamming_hex(pdq, pdq_of(turned).hash) <= 16
        assert hamming_hex(ph, phash_of(turned)[0]) <= 4


@pytest.mark.parametrize("fraction", [0.01, 0.03, 0.05])
def test_uncropped_is_the_pdq_of_the_picture_with_its_edges_stretched(fraction: float) -> None:
    img = scene(8, (427, 320))
    w, h = img.size
    big_w, big_h = round(w / (1 - 2 * fraction)), round(h / (1 - 2 * fraction))
    left, top = (big_w - w) // 2, (big_h - h) // 2
    padded = np.pad(np.asarray(img), ((top, big_h - h - top), (left, big_w - w - left), (0, 0)),
                    mode="edge")
    assert uncropped(img, (fraction,)) == (reference(Image.fromarray(padded))[0],)


@pytest.mark.parametrize("fmt", ["AVIF", "JXL", "BMP", "MPO"])
def test_other_formats_hash_as_the_reference(fmt: str) -> None:
    """The other still formats the node decodes, on a detailed picture at 1200 x 900."""
    data = encode(texture("text", (1200, 900)), fmt)
    ours = hash_image_bytes(data, DecodeLimits()).first
    with Image.open(io.BytesIO(data)) as im:
        assert (ours.pdq, ours.pdq_quality) == reference(im)
