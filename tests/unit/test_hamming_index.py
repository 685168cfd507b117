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
    idx: HammingIndex[int] = HammingIndex(256)
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
    idx: HammingIndex[str] = HammingIndex(64)
    idx.add("a", "0" * 16)
    idx.add("a", "f" * 16)
    assert [m.key for m in idx.search("f" * 16, 0)] == ["a"]
    assert idx.search("0" * 16, 10) == []
    idx.remove("a")
    idx.remove("a")
    assert len(idx) == 0 and idx.search("f" * 16, 64) == []
