"""Checks per second through the real pict-rs endpoint, 16 concurrent clients.

Starts `attestd serve` as its own process on SQLite (the embedded default), then
measures two cases with an aiohttp load generator in this process:

- new images: never seen, so fully decoded and hashed; classifier off, on_unknown=accept;
- known images: a verdict is stored, so the answer comes from the database.

Each case runs several rounds; the medians are printed with the machine.
Targets (issue 2): known >= 400 checks/s with p99 <= 60 ms; new >= 60 checks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402
from bench.node import running_node  # noqa: E402
from tests.images import scene  # noqa: E402

ATTESTD = str(Path(sys.executable).with_name("attestd"))


def photo(seed: int, target_kb: int = 200) -> bytes:
    """A ~200 KB JPEG of a 1280x960 scene with sensor-like noise."""
    rnd = np.random.default_rng(seed)
    img = np.asarray(scene(seed, (1280, 960)), dtype=np.int16)
    img = img + rnd.normal(0, 6, img.shape).astype(np.int16)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    for q in (85, 75, 65, 55, 45):
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=q)
        if buf.tell() <= target_kb * 1024 * 1.15:
            break
    return buf.getvalue()


async def load(url: str, bodies: list[bytes], concurrency: int, duration_s: float | None
               ) -> tuple[float, list[float], int]:
    """Post bodies from `concurrency` workers; returns (checks/s, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    next_i = 0
    stop_at = time.perf_counter() + duration_s if duration_s else None
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker() -> None:
            nonlocal next_i, errors
            while True:
                if stop_at is not None:
                    if time.perf_counter() >= stop_at:
                        return
                    body = bodies[next_i % len(bodies)]
                else:
                    if next_i >= len(bodies):
                        return
                    body = bodies[next_i]
                next_i += 1
                t0 = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"Content-Type": "image/jpeg"}) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, errors


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the server process and by its decoder processes."""
    proc = psutil.Process(pid)
    own = sum(proc.cpu_times()[:2])
    kids = 0.0
    for child in proc.children(recursive=True):
        try:
            kids += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return own, kids


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) * 1000


async def store_ok_verdicts(db_url: str, bodies: list[bytes]) -> None:
    from attestd.db.engine import create_engine
    from attestd.db.store import Store
    from scanner import sha256_hex

    engine = create_engine(db_url)
    store = Store(engine)
    for b in bodies:
        hashes = await store.get_hashes(sha256_hex(b))
        assert hashes is not None, "the new-image round should have stored every image"
        await store.record_verdict(hashes, "ok", "human_review", "bench")
    await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-per-round", type=int, default=250)
    ap.add_argument("--known-seconds", type=float, default=8.0)
    args = ap.parse_args()

    print(f"machine: {describe()}")
    total_new = args.rounds * args.new_per_round
    t0 = time.perf_counter()
    with ProcessPoolExecutor() as ex:
        bodies = list(ex.map(photo, range(total_new), chunksize=16))
    sizes = [len(b) for b in bodies]
    print(f"images: {total_new} distinct 1280x960 JPEGs, median {statistics.median(sizes) / 1024:.0f} KB"
          f" (made in {time.perf_counter() - t0:.0f} s)")

    with running_node(policy__on_unknown="accept") as node:
        server, db_url = node.process, node.db_url
        url = f"{node.base}/api/v1/scan/IPADDR"
        asyncio.run(load(url, [photo(10_000 + i) for i in range(32)], 4, None))  # warm-up

        new_rates, new_p99 = [], []
        for r in range(args.rounds):
            chunk = bodies[r * args.new_per_round:(r + 1) * args.new_per_round]
            cpu0 = cpu_seconds(server.pid)
            rate, lat, errs = asyncio.run(load(url, chunk, args.concurrency, None))
            cpu1 = cpu_seconds(server.pid)
            assert errs == 0, f"{errs} checks failed"
            new_rates.append(rate)
            new_p99.append(pct(lat, 99))
            print(f"  new   round {r + 1}: {rate:7.1f} checks/s  p50 {pct(lat, 50):6.1f} ms"
                  f"  p99 {pct(lat, 99):6.1f} ms  CPU per check: server "
                  f"{(cpu1[0] - cpu0[0]) / len(chunk) * 1000:.1f} ms, decoders "
                  f"{(cpu1[1] - cpu0[1]) / len(chunk) * 1000:.1f} ms")

        asyncio.run(store_ok_verdicts(db_url, bodies))
        known_rates, known_p99, known_p50 = [], [], []
        for r in range(args.rounds):
            cpu0 = cpu_seconds(server.pid)
            rate, lat, errs = asyncio.run(load(url, bodies, args.concurrency,
                                               args.known_seconds))
            cpu1 = cpu_seconds(server.pid)
            assert errs == 0, f"{errs} checks failed"
            known_rates.append(rate)
            known_p99.append(pct(lat, 99))
            known_p50.append(pct(lat, 50))
            print(f"  known round {r + 1}: {rate:7.1f} checks/s  p50 {pct(lat, 50):6.1f} ms"
                  f"  p99 {pct(lat, 99):6.1f} ms  CPU per check: server "
                  f"{(cpu1[0] - cpu0[0]) / len(lat) * 1000:.2f} ms")

    known_rate, known_p99v = statistics.median(known_rates), statistics.median(known_p99)
    new_rate = statistics.median(new_rates)
    known_met = known_rate >= 400 and known_p99v <= 60
    print(f"known images: median {known_rate:.0f} checks/s, median p99 {known_p99v:.1f} ms "
          f"(target >= 400/s, p99 <= 60 ms: {'met' if known_met else 'NOT met'})")
    print(f"new images:   median {new_rate:.0f} checks/s, median p99 {statistics.median(new_p99):.0f} ms "
          f"(target >= 60/s: {'met' if new_rate >= 60 else 'NOT met'})")
    print(f"ratio known/new: {known_rate / new_rate:.1f}x; pictrs-safety: <= 1 check/s per "
          "client (1 s polling loop)")


if __name__ == "__main__":
    main()
