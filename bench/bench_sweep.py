"""Storage sweep speed against moto's S3 server (issue 7).

Fills a bucket on moto's server (its own process, on loopback) with N distinct JPEGs
(640 x 480, keys laid out as pict-rs >= 0.5.7 makes them), then, with the node's real
code on SQLite and the classifier off:

1. a first ``sweep --all``: every object downloaded and hashed (objects/s);
2. a second ``sweep --all``: every object already known (objects/s, and the ratio);
3. continuous loops after 0, 100 and 1 000 new uploads: listing calls and seconds per
   loop, beside what one full listing of the bucket costs.

Bar: first pass >= 60 objects/s on 2 cores; second >= 5 x the first; an incremental
loop's cost grows with the new objects, not with the bucket.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402

BASES = 200


def _bases() -> list[bytes]:
    from tests.images import scene
    out = []
    for seed in range(BASES):
        buf = io.BytesIO()
        scene(seed, (660, 500)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


_BASE_CACHE: list[Any] = []


def _make(args: tuple[int, list[bytes]]) -> bytes:
    # Distinct bytes and hashes per object: a base scene, shifted and re-encoded.
    from PIL import Image
    i, bases = args
    if not _BASE_CACHE:
        _BASE_CACHE.extend(Image.open(io.BytesIO(b)).convert("RGB") for b in bases)
    img = _BASE_CACHE[i % BASES]
    dx, dy = (i // BASES) % 20, (i // (BASES * 20)) % 20
    buf = io.BytesIO()
    img.crop((dx, dy, dx + 640, dy + 480)).save(buf, "JPEG", quality=80 + (i // 4000) % 15)
    return buf.getvalue()


def make_images(n: int, start: int = 0) -> list[bytes]:
    bases = _bases()
    with ProcessPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(_make, [(start + i, bases) for i in range(n)], chunksize=64))


def key_at(at: datetime) -> str:
    from attestd.sweep.model import key_for_time
    return key_for_time(at) + f"{uuid.uuid4()}.jpg"


def upload(client: Any, bucket: str, images: list[bytes], newest: datetime,
           step: timedelta = timedelta(seconds=1)) -> None:
    # Keys are made at upload time, so each batch is newer than everything before it.
    keys = [key_at(newest - step * (len(images) - i)) for i in range(len(images))]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                      zip(keys, images, strict=True)))


def start_moto(port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except Exception:
            time.sleep(0.2)
    raise SystemExit("moto_server did not start")


def run(args: argparse.Namespace) -> None:
    import boto3

    from attestd.config import load_config
    from tests.conftest import free_port, migrate

    port = free_port()
    moto = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        bucket = "bench-sweep"
        client.create_bucket(Bucket=bucket)
        t0 = time.perf_counter()
        images = make_images(args.objects)
        t1 = time.perf_counter()
        upload(client, bucket, images, datetime.now(UTC) - timedelta(hours=1))
        t2 = time.perf_counter()
        print(f"bucket: {args.objects} JPEGs 640x480, median {sorted(map(len, images))[len(images) // 2]} "
              f"bytes; made in {t1 - t0:.0f} s, uploaded in {t2 - t1:.0f} s")
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/attestd.db"
            migrate(url)
            env = {"ATTESTD_DATABASE__URL": url, "ATTESTD_NODE__DATA_DIR": f"{tmp}/data",
                   "ATTESTD_SWEEP__SOURCE": "s3", "ATTESTD_SWEEP__S3__ENDPOINT_URL": endpoint,
                   "ATTESTD_SWEEP__S3__BUCKET": bucket,
                   "ATTESTD_SWEEP__S3__ACCESS_KEY_ID": "bench",
                   "ATTESTD_SWEEP__S3__SECRET_ACCESS_KEY": "bench",
                   "ATTESTD_SWEEP__CONCURRENCY": str(args.concurrency),
                   "ATTESTD_SWEEP__OVERLAP_S": "60"}
            cfg = load_config(Path(tmp) / "none.toml", env)
            asyncio.run(sweeps(args, cfg, client, bucket))
    finally:
        moto.terminate()
        moto.wait()


async def sweeps(args: argparse.Namespace, cfg: Any, client: Any, bucket: str) -> None:
    from attestd.services import open_services
    from attestd.sweep.runtime import open_sweeper
    from tests.listing_counter import ListingCounter

    async with open_services(cfg, follow_index=False) as services, \
            open_sweeper(cfg, cfg.sweep, services) as sweeper:
        listing = ListingCounter(sweeper.source)
        results = []
        for label in ("first --all (download + hash)", "second --all (all known)"):
            listing.reset()
            started = time.perf_counter()
            s = await sweeper.sweep_all(restart=True)
            took = time.perf_counter() - started
            results.append(s.checked / took)
            print(f"{label}: {s.checked} objects in {took:.1f} s = {s.checked / took:.0f} "
                  f"objects/s; downloaded {s.downloaded}; listing calls {listing.calls}")
        print(f"second / first: {results[1] / results[0]:.1f} x")
        listing.reset()
        started = time.perf_counter()
        n, cursor = 0, None
        while True:
            p = await sweeper.source.page(cursor)
            n += len(p.objects)
            cursor = p.next_cursor
            if cursor is None:
                break
        full_s = time.perf_counter() - started
        print(f"one full listing of the bucket: {listing.calls} calls, {full_s:.2f} s ({n} keys)")
        seed = args.objects
        for new in (0, 100, 1000):
            fresh = make_images(new, start=seed) if new else []
            seed += new
            upload(client, bucket, fresh, datetime.now(UTC), timedelta(milliseconds=1))
            listing.reset()
            started = time.perf_counter()
            s = await sweeper.sweep_new()
            took = time.perf_counter() - started
            print(f"continuous loop, {new:>4} new objects: {listing.calls} listing calls, "
                  f"{took:.2f} s, checked {s.checked}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    print(describe())
    print("classifier off: first pass is download + sha256 + PDQ + pHash through the node's "
          "decoder pool; moto's server runs on the same machine")
    run(args)


if __name__ == "__main__":
    main()
