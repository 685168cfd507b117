from __future__ import annotations

import random

from scanner import HammingIndex, hamming_hex


def _rand_hex(rnd: random.Random, bits: int) -> str:
    return f"{rnd.getrandbits(bits):0{bits // 4}x}"


def _flip(hexs: str, n: int, rnd: random.Random) -> str:
    v = int(hexs, 16)
    for b in rnd.sample(range(len(hexs) * 4), n):
        v ^= 1 << b
    return f"{v:0{len(hexs)}x}"


def test_search_agrees_with_brute_force_through_adds_and_removes() -> None:
    rnd = random.Random(5)
    idx = HammingIndex(256)
    stored: dict[int, str] = {}
    for i in range(500):
        h = _rand_hex(rnd, 256)
        idx.add(i, h)
        stored[i] = h
    for i in range(0, 500, 3):
        idx.remove(i)
        del stored[i]
    for i in range(1000, 1100):  # reuse freed slots
        h = _flip(stored[rnd.choice(list(stored))], rnd.randrange(40), rnd)
        idx.add(i, h)
        stored[i] = h
    for _ in range(50):
        q = _flip(stored[rnd.choice(list(stored))], rnd.randrange(35), rnd)
        expected = sorted((hamming_hex(q, h), k) for k, h in stored.items()
                          if hamming_hex(q, h) <= 31)
        got = [(m.distance, m.key) for m in idx.search(q, 31)]
        assert sorted(got) == expected
        assert [d for d, _ in got] == sorted(d for d, _ in got)
    assert len(idx) == len(stored)


def test_replacing_a_key_and_removing_twice() -> None:
    idx = HammingIndex(64)
    idx.add(7, "0" * 16)
    idx.add(7, "f" * 16)
    assert [m.key for m in idx.search("f" * 16, 0)] == [7]
    assert idx.search("0" * 16, 10) == []
    idx.remove(7)
    idx.remove(7)
    assert len(idx) == 0 and idx.search("f" * 16, 64) == []


def _brute(stored: dict[int, str], q: str, radius: int) -> list[tuple[int, int]]:
    return sorted((hamming_hex(q, h), k) for k, h in stored.items() if hamming_hex(q, h) <= radius)


def test_built_tables_find_every_match_across_rebuilds_and_removals() -> None:
    # Enough entries that the multi-index tables are built, with near-duplicate families
    # (the case that fills a few buckets) and entries added and removed after the build.
    rnd = random.Random(11)
    for bits, radii in ((256, (0, 10, 31, 47, 60)), (64, (0, 4, 8, 11, 20))):
        idx = HammingIndex(bits)
        stored: dict[int, str] = {}
        roots = [_rand_hex(rnd, bits) for _ in range(300)]
        keys = list(range(9000))
        hashes = [_flip(roots[k % 300], rnd.randrange(bits // 8), rnd) if k % 3 else _rand_hex(rnd, bits)
                  for k in keys]
        idx.add_many(keys, hashes)
        stored.update(zip(keys, hashes, strict=True))
        for k in range(0, 9000, 7):
            idx.remove(k)
            del stored[k]
        idx.remove_many(list(range(1, 9000, 11)))
        for k in range(1, 9000, 11):
            stored.pop(k, None)
        for k in range(20000, 20300):
            h = _flip(roots[k % 300], rnd.randrange(bits // 6), rnd)
            idx.add(k, h)
            stored[k] = h
        assert len(idx) == len(stored)
        for _ in range(40):
            q = _flip(roots[rnd.randrange(300)], rnd.randrange(bits // 6), rnd)
            for radius in radii:
                got = [(m.distance, m.key) for m in idx.search(q, radius)]
                assert got == _brute(stored, q, radius), (bits, radius)


def test_add_many_keeps_the_last_hash_per_key_and_replaces_built_entries() -> None:
    idx = HammingIndex(64)
    idx.add_many(list(range(5000)), ["0" * 16] * 5000)
    idx.add_many([3, 3, 5000], ["1" * 16, "f" * 16, "f" * 16])
    assert len(idx) == 5001
    assert [m.key for m in idx.search("f" * 16, 0)] == [3, 5000]
    assert 3 not in {m.key for m in idx.search("0" * 16, 0)}
    idx.add(3, "f" * 16)  # replaying what is stored changes nothing
    assert len(idx) == 5001


def test_bad_input_is_refused_clearly() -> None:
    idx = HammingIndex(256)
    for bad in ("zz" * 32, "00" * 8, ""):
        try:
            idx.add(1, bad)
        except ValueError as e:
            assert "hash" in str(e)
        else:
            raise AssertionError(f"accepted {bad!r}")
    assert len(idx) == 0
