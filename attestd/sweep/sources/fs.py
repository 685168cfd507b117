"""A folder as a sweep source: files found recursively, listed in path order."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from attestd.sweep.model import ObjectGone, Order, Page, StoredObject, SweepError

PAGE_SIZE = 1000


class FolderSource:
    order: Order = "key"
    key_prefix = ""

    def __init__(self, path: str | Path, *, exclude: str | Path | None = None) -> None:
        self.root = Path(path).resolve()
        if not self.root.is_dir():
            raise SweepError(f"sweep.fs.path {self.root} is not a folder")
        self.name = f"fs:{self.root}"
        # A quarantine folder inside the swept one is never swept itself.
        self._exclude = Path(exclude).resolve() if exclude and "://" not in str(exclude) else None

    async def page(self, cursor: str | None) -> Page:
        return await asyncio.to_thread(self._page, cursor)

    def _page(self, cursor: str | None) -> Page:
        after = tuple(cursor.split("/")) if cursor else None
        out: list[StoredObject] = []
        for obj in self._walk(self.root, (), after):
            out.append(obj)
            if len(out) >= PAGE_SIZE:
                return Page(out, out[-1].key)
        return Page(out, None)

    def _walk(self, folder: Path, parts: tuple[str, ...],
              after: tuple[str, ...] | None) -> Iterator[StoredObject]:
        # Keys compare part by part, so whole subtrees before the cursor are skipped
        # without being read.
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            key = (*parts, entry.name)
            if entry.is_symlink():
                continue  # never follow links out of the swept folder
            if entry.is_dir():
                if self._exclude is not None and Path(entry.path).resolve() == self._exclude:
                    continue
                if after is not None and key < after[:len(key)]:
                    continue
                sub_after = after if after is not None and key == after[:len(key)] else None
                yield from self._walk(Path(entry.path), key, sub_after)
            elif entry.is_file():
                if after is not None and key <= after:
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                yield StoredObject(key="/".join(key), size=st.st_size,
                                   etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
                                   modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def _path(self, obj: StoredObject) -> Path:
        path = (self.root / obj.key).resolve()
        if not path.is_relative_to(self.root):
            raise SweepError(f"key {obj.key!r} points outside {self.root}")
        return path

    async def fetch(self, obj: StoredObject) -> bytes:
        try:
            return await asyncio.to_thread(self._path(obj).read_bytes)
        except FileNotFoundError:
            raise ObjectGone(f"{obj.key} was removed before it could be read") from None

    async def delete(self, obj: StoredObject) -> str:
        try:
            await asyncio.to_thread(os.unlink, self._path(obj))
        except FileNotFoundError:
            raise ObjectGone(f"{obj.key} is already gone") from None
        return f"deleted {self._path(obj)}"

    async def count(self) -> int | None:
        def walk() -> int:
            return sum(1 for _ in self._walk(self.root, (), None))
        return await asyncio.to_thread(walk)

    async def close(self) -> None:
        return None
