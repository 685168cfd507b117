"""Writes that need not delay an answer: audit entries and new images' hashes.

They are batched into one transaction every quarter second (or sooner when many are
waiting), which keeps a check's own path to a single read. The hashes are cached in the
process at once, so nothing is hashed twice while a batch waits; ``close`` writes the rest.
"""

from __future__ import annotations

import asyncio
import logging

from attestd.db.store import Store
from attestd.model import AuditEntry
from scanner import ImageHashes

log = logging.getLogger(__name__)


class WriteBehind:
    """Buffers audit entries and image hashes; writes them in batches."""

    def __init__(self, store: Store, *, flush_interval_s: float = 0.25, max_batch: int = 500):
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self._audit: list[AuditEntry] = []
        self._images: list[ImageHashes] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        self._nudge()

    def image(self, hashes: ImageHashes) -> None:
        self.store.remember(hashes)
        self._images.append(hashes)
        self._nudge()

    def _nudge(self) -> None:
        if len(self._audit) + len(self._images) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._audit) + len(self._images)

    async def flush(self) -> None:
        """Write everything waiting; on failure the entries stay queued for the next try."""
        while self._audit or self._images:
            audit, images = self._audit[: self.max_batch], self._images[: self.max_batch]
            self._audit, self._images = self._audit[len(audit):], self._images[len(images):]
            try:
                await self.store.write_batch(images, audit)
            except Exception:
                self._audit[:0] = audit
                self._images[:0] = images
                raise

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="write-behind")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not write %d queued records; will retry", self.pending)
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
