"""What decoding an image will cost, guessed from its headers alone (no decoding).

Runs in the node's own process, on hostile bytes, before any decoder sees them: it only
reads fixed header fields and walks GIF block lengths, with a bounded number of steps.
The guess orders the decoders' work so a flood of expensive animations cannot starve
ordinary uploads; it never decides anything about the image. When in doubt it guesses
high: an image wrongly thought expensive waits a little longer, one wrongly thought
cheap could take the lane kept free for cheap work.
"""

from __future__ import annotations

import struct

# Past this many GIF blocks the walk stops and the frames seen so far are extrapolated
# over the rest of the file (a 1 MB GIF of 1-byte sub-blocks has a million blocks).
_MAX_GIF_STEPS = 200_000


def decode_work(data: bytes) -> int:
    """Estimated pixels a decoder must produce for ``data``: canvas pixels × frames.

    Formats without a cheap header read count four pixels per byte.
    """
    fallback = 4 * len(data)
    try:
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack_from("<HH", data, 6)
            return max(fallback, int(w) * int(h) * _gif_frames(data))
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack_from(">II", data, 16)
            # An APNG says how many frames it has (acTL) and has a frame control chunk
            # (fcTL) per frame; the larger count, in case one is made to mislead.
            frames = data.count(b"fcTL")
            at = data.find(b"acTL", 8)
            if at >= 0:
                frames = max(frames, int(struct.unpack_from(">I", data, at + 4)[0]))
            return max(fallback, int(w) * int(h) * max(1, frames))
        if data[:2] == b"\xff\xd8":
            return max(fallback, _jpeg_pixels(data))
        if data[4:8] == b"ftyp":  # AVIF (HEIF): the image spatial extent property
            at = data.find(b"ispe", 8, 1 << 16)
            if at >= 0:
                w, h = struct.unpack_from(">II", data, at + 8)
                return max(fallback, int(w) * int(h) * max(1, data.count(b"ispe")))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return max(fallback, w * h * max(1, data.count(b"ANMF")))
    except struct.error:
        pass
    return fallback


def _jpeg_pixels(data: bytes) -> int:
    """Width × height from the first SOF marker (0 if none is found in a few steps); all
    the pictures of a multi-picture file are counted by their SOF markers."""
    at, n = 2, len(data)
    for _ in range(64):
        if at + 9 > n or data[at] != 0xFF:
            return 0
        marker = data[at + 1]
        (length,) = struct.unpack_from(">H", data, at + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack_from(">HH", data, at + 5)
            return int(w) * int(h) * max(1, data.count(b"\xff\xd8\xff"))
        at += 2 + int(length)
    return 0


def _gif_frames(data: bytes) -> int:
    """Image descriptors in a GIF, found by walking its blocks (not by searching bytes,
    which a crafted file could make undercount)."""
    n = len(data)
    flags = data[10]
    at = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    frames = steps = 0
    in_sub_blocks = False
    while at < n and steps < _MAX_GIF_STEPS:
        steps += 1
        if in_sub_blocks:  # data sub-blocks: a size byte, then that many bytes; 0 ends
            size = data[at]
            at += 1 + size
            in_sub_blocks = size != 0
            continue
        block = data[at]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: introducer, label, then sub-blocks
            at += 2
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW size
            frames += 1
            if at + 10 > n:
                break
            local = data[at + 9]
            at += 10 + (3 * (2 << (local & 7)) if local & 0x80 else 0) + 1
        else:
            break
        in_sub_blocks = True
    if steps >= _MAX_GIF_STEPS and at < n:
        # Stopped early: assume the rest of the file holds frames at the same density.
        frames = max(frames, 1) * max(1, n // max(at, 1))
    return max(1, frames)
