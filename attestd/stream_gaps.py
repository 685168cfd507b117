"""Following an id-ordered change log whose ids may commit out of order.

On PostgreSQL an id is taken when a row is inserted, not when its transaction commits: a
long import can commit ids below ones already read. So a follower remembers the ids it
passed over (gaps below its high-water mark) and reads them again until no transaction
that could still hold them is running (like Synapse's stream-id gap handling). Pure
logic; the caller does the reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# A gap is kept at least this long even when no older transaction runs: an id is taken
# an instant before its transaction gets the id that makes it visible as running.
MIN_GAP_AGE_S = 10.0


@dataclass
class Gap:
    lo: int  # inclusive
    hi: int  # inclusive
    seen_at: float
    # The first transaction id not yet started when the gap was seen (PostgreSQL): once
    # the oldest running transaction is at or past it, whoever held these ids is done.
    xmax: int | None


@dataclass
class StreamPosition:
    last: int = 0
    gaps: list[Gap] = field(default_factory=list)

    _turn: int = 0

    def ranges(self, most: int = 200) -> list[tuple[int, int]]:
        """The id ranges to read again, besides every id above ``last``: at most
        ``most`` per read (one SQL expression each), taking turns when there are more."""
        if len(self.gaps) <= most:
            return [(g.lo, g.hi) for g in self.gaps]
        start = self._turn % len(self.gaps)
        self._turn = start + most
        turn = (self.gaps + self.gaps)[start:start + most]
        return [(g.lo, g.hi) for g in turn]

    def saw(self, ids: Sequence[int], *, now: float, xmax: int | None) -> list[int]:
        """Record the ids one read returned (ids above ``last`` or in a gap, ascending,
        everything up to the largest returned); returns those not seen before."""
        new: list[int] = []
        for i in sorted(ids):
            if i > self.last:
                if i > self.last + 1:
                    self.gaps.append(Gap(self.last + 1, i - 1, now, xmax))
                self.last = i
                new.append(i)
            elif self._fill(i):
                new.append(i)
        return new

    def expire(self, *, now: float, xmin: int | None) -> None:
        """Stop looking at gaps nobody can fill any more (rolled back or never used).

        ``xmin`` is the oldest running transaction, taken *before* the last read, so that
        read saw whatever those transactions committed. None: the database commits in id
        order (SQLite's single writer), and a gap is only a rollback.
        """
        self.gaps = [g for g in self.gaps
                     if now - g.seen_at < MIN_GAP_AGE_S
                     or (xmin is not None and g.xmax is not None and xmin < g.xmax)]

    def seed(self, last: int, gaps: Iterable[tuple[int, int]], *, now: float,
             xmax: int | None) -> None:
        """Start from the log as it is: ``last`` its largest id, ``gaps`` the id ranges
        below it that are missing (a transaction may still commit them)."""
        self.last = last
        self.gaps = [Gap(lo, hi, now, xmax) for lo, hi in gaps]

    def _fill(self, i: int) -> bool:
        for n, g in enumerate(self.gaps):
            if g.lo <= i <= g.hi:
                parts = [Gap(lo, hi, g.seen_at, g.xmax)
                         for lo, hi in ((g.lo, i - 1), (i + 1, g.hi)) if lo <= hi]
                self.gaps[n:n + 1] = parts
                return True
        return False
