"""Keeping each node process's in-memory state in step with the shared database."""

from __future__ import annotations

import asyncio
import logging

from attestd.bad_hashes import BadHashIndex
from attestd.db.store import Store

log = logging.getLogger(__name__)


class ChangeFollower:
    """Loads the bad-hash index and follows the database's ordered change logs.

    Other node processes and the CLI write to the same tables, so each process follows
    the logs rather than trusting its own writes alone: new hash entries reach the index,
    and changed overrides or verdicts drop the store's cached look-ups.
    """

    # PostgreSQL may commit ids out of order; re-reading a short window behind the newest
    # seen id catches late commits (applying a change twice is harmless). Each tick reads
    # only what is newer; the window is re-read every REREAD_EVERY ticks.
    REREAD_WINDOW = 1000
    REREAD_EVERY = 10

    def __init__(self, store: Store, index: BadHashIndex) -> None:
        self.store = store
        self.index = index
        self._last_hash_event = 0
        self._last_judgement = 0
        self._seen_judgements: set[int] = set()

    async def load(self) -> None:
        """Fill the index from the database and start following from now."""
        self._last_judgement = await self.store.last_judgement_event()
        entries, last = await self.store.load_active_entries()
        self.index.add_many(entries)
        self._last_hash_event = last
        log.info("hash index loaded: %d entries", len(entries))

    async def catch_up(self, *, reread: bool = True) -> int:
        """Apply changes written since the last call; returns how many were new.

        With ``reread``, also look again at the last REREAD_WINDOW ids for late commits.
        """
        new = 0
        back = self.REREAD_WINDOW if reread else 0
        events = await self.store.entry_events_since(max(0, self._last_hash_event - back))
        for event_id, active, entry in events:
            # The entry's current state decides, so replaying an event is harmless.
            if active:
                self.index.add(entry)
            else:
                self.index.remove(entry.id)
            if event_id > self._last_hash_event:
                new += 1
                self._last_hash_event = event_id
        changes = await self.store.judgement_events_since(max(0, self._last_judgement - back))
        for event_id, sha256 in changes:
            if event_id not in self._seen_judgements:
                if sha256 == "*":
                    self.store.forget_all()
                else:
                    self.store.forget(sha256)
                self._seen_judgements.add(event_id)
                new += 1
            self._last_judgement = max(self._last_judgement, event_id)
        floor = self._last_judgement - self.REREAD_WINDOW
        self._seen_judgements = {i for i in self._seen_judgements if i > floor}
        return new

    async def run(self, interval_s: float = 1.0) -> None:
        """Catch up every ``interval_s`` until cancelled."""
        tick = 0
        while True:
            await asyncio.sleep(interval_s)
            tick += 1
            try:
                await self.catch_up(reread=tick % self.REREAD_EVERY == 0)
            except Exception:  # the database may be briefly unreachable; try again
                log.exception("could not follow database changes")
