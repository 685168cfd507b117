"""Hamming index at millions of hashes: attestd's index against the alternatives.

For 1 M and 10 M PDQ hashes and 10 M pHashes, on random hashes and on clustered ones
(many near-duplicate families, which crowd a few buckets of any hash-table index), it
builds, in the same run and each in its own process so memory is measured apart:

- ``attestd``: scanner.HammingIndex (multi-index hashing over numpy arrays);
- ``linear``: a numpy linear scan (popcount over every hash), the ground truth;
- ``faiss-mih``: faiss's IndexBinaryMultiHash, as python-threatexchange configures it;
- ``PDQIndex``: python-threatexchange's PDQIndex (Meta's reference; PDQ only).

and reports build time, resident memory added by the build, per-query p50/p99 latency
(one query at a time, hex in, matches out, as the node calls it), recall on planted
near-duplicates, and whether each query's matches equal the linear scan's exactly.

    python bench/bench_index.py            # the full run (about 20 minutes, 12 GB)
    python bench/bench_index.py --quick    # 100 k hashes, a smoke run
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe  # noqa: E402

RADIUS = {"pdq": 31, "phash": 8}  # matching.pdq_threshold and matching.phash_threshold
BITS = {"pdq": 256, "phash": 64}


@dataclass(frozen=True)
class Case:
    kind: str  # pdq | phash
    n: int
    layout: str  # random | clustered
    queries: int
    truth_queries: int  # how many of the queries the linear scan also answers

    @property
    def name(self) -> str:
        size = f"{self.n // 1_000_000} M" if self.n >= 1_000_000 else f"{self.n // 1000} k"
        return f"{self.kind} {size} {self.layout}"


# -- the data ---------------------------------------------------------------------------

def make_codes(case: Case, seed: int = 7) -> np.ndarray:
    """The stored hashes, (n, bytes) uint8, the same in every worker."""
    nbytes = BITS[case.kind] // 8
    rng = np.random.default_rng(seed)
    if case.layout == "random":
        return rng.integers(0, 256, (case.n, nbytes), dtype=np.uint8)
    # Families: a root and its variants, each variant with up to 12 % of its bits
    # flipped (about 30 for PDQ, 8 for pHash); family sizes are skewed, the biggest
    # holding about a thousandth of all hashes, as a widely re-posted image would.
    roots = rng.integers(0, 256, (max(1, case.n // 10), nbytes), dtype=np.uint8)
    family = (len(roots) * rng.random(case.n) ** 2).astype(np.int64)
    codes = roots[family]
    del family
    chunk = 250_000
    for start in range(0, case.n, chunk):
        m = min(chunk, case.n - start)
        rate = (rng.random(m) * 0.12 * 256).astype(np.uint16)
        noise = rng.integers(0, 256, (m, nbytes * 8), dtype=np.uint8) < rate[:, None]
        codes[start:start + m] ^= np.packbits(noise, axis=1)
    return codes


def make_queries(case: Case, codes: np.ndarray, seed: int = 11) -> tuple[list[str], list[int]]:
    """Hex queries and, for each, the planted entry it must find (-1: a random query)."""
    rng = np.random.default_rng(seed)
    bits = BITS[case.kind]
    planted = case.queries * 4 // 5
    out: list[str] = []
    targets: list[int] = []
    for i in range(case.queries):
        if i < planted:
            target = int(rng.integers(case.n))
            q = codes[target].copy()
            for b in rng.choice(bits, int(rng.integers(0, RADIUS[case.kind] + 1)), replace=False):
                q[b // 8] ^= np.uint8(1 << (b % 8))
        else:
            target = -1
            q = rng.integers(0, 256, bits // 8, dtype=np.uint8)
        out.append(q.tobytes().hex())
        targets.append(target)
    # Interleave planted and random queries, as real traffic would.
    order = rng.permutation(case.queries)
    return [out[i] for i in order], [targets[i] for i in order]


# -- one method, in its own process ------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(method: str, case: Case, codes: np.ndarray) -> tuple[Any, Any]:
    """The built index and a function answering one hex query with a list of ids."""
    radius = RADIUS[case.kind]
    bits = BITS[case.kind]
    if method == "attestd":
        from scanner.index import HammingIndex
        index = HammingIndex(bits, radius)
        index.add_many(np.arange(case.n), codes)
        return index, lambda h: [m.key for m in index.search(h, radius)]
    if method == "linear":
        words = np.ascontiguousarray(codes).view(np.uint64).reshape(case.n, -1)

        def scan(h: str) -> list[int]:
            q = np.frombuffer(bytes.fromhex(h), dtype=np.uint64)
            d = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int64)
            return np.nonzero(d <= radius)[0].tolist()
        return words, scan
    if method == "faiss-mih":
        import faiss
        nhash = bits // 16  # python-threatexchange's PDQMultiHashIndex: 16 maps of 16 bits
        index = faiss.IndexBinaryMultiHash(bits, nhash, bits // nhash)
        index.add(codes)
        index.nflip = radius // nhash

        def faiss_query(h: str) -> list[int]:
            q = np.frombuffer(bytes.fromhex(h), dtype=np.uint8)[None, :]
            lims, _, ids = index.range_search(q, radius + 1)  # faiss's radius is strict
            return ids[lims[0]:lims[1]].tolist()
        return index, faiss_query
    if method == "PDQIndex":
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex
        text = codes.tobytes().hex()
        width = bits // 4
        entries = [(text[i * width:(i + 1) * width], i) for i in range(case.n)]
        del text
        index = PDQIndex.build(entries)
        del entries
        return index, lambda h: [m.metadata for m in index.query(h)]
    raise ValueError(method)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    case = Case(**spec["case"])
    method = spec["method"]
    codes = make_codes(case)
    queries, targets = make_queries(case, codes)
    if method == "linear":
        queries, targets = queries[:case.truth_queries], targets[:case.truth_queries]
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index, query = build(method, case, codes)
    build_s = time.perf_counter() - t0
    if method in ("PDQIndex", "faiss-mih"):
        del codes  # they keep their own copy; ours and the scan keep theirs in `index`
    gc.collect()
    grown = rss_bytes() - before
    if method in ("attestd", "linear"):
        grown_note = "includes its copy of the hashes"
    else:
        grown_note = "the hashes' input array freed"
    latencies: list[int] = []
    found = 0
    digests: list[str] = []
    for h, target in zip(queries, targets, strict=True):
        t = time.perf_counter_ns()
        ids = query(h)
        latencies.append(time.perf_counter_ns() - t)
        if target >= 0 and target in ids:
            found += 1
        if len(digests) < case.truth_queries:
            digests.append(hashlib.sha256(json.dumps(sorted(ids)).encode()).hexdigest())
    planted = sum(1 for t in targets if t >= 0)
    lat = sorted(latencies)
    extra = {}
    if method == "attestd":
        extra["array_mb"] = index.memory_bytes() / 2**20
        extra["layout"] = list(index._layout.widths)
    return {
        "method": method,
        "build_s": build_s,
        "rss_mb": grown / 2**20,
        "rss_note": grown_note,
        "p50_ms": lat[len(lat) // 2] / 1e6,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6,
        "mean_ms": statistics.fmean(lat) / 1e6,
        "queries": len(lat),
        "recall": found / planted if planted else float("nan"),
        "digests": digests,
        **extra,
    }


def run_worker(method: str, case: Case) -> dict[str, Any]:
    spec = json.dumps({"method": method, "case": case.__dict__})
    proc = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        return {"method": method, "error": proc.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the report -------------------------------------------------------------------------

def report(case: Case, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by = {r["method"]: r for r in rows}
    truth = by.get("linear", {}).get("digests")
    print(f"\n{case.name}: {case.n:,} hashes, radius {RADIUS[case.kind]}, {case.queries} queries "
          f"(4/5 planted near-duplicates at 0..{RADIUS[case.kind]} bits, 1/5 random); "
          f"the linear scan answers the first {case.truth_queries}")
    print(f"  {'method':<10} {'build s':>8} {'+RSS MB':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'recall':>7} {'= linear':>9}")
    for r in rows:
        if "error" in r:
            print(f"  {r['method']:<10} failed: {r['error']}")
            continue
        same = "-"
        if truth is not None and r["method"] != "linear":
            k = min(len(truth), len(r["digests"]))
            agree = sum(a == b for a, b in zip(truth[:k], r["digests"][:k], strict=True))
            same = f"{agree}/{k}"
        print(f"  {r['method']:<10} {r['build_s']:8.1f} {r['rss_mb']:9.0f} {r['p50_ms']:8.3f} "
              f"{r['p99_ms']:8.3f} {r['recall']:7.3f} {same:>9}")
    ours = by.get("attestd", {})
    if "array_mb" in ours:
        print(f"  attestd: arrays {ours['array_mb']:.0f} MB, substring widths {ours['layout']}")
    return by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 k hashes only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out")
    parser.add_argument("--cases", default="",
                        help="comma-separated cases to run, by name (e.g. 'pdq 10 M random')")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        cases = [Case("pdq", 100_000, layout, 500, 200) for layout in ("random", "clustered")]
        cases += [Case("phash", 100_000, "clustered", 500, 200)]
    else:
        cases = [Case("pdq", 1_000_000, layout, 2000, 300) for layout in ("random", "clustered")]
        cases += [Case("pdq", 10_000_000, layout, 2000, 100) for layout in ("random", "clustered")]
        cases += [Case("phash", 10_000_000, layout, 2000, 100) for layout in ("random", "clustered")]
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
        unknown = wanted - {c.name for c in cases}
        if unknown:
            parser.error(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    skip = set(filter(None, args.skip.split(",")))
    print("bench_index:", describe())
    print("numpy", np.__version__, "| one query at a time; latency includes parsing the hex "
          "query and building the result list")
    bars: list[str] = []
    for case in cases:
        methods = ["attestd", "linear", "faiss-mih"] + (["PDQIndex"] if case.kind == "pdq" else [])
        rows = [run_worker(m, case) for m in methods if m not in skip]
        by = report(case, rows)
        ours, ref = by.get("attestd", {}), by.get("PDQIndex", {})
        if "error" in ours or not ours:
            bars.append(f"{case.name}: attestd failed")
            continue
        truth_ok = "linear" not in by or "error" in by["linear"] or all(
            a == b for a, b in zip(by["linear"]["digests"], ours["digests"], strict=False))
        bars.append(f"{case.name}: recall {ours['recall']:.3f} (bar 1.0), matches = linear scan: "
                    f"{'yes' if truth_ok else 'NO'}")
        if ref and "error" not in ref:
            ratio = ours["p99_ms"] / ref["p99_ms"]
            bar = "0.5" if case.n < 5_000_000 else "1.0"
            bars.append(f"{case.name}: p99 {ours['p99_ms']:.3f} ms = {ratio:.2f} x PDQIndex's "
                        f"{ref['p99_ms']:.3f} ms (bar <= {bar})")
        if case.n >= 5_000_000:
            bars.append(f"{case.name}: index resident {ours['rss_mb']:.0f} MB (bar <= 2048)")
    print("\nAgainst the issue's bars:")
    for line in bars:
        print("  " + line)


if __name__ == "__main__":
    main()
