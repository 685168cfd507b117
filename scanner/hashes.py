"""Hash values and their distances: plain data, no I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

PDQ_HEX_LEN = 64
PHASH_HEX_LEN = 16
_HEX = re.compile(r"^[0-9a-f]*$")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def normalise_hex(value: str, length: int, what: str) -> str:
    """Lower-case and validate a fixed-length hex string; raises ValueError naming ``what``."""
    v = value.strip().lower()
    if len(v) != length or not _HEX.match(v):
        raise ValueError(f"{what} must be {length} hex digits, got {value!r}")
    return v


def hamming_hex(a: str, b: str) -> int:
    """Number of differing bits between two equal-length hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True, slots=True)
class FrameHashes:
    """Perceptual hashes of one decoded frame."""

    pdq: str  # 64 hex digits, 256 bits, HMA/ThreatExchange bit order
    pdq_quality: int  # 0..100; below the matching floor PDQ counts only with pHash
    phash: str  # 16 hex digits, imagehash's 64-bit DCT hash
    # The same frame rotated 90/180/270 degrees and mirrored four ways (scanner.pdq's
    # DIHEDRAL[1:] order), for matching turned copies. Only freshly hashed frames have
    # them; they are never stored or sent, so they take no part in equality.
    pdq_dihedral: tuple[str, ...] = field(default=(), compare=False)
    phash_dihedral: tuple[str, ...] = field(default=(), compare=False)
    # PDQ of the frame with its edges stretched back out (scanner.pdq.uncropped), for
    # matching cropped copies; fresh frames only, like the variants above.
    pdq_uncropped: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        normalise_hex(self.pdq, PDQ_HEX_LEN, "pdq")
        normalise_hex(self.phash, PHASH_HEX_LEN, "phash")
        for v in self.pdq_dihedral:
            normalise_hex(v, PDQ_HEX_LEN, "pdq variant")
        for v in self.pdq_uncropped:
            normalise_hex(v, PDQ_HEX_LEN, "pdq variant")
        for v in self.phash_dihedral:
            normalise_hex(v, PHASH_HEX_LEN, "phash variant")
        if self.pdq_dihedral and len(self.pdq_dihedral) != len(self.phash_dihedral):
            raise ValueError("pdq and phash variants must come in matching pairs")
        if not 0 <= self.pdq_quality <= 100:
            raise ValueError(f"pdq_quality must be 0..100, got {self.pdq_quality}")


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """Everything the node knows about one stored object's content."""

    sha256: str
    media_type: str  # e.g. image/jpeg, as detected from the bytes, not as claimed
    width: int
    height: int
    frame_count: int  # frames in the file; ``frames`` holds the sampled ones
    frames: tuple[FrameHashes, ...]

    @property
    def first(self) -> FrameHashes:
        """The first sampled frame (every readable image has one)."""
        return self.frames[0]
