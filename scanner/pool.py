"""A pool of worker processes that decode and hash images.

A hostile file can crash or hang a codec; in a separate process that costs one worker,
which pebble replaces, and the caller gets ``UnreadableImage`` instead of a dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from scanner.cost import decode_work
from scanner.decoding import DecodeLimits, hash_image_bytes
from scanner.errors import UnreadableImage
from scanner.hashes import ImageHashes
from scanner.preview import render_preview
from scanner.scheduling import HEAVY_WORK, FairQueue, Shares

T = TypeVar("T")

# Added to the niceness of the processes that decode expensive images.
_HEAVY_NICENESS = 10


class DecodePool:
    """Hashes images in worker processes with a per-image time limit."""

    def __init__(
        self,
        limits: DecodeLimits,
        *,
        workers: int | None = None,
        timeout_s: float = 10.0,
        memory_limit_bytes: int | None = 2 * 1024**3,
        max_tasks_per_worker: int = 2000,
        func: Callable[[bytes, DecodeLimits], ImageHashes] = hash_image_bytes,
        shares: Shares | None = None,
    ) -> None:
        self.limits = limits
        self._func = func
        self.timeout_s = timeout_s
        workers = workers or max(1, os.cpu_count() or 1)
        # Work is handed to pebble only when a decoder is (about to be) free, in the
        # queue's order; pebble's own queue (first come, first served) stays short.
        self.queue = FairQueue(shares or Shares(slots=workers))
        context = multiprocessing.get_context("forkserver")
        self._pool = ProcessPool(
            max_workers=workers,
            max_tasks=max_tasks_per_worker,
            initializer=_start_worker,
            initargs=(memory_limit_bytes, 0),
            context=context,
        )
        # Expensive images decode in processes of their own (half as many) at a lower CPU
        # priority: ordinary uploads never wait for a process an expensive one holds, and
        # they and the node itself get the CPU first while expensive ones run.
        self._heavy_pool = ProcessPool(
            max_workers=self.queue.shares.heavy_slots,
            max_tasks=max_tasks_per_worker,
            initializer=_start_worker,
            initargs=(memory_limit_bytes, _HEAVY_NICENESS),
            context=context,
        )

    async def hash(self, data: bytes, *, caller: str = "") -> ImageHashes:
        """Hash ``data`` in a worker, queued fairly among ``caller``s and cheapest first
        (:mod:`scanner.scheduling`). Raises UnreadableImage for anything it cannot read,
        and UnreadableImage("busy") when ``caller`` has used up its share of the queue."""
        return await self._run(self._func, (data, self.limits), caller, data)

    async def preview(self, data: bytes, *, side: int, obscured: bool,
                      caller: str = "preview") -> bytes:
        """A still JPEG of the first frame (see :func:`scanner.preview.render_preview`),
        made in a worker. Raises UnreadableImage."""
        return await self._run(render_preview, (data, self.limits, side, obscured), caller,
                               data)

    async def _run(self, func: Callable[..., T], args: tuple[Any, ...], caller: str,
                   data: bytes) -> T:
        work = decode_work(data)
        release = await self.queue.acquire(caller, work, len(data))
        loop = asyncio.get_running_loop()
        pool = self._heavy_pool if work > HEAVY_WORK else self._pool
        try:
            future = pool.schedule(func, args=args, timeout=self.timeout_s)
        except BaseException:
            release()
            raise
        # The slot is given back when the decoder is done, not when the caller stops
        # waiting: a task left running still occupies its process.
        future.add_done_callback(lambda _f: _call_soon(loop, release))
        try:
            return await asyncio.wrap_future(future)
        except UnreadableImage:
            raise
        except FutureTimeout:
            raise UnreadableImage(
                "timeout", f"decoding took longer than {self.timeout_s:g} s "
                "(scanner.decode_timeout_s)") from None
        except ProcessExpired as exc:
            raise UnreadableImage(
                "crashed", f"the decoder crashed on this file (exit {exc.exitcode})") from None
        except asyncio.CancelledError:
            # Cancelling a running pebble task kills its worker process, and a new one
            # costs a fork and imports: under a short deadline every later check would
            # kill the next worker too. The decode timeout bounds a running task, so it
            # is left to finish; only a task still waiting is dropped.
            if not future.running():
                future.cancel()  # type: ignore[no-untyped-call]
            raise
        except MemoryError:
            raise UnreadableImage("too_large", "decoding needed more memory than a decoder "
                                               "may use (scanner.worker_memory_mib)") from None
        except Exception as exc:  # any other decoder failure is the file's, not the node's
            raise UnreadableImage("corrupt", f"the decoder failed on this file: {exc}") from None

    def close(self) -> None:
        """Stop the workers; pending work is cancelled."""
        for pool in (self._pool, self._heavy_pool):
            pool.stop()  # type: ignore[no-untyped-call]
        for pool in (self._pool, self._heavy_pool):
            pool.join(timeout=5)


def _call_soon(loop: asyncio.AbstractEventLoop, func: Callable[[], None]) -> None:
    # Called from pebble's thread; after shutdown there is no loop left to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(func)


def _start_worker(limit: int | None, niceness: int) -> None:
    # A decompression bomb that slips past the pixel check fails with MemoryError
    # inside the worker instead of pushing the machine into swap.
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if niceness:
        os.nice(niceness)
