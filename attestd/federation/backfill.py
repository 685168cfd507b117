"""Pulling peers' outboxes: everything a peer published reaches us even if a push was
lost or this node was down (DESIGN.md, "Delivery is push for speed and pull for
completeness")."""

from __future__ import annotations

import asyncio
import logging
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
MAX_PAGES = 10_000


class Backfiller:
    def __init__(self, fetcher: Fetcher, peers: PeerStore, fstore: FederationStore,
                 handler: ActivityHandler, interval_s: float) -> None:
        self.fetcher = fetcher
        self.peers = peers
        self.fstore = fstore
        self.handler = handler
        self.interval_s = interval_s
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()
        self._all = True  # at start, every accepted peer

    def request(self, actor: str) -> None:
        """Read ``actor``'s outbox soon (its follow was just accepted)."""
        self._wanted.add(actor)
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self._all:
                self._all = False
                targets = [p for p in await self.peers.all() if p.state == "accepted"]
            else:
                wanted, self._wanted = self._wanted, set()
                targets = [p for a in wanted if (p := await self.peers.get(a)) is not None]
            for peer in targets:
                try:
                    await self.backfill(peer)
                except Exception:  # one peer's trouble must not stop the others
                    log.exception("reading the outbox of %s failed", peer.actor)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                self._all = True
            self._wake.clear()

    async def backfill(self, peer: Peer) -> int:
        """Apply everything in ``peer``'s outbox after our cursor, oldest first; returns
        how many activities were new."""
        outbox = peer.outbox or f"{peer.actor.rsplit('/actor', 1)[0]}/outbox"
        cursor = peer.outbox_cursor or START
        applied = 0
        for _ in range(MAX_PAGES):
            url = f"{outbox}?{urlencode({'page': 'true', 'min_id': cursor})}"
            try:
                page = await self.fetcher.get(url, check_id=False)
            except ActivityPubError as exc:
                await self.peers.set_cursor(peer.actor, None, error=str(exc)[:500])
                log.warning("cannot read the outbox of %s: %s", peer.actor, exc)
                return applied
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
        return applied


def _min_id(link: Any) -> str | None:
    if isinstance(link, Mapping):
        link = link.get("id")
    if not isinstance(link, str):
        return None
    values = parse_qs(urlsplit(link).query).get("min_id")
    return values[0] if values else None
