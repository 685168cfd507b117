"""A hit: stored media judged bad after it was accepted (a sweep, a rescan of an image
accepted under ``accept_and_rescan``, a reviewer's confirmation or quarantine).

Whatever acts on a hit (following it up in Lemmy, alerting admins, preserving evidence)
subscribes to :class:`Hits`; the places that find hits only publish. A subscriber that
fails is logged and never stops the others nor the sweep or review that found the hit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from attestd.model import utcnow

log = logging.getLogger(__name__)

# Where the hit was found.
HitOrigin = Literal["sweep", "rescan", "review"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One hit. ``data`` (the bytes, when the finder had them) is for evidence only and
    must never reach a notification."""

    sha256: str
    origin: HitOrigin
    label: str  # what it was judged: csam_suspect, blocked, …
    source: str  # what decided: "override:3", "list:ncmec", "verdict:12", "attestation-row:7"
    action: str  # what the finder did: flag, delete, quarantine, review, confirm
    key: str | None = None  # the storage key, when the finder knows it
    aliases: tuple[str, ...] = ()  # pict-rs aliases of the file (what Lemmy's URLs name)
    method: str | None = None  # for own verdicts: classifier or human_review
    actor: str | None = None  # who (a reviewer) or what (sweep run N) found it
    detail: str = ""  # the finder's words on what it did
    data: bytes | None = field(default=None, repr=False, compare=False)
    at: datetime = field(default_factory=utcnow)


HitHandler = Callable[[Hit], Awaitable[None]]


class Hits:
    """Fan-out of hits to subscribers, in the order they subscribed."""

    def __init__(self) -> None:
        self._handlers: list[tuple[str, HitHandler]] = []

    def subscribe(self, name: str, handler: HitHandler) -> None:
        self._handlers.append((name, handler))

    async def publish(self, hit: Hit) -> None:
        for name, handler in self._handlers:
            try:
                await handler(hit)
            except Exception:  # one subscriber's failure is its own to retry
                log.exception("%s failed on the hit on %s (%s)", name, hit.sha256, hit.origin)
