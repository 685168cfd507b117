"""Bounded decoding and hashing of one image. Runs inside a worker process.

Everything here is synchronous and CPU-bound; :mod:`scanner.pool` isolates it.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image, ImageFile, UnidentifiedImageError, _imaging

from scanner.containers import hidden_file, jpeg_segment_bytes, non_image_format
from scanner.errors import UnreadableImage
from scanner.frames import distinct_frame_hashes, every_frame
from scanner.hashes import FrameHashes, ImageHashes, sha256_hex
from scanner.pdq import UNCROP_FRACTIONS, pdq_of, uncropped
from scanner.phash import phash_of
from scanner.video import looks_like_video, sample_video

# JPEG XL: Pillow has no decoder of its own; the plugin registers one on import.
with contextlib.suppress(ImportError):
    import pillow_jxl  # noqa: F401

# We enforce our own pixel limit (below) with a clear message; Pillow's own check
# would only warn up to twice its limit.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Keep freed image memory for the next image instead of handing it back to the system:
# hashing full-resolution pixels otherwise spends more time faulting fresh pages in than
# decoding (3x slower at 1280 x 960). Up to this many 16 MiB blocks stay with the worker.
_imaging.set_blocks_max(8)

# Formats pict-rs stores as images. Anything else (SVG, HTML, PDF, …) is refused.
SUPPORTED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "JXL": "image/jxl",
    "BMP": "image/bmp",
}

# PDQ is computed on the full decoded pixels, as the reference (pdqhash, which lists
# from HMA, NCMEC and StopNCII are hashed with) does: scanner.pdq reproduces it exactly at
# a fraction of its cost. pHash is taken from a rendition at most this many pixels on its
# longer side (rounded up to a whole factor), made with an area-averaging downscale.
HASH_SIDE = 512
_WHOLE_LUMA_PIXELS = 1 << 24

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on what one decode may cost."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_frames: int = 16  # sampled and hashed per video
    # An animation with more frames than this is refused: counting and seeking frames
    # costs time for each one, and no real upload needs thousands.
    max_total_frames: int = 5000
    # Every frame of an animation is looked at and each distinct one hashed; more distinct
    # frames than this, or more CPU seconds than the budget, and it is not hashed at all.
    max_distinct_frames: int = 128
    frame_budget_s: float = 6.0
    # Embedded metadata (EXIF, ICC, XMP, comments) beyond this is refused: hashing never
    # needs it, and oversized blocks are a hiding place and a parser attack surface.
    max_metadata_bytes: int = 1024 * 1024


# A second file hidden in an image (a "polyglot"): an archive or PDF after the picture,
# or markup a browser would run. Hashing the picture would miss what rides along.
_EMBEDDED_MARKUP = re.compile(rb"<(?:script|html|svg|iframe|object|embed)[\s>/]", re.IGNORECASE)
_ZIP_END = b"PK\x05\x06"
_PDF = re.compile(rb"%PDF-[12]\.[0-9]")


def hash_image_bytes(data: bytes, limits: DecodeLimits) -> ImageHashes:
    """Decode ``data`` within ``limits`` and hash it.

    Raises UnreadableImage with a kind and a reason a person can act on.
    """
    if looks_like_video(data):
        return _guarded(lambda: _hash_video(data, limits), data, limits)
    return _guarded(lambda: _hash_decoded(data, limits), data, limits)


def _guarded(work: Callable[[], T], data: bytes, limits: DecodeLimits) -> T:
    """Run decoding ``work``, turning every way a hostile file can make it fail into
    UnreadableImage."""
    if not data:
        raise UnreadableImage("empty", "the body is empty: no image bytes were sent")
    if len(data) > limits.max_bytes:
        raise UnreadableImage(
            "too_large", f"the image is {len(data)} bytes, over the limit of {limits.max_bytes}"
        )
    if _looks_like_markup(data):
        raise UnreadableImage(
            "unsupported", "the bytes are markup (SVG, HTML or XML), not a raster image; "
            "vector images can carry scripts and are not accepted")
    if (other := non_image_format(data)) is not None:
        raise UnreadableImage("unsupported", f"the bytes are {other}, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return work()
    except UnreadableImage:
        raise
    except MemoryError:
        raise UnreadableImage(
            "too_large", "decoding the image needed more memory than allowed") from None
    except UnidentifiedImageError:
        raise UnreadableImage(
            "corrupt", "the bytes are not a readable image in any supported format "
            f"({', '.join(sorted(set(SUPPORTED_FORMATS.values())))})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            Image.DecompressionBombError, ZeroDivisionError, struct.error) as exc:
        raise UnreadableImage("corrupt", f"the image is corrupt or truncated: {exc}") from None


def _refuse_polyglot(data: bytes, fmt: str) -> None:
    """Raise UnreadableImage("polyglot") if ``data`` hides a second file."""
    why = None
    if _zip_at_end(data):
        why = "a ZIP archive"
    elif _PDF.search(data):
        why = "a PDF document"
    elif _EMBEDDED_MARKUP.search(data):
        why = "HTML or script markup"
    else:
        why = hidden_file(data, fmt)
    if why is not None:
        raise UnreadableImage("polyglot", f"the file hides {why} alongside the image; "
                              "it is refused rather than hashed as a picture")


def _zip_at_end(data: bytes) -> bool:
    """True if the bytes end with a ZIP end-of-central-directory record.

    The record's comment length must reach exactly to the end of the file, so four
    signature bytes turning up by chance in compressed pixels do not count.
    """
    start = max(0, len(data) - 65_557)
    at = data.rfind(_ZIP_END, start)
    while at >= 0:
        if at + 22 <= len(data):
            (comment_len,) = struct.unpack_from("<H", data, at + 20)
            if at + 22 + comment_len == len(data):
                return True
        at = data.rfind(_ZIP_END, start, at)
    return False


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    w, h = size
    scale = side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _looks_like_markup(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype", b"<html", b"<!--", b"<head",
                            b"<body", b"<script"))


def _hash_decoded(data: bytes, limits: DecodeLimits) -> ImageHashes:
    with Image.open(io.BytesIO(data)) as im:
        fmt, frame_count = _check_opened(im, data, limits)
        width, height = im.size
        if frame_count == 1 or fmt in ("JPEG", "MPO"):
            # Stills, and the few pictures of a multi-picture JPEG: each one hashed, as
            # before (a JPEG's first is decoded at the hashing size, from the DCT).
            if frame_count > limits.max_distinct_frames:
                raise UnreadableImage(
                    "budget", f"the file holds {frame_count} pictures, more than "
                    f"{limits.max_distinct_frames} (scanner.max_distinct_frames)")
            frames: tuple[FrameHashes, ...] = tuple(
                _hash_frame(im, index, fmt) for index in range(frame_count))
        else:
            frames = distinct_frame_hashes(
                every_frame(im, frame_count), _hash_rgb,
                max_distinct=limits.max_distinct_frames, budget_s=limits.frame_budget_s)
    return ImageHashes(
        sha256=sha256_hex(data),
        media_type=SUPPORTED_FORMATS[fmt],
        width=width,
        height=height,
        frame_count=frame_count,
        frames=frames,
    )


def _check_opened(im: Image.Image, data: bytes, limits: DecodeLimits) -> tuple[str, int]:
    """(format, frame count) of an opened image, or UnreadableImage if it breaks a rule."""
    fmt = im.format or "unknown"
    if fmt not in SUPPORTED_FORMATS:
        raise UnreadableImage(
            "unsupported", f"{fmt} images are not supported; accepted: "
            f"{', '.join(sorted(set(SUPPORTED_FORMATS.values())))}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise UnreadableImage("corrupt", f"the image claims an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise UnreadableImage(
            "too_large",
            f"the image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels} (scanner.max_pixels)",
        )
    _refuse_polyglot(data, fmt)
    metadata = sum(len(v) for v in im.info.values() if isinstance(v, (bytes, str)))
    if fmt in ("JPEG", "MPO"):
        metadata = max(metadata, jpeg_segment_bytes(data))  # segments Pillow skips count too
    if metadata > limits.max_metadata_bytes:
        raise UnreadableImage(
            "too_large", f"the image carries {metadata} bytes of metadata (EXIF, ICC, "
            f"comments), over the limit of {limits.max_metadata_bytes}")
    frame_count = _frame_count(im)
    if frame_count > limits.max_total_frames:
        raise UnreadableImage(
            "too_large", f"the animation has {frame_count} frames, over the limit of "
            f"{limits.max_total_frames}")
    return fmt, frame_count


def first_frame(data: bytes, limits: DecodeLimits, side: int) -> Image.Image:
    """The first frame of an image or video as RGB, at most ``side`` px on its longer side,
    under the same limits and checks as hashing. Raises UnreadableImage."""
    return _guarded(lambda: _first_frame(data, limits, side), data, limits)


def _first_frame(data: bytes, limits: DecodeLimits, side: int) -> Image.Image:
    if looks_like_video(data):
        _, _, _, _, frames = sample_video(data, 1, limits.max_pixels)
        frame = next(iter(frames), None)
        if frame is None:
            raise UnreadableImage("corrupt", "the video has no decodable frame")
    else:
        with Image.open(io.BytesIO(data)) as im:
            fmt, _ = _check_opened(im, data, limits)
            if fmt in ("JPEG", "MPO"):
                im.draft("RGB", _fit(im.size, side))
            frame = im.convert("RGB")
    if max(frame.size) > side:
        frame = frame.resize(_fit(frame.size, side), Image.Resampling.BOX)
    return frame


def _hash_video(data: bytes, limits: DecodeLimits) -> ImageHashes:
    media_type, width, height, frame_count, frames = sample_video(
        data, limits.max_frames, limits.max_pixels)
    hashed = tuple(_hash_rgb(frame) for frame in frames)
    return ImageHashes(sha256=sha256_hex(data), media_type=media_type, width=width,
                       height=height, frame_count=frame_count, frames=hashed)


def sample_frames(frame_count: int, max_frames: int) -> list[int]:
    """First, last and evenly spaced frames between them, at most ``max_frames``.

    Not for animations any more (:mod:`scanner.frames` hashes every distinct frame)."""
    if frame_count <= max_frames:
        return list(range(frame_count))
    if max_frames == 1:
        return [0]
    step = (frame_count - 1) / (max_frames - 1)
    return sorted({round(i * step) for i in range(max_frames)})


def _frame_count(im: Image.Image) -> int:
    n = getattr(im, "n_frames", 1)
    return int(n) if isinstance(n, int) and n > 0 else 1


def _hash_frame(im: Image.Image, index: int, fmt: str) -> FrameHashes:
    if index:
        im.seek(index)
    im.load()
    # convert() would copy a frame that is RGB already.
    return _hash_rgb(im if im.mode == "RGB" else im.convert("RGB"))


def _hash_rgb(frame: Image.Image) -> FrameHashes:
    if frame.width * frame.height <= _WHOLE_LUMA_PIXELS:
        # One float luma (PDQ's) serves both hashes; a larger picture is converted in
        # strips by pdq_of instead, so that it never needs four bytes per pixel at once.
        frame = frame.convert("F")
    pdq = pdq_of(frame, dihedral=True)
    # pHash reads only grey, and an integer-factor reduce() is an exact area average at a
    # fraction of the cost of resizing the colour frame (on the bench's photos within 6
    # bits, median 0, of the pHash of the 512 px BOX rendition earlier versions hashed).
    grey = frame if frame.mode == "F" else frame.convert("L")
    factor = -(-max(grey.size) // HASH_SIDE)
    small = grey.reduce(factor) if factor > 1 else grey
    phash, phash_turned = phash_of(small, dihedral=True)
    return FrameHashes(pdq=pdq.hash, pdq_quality=pdq.quality, phash=phash,
                       pdq_dihedral=pdq.dihedral, phash_dihedral=phash_turned,
                       pdq_uncropped=uncropped(small, UNCROP_FRACTIONS))
