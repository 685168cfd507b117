"""Image bytes kept for later classification, by sha256, under the data folder."""

from __future__ import annotations

import os
from pathlib import Path

from scanner import normalise_hex


class BlobStore:
    """Content-addressed files, readable only by the node's user."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        sha = normalise_hex(sha256, 64, "sha256")
        return self.root / sha[:2] / sha[2:4] / sha

    def put(self, sha256: str, data: bytes) -> Path:
        """Store ``data`` under its sha256; storing it twice is harmless."""
        path = self.path(sha256)
        if path.exists():
            return path
        # Every folder 0700, not only the last (mkdir's mode applies to that one alone): the
        # names are sha256s, which say which images the node holds for review.
        for folder in (self.root.parent, self.root, path.parent.parent, path.parent):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
