"""Writes that need not delay an answer: audit entries, new images' hashes, and (on
SQLite) received activities.

They are batched into one transaction every quarter second (or sooner when many are
waiting), which keeps a check's own path to a single read. The hashes are cached in the
process at once, so nothing is hashed twice while a batch waits; ``close`` writes the rest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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
        self._received: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        self._nudge()

    def image(self, hashes: ImageHashes) -> None:
        self.store.remember(hashes)
        self._images.append(hashes)
        self._nudge()

    def received(self, row: dict[str, Any]) -> None:
        """A received activity's row (de-duplication is the caller's, in memory)."""
        self._received.append(row)
        self._nudge()

    def _nudge(self) -> None:
        if self.pending >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._audit) + len(self._images) + len(self._received)

    async def flush(self) -> None:
        """Write everything waiting; on failure the entries stay queued for the next try."""
        while self._audit or self._images or self._received:
            audit, images = self._audit[: self.max_batch], self._images[: self.max_batch]
            received = self._received[: self.max_batch]
            self._audit, self._images = self._audit[len(audit):], self._images[len(images):]
            self._received = self._received[len(received):]
            try:
                await self.store.write_batch(images, audit, received)
            except Exception:
                self._audit[:0] = audit
                self._images[:0] = images
                self._received[:0] = received
                raise

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="write-behind")

    async def _run(self) -> None:
        while not self._stopping:
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
        """Stop after the batch in progress (never cancel a transaction half-way: on SQLite
        that can leave the write lock held), then write what is left."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 30)
            except TimeoutError:
                self._task.cancel()
        await self.flush()
