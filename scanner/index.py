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
from functools import lru_cache
from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

# Substrings are 16 to 24 bits wide. Wider ones mean fewer, smaller buckets but more probes
# per table and bigger direct-address tables (4 bytes per value), so the width is chosen
# from the number of entries when the tables are built (see _Layout.choose).
_MIN_SUB = 16
_MAX_SUB = 24
# Probing a substring to within k flipped bits costs sum(C(w, i) for i <= k) look-ups;
# past three flips a linear scan of the built part is cheaper.
_MAX_FLIPS = 3
# Below this many entries a linear scan beats building tables.
_MIN_BUILT = 4096
# Direct-address tables may take this many bytes per entry (16-bit tables always fit).
_TABLE_BYTES_PER_ENTRY = 64

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]


@lru_cache(maxsize=64)
def _flip_masks(width: int, flips: int) -> tuple[int, ...]:
    """Every XOR mask over ``width`` bits with at most ``flips`` bits set."""
    return tuple(sum(1 << b for b in bits) for k in range(flips + 1)
                 for bits in combinations(range(width), k))


@dataclass(frozen=True)
class _Layout:
    """How a hash is cut into substrings: their widths, left to right."""

    bits: int
    widths: tuple[int, ...]

    @property
    def tables(self) -> int:
        return len(self.widths)

    @property
    def table_values(self) -> tuple[int, ...]:
        return tuple(1 << w for w in self.widths)

    @property
    def shifts(self) -> tuple[int, ...]:
        """Right shift that brings each substring to the low bits of the whole hash."""
        out, used = [], 0
        for w in self.widths:
            used += w
            out.append(self.bits - used)
        return tuple(out)

    @classmethod
    def split(cls, bits: int, tables: int) -> _Layout:
        base, extra = divmod(bits, tables)
        return cls(bits, tuple(base + (1 if i < extra else 0) for i in range(tables)))

    @classmethod
    def choose(cls, bits: int, entries: int, radius: int) -> _Layout:
        """The layout with the fewest expected memory touches per query at ``radius``.

        A query reads one table slot per probe, then every entry in the buckets it hits;
        with N entries a w-bit table's bucket holds N / 2**w of them on average.
        """
        budget = max(entries * _TABLE_BYTES_PER_ENTRY, (bits // _MIN_SUB) * (4 << _MIN_SUB))
        best, best_cost = cls.split(bits, bits // _MIN_SUB), float("inf")
        for tables in range(-(-bits // _MAX_SUB), bits // _MIN_SUB + 1):
            layout = cls.split(bits, tables)
            flips = radius // tables
            if flips > _MAX_FLIPS or sum(4 << w for w in layout.widths) > budget:
                continue
            probes = [sum(comb(w, k) for k in range(flips + 1)) for w in layout.widths]
            found = sum(p * entries / (1 << w) for p, w in zip(probes, layout.widths, strict=True))
            cost = sum(probes) + found + min(sum(probes), found)
            if cost < best_cost:
                best, best_cost = layout, cost
        return best

    def columns(self, codes: U64) -> list[U32]:
        """Each substring of every code, as a column of table values."""
        raw = codes.view(np.uint8).reshape(len(codes), -1)
        padded = np.zeros((len(codes), raw.shape[1] + 3), dtype=np.uint8)
        padded[:, :raw.shape[1]] = raw
        out, start = [], 0
        for w in self.widths:
            byte, skip = divmod(start, 8)
            word = np.zeros(len(codes), dtype=np.uint32)
            for i in range(4):
                word |= padded[:, byte + i].astype(np.uint32) << np.uint32(24 - 8 * i)
            out.append((word >> np.uint32(32 - skip - w)) & np.uint32((1 << w) - 1))
            start += w
        return out


@dataclass(frozen=True, slots=True)
class Match:
    """An indexed hash within the threshold: its key and its Hamming distance."""

    key: int
    distance: int


def _stable_order(column: U32) -> npt.NDArray[np.intp]:
    """argsort of values below 2**32, as two 16-bit radix passes (numpy radix-sorts
    16-bit keys, but falls back to a comparison sort for wider ones)."""
    by_low = np.argsort(column.astype(np.uint16), kind="stable")
    high = (column[by_low] >> np.uint32(16)).astype(np.uint16)
    return by_low[np.argsort(high, kind="stable")]


class HammingIndex:
    """Exact search within a Hamming radius, for one hash width; keys are ints.

    ``radius`` is the radius most searches use (the matching threshold); the tables are
    laid out for it, and other radii are answered exactly too.
    """

    def __init__(self, bits: int, radius: int | None = None) -> None:
        if bits % 64:
            raise ValueError("bits must be a multiple of 64")
        self.bits = bits
        self.radius = bits // 8 if radius is None else radius
        self._words = bits // 64
        # The built part.
        self._layout = _Layout.split(bits, bits // _MIN_SUB)
        # One row per 64-bit word (column-major): gathering one word for thousands of
        # scattered candidates is a typed take whose cache misses overlap, several times
        # faster than copying whole scattered rows.
        self._codes: U64 = np.zeros((self._words, 0), dtype=np.uint64)
        self._keys: I64 = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._dead = 0
        self._order: U32 = np.zeros(0, dtype=np.uint32)
        self._starts: U32 = np.zeros(0, dtype=np.uint32)
        self._table_info: tuple[tuple[int, int, int], ...] = ()
        self._probe_plans: dict[int, tuple[I64, I64]] = {}
        self._sorted_keys: I64 = np.zeros(0, dtype=np.int64)
        self._sorted_slots: U32 = np.zeros(0, dtype=np.uint32)
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
            if np.array_equal(self._codes[:, slot], code):
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
        raw = self._hex_bytes(hex_hash)
        query = np.frombuffer(raw, dtype=np.uint64)
        keys: list[I64] = []
        dists: list[I64] = []
        if len(self._keys) - self._dead > 0:
            flips = radius // self._layout.tables
            if flips <= _MAX_FLIPS:
                cand = self._candidates(int.from_bytes(raw, "big"), flips)
            else:
                cand = np.nonzero(self._alive)[0]
            if len(cand):
                slots, d = self._verify(cand, query, radius)
                keys.append(self._keys[slots])
                dists.append(d)
        n_new = len(self._new_slot)
        if n_new:
            d = self._distance(self._new_codes[:n_new], query)
            ok = np.nonzero(d <= radius)[0]
            keys.append(self._new_keys[ok])
            dists.append(d[ok])
        if not keys:
            return []
        all_keys = np.concatenate(keys)
        if not len(all_keys):
            return []
        all_d = np.concatenate(dists)
        order = np.lexsort((all_keys, all_d))
        return [Match(int(k), int(d)) for k, d in zip(all_keys[order], all_d[order], strict=True)]

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (what a benchmark reports as its size)."""
        arrays = (self._codes, self._keys, self._alive, self._order, self._starts,
                  self._sorted_keys, self._sorted_slots, self._new_codes, self._new_keys)
        return sum(a.nbytes for a in arrays) + len(self._new_slot) * 100

    # -- internals -------------------------------------------------------------------

    def _candidates(self, query: int, flips: int) -> npt.NDArray[np.intp]:
        """Built slots sharing a substring with the query, to within ``flips`` bits."""
        plan = self._probe_plans.get(flips)
        if plan is None:
            plan = self._probe_plans[flips] = self._plan(flips)
        table_of_probe, masks = plan
        info = self._table_info
        subs = np.array([(query >> sh) & ((1 << w) - 1) for sh, w, _ in info], dtype=np.int64)
        bases = np.array([base for _, _, base in info], dtype=np.int64)
        probes = (subs[table_of_probe] ^ masks) + bases[table_of_probe]
        lo = self._starts[probes]
        lens = self._starts[probes + 1] - lo
        hit = np.nonzero(lens)[0]
        if not len(hit):
            return np.zeros(0, dtype=np.intp)
        lo, lens = lo[hit].astype(np.intp), lens[hit].astype(np.intp)
        # Concatenate the ranges [lo, lo + len) without a Python loop.
        offsets = np.cumsum(lens) - lens
        flat = np.repeat(lo - offsets, lens) + np.arange(int(offsets[-1] + lens[-1]))
        return self._order[flat].astype(np.intp)

    def _verify(self, cand: npt.NDArray[np.intp], query: U64,
                radius: int) -> tuple[npt.NDArray[np.intp], I64]:
        """The live candidates within ``radius``, each once, with their distances."""
        d = np.bitwise_count(self._codes[0][cand] ^ query[0]).astype(np.int64)
        half = (self._words + 1) // 2
        for w in range(1, half):
            d += np.bitwise_count(self._codes[w][cand] ^ query[w])
        if half < self._words:
            # Half the bits already rule out nearly every random candidate.
            keep = np.nonzero(d <= radius)[0]
            cand, d = cand[keep], d[keep]
            for w in range(half, self._words):
                d += np.bitwise_count(self._codes[w][cand] ^ query[w])
        keep = np.nonzero(d <= radius)[0]
        cand, d = cand[keep], d[keep]
        live = self._alive[cand]
        cand, d = cand[live], d[live]
        slots, first = np.unique(cand, return_index=True)
        return slots, d[first]

    def _plan(self, flips: int) -> tuple[I64, I64]:
        tables: list[int] = []
        masks: list[int] = []
        for t, w in enumerate(self._layout.widths):
            m = _flip_masks(w, flips)
            tables += [t] * len(m)
            masks += m
        return np.array(tables, dtype=np.int64), np.array(masks, dtype=np.int64)

    def _distance(self, codes: U64, query: U64) -> I64:
        counts = np.bitwise_count(codes ^ query)
        total: I64 = counts[:, 0].astype(np.int64)
        for w in range(1, self._words):
            total += counts[:, w]
        return total

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
        codes = np.concatenate([self._codes[:, self._alive].T, self._new_codes[:n_new]])
        keys = np.concatenate([self._keys[self._alive], self._new_keys[:n_new]])
        n = len(keys)
        layout = _Layout.choose(self.bits, n, self.radius)
        if n * layout.tables >= 1 << 32:
            raise ValueError(f"{n} hashes is more than one index holds; split the list")
        order = np.empty(n * layout.tables, dtype=np.uint32)
        starts = np.empty(sum(v + 1 for v in layout.table_values), dtype=np.uint32)
        info, base = [], 0
        for t, (column, shift, values) in enumerate(
                zip(layout.columns(codes), layout.shifts, layout.table_values, strict=True)):
            order[t * n:(t + 1) * n] = _stable_order(column)
            starts[base] = t * n
            np.cumsum(np.bincount(column, minlength=values), out=starts[base + 1:base + values + 1])
            starts[base + 1:base + values + 1] += t * n
            info.append((shift, layout.widths[t], base))
            base += values + 1
        key_order = np.argsort(keys, kind="stable")
        self._layout, self._table_info = layout, tuple(info)
        self._codes, self._keys = np.ascontiguousarray(codes.T), keys
        self._alive = np.ones(n, dtype=bool)
        self._dead = 0
        self._order, self._starts = order, starts
        self._probe_plans = {}
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
