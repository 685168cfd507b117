"""Who decodes next: a fair, cost-ordered queue in front of the decoder processes.

A flood of expensive animations must not make the node answer ordinary uploads late
(or, worse, unhashed). So:

- expensive ("heavy") images decode in processes of their own, at most ``heavy_slots``
  at once (half as many as the ordinary decoders), at a lower CPU priority: ordinary
  images never wait for them, and get the CPU first;
- the cheapest waiting image goes first (by :func:`scanner.cost.decode_work`);
- each caller (a pict-rs caller, a sweep, the CLI) may hold only its share of the heavy
  lane and of the waiting room; past that it gets ``UnreadableImage("busy")`` at once,
  which the node treats as "not hashed", never as "unknown";
- among callers with work waiting, the one holding fewest decoders goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from scanner.errors import UnreadableImage

# Decoding more pixels than this (canvas × frames) makes an image heavy: about a second
# of decoding, where an ordinary photo takes tens of milliseconds.
HEAVY_WORK = 32_000_000


@dataclass(frozen=True, slots=True)
class Shares:
    """How the decoders are shared."""

    slots: int  # decoder processes for ordinary images
    # Ordinary images handed to the processes ahead, per process: the next one is there
    # when a process finishes, instead of a round trip through the event loop later.
    backlog: int = 1
    heavy_share: float = 0.5  # heavy decoder processes, as a share of ``slots``
    caller_share: float = 0.5  # of the heavy lane one caller may hold
    caller_waiting: int = 256  # images one caller may have waiting
    caller_heavy_waiting: int = 2  # heavy images one caller may have waiting
    max_waiting: int = 1024
    max_waiting_bytes: int = 512 * 1024 * 1024

    @property
    def light_slots(self) -> int:
        """Slots for light images: every decoder, with ``backlog`` queued on each."""
        return self.slots * (1 + self.backlog)

    @property
    def heavy_slots(self) -> int:
        """Slots heavy images may hold at once (at least one)."""
        return max(1, math.floor(self.slots * self.heavy_share))

    @property
    def caller_heavy_slots(self) -> int:
        """Heavy slots one caller may hold at once (at least one)."""
        return max(1, math.floor(self.heavy_slots * self.caller_share))


@dataclass(order=True)
class _Waiter:
    work: int
    seq: int
    caller: str = field(compare=False)
    heavy: bool = field(compare=False)
    size: int = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)
    queued: bool = field(default=True, compare=False)


@dataclass
class _Caller:
    waiting: list[_Waiter] = field(default_factory=list)  # a heap, cheapest first
    running: int = 0
    heavy_running: int = 0
    heavy_waiting: int = 0


class FairQueue:
    """Grants decoder slots; see the module docstring for the order."""

    def __init__(self, shares: Shares) -> None:
        self.shares = shares
        self._callers: dict[str, _Caller] = {}
        self._running = 0
        self._heavy_running = 0
        self._waiting = 0
        self._waiting_bytes = 0
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        """How many images wait for a slot, over all callers."""
        return self._waiting

    async def acquire(self, caller: str, work: int, size: int = 0) -> Callable[[], None]:
        """Wait for a decoder slot; returns the function that gives it back (once).

        Raises UnreadableImage("busy") at once when ``caller`` is over its share.
        """
        heavy = work > HEAVY_WORK
        c = self._callers.setdefault(caller, _Caller())
        if not c.waiting and self._can_start(c, heavy):
            self._start(c, heavy)
        else:
            self._admit(c, heavy, size)
            waiter = _Waiter(work, next(self._seq), caller, heavy, size,
                             asyncio.get_running_loop().create_future())
            heapq.heappush(c.waiting, waiter)
            self._count_waiting(c, waiter, +1)
            self._dispatch()
            try:
                await waiter.granted
            except asyncio.CancelledError:
                if waiter.granted.done() and not waiter.granted.cancelled():
                    self._finish(c, heavy)  # granted just as the caller gave up
                else:
                    self._drop(c, waiter)
                raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._finish(c, heavy)

        return release

    @contextlib.asynccontextmanager
    async def slot(self, caller: str, work: int, size: int = 0) -> AsyncIterator[None]:
        """:meth:`acquire` for the body of an ``async with``."""
        release = await self.acquire(caller, work, size)
        try:
            yield
        finally:
            release()

    def _admit(self, c: _Caller, heavy: bool, size: int) -> None:
        s = self.shares
        why = None
        if heavy and c.heavy_waiting >= s.caller_heavy_waiting:
            why = (f"this caller already has {c.heavy_waiting} expensive images waiting "
                   "for a decoder")
        elif len(c.waiting) >= s.caller_waiting:
            why = f"this caller already has {len(c.waiting)} images waiting for a decoder"
        elif self._waiting >= s.max_waiting or self._waiting_bytes + size > s.max_waiting_bytes:
            why = f"{self._waiting} images are already waiting for a decoder"
        if why is not None:
            raise UnreadableImage("busy", f"the decoders are busy: {why}; it was not hashed")

    def _can_start(self, c: _Caller, heavy: bool) -> bool:
        if heavy:
            return (self._heavy_running < self.shares.heavy_slots
                    and c.heavy_running < self.shares.caller_heavy_slots)
        return self._running - self._heavy_running < self.shares.light_slots

    def _start(self, c: _Caller, heavy: bool) -> None:
        self._running += 1
        c.running += 1
        if heavy:
            self._heavy_running += 1
            c.heavy_running += 1

    def _finish(self, c: _Caller, heavy: bool) -> None:
        self._running -= 1
        c.running -= 1
        if heavy:
            self._heavy_running -= 1
            c.heavy_running -= 1
        self._dispatch()

    def _count_waiting(self, c: _Caller, w: _Waiter, sign: int) -> None:
        self._waiting += sign
        self._waiting_bytes += sign * w.size
        if w.heavy:
            c.heavy_waiting += sign

    def _drop(self, c: _Caller, waiter: _Waiter) -> None:
        if waiter.queued:
            waiter.queued = False
            c.waiting.remove(waiter)
            heapq.heapify(c.waiting)
            self._count_waiting(c, waiter, -1)

    def _dispatch(self) -> None:
        while True:
            best: tuple[int, int, int] | None = None
            chosen: _Caller | None = None
            for c in self._callers.values():
                if not c.waiting:
                    continue
                head = c.waiting[0]
                if not self._can_start(c, head.heavy):
                    # The heap is cheapest first: behind a heavy head all are heavy; a
                    # light head that cannot start means no light one can.
                    continue
                key = (c.running, head.work, head.seq)
                if best is None or key < best:
                    best, chosen = key, c
            if chosen is None:
                break
            waiter = heapq.heappop(chosen.waiting)
            waiter.queued = False
            self._count_waiting(chosen, waiter, -1)
            if waiter.granted.done():
                continue  # its caller was cancelled and has not run its handler yet
            self._start(chosen, waiter.heavy)
            waiter.granted.set_result(None)
        # Forget idle callers, so a stream of one-off callers does not grow the table.
        for name in [n for n, c in self._callers.items() if not c.waiting and not c.running]:
            del self._callers[name]
