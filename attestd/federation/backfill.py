"""Pulling peers' outboxes: everything a peer published reaches us even if a push was
lost or this node was down (docs/architecture.md, "Federation": push for speed, pull
for completeness)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from activitypub import ActivityPubError
from activitypub.fetch import Fetcher
from attestd.federation.handlers import ActivityHandler
from attestd.federation.peers import Peer, PeerStore
from attestd.federation.store import FederationStore

log = logging.getLogger(__name__)

# Smaller than every UUIDv7 cursor: "from the beginning".
START = "00000000-0000-0000-0000-000000000000"


class Backfiller:
    """Reads peers' outboxes, several at once, each within a budget per pass.

    A peer whose outbox does not end within ``pages_per_pass`` pages or ``seconds_per_pass``
    keeps its cursor and goes on ``resume_after_s`` later, behind the others: one peer's
    endless (or huge) outbox cannot hold up anyone else's.
    """

    def __init__(self, fetcher: Fetcher, peers: PeerStore, fstore: FederationStore,
                 handler: ActivityHandler, interval_s: float, *, parallel: int = 4,
                 pages_per_pass: int = 50, seconds_per_pass: float = 60.0,
                 resume_after_s: float = 5.0) -> None:
        self.fetcher = fetcher
        self.peers = peers
        self.fstore = fstore
        self.handler = handler
        self.interval_s = interval_s
        self.pages_per_pass = pages_per_pass
        self.seconds_per_pass = seconds_per_pass
        self.resume_after_s = resume_after_s
        self._slots = asyncio.Semaphore(parallel)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()
        self._all = True  # at start, every accepted peer

    def request(self, actor: str) -> None:
        """Read ``actor``'s outbox soon (its follow was just accepted)."""
        self._wanted.add(actor)
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                if self._all:
                    self._all = False
                    targets = [p for p in await self.peers.all() if p.state == "accepted"]
                else:
                    wanted, self._wanted = self._wanted, set()
                    targets = [p for a in wanted if (p := await self.peers.get(a)) is not None]
                for peer in targets:
                    self._start(peer)
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                except TimeoutError:
                    self._all = True
                self._wake.clear()
        finally:
            for task in list(self._running.values()):
                task.cancel()
            for task in list(self._running.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _start(self, peer: Peer) -> None:
        if peer.actor in self._running:
            return  # already reading it; its next pass continues from the cursor
        task = asyncio.create_task(self._one(peer), name=f"backfill {peer.actor}")
        self._running[peer.actor] = task
        task.add_done_callback(lambda _: self._running.pop(peer.actor, None))

    async def _one(self, peer: Peer) -> None:
        async with self._slots:
            try:
                _, finished = await self._read(peer)
            except Exception:  # one peer's trouble must not stop the others
                log.exception("reading the outbox of %s failed", peer.actor)
                return
        if not finished:
            asyncio.get_running_loop().call_later(self.resume_after_s, self.request, peer.actor)

    async def backfill(self, peer: Peer) -> int:
        """Apply everything in ``peer``'s outbox after our cursor, oldest first, within one
        pass's budget; returns how many activities were new."""
        return (await self._read(peer))[0]

    async def _read(self, peer: Peer) -> tuple[int, bool]:
        """One pass over ``peer``'s outbox: (activities applied, whether it ended)."""
        outbox = peer.outbox or f"{peer.actor.rsplit('/actor', 1)[0]}/outbox"
        cursor = peer.outbox_cursor or START
        applied, finished = 0, True
        deadline = time.monotonic() + self.seconds_per_pass
        for pages in range(self.pages_per_pass + 1):
            if pages == self.pages_per_pass or time.monotonic() > deadline:
                finished = False
                log.warning("the outbox of %s did not end within %d pages or %.0f s; going "
                            "on from its cursor later", peer.actor, self.pages_per_pass,
                            self.seconds_per_pass)
                break
            url = f"{outbox}?{urlencode({'page': 'true', 'min_id': cursor})}"
            try:
                page = await self.fetcher.get(url, check_id=False)
            except ActivityPubError as exc:
                await self.peers.set_cursor(peer.actor, None, error=str(exc)[:500])
                log.warning("cannot read the outbox of %s: %s", peer.actor, exc)
                return applied, True
            items = page.get("orderedItems") or []
            if not isinstance(items, list):
                break
            # Pages list newest first; apply oldest first.
            for act in reversed(items):
                if not isinstance(act, dict) or act.get("actor") != peer.actor:
                    continue  # an outbox holds only its owner's activities
                if not isinstance(act.get("id"), str):
                    continue
                if not await self.fstore.first_sighting(act):
                    continue
                await self.handler.handle(peer.actor, act)
                applied += 1
            nxt = _min_id(page.get("prev"))
            if not items or nxt is None or nxt == cursor:
                break
            cursor = nxt
            await self.peers.set_cursor(peer.actor, cursor)
        await self.peers.set_cursor(peer.actor, cursor)
        if applied:
            log.info("caught up with %s: %d activities from its outbox", peer.actor, applied)
        return applied, finished


def _min_id(link: Any) -> str | None:
    if isinstance(link, Mapping):
        link = link.get("id")
    if not isinstance(link, str):
        return None
    values = parse_qs(urlsplit(link).query).get("min_id")
    return values[0] if values else None
