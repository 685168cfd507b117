"""Image work with no knowledge of the node: safe decoding, hashing, Hamming indices."""

from scanner.decoding import DecodeLimits, hash_image_bytes, sample_frames
from scanner.errors import ScannerError, UnreadableImage
from scanner.hashes import FrameHashes, ImageHashes, hamming_hex, normalise_hex, sha256_hex
from scanner.index import HammingIndex, Match

__all__ = [
    "DecodeLimits",
    "FrameHashes",
    "HammingIndex",
    "ImageHashes",
    "Match",
    "ScannerError",
    "UnreadableImage",
    "hamming_hex",
    "hash_image_bytes",
    "normalise_hex",
    "sample_frames",
    "sha256_hex",
]
