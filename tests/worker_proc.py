"""A remote worker process for tests: the real loop and HTTP client, with a tiny
random-weight open_clip model (built here) instead of downloaded weights."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

import aiohttp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--slow", type=float, default=0.0, help="seconds to sleep per batch")
    args = ap.parse_args()

    from scanner.classifier.clip import ClipClassifier, ClipSettings
    from scanner.worker import run_worker
    from scanner.worker_client import HttpJobClient
    from tests.unit.test_classifier import TINY, tiny_model

    model, preprocess, tokenizer = tiny_model()
    clf = ClipClassifier(ClipSettings(model=TINY, pretrained="none", allow_random_weights=True,
                                      device="cpu", batch_size=args.batch),
                         model=model, preprocess=preprocess, tokenizer=tokenizer)

    def classify(images):  # type: ignore[no-untyped-def]
        if args.slow:
            time.sleep(args.slow)
        return clf.classify_batch(images)

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with aiohttp.ClientSession() as session:
            print("ready", flush=True)
            done = await run_worker(HttpJobClient(session, args.node, args.token), classify,
                                    batch=args.batch, stop=stop, wait_s=2)
            print(f"done {done}", flush=True)

    asyncio.run(go())


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
