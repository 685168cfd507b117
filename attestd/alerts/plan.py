"""When to send: one message per hit or a digest, within a rate limit. Pure: the caller
passes the (monotonic) time, so tests drive it without waiting.

Nothing is dropped: hits the rate limit holds back wait and go out folded into the next
digest, which says how many were held. A digest lists at most ``digest_max_items`` hits
and counts the rest, so a flood costs memory for counts, not for every hit.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal

from attestd.alerts.message import AlertEvent, Message

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class PlanSettings:
    mode: Literal["each", "digest"] = "each"
    digest_events: int = 20  # a digest goes once this many hits wait ...
    digest_interval_s: float = 3600.0  # ... or the oldest waited this long
    max_per_hour: int = 20
    digest_max_items: int = 50


class Planner:
    """Hits waiting to be told, and the messages sent in the last hour."""

    def __init__(self, settings: PlanSettings) -> None:
        self.settings = settings
        self._listed: list[tuple[AlertEvent, int | None]] = []
        self._unlisted = 0
        self._unlisted_refs: list[int] = []
        self._requeued_refs: list[int] = []  # rows of hits put back after a failed send
        self._counts: Counter[str] = Counter()
        self._first_at: float | None = None
        self._held = 0  # of the waiting hits, how many the rate limit has held back
        self._sent: deque[float] = deque()

    @property
    def waiting(self) -> int:
        return len(self._listed) + self._unlisted

    @property
    def held(self) -> int:
        """Of the waiting hits, how many the rate limit held back (folded into the next
        digest)."""
        return self._held

    def add(self, event: AlertEvent, now: float, ref: int | None = None) -> None:
        """``ref``: the hit's alert-queue row, handed back in the message that tells it."""
        if self._first_at is None:
            self._first_at = now
        self._counts[event.label] += 1
        if len(self._listed) < self.settings.digest_max_items:
            self._listed.append((event, ref))
        else:
            self._unlisted += 1
            if ref is not None:
                self._unlisted_refs.append(ref)

    def take(self, now: float) -> Message | None:
        """The message to send now, if one is due and the rate limit allows it (it is
        then counted as sent); None otherwise."""
        if not self.waiting or not self._due(now):
            return None
        if not self._allowed(now):
            self._held = self.waiting  # every one waiting missed its turn
            return None
        self._sent.append(now)
        if self.settings.mode == "each" and not self._held and self._listed:
            ev, ref = self._listed.pop(0)
            self._counts[ev.label] -= 1
            self._counts += Counter()  # drop zero counts
            if not self.waiting:
                self._first_at = None
            return Message(kind="event", events=(ev,), counts={ev.label: 1},
                           refs=() if ref is None else (ref,))
        return self._everything()

    def requeue(self, msg: Message, now: float) -> None:
        """``msg`` reached no channel: its hits wait again, held (the next message is a
        digest that says so). The rate limit bounds how often this is tried."""
        for ev in msg.events:
            self.add(ev, now)
        for label, n in msg.counts.items():
            self._counts[label] += n - sum(1 for ev in msg.events if ev.label == label)
        self._unlisted += msg.more
        self._requeued_refs.extend(msg.refs)
        self._held = self.waiting

    def flush(self) -> Message | None:
        """Everything waiting as one message, whatever the limit and the digest's timing
        (at shutdown: one message more is better than hits nobody is told of)."""
        return self._everything() if self.waiting else None

    def next_at(self, now: float) -> float | None:
        """When :meth:`take` may next return a message (None: nothing waits)."""
        if not self.waiting:
            return None
        self._forget_old(now)
        due = now if self.settings.mode == "each" else self._digest_due_at(now)
        if len(self._sent) >= self.settings.max_per_hour:
            due = max(due, self._sent[0] + HOUR_S)
        return due

    def _due(self, now: float) -> bool:
        return self.settings.mode == "each" or self._digest_due_at(now) <= now

    def _digest_due_at(self, now: float) -> float:
        if self.waiting >= self.settings.digest_events or self._held:
            return now
        assert self._first_at is not None
        return self._first_at + self.settings.digest_interval_s

    def _allowed(self, now: float) -> bool:
        self._forget_old(now)
        return len(self._sent) < self.settings.max_per_hour

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - HOUR_S:
            self._sent.popleft()

    def _everything(self) -> Message:
        events = tuple(ev for ev, _ in self._listed)
        refs = (tuple(r for _, r in self._listed if r is not None)
                + tuple(self._unlisted_refs) + tuple(self._requeued_refs))
        more, folded, counts = self._unlisted, self._held, dict(self._counts)
        self._listed, self._unlisted, self._unlisted_refs, self._held = [], 0, [], 0
        self._requeued_refs = []
        self._counts, self._first_at = Counter(), None
        if len(events) == 1 and not more and not folded:
            return Message(kind="event", events=events, counts=counts, refs=refs)
        return Message(kind="digest", events=events, more=more, folded=folded, counts=counts,
                       refs=refs)
