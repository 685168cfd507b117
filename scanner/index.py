"""An in-memory Hamming index over PDQ (256-bit) and pHash (64-bit) hashes.

Entries are added and removed incrementally. Look-ups compare one query against every
entry with numpy popcounts: simple and exact, and fast enough up to a few hundred
thousand entries; the scanner issue replaces the search with multi-index hashing.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Match(Generic[K]):
    key: K
    distance: int


class HammingIndex(Generic[K]):
    """Exact nearest-neighbour search within a Hamming radius, for one hash width."""

    def __init__(self, bits: int) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        self._nbytes = bits // 8
        self._rows = np.zeros((0, self._nbytes), dtype=np.uint8)
        self._keys: list[K | None] = []
        self._slot: dict[K, int] = {}
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._slot)

    def add(self, key: K, hex_hash: str) -> None:
        """Add or replace the hash stored under ``key``."""
        row = np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8)
        if row.size != self._nbytes:
            raise ValueError(f"expected a {self.bits}-bit hash, got {row.size * 8} bits")
        if key in self._slot:
            self._rows[self._slot[key]] = row
            return
        if self._free:
            slot = self._free.pop()
            self._rows[slot] = row
            self._keys[slot] = key
        else:
            slot = len(self._keys)
            if slot >= self._rows.shape[0]:
                grown = np.zeros((max(64, slot * 2), self._nbytes), dtype=np.uint8)
                grown[:slot] = self._rows[:slot]
                self._rows = grown
            self._rows[slot] = row
            self._keys.append(key)
        self._slot[key] = slot

    def remove(self, key: K) -> None:
        """Remove ``key``; removing an absent key does nothing."""
        slot = self._slot.pop(key, None)
        if slot is None:
            return
        self._keys[slot] = None
        self._rows[slot] = 0
        self._free.append(slot)

    def search(self, hex_hash: str, radius: int) -> list[Match[K]]:
        """Every entry within ``radius`` bits of ``hex_hash``, nearest first."""
        if not self._slot:
            return []
        query = np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8)
        used = len(self._keys)
        dist = _POPCOUNT8[np.bitwise_xor(self._rows[:used], query)].sum(axis=1, dtype=np.int32)
        hits = np.nonzero(dist <= radius)[0]
        out: list[Match[K]] = []
        for slot in hits[np.argsort(dist[hits], kind="stable")]:
            key = self._keys[int(slot)]
            if key is not None:
                out.append(Match(key, int(dist[slot])))
        return out
