"""Previews for human review: a still JPEG of the first frame, plain or obscured.

Runs in a decoder worker like hashing does. A preview is always a still picture, so an
animation never plays, and it carries no metadata from the original.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps

from scanner.decoding import DecodeLimits, first_frame

# Obscured previews are reduced to this many pixels across before they are blurred, so
# no detail survives in the file itself: CSS blur would ship the clear picture.
_OBSCURED_DETAIL = 12


def render_preview(data: bytes, limits: DecodeLimits, side: int, obscured: bool) -> bytes:
    """JPEG bytes of the first frame at most ``side`` px; ``obscured`` makes it greyscale
    and blurred beyond recognition. Raises UnreadableImage."""
    frame = first_frame(data, limits, side)
    if obscured:
        small = ImageOps.grayscale(frame).resize(
            _shape(frame.size, _OBSCURED_DETAIL), Image.Resampling.BOX)
        frame = small.resize(frame.size, Image.Resampling.BILINEAR).filter(
            ImageFilter.GaussianBlur(max(2, side // 40)))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=82)
    return out.getvalue()


def _shape(size: tuple[int, int], side: int) -> tuple[int, int]:
    w, h = size
    scale = side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))
