"""The in-memory index of bad perceptual hashes, kept in step with the database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from attestd.config import MatchingConfig
from attestd.model import HashEntry
from scanner import FrameHashes, HammingIndex


@dataclass(frozen=True, slots=True)
class IndexMatch:
    entry: HashEntry
    kind: str  # pdq | phash
    distance: int
    frame: int


class BadHashIndex:
    """Perceptual look-up of blocked and known-bad hashes (pure: no I/O)."""

    def __init__(self, matching: MatchingConfig) -> None:
        self.matching = matching
        self._pdq = HammingIndex(256, matching.pdq_threshold)
        self._phash = HammingIndex(64, matching.phash_threshold)
        self._entries: dict[int, HashEntry] = {}
        # ``ok`` entries (peers opted into perceptual ok) live apart: they never make
        # anything bad, and count only when both hashes are tightly within reach.
        self._ok_pdq = HammingIndex(256, matching.ok_pdq_threshold)
        self._ok_phash = HammingIndex(64, matching.ok_phash_threshold)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: HashEntry) -> None:
        self._entries[entry.id] = entry
        if entry.label == "ok":
            if entry.pdq and entry.phash:
                self._ok_pdq.add(entry.id, entry.pdq)
                self._ok_phash.add(entry.id, entry.phash)
            return
        if entry.pdq and (entry.pdq_quality is None
                          or entry.pdq_quality >= self.matching.pdq_min_quality):
            self._pdq.add(entry.id, entry.pdq)
        if entry.phash:
            self._phash.add(entry.id, entry.phash)

    def add_many(self, entries: Iterable[HashEntry]) -> None:
        """Add entries in bulk: how a list of millions loads in seconds, not minutes."""
        ok_ids: list[int] = []
        ok_pdq: list[str] = []
        ok_phash: list[str] = []
        pdq_ids: list[int] = []
        pdqs: list[str] = []
        phash_ids: list[int] = []
        phashes: list[str] = []
        for entry in entries:
            self._entries[entry.id] = entry
            if entry.label == "ok":
                if entry.pdq and entry.phash:
                    ok_ids.append(entry.id)
                    ok_pdq.append(entry.pdq)
                    ok_phash.append(entry.phash)
                continue
            if entry.pdq and (entry.pdq_quality is None
                              or entry.pdq_quality >= self.matching.pdq_min_quality):
                pdq_ids.append(entry.id)
                pdqs.append(entry.pdq)
            if entry.phash:
                phash_ids.append(entry.id)
                phashes.append(entry.phash)
        self._pdq.add_many(pdq_ids, pdqs)
        self._phash.add_many(phash_ids, phashes)
        self._ok_pdq.add_many(ok_ids, ok_pdq)
        self._ok_phash.add_many(ok_ids, ok_phash)

    def remove(self, entry_id: int) -> None:
        self._entries.pop(entry_id, None)
        self._pdq.remove(entry_id)
        self._phash.remove(entry_id)
        self._ok_pdq.remove(entry_id)
        self._ok_phash.remove(entry_id)

    def match_ok(self, frames: Sequence[FrameHashes]) -> list[IndexMatch]:
        """``ok`` entries within matching.ok_pdq_threshold AND ok_phash_threshold of every
        frame (a near-copy must be near throughout, not in one frame), nearest first."""
        if not frames or len(self._ok_pdq) == 0:
            return []
        found: dict[int, int] | None = None
        for frame in frames:
            if frame.pdq_quality < self.matching.pdq_min_quality:
                return []
            pdq = {m.key: m.distance
                   for m in self._ok_pdq.search(frame.pdq, self.matching.ok_pdq_threshold)}
            near = {m.key: pdq[m.key] for m in self._ok_phash.search(
                frame.phash, self.matching.ok_phash_threshold) if m.key in pdq}
            found = near if found is None else {k: max(d, near[k]) for k, d in found.items()
                                                if k in near}
            if not found:
                return []
        return sorted((IndexMatch(self._entries[k], "near", d, 0) for k, d in (found or {}).items()),
                      key=lambda m: (m.distance, m.entry.id))

    def match(self, frames: Sequence[FrameHashes]) -> list[IndexMatch]:
        """Entries near any frame, nearest first.

        Frames below the PDQ quality floor are featureless (flat colour, tiny images):
        neither of their hashes says much, so they match nothing perceptually.
        """
        found: dict[int, IndexMatch] = {}
        for i, frame in enumerate(frames):
            if frame.pdq_quality < self.matching.pdq_min_quality:
                continue
            for m in self._pdq.search(frame.pdq, self.matching.pdq_threshold):
                self._keep(found, IndexMatch(self._entries[m.key], "pdq", m.distance, i))
            for m in self._phash.search(frame.phash, self.matching.phash_threshold):
                self._keep(found, IndexMatch(self._entries[m.key], "phash", m.distance, i))
        return sorted(found.values(), key=lambda m: (m.distance, m.entry.id))

    @staticmethod
    def _keep(found: dict[int, IndexMatch], m: IndexMatch) -> None:
        old = found.get(m.entry.id)
        if old is None or m.distance < old.distance:
            found[m.entry.id] = m
