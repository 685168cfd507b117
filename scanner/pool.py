"""A pool of worker processes that decode and hash images.

A hostile file can crash or hang a codec; in a separate process that costs one worker,
which pebble replaces, and the caller gets ``UnreadableImage`` instead of a dead node.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from scanner.decoding import DecodeLimits, hash_image_bytes
from scanner.errors import UnreadableImage
from scanner.hashes import ImageHashes
from scanner.preview import render_preview

T = TypeVar("T")


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
    ) -> None:
        self.limits = limits
        self._func = func
        self.timeout_s = timeout_s
        self._pool = ProcessPool(
            max_workers=workers or max(1, os.cpu_count() or 1),
            max_tasks=max_tasks_per_worker,
            initializer=_limit_memory,
            initargs=(memory_limit_bytes,),
            context=multiprocessing.get_context("forkserver"),
        )

    async def hash(self, data: bytes) -> ImageHashes:
        """Hash ``data`` in a worker. Raises UnreadableImage for anything it cannot read."""
        return await self._run(self._func, (data, self.limits))

    async def preview(self, data: bytes, *, side: int, obscured: bool) -> bytes:
        """A still JPEG of the first frame (see :func:`scanner.preview.render_preview`),
        made in a worker. Raises UnreadableImage."""
        return await self._run(render_preview, (data, self.limits, side, obscured))

    async def _run(self, func: Callable[..., T], args: tuple[Any, ...]) -> T:
        future = self._pool.schedule(func, args=args, timeout=self.timeout_s)
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
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=5)


def _limit_memory(limit: int | None) -> None:
    # A decompression bomb that slips past the pixel check fails with MemoryError
    # inside the worker instead of pushing the machine into swap.
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
