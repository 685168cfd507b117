"""The audit log writer: every decision is recorded, in batches so checks stay fast."""

from __future__ import annotations

import asyncio
import logging

from attestd.db.store import Store
from attestd.model import AuditEntry

log = logging.getLogger(__name__)


class AuditWriter:
    """Buffers audit entries and writes them in batches; ``close`` writes the rest."""

    def __init__(self, store: Store, *, flush_interval_s: float = 0.25, max_batch: int = 500):
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, entry: AuditEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                await self.store.write_audit(batch)
            except Exception:
                # Keep the entries for the next try rather than lose the record.
                self._pending[:0] = batch
                raise

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

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
                log.exception("could not write %d audit entries; will retry", len(self._pending))
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
