"""An in-memory Hamming index over PDQ (256-bit) and pHash (64-bit) hashes.

Look-ups use multi-index hashing (Norouzi et al., "Fast Search in Hamming Space with
Multi-Index Hashing"): each hash is cut into 16-bit substrings and every substring has a
table of the entries sorted by its value. Two hashes within ``r`` bits of each other agree
to within ``r // m`` bits on at least one of the ``m`` substrings (pigeonhole), so probing
every table with the query's substring and its variants up to that many flipped bits finds
every true match; candidates are then checked with exact popcounts. Recall is exact by
construction, not tuned.

The tables are flat numpy arrays (4 bytes per entry per table, no per-entry Python
objects), so 10 M PDQ hashes take about 1.1 GB. They are rebuilt in bulk; entries added
since the last build sit in a small side buffer that is scanned linearly, and removed ones
are masked, until the buffer outgrows a fraction of the whole and everything is rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import numpy.typing as npt

_SUB_BITS = 16
_SUB_VALUES = 1 << _SUB_BITS
# Probing costs sum(C(16, k) for k <= flips) look-ups per table; past two flips a linear
# scan of the built part is cheaper than the probes' candidates.
_MAX_FLIPS = 2
# Below this many entries a linear scan beats building tables.
_MIN_BUILT = 4096

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


def _flip_masks(max_flips: int) -> list[npt.NDArray[np.int64]]:
    """For each k <= max_flips, every 16-bit XOR mask with at most k bits set."""
    out: list[npt.NDArray[np.int64]] = []
    masks = [0]
    for k in range(max_flips + 1):
        if k:
            masks += [sum(1 << b for b in bits) for bits in combinations(range(_SUB_BITS), k)]
        out.append(np.array(masks, dtype=np.int64))
    return out


_MASKS = _flip_masks(_MAX_FLIPS)


@dataclass(frozen=True, slots=True)
class Match:
    key: int
    distance: int


class HammingIndex:
    """Exact search within a Hamming radius, for one hash width; keys are ints."""

    def __init__(self, bits: int) -> None:
        if bits % 64:
            raise ValueError("bits must be a multiple of 64")
        self.bits = bits
        self._words = bits // 64
        self._tables = bits // _SUB_BITS
        # The built part.
        self._codes: U64 = np.zeros((0, self._words), dtype=np.uint64)
        self._keys: I64 = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._dead = 0
        self._order = np.zeros((self._tables, 0), dtype=np.uint32)
        self._starts = np.zeros((self._tables, _SUB_VALUES + 1), dtype=np.int64)
        self._sorted_keys: I64 = np.zeros(0, dtype=np.int64)
        self._sorted_slots = np.zeros(0, dtype=np.uint32)
        # Entries added since the last build.
        self._new_codes: U64 = np.zeros((64, self._words), dtype=np.uint64)
        self._new_keys: I64 = np.zeros(64, dtype=np.int64)
        self._new_slot: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys) - self._dead + len(self._new_slot)

    # -- changes ---------------------------------------------------------------------

    def add(self, key: int, hex_hash: str) -> None:
        """Add or replace the hash stored under ``key``."""
        code = self._parse(hex_hash)
        key = int(key)
        slot = self._built_slot(key)
        if slot is not None:
            if np.array_equal(self._codes[slot], code):
                return  # replaying a known entry changes nothing
            self._kill(slot)
        pos = self._new_slot.get(key)
        if pos is not None:
            self._new_codes[pos] = code
            return
        self._append(np.array([key], dtype=np.int64), code[None, :])
        self._maybe_rebuild()

    def add_many(self, keys: Sequence[int] | I64, hashes: Iterable[str] | npt.NDArray[np.uint8]) -> None:
        """Add or replace many entries at once; the fast way to load a large list.

        ``hashes`` is either hex strings or an (n, bits/8) uint8 array of hash bytes.
        A key given twice keeps its last hash.
        """
        key_arr = np.asarray(keys, dtype=np.int64)
        if isinstance(hashes, np.ndarray):
            raw = np.ascontiguousarray(hashes, dtype=np.uint8)
        else:
            raw = np.frombuffer(b"".join(self._hex_bytes(h) for h in hashes), dtype=np.uint8)
        codes = raw.reshape(-1, self.bits // 8).view(np.uint64).reshape(-1, self._words)
        if len(codes) != len(key_arr):
            raise ValueError(f"{len(key_arr)} keys but {len(codes)} hashes")
        if not len(key_arr):
            return
        # Last occurrence of each key wins.
        rev_unique, rev_first = np.unique(key_arr[::-1], return_index=True)
        keep = len(key_arr) - 1 - rev_first
        key_arr, codes = rev_unique, codes[keep]
        self.remove_many(key_arr)
        self._append(key_arr, codes)
        self._maybe_rebuild()

    def remove(self, key: int) -> None:
        """Remove ``key``; removing an absent key does nothing."""
        self.remove_many([key])

    def remove_many(self, keys: Sequence[int] | I64) -> None:
        """Remove every key given; absent keys are ignored."""
        key_arr = np.asarray(keys, dtype=np.int64)
        if len(self._sorted_keys) and len(key_arr):
            pos = np.searchsorted(self._sorted_keys, key_arr)
            pos = pos[pos < len(self._sorted_keys)]
            pos = pos[np.isin(self._sorted_keys[pos], key_arr)]
            slots = self._sorted_slots[pos]
            slots = slots[self._alive[slots]]
            self._alive[slots] = False
            self._dead += len(slots)
        if self._new_slot:
            for key in key_arr.tolist():
                pos_new = self._new_slot.pop(key, None)
                if pos_new is None:
                    continue
                last = len(self._new_slot)  # after the pop: index of the last entry
                if pos_new != last:
                    moved = int(self._new_keys[last])
                    self._new_codes[pos_new] = self._new_codes[last]
                    self._new_keys[pos_new] = moved
                    self._new_slot[moved] = pos_new
        if self._dead > max(_MIN_BUILT, len(self._keys) // 4):
            self._rebuild()

    # -- look-ups --------------------------------------------------------------------

    def search(self, hex_hash: str, radius: int) -> list[Match]:
        """Every entry within ``radius`` bits of ``hex_hash``, nearest first."""
        query = self._parse(hex_hash)
        keys: list[I64] = []
        dists: list[I64] = []
        if len(self._keys) - self._dead > 0:
            flips = radius // self._tables
            if flips <= _MAX_FLIPS:
                cand = self._candidates(query, flips)
            else:
                cand = np.nonzero(self._alive)[0]
            if len(cand):
                d = self._distance(self._codes[cand], query)
                ok = (d <= radius) & self._alive[cand]
                slots, first = np.unique(cand[ok], return_index=True)
                keys.append(self._keys[slots])
                dists.append(d[ok][first])
        n_new = len(self._new_slot)
        if n_new:
            d = self._distance(self._new_codes[:n_new], query)
            ok = np.nonzero(d <= radius)[0]
            keys.append(self._new_keys[ok])
            dists.append(d[ok])
        if not keys:
            return []
        all_keys = np.concatenate(keys)
        all_d = np.concatenate(dists)
        order = np.lexsort((all_keys, all_d))
        return [Match(int(k), int(d)) for k, d in zip(all_keys[order], all_d[order], strict=True)]

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (what a benchmark reports as its size)."""
        arrays = (self._codes, self._keys, self._alive, self._order, self._starts,
                  self._sorted_keys, self._sorted_slots, self._new_codes, self._new_keys)
        return sum(a.nbytes for a in arrays) + len(self._new_slot) * 100

    # -- internals -------------------------------------------------------------------

    def _candidates(self, query: U64, flips: int) -> npt.NDArray[np.int64]:
        """Built slots sharing a substring with the query, to within ``flips`` bits."""
        subs = query.view(np.uint8).view(">u2").astype(np.int64)  # (tables,)
        probes = subs[:, None] ^ _MASKS[flips][None, :]  # (tables, probes)
        rows = np.arange(self._tables)[:, None]
        lo = self._starts[rows, probes]
        lens = (self._starts[rows, probes + 1] - lo).ravel()
        total = int(lens.sum())
        if not total:
            return np.zeros(0, dtype=np.int64)
        base = (lo + rows * len(self._keys)).ravel()
        # Concatenate the ranges [base, base + len) without a Python loop.
        offsets = np.cumsum(lens) - lens
        flat = np.repeat(base - offsets, lens) + np.arange(total)
        return self._order.ravel()[flat].astype(np.int64)

    def _distance(self, codes: U64, query: U64) -> I64:
        return np.bitwise_count(codes ^ query).sum(axis=1, dtype=np.int64)

    def _built_slot(self, key: int) -> int | None:
        if not len(self._sorted_keys):
            return None
        pos = int(np.searchsorted(self._sorted_keys, key))
        if pos < len(self._sorted_keys) and self._sorted_keys[pos] == key:
            slot = int(self._sorted_slots[pos])
            if self._alive[slot]:
                return slot
        return None

    def _kill(self, slot: int) -> None:
        self._alive[slot] = False
        self._dead += 1

    def _append(self, keys: I64, codes: U64) -> None:
        n = len(self._new_slot)
        need = n + len(keys)
        if need > len(self._new_keys):
            cap = max(need, 2 * len(self._new_keys))
            grown_codes = np.zeros((cap, self._words), dtype=np.uint64)
            grown_codes[:n] = self._new_codes[:n]
            grown_keys = np.zeros(cap, dtype=np.int64)
            grown_keys[:n] = self._new_keys[:n]
            self._new_codes, self._new_keys = grown_codes, grown_keys
        self._new_codes[n:need] = codes
        self._new_keys[n:need] = keys
        self._new_slot.update(zip(keys.tolist(), range(n, need), strict=True))

    def _maybe_rebuild(self) -> None:
        if len(self._new_slot) > max(_MIN_BUILT, len(self._keys) // 256):
            self._rebuild()

    def _rebuild(self) -> None:
        n_new = len(self._new_slot)
        codes = np.concatenate([self._codes[self._alive], self._new_codes[:n_new]])
        keys = np.concatenate([self._keys[self._alive], self._new_keys[:n_new]])
        n = len(keys)
        subs = codes.view(np.uint8).reshape(n, -1).view(">u2")
        order = np.empty((self._tables, n), dtype=np.uint32)
        starts = np.zeros((self._tables, _SUB_VALUES + 1), dtype=np.int64)
        for t in range(self._tables):
            column = subs[:, t].astype(np.uint16)
            order[t] = np.argsort(column, kind="stable")
            np.cumsum(np.bincount(column, minlength=_SUB_VALUES), out=starts[t, 1:])
        key_order = np.argsort(keys, kind="stable")
        self._codes, self._keys = codes, keys
        self._alive = np.ones(n, dtype=bool)
        self._dead = 0
        self._order, self._starts = order, starts
        self._sorted_keys = keys[key_order]
        self._sorted_slots = key_order.astype(np.uint32)
        self._new_codes = np.zeros((64, self._words), dtype=np.uint64)
        self._new_keys = np.zeros(64, dtype=np.int64)
        self._new_slot = {}

    def _hex_bytes(self, hex_hash: str) -> bytes:
        try:
            raw = bytes.fromhex(hex_hash)
        except ValueError:
            raise ValueError(f"not a hex hash: {hex_hash[:80]!r}") from None
        if len(raw) * 8 != self.bits:
            raise ValueError(f"expected a {self.bits}-bit hash, got {len(raw) * 8} bits")
        return raw

    def _parse(self, hex_hash: str) -> U64:
        return np.frombuffer(self._hex_bytes(hex_hash), dtype=np.uint64).copy()
