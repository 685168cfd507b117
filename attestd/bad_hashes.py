"""The in-memory index of bad perceptual hashes, kept in step with the database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from attestd.config import MatchingConfig
from attestd.model import HashEntry
from scanner import FrameHashes, HammingIndex
from scanner.pdq import DIHEDRAL


@dataclass(frozen=True, slots=True)
class IndexMatch:
    entry: HashEntry
    kind: str  # pdq | phash | pdq+phash (both, under the quality floor) | sha256 | md5
    distance: int  # for pdq+phash, the PDQ distance
    frame: int
    # How the upload was turned to match (scanner.pdq.DIHEDRAL), or "uncropped".
    variant: str = "original"


class BadHashIndex:
    """Perceptual look-up of blocked and known-bad hashes (pure: no I/O)."""

    def __init__(self, matching: MatchingConfig) -> None:
        self.matching = matching
        self._pdq = HammingIndex(256, matching.pdq_threshold)
        self._phash = HammingIndex(64, matching.phash_threshold)
        # Entries whose PDQ is under the quality floor: with little texture either hash
        # alone matches unrelated plain pictures (gradients share a pHash; noise decides
        # a flat picture's PDQ), so these match only when both hashes agree (never, for
        # an entry without a pHash), except in a plain PDQ look-up (lookup_pdq).
        self._low_pdq = HammingIndex(256, matching.pdq_threshold)
        self._entries: dict[int, HashEntry] = {}
        # ``ok`` entries (peers opted into perceptual ok) live apart: they never make
        # anything bad, and count only when both hashes are tightly within reach.
        self._ok_pdq = HammingIndex(256, matching.ok_pdq_threshold)
        self._ok_phash = HammingIndex(64, matching.ok_phash_threshold)
        # Exact md5 of the whole file (HMA md5 / video_md5), looked up before decoding.
        self._md5: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: HashEntry) -> None:
        self._entries[entry.id] = entry
        self._add_md5(entry)
        if entry.label == "ok":
            if entry.pdq and entry.phash:
                self._ok_pdq.add(entry.id, entry.pdq)
                self._ok_phash.add(entry.id, entry.phash)
            return
        if entry.pdq and self._is_low(entry):
            self._low_pdq.add(entry.id, entry.pdq)
        elif entry.pdq:
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
        low_ids: list[int] = []
        low_pdqs: list[str] = []
        phash_ids: list[int] = []
        phashes: list[str] = []
        for entry in entries:
            self._entries[entry.id] = entry
            self._add_md5(entry)
            if entry.label == "ok":
                if entry.pdq and entry.phash:
                    ok_ids.append(entry.id)
                    ok_pdq.append(entry.pdq)
                    ok_phash.append(entry.phash)
                continue
            if entry.pdq and self._is_low(entry):
                low_ids.append(entry.id)
                low_pdqs.append(entry.pdq)
            elif entry.pdq:
                pdq_ids.append(entry.id)
                pdqs.append(entry.pdq)
            if entry.phash:
                phash_ids.append(entry.id)
                phashes.append(entry.phash)
        self._pdq.add_many(pdq_ids, pdqs)
        self._low_pdq.add_many(low_ids, low_pdqs)
        self._phash.add_many(phash_ids, phashes)
        self._ok_pdq.add_many(ok_ids, ok_pdq)
        self._ok_phash.add_many(ok_ids, ok_phash)

    def remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is not None and entry.md5 in self._md5:
            ids = self._md5[entry.md5]
            ids.discard(entry_id)
            if not ids:
                del self._md5[entry.md5]
        self._pdq.remove(entry_id)
        self._low_pdq.remove(entry_id)
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
        """Entries near any frame, or near the frame mirrored, rotated or uncropped
        (scanner.pdq.uncropped, with the frame's own pHash), nearest first.

        PDQ or pHash alone match when both the frame and the entry have texture (PDQ
        quality at least matching.pdq_min_quality); below that floor, on either side,
        both hashes must be within their thresholds of the same entry. Frames with almost
        nothing in them (matching.pdq_featureless_quality) match nothing perceptually.
        """
        found: dict[int, IndexMatch] = {}
        for i, frame in enumerate(frames):
            if frame.pdq_quality < self.matching.pdq_featureless_quality:
                continue
            textured = frame.pdq_quality >= self.matching.pdq_min_quality
            variants = [*zip((frame.pdq, *frame.pdq_dihedral),
                             (frame.phash, *frame.phash_dihedral), DIHEDRAL, strict=False),
                        *((pdq, frame.phash, "uncropped") for pdq in frame.pdq_uncropped)]
            near: dict[str, dict[int, int]] = {}
            for pdq, phash, variant in variants:
                if phash not in near:
                    near[phash] = {x.key: x.distance for x in self._phash.search(
                        phash, self.matching.phash_threshold)}
                self._match_variant(found, i, pdq, near[phash], variant, textured)
        return sorted(found.values(), key=lambda x: (x.distance, x.entry.id))

    def _match_variant(self, found: dict[int, IndexMatch], frame: int, pdq: str,
                       near_phash: dict[int, int], variant: str, textured: bool) -> None:
        low_pdq = self._low_pdq.search(pdq, self.matching.pdq_threshold)
        high_pdq = self._pdq.search(pdq, self.matching.pdq_threshold)
        for x in low_pdq if textured else low_pdq + high_pdq:
            if x.key in near_phash:
                self._keep(found, IndexMatch(self._entries[x.key], "pdq+phash", x.distance,
                                             frame, variant))
        if not textured:
            return
        for x in high_pdq:
            self._keep(found, IndexMatch(self._entries[x.key], "pdq", x.distance, frame, variant))
        for key, d in near_phash.items():
            if not self._is_low(self._entries[key]):
                self._keep(found, IndexMatch(self._entries[key], "phash", d, frame, variant))

    @property
    def has_md5_entries(self) -> bool:
        """Whether any entry is an md5 of a file, which only the file's bytes can match."""
        return bool(self._md5)

    def match_md5(self, md5: str) -> HashEntry | None:
        """The entry (lowest id) whose md5 is exactly ``md5``: a listed file's bytes."""
        ids = self._md5.get(md5)
        return self._entries[min(ids)] if ids else None

    def _add_md5(self, entry: HashEntry) -> None:
        if entry.md5 and entry.label != "ok":
            self._md5.setdefault(entry.md5, set()).add(entry.id)

    def lookup_pdq(self, pdq: str, radius: int) -> list[tuple[HashEntry, int]]:
        """(entry, distance) for every entry whose PDQ is within ``radius`` of ``pdq``,
        whatever its quality, nearest first: a plain PDQ look-up, as HMA's index does."""
        found = self._pdq.search(pdq, radius) + self._low_pdq.search(pdq, radius)
        return [(self._entries[m.key], m.distance)
                for m in sorted(found, key=lambda m: (m.distance, m.key))]

    def _is_low(self, entry: HashEntry) -> bool:
        """The entry's PDQ is under the quality floor (an entry without one is not)."""
        return (entry.pdq is not None and entry.pdq_quality is not None
                and entry.pdq_quality < self.matching.pdq_min_quality)

    @staticmethod
    def _keep(found: dict[int, IndexMatch], m: IndexMatch) -> None:
        old = found.get(m.entry.id)
        if old is None or m.distance < old.distance:
            found[m.entry.id] = m
