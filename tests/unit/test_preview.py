"""Review previews: a still first frame, obscured beyond recognition unless asked clear,
and hostile files refused like hashing refuses them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from scanner import DecodeLimits, UnreadableImage
from scanner.preview import render_preview
from tests.images import jpeg

LIMITS = DecodeLimits()


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _edges(im: Image.Image) -> float:
    """Edge energy, away from the border (where the edge filter sees a false edge)."""
    e = np.asarray(im.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    return float(e[8:-8, 8:-8].var())


def test_clear_preview_is_a_bounded_jpeg_and_obscured_one_keeps_no_detail() -> None:
    src = jpeg(5, (1600, 1200))
    clear = _open(render_preview(src, LIMITS, 1024, obscured=False))
    obscured = _open(render_preview(src, LIMITS, 320, obscured=True))
    assert clear.format == obscured.format == "JPEG"
    assert clear.size == (1024, 768) and obscured.size == (320, 240)
    assert obscured.mode == "L"
    assert _edges(obscured) * 20 < _edges(clear.resize((320, 240)))


def test_an_animation_previews_as_its_first_frame_only() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    preview = _open(render_preview(out.getvalue(), LIMITS, 320, obscured=False))
    assert getattr(preview, "n_frames", 1) == 1
    r, g, b = preview.convert("RGB").getpixel((32, 32))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("data,kind", [
    (b"", "empty"), (b"<svg onload=alert(1)></svg>", "unsupported"),
    (b"\xff\xd8\xff\xe0garbage", "corrupt"), (jpeg(7) + b"PK\x05\x06" + b"\0" * 18, "polyglot")])
def test_hostile_files_are_refused_like_hashing_refuses_them(data: bytes, kind: str) -> None:
    with pytest.raises(UnreadableImage) as exc:
        render_preview(data, LIMITS, 320, obscured=True)
    assert exc.value.kind == kind


def test_pixel_bombs_are_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("L", (12000, 12000)).save(out, "PNG")
    with pytest.raises(UnreadableImage) as exc:
        render_preview(out.getvalue(), DecodeLimits(max_pixels=50_000_000), 320, obscured=True)
    assert exc.value.kind == "too_large"
