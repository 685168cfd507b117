"""Which frames of an animation are hashed: every distinct one, within a budget.

Evenly spaced samples let a picture hide between them (frames 10-55 of 1 000 are missed
by 16 samples), so every frame is decoded and compared with the last one hashed; only a
frame that differs is hashed, as vPDQ keeps one hash per run of near-identical frames.
Each frame skipped is near-identical to a hashed one, so whatever matches it matches a
hashed frame too, within the small dedupe distance. Runs inside a decoder process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from scanner.errors import UnreadableImage
from scanner.hashes import FrameHashes, hamming_hex

# A frame whose 16x16 grey thumbnail differs from the last hashed frame's by at most this
# mean step (of 255) is the same picture: not even hashed. On average, like the hashes:
# PDQ and pHash see the whole frame, so a frame that only differs in a small inset would
# not match what the inset shows either (nothing is lost by skipping it).
_SAME_THUMB = 1.5
# A hashed frame this close to the last kept one, on both hashes, is not kept again.
_SAME_PDQ_BITS = 8
_SAME_PHASH_BITS = 4


def distinct_frame_hashes(frames: Iterator[Image.Image], hash_rgb: Callable[[Image.Image], FrameHashes],
                          *, max_distinct: int, budget_s: float) -> tuple[FrameHashes, ...]:
    """Hashes of each distinct frame of ``frames`` (RGB), in order.

    Raises UnreadableImage("budget") when there are more than ``max_distinct`` distinct
    frames or the frames take more than ``budget_s`` seconds of CPU: the animation is then
    not hashed at all, rather than hashed in part.
    """
    started = time.process_time()
    kept: list[FrameHashes] = []
    last_thumb: np.ndarray | None = None
    for index, frame in enumerate(frames):
        if time.process_time() - started > budget_s:
            raise UnreadableImage(
                "budget", f"hashing the animation's frames took more than {budget_s:g} s of "
                f"CPU by frame {index} (scanner.frame_budget_s)")
        thumb = np.asarray(frame.convert("L").resize((16, 16), Image.Resampling.BOX),
                           dtype=np.int16)
        if last_thumb is not None and float(np.abs(thumb - last_thumb).mean()) <= _SAME_THUMB:
            continue
        hashed = hash_rgb(frame)
        if kept and (hamming_hex(hashed.pdq, kept[-1].pdq) <= _SAME_PDQ_BITS
                     and hamming_hex(hashed.phash, kept[-1].phash) <= _SAME_PHASH_BITS):
            continue
        kept.append(hashed)
        last_thumb = thumb
        if len(kept) > max_distinct:
            raise UnreadableImage(
                "budget", f"the animation has more than {max_distinct} distinct frames "
                "(scanner.max_distinct_frames); it is not hashed in part")
    return tuple(kept)


def every_frame(im: Image.Image, frame_count: int) -> Iterator[Image.Image]:
    """Each frame of an opened animation as RGB, in order (sequential seeks are cheap)."""
    for index in range(frame_count):
        if index:
            im.seek(index)
        yield im.convert("RGB")
