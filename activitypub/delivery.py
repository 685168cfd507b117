"""Persistent delivery: per-destination queue, jittered exponential backoff, parking.

The queue lives in the application's database behind ``DeliveryStore``; this module
decides when to retry (pure functions) and runs the sending loop (the I/O edge).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
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
    id: int
    inbox: str
    body: bytes
    attempts: int
    first_failed_at: datetime | None


class DeliveryStore(Protocol):
    async def due(self, now: datetime, limit: int) -> Sequence[Delivery]: ...
    async def delivered(self, delivery_id: int) -> None: ...
    async def retry(self, delivery_id: int, next_at: datetime, error: str) -> None: ...
    async def stop(self, delivery_id: int, error: str) -> None: ...
    async def park(self, delivery_id: int, error: str) -> None: ...


class Deliverer:
    """Sends due deliveries, signed, until cancelled; wakes early when poked."""

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

    def poke(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until ``stop`` is called."""
        while not self._stopping:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("delivery loop failed; retrying")
                sent = 0
            if sent or self._stopping:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def stop(self) -> None:
        """Finish the deliveries in flight (their outcomes are recorded), then return."""
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> int:
        """Try every due delivery once; returns how many were attempted."""
        due = await self.store.due(datetime.now(UTC), self.concurrency * 4)
        if not due:
            return 0
        sem = asyncio.Semaphore(self.concurrency)

        async def one(d: Delivery) -> None:
            async with sem:
                await self._attempt(d)

        await asyncio.gather(*(one(d) for d in due))
        return len(due)

    async def _attempt(self, d: Delivery) -> None:
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
            await self.store.stop(d.id, str(exc))
            return
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._failed(d, now, f"{type(exc).__name__}: {exc}")
            return
        outcome = outcome_for_status(status)
        if outcome == "delivered":
            await self.store.delivered(d.id)
        elif outcome == "stop":
            await self.store.stop(d.id, f"HTTP {status}")
        else:
            await self._failed(d, now, f"HTTP {status}")

    async def _failed(self, d: Delivery, now: datetime, error: str) -> None:
        first = d.first_failed_at or now
        if now - first >= PARK_AFTER:
            # Down for days: stop trying until the peer shows signs of life.
            await self.store.park(d.id, error)
            return
        delay = retry_delay(d.attempts + 1, base_s=self.retry_base_s)
        await self.store.retry(d.id, now + timedelta(seconds=delay), error)
