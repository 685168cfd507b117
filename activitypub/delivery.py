"""Persistent delivery: per-destination queues, jittered exponential backoff, parking.

The queue lives in the application's database behind ``DeliveryStore``; this module
decides when to retry (pure functions) and runs the sending loop (the I/O edge).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from activitypub._documents import ACTIVITY_JSON
from activitypub._errors import ActivityPubError
from activitypub._signatures import sign_request
from activitypub.fetch import check_url

log = logging.getLogger(__name__)

BASE_DELAY_S = 30.0
MAX_DELAY_S = 24 * 3600.0
PARK_AFTER = timedelta(days=3)
DRAIN_BATCH = 16

Outcome = Literal["delivered", "retry", "stop"]


def outcome_for_status(status: int) -> Outcome:
    """2xx delivered; 4xx stops (but 401, 408 and 429 may pass); anything else retries."""
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in (401, 408, 429):
        return "stop"
    return "retry"


def retry_delay(attempts: int, rng: random.Random | None = None,
                base_s: float = BASE_DELAY_S) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling from 30 s, capped
    at a day, with ±50 % jitter so a recovering peer is not hit by every sender at once."""
    base = min(MAX_DELAY_S, base_s * (2 ** max(0, attempts - 1)))
    return float(base * (0.5 + (rng or random).random()))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued activity for one destination inbox, as the store keeps it."""

    id: int
    inbox: str
    body: bytes
    attempts: int
    first_failed_at: datetime | None


class DeliveryStore(Protocol):
    """The queue, kept per destination inbox (as Synapse's per-destination queue): a
    destination's deliveries go one at a time, oldest first. While it fails, only its
    oldest delivery (the head) is retried, on the backoff; the rest wait behind it."""

    async def due(self, now: datetime, limit: int, busy: Collection[str] = ()
                  ) -> Sequence[Delivery]:
        """The heads of up to ``limit`` destinations whose backoff is over (not ``busy``)."""
        ...

    async def queued(self, inbox: str, limit: int) -> Sequence[Delivery]:
        """The destination's oldest queued deliveries, in order (what to send next)."""
        ...

    async def delivered(self, delivery: Delivery) -> None:
        """The destination accepted it: remove it from the queue."""
        ...

    async def retry(self, delivery: Delivery, next_at: datetime, error: str) -> None:
        """It failed for now: try again at ``next_at``, recording ``error``."""
        ...

    async def stop(self, delivery: Delivery, error: str) -> None:
        """It failed for good (a permanent 4xx): never send it again."""
        ...

    async def park(self, delivery: Delivery, error: str) -> None:
        """The destination has failed for days: park everything queued for it."""
        ...


class Deliverer:
    """Drains destinations, signed, until stopped; wakes early when poked.

    Each destination is drained by its own task, at most ``concurrency`` at once, so a
    slow or dead peer holds only its own slot: it never delays anyone else's deliveries,
    and a dead peer with N queued activities costs one attempt per retry, not N.
    """

    def __init__(self, store: DeliveryStore, session: aiohttp.ClientSession, *, key_id: str,
                 private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
                 allow_private: bool = False, concurrency: int = 16,
                 poll_interval_s: float = 5.0, retry_base_s: float = BASE_DELAY_S) -> None:
        self.store = store
        self.session = session
        self.key_id = key_id
        self.private_key = private_key
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.retry_base_s = retry_base_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: dict[str, asyncio.Task[None]] = {}  # inbox -> its draining task

    def poke(self) -> None:
        """Something was queued (or a destination came back): look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until ``stop`` is called, then let the attempts in flight finish."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.start_due()
            except Exception:
                log.exception("delivery loop failed; retrying")
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
        if self._active:
            await asyncio.gather(*self._active.values(), return_exceptions=True)

    def stop(self) -> None:
        """Finish the deliveries in flight (their outcomes are recorded), then return."""
        self._stopping = True
        self._wake.set()

    async def start_due(self) -> int:
        """Start draining every due destination there is a free slot for; returns how many."""
        free = self.concurrency - len(self._active)
        if free <= 0:
            return 0
        heads = await self.store.due(datetime.now(UTC), free, busy=set(self._active))
        for d in heads:
            if d.inbox not in self._active:
                self._active[d.inbox] = asyncio.create_task(self._drain(d),
                                                            name=f"deliver to {d.inbox}")
        return len(heads)

    async def idle(self) -> None:
        """Wait until no destination is being drained (for tests and shutdown)."""
        while self._active:
            await asyncio.gather(*list(self._active.values()), return_exceptions=True)

    async def _drain(self, head: Delivery) -> None:
        """Send the destination's deliveries in order while it answers."""
        batch: Sequence[Delivery] = [head]
        try:
            while batch:
                for d in batch:
                    if not await self._attempt(d) or self._stopping:
                        return
                # Read ahead a few: one query per batch, not per delivery.
                batch = await self.store.queued(head.inbox, DRAIN_BATCH)
        except Exception:
            log.exception("delivering to %s failed", head.inbox)
        finally:
            self._active.pop(head.inbox, None)
            self._wake.set()  # a slot is free

    async def _attempt(self, d: Delivery) -> bool:
        """Try one delivery; True when the destination answered (go on with the next)."""
        now = datetime.now(UTC)
        try:
            check_url(d.inbox, self.allow_private)
            headers = sign_request(method="POST", url=d.inbox, key_id=self.key_id,
                                   private_key=self.private_key, body=d.body,
                                   headers={"Content-Type": ACTIVITY_JSON})
            async with self.session.post(d.inbox, data=d.body, headers=headers,
                                         allow_redirects=False) as resp:
                await resp.read()
                status = resp.status
        except ActivityPubError as exc:
            await self.store.stop(d, str(exc))
            return True
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._failed(d, now, f"{type(exc).__name__}: {exc}")
            return False
        outcome = outcome_for_status(status)
        if outcome == "delivered":
            await self.store.delivered(d)
        elif outcome == "stop":
            # This activity is refused for good; the destination itself is up.
            await self.store.stop(d, f"HTTP {status}")
        else:
            await self._failed(d, now, f"HTTP {status}")
            return False
        return True

    async def _failed(self, d: Delivery, now: datetime, error: str) -> None:
        first = d.first_failed_at or now
        if now - first >= PARK_AFTER:
            # Down for days: stop trying until the peer shows signs of life.
            await self.store.park(d, error)
            return
        delay = retry_delay(d.attempts + 1, base_s=self.retry_base_s)
        await self.store.retry(d, now + timedelta(seconds=delay), error)
