"""Keeping each node process's in-memory state in step with the shared database."""

from __future__ import annotations

import asyncio
import logging
import time

from attestd.bad_hashes import BadHashIndex
from attestd.db.store import Store
from attestd.stream_gaps import StreamPosition

log = logging.getLogger(__name__)


class ChangeFollower:
    """Loads the bad-hash index and follows the database's ordered change logs.

    Other node processes and the CLI write to the same tables, so each process follows
    the logs rather than trusting its own writes alone: new hash entries reach the index,
    and changed overrides or verdicts drop the store's cached look-ups.
    """

    # PostgreSQL may commit ids out of order: ids passed over are read again until no
    # transaction that could hold them is still running (attestd/stream_gaps.py).

    def __init__(self, store: Store, index: BadHashIndex) -> None:
        self.store = store
        self.index = index
        self._hashes = StreamPosition()
        self._judgements = StreamPosition()
        self._catching_up = asyncio.Lock()

    async def load(self) -> None:
        """Fill the index from the database and start following from now."""
        hashes = await self.store.log_gaps("hash_events")
        judgements = await self.store.log_gaps("judgement_events")
        # Taken after reading the logs: whoever holds a missing id has started by now.
        bounds = await self.store.transaction_bounds()
        xmax, now = (bounds[1] if bounds else None), time.monotonic()
        self._hashes.seed(*hashes, now=now, xmax=xmax)
        self._judgements.seed(*judgements, now=now, xmax=xmax)
        # Loaded after the logs were read, so nothing committed between is lost (what is
        # both loaded and read again is applied twice, harmlessly).
        entries, _ = await self.store.load_active_entries()
        self.index.add_many(entries)
        log.info("hash index loaded: %d entries", len(entries))

    async def ensure_current(self) -> None:
        """Catch up first if either log moved past what this process applied, so a
        change committed before a check began (a CLI command, another process's API
        call) decides that check. One cheap read when nothing moved."""
        hashes, judgements = await self.store.log_heads()
        if hashes > self._hashes.last or judgements > self._judgements.last:
            await self.catch_up()

    async def catch_up(self) -> int:
        """Apply changes committed since the last call; returns how many were new."""
        async with self._catching_up:  # checks and the ticking task share one read
            return await self._catch_up()

    async def _catch_up(self) -> int:
        before = await self.store.transaction_bounds()
        events = await self.store.entry_events_since(self._hashes.last,
                                                     gaps=self._hashes.ranges())
        changes = await self.store.judgement_events_since(self._judgements.last,
                                                          gaps=self._judgements.ranges())
        after = await self.store.transaction_bounds()
        now = time.monotonic()
        xmin, xmax = (before[0] if before else None), (after[1] if after else None)
        for _event_id, active, entry in events:
            # The entry's current state decides, so applying an event twice is harmless.
            if active:
                self.index.add(entry)
            else:
                self.index.remove(entry.id)
        new = len(self._hashes.saw([e[0] for e in events], now=now, xmax=xmax))
        for _event_id, sha256 in changes:
            if sha256 == "*":
                self.store.forget_all()
            else:
                self.store.forget(sha256)
        new += len(self._judgements.saw([c[0] for c in changes], now=now, xmax=xmax))
        self._hashes.expire(now=now, xmin=xmin)
        self._judgements.expire(now=now, xmin=xmin)
        return new

    async def run(self, interval_s: float = 1.0) -> None:
        """Catch up every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.catch_up()
            except Exception:  # the database may be briefly unreachable; try again
                log.exception("could not follow database changes")
