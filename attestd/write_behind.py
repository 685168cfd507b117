"""Writes that need not delay an answer: audit entries, new images' hashes, and (on
SQLite) received activities.

They are batched into one transaction every quarter second (or sooner when many are
waiting), which keeps a check's own path to a single read. The hashes are cached in the
process at once, so nothing is hashed twice while a batch waits; ``close`` writes the rest.

A check's answer must not go out before its audit entry is durable: ``audit_durable``
queues the entry and resolves once the transaction holding it committed. Everyone waiting
meanwhile shares the next transaction (group commit), which is started at once.

A batch the database refuses because of its contents is split until the one record at
fault is found; that record is skipped (logged, counted in ``attestd_write_skipped_total``)
and the rest written. A batch refused because the database cannot write (down, locked,
disk full) stays queued whole and is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

from attestd.db.failures import is_data_fault
from attestd.db.store import Store
from attestd.errors import NotDurable
from attestd.metrics import Metrics
from attestd.model import AuditEntry
from scanner import ImageHashes

log = logging.getLogger(__name__)

Kind = Literal["audit", "image", "received"]
Record = tuple[Kind, Any]


class WriteBehind:
    """Buffers audit entries and image hashes; writes them in batches."""

    def __init__(self, store: Store, *, flush_interval_s: float = 0.25, max_batch: int = 500,
                 metrics: Metrics | None = None, durable_timeout_s: float = 10.0) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.metrics = metrics
        self.durable_timeout_s = durable_timeout_s
        self._audit: list[AuditEntry] = []
        self._images: list[ImageHashes] = []
        self._received: list[dict[str, Any]] = []
        # Entries someone waits on (by identity) → their futures.
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # For /healthz: when the last write failed for the database's reasons, and why.
        self.last_failure: tuple[float, str] | None = None
        self.last_success: float | None = None

    def audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        self._nudge()

    async def audit_durable(self, entry: AuditEntry) -> None:
        """Queue ``entry`` and return once it is committed. Raises NotDurable when it
        could not be written within ``durable_timeout_s`` or was refused."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[id(entry)] = fut
        self._audit.append(entry)
        self._wake.set()
        try:
            if self._task is None or self._task.done():
                # Nobody flushes in the background (a CLI run, or closing): write it now.
                await self.flush()
            await asyncio.wait_for(asyncio.shield(fut), self.durable_timeout_s)
        except Exception as exc:
            self._waiting.pop(id(entry), None)
            # Not written: drop it, so the log never records an answer that went out as
            # an error instead (if a batch in flight holds it, it is written; no harm).
            self._audit[:] = [e for e in self._audit if e is not entry]
            if isinstance(exc, NotDurable):
                raise
            why = self._why() if isinstance(exc, TimeoutError) else _describe(exc)
            raise NotDurable(f"the audit entry could not be written within "
                             f"{self.durable_timeout_s:g} s ({why}); see /healthz") from None

    def _why(self) -> str:
        if self.last_failure is None:
            return "the database is slow"
        return self.last_failure[1]

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
            records: list[Record] = [("audit", e) for e in self._audit[: self.max_batch]]
            records += [("image", h) for h in self._images[: self.max_batch]]
            records += [("received", r) for r in self._received[: self.max_batch]]
            del self._audit[: self.max_batch], self._images[: self.max_batch]
            del self._received[: self.max_batch]
            await self._write_isolating(records)

    async def _write_isolating(self, records: list[Record]) -> None:
        """Write ``records``; when the database refuses their contents, halve until the
        bad ones are alone and skip those. Requeues what is unwritten and re-raises when
        the database itself fails."""
        segments = [records]  # a stack: the leftmost segment is on top
        while segments:
            segment = segments.pop()
            try:
                await self._write(segment)
            except Exception as exc:
                if not is_data_fault(exc):
                    unwritten = segment + [r for s in reversed(segments) for r in s]
                    self._requeue(unwritten)
                    self.last_failure = (time.time(), _describe(exc))
                    raise
                if len(segment) == 1:
                    self._skip(segment[0], exc)
                    continue
                mid = len(segment) // 2
                segments += [segment[mid:], segment[:mid]]
            else:
                self.last_success = time.time()
                self.last_failure = None
                self._resolve(segment, None)

    async def _write(self, records: list[Record]) -> None:
        await self.store.write_batch([r for k, r in records if k == "image"],
                                     [r for k, r in records if k == "audit"],
                                     [r for k, r in records if k == "received"])

    def _requeue(self, records: list[Record]) -> None:
        self._audit[:0] = [r for k, r in records if k == "audit"]
        self._images[:0] = [r for k, r in records if k == "image"]
        self._received[:0] = [r for k, r in records if k == "received"]

    def _skip(self, record: Record, exc: Exception) -> None:
        kind, value = record
        log.error("skipped a %s record the database refuses (%s): %s", kind,
                  _describe(exc), _summary(kind, value))
        if self.metrics is not None:
            self.metrics.write_skipped.labels(kind).inc()
        self._resolve([record], NotDurable(f"the audit entry was refused: {_describe(exc)}"))

    def _resolve(self, records: list[Record], error: Exception | None) -> None:
        if not self._waiting:
            return
        for kind, value in records:
            fut = self._waiting.pop(id(value), None) if kind == "audit" else None
            if fut is not None and not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

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


def _describe(exc: BaseException) -> str:
    """The first line of the error: enough to act on, without the statement's values."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc) or type(exc).__name__
    # The message may quote the offending value: keep the log itself writable.
    return text.splitlines()[0][:200].encode("utf-8", "backslashreplace").decode("utf-8")


def _summary(kind: Kind, value: Any) -> str:
    """Which record it was, in a few safe characters (never its whole body)."""
    if kind == "audit":
        return f"audit {value.action!r} by {str(value.actor)[:80]!r} at {value.at}"
    if kind == "image":
        return f"image {value.sha256}"
    return f"received activity {str(value.get('id'))[:120]!r}"
