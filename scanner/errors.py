"""The scanner's exception hierarchy: every failure to read an image is an ``UnreadableImage``."""

from __future__ import annotations


class ScannerError(Exception):
    """Base class for errors raised by the scanner package."""


class UnreadableImage(ScannerError):
    """The bytes could not be turned into hashes.

    ``kind`` says whose problem it is, so callers can map it to a status:
    ``empty``, ``corrupt``, ``unsupported``, ``too_large``, ``timeout``, ``crashed``,
    ``polyglot`` (a second file hidden in the image), ``budget`` (an animation with more
    distinct frames than may be hashed, or that took more CPU than its budget), ``busy``
    (the decoders had no room for it; nothing was decoded). The kinds in
    ``UNHASHABLE_KINDS`` say nothing about what the picture shows, only that it was not
    hashed: callers must not treat them as "unknown" (which is only for hashed images).
    """

    KINDS = frozenset({"empty", "corrupt", "unsupported", "too_large", "timeout", "crashed",
                       "polyglot", "budget", "busy"})

    def __init__(self, kind: str, reason: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown unreadable kind {kind!r}")
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def __reduce__(self) -> tuple[type[UnreadableImage], tuple[str, str]]:
        # Travels back from worker processes through pickle.
        return (UnreadableImage, (self.kind, self.reason))


# The image may be readable, but this node could not hash it (too slow, too many frames,
# a decoder died, or no decoder was free): a known-bad picture could hide behind these.
UNHASHABLE_KINDS = frozenset({"timeout", "crashed", "budget", "busy"})
