"""A blocked image under a flood of expensive animations (issue 16, items 1 and 2).

Starts `attestd serve` (SQLite, defaults: on_unknown = accept, on_unhashable = reject),
blocks one photo with `attestd override block`, then, against the real pict-rs endpoint:

- a calm phase: ordinary new uploads (distinct photos) alone, for a baseline;
- a flood phase: the same ordinary uploads, plus `--flood` clients sending distinct
  expensive GIFs (a 1500x1500 canvas with thousands of frames, ~100 KB each, like the
  issue's 4 900-frame attack file), plus one client sending fresh re-encodes of the
  blocked photo (new scale and quality each time, so a new sha256 each time).

Prints the share of blocked re-encodes rejected (must be 100 %), the p50/p99 answer time
and the share of ordinary uploads answered 200 within policy.deadline_s in each phase, and
what the flood got, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from hashlib import sha256
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402
from bench.node import running_node  # noqa: E402
from tests.images import expensive_gif, jpeg, reencoded  # noqa: E402

DEADLINE_S = 8.0


def ordinary(seed: int) -> bytes:
    return jpeg(10_000 + seed, (800, 600), quality=85)


def blocked_copy(original: bytes, i: int) -> bytes:
    """The ``i``-th re-encode: each of 300 has its own scale and quality, so its own sha256."""
    return reencoded(original, scale=0.4 + (i % 12) * 0.05, quality=40 + (i // 12) * 2)


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.sources: collections.Counter[str] = collections.Counter()

    def add(self, seconds: float, status: int, source: str) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1
        self.sources[source] += 1


async def post(session: aiohttp.ClientSession, url: str, body: bytes, ctype: str,
               tally: Tally) -> int:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": ctype}) as r:
        data = await r.json()
        tally.add(time.perf_counter() - t0, r.status, data.get("source", "?"))
        return r.status


async def phase(url: str, seconds: float, photos: collections.deque[bytes],
                flood: list[bytes], flood_clients: int, blocked: list[bytes]
                ) -> tuple[Tally, Tally, Tally]:
    ordinary_t, flood_t, blocked_t = Tally(), Tally(), Tally()
    stop_at = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        async def uploads() -> None:
            while time.perf_counter() < stop_at and photos:
                await post(session, url, photos.popleft(), "image/jpeg", ordinary_t)
                await asyncio.sleep(0.1)

        async def flooder(k: int) -> None:
            i = k
            while time.perf_counter() < stop_at and flood:
                await post(session, url, flood[i % len(flood)], "image/gif", flood_t)
                i += flood_clients

        async def reencodes() -> None:
            i = 0
            while time.perf_counter() < stop_at and blocked:
                await post(session, url, blocked[i % len(blocked)], "image/jpeg", blocked_t)
                i += 1
                await asyncio.sleep(0.3)

        tasks = [uploads(), uploads()]
        if flood:
            tasks += [flooder(k) for k in range(flood_clients)]
            tasks.append(reencodes())
        await asyncio.gather(*tasks)
    return ordinary_t, flood_t, blocked_t


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if values else float("nan")


def report(name: str, t: Tally) -> None:
    n = len(t.latencies)
    ok = sum(1 for lat in t.latencies if lat <= DEADLINE_S)
    print(f"  {name}: {n} answers, p50 {pct(t.latencies, 50) * 1000:.0f} ms, "
          f"p99 {pct(t.latencies, 99) * 1000:.0f} ms, within {DEADLINE_S:g} s: "
          f"{ok / max(n, 1):.1%}, statuses {dict(t.statuses)}, decided by {dict(t.sources)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calm-seconds", type=float, default=15)
    ap.add_argument("--flood-seconds", type=float, default=60)
    ap.add_argument("--flood", type=int, default=6, help="clients sending expensive GIFs")
    ap.add_argument("--frames", type=int, default=4900, help="frames per expensive GIF")
    ap.add_argument("--photos", type=int, default=900, help="distinct ordinary uploads made")
    ap.add_argument("--workers", type=int, default=0, help="scanner.workers (0: one per core)")
    args = ap.parse_args()
    print(f"machine: {describe()}")

    t0 = time.perf_counter()
    # Two upload clients, each pausing 0.1 s between answers: enough for the run's length
    # on a small machine (the clients stop early if these run out; the figures say so).
    total = min(int((args.calm_seconds + args.flood_seconds) * 2 / 0.1) + 50, args.photos)
    with ProcessPoolExecutor() as ex:
        photos = list(ex.map(ordinary, range(total), chunksize=16))
        flood = list(ex.map(expensive_gif, range(24), [args.frames] * 24))
    original = jpeg(4242, (1024, 768))
    blocked = [blocked_copy(original, i) for i in range(300)]
    print(f"made {len(photos)} ordinary 800x600 JPEGs, {len(flood)} expensive GIFs of "
          f"{len(flood[0]) // 1024} KB ({args.frames} frames on 1500x1500), {len(blocked)} "
          f"re-encodes of the blocked photo in {time.perf_counter() - t0:.0f} s")

    settings = {"policy__deadline_s": str(DEADLINE_S)}
    if args.workers:
        settings["scanner__workers"] = str(args.workers)
    with running_node(**settings) as node, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blocked.jpg"
        path.write_bytes(original)
        node.cli("override", "block", str(path), "--note", "bench")
        url = f"{node.base}/api/v1/scan/IPADDR"
        time.sleep(2)  # the serving process follows the new block within about a second
        # Warm-up (not counted): the decoder processes start on first use.
        asyncio.run(phase(url, 2, collections.deque(ordinary(-1 - i) for i in range(8)),
                          [], 0, []))
        queue = collections.deque(photos)

        calm, _, _ = asyncio.run(phase(url, args.calm_seconds, queue, [], 0, []))
        ordinary_t, flood_t, blocked_t = asyncio.run(
            phase(url, args.flood_seconds, queue, flood, args.flood, blocked))
        if not queue:
            print("note: the ordinary uploads ran out before the end (raise --photos)")

    rejected = blocked_t.statuses[406] + sum(v for k, v in blocked_t.statuses.items()
                                             if k not in (200, 406) and k >= 400)
    as_blocked = blocked_t.statuses[406]
    n_blocked = len(blocked_t.latencies)
    print("calm (ordinary uploads only):")
    report("ordinary", calm)
    print(f"flood ({args.flood} clients of expensive GIFs):")
    report("ordinary", ordinary_t)
    report("flood   ", flood_t)
    report("blocked ", blocked_t)
    distinct = len({sha256(b).hexdigest() for b in blocked[:n_blocked]})
    print(f"blocked re-encodes rejected: {rejected}/{n_blocked} = "
          f"{rejected / max(n_blocked, 1):.1%} (must be 100 %); of them 406 as blocked: "
          f"{as_blocked}; distinct re-encodes sent: {distinct}")
    if calm.latencies and ordinary_t.latencies:
        print(f"ordinary p99 under flood / calm: "
              f"{pct(ordinary_t.latencies, 99) / pct(calm.latencies, 99):.1f}x")


if __name__ == "__main__":
    main()
