"""Classifier throughput by batch size: open_clip image features + horde-safety scoring.

On CPU here with random weights (ViT-B-32 by default: the issue's bar), and on a GPU with
the configured model (ViT-L-14, fp16) when one is present. Prints images/s per batch
size and the ratio of the best batched run to one image at a time, medians of rounds.

Bar (issue 4, CPU, ViT-B-32 random weights): batching >= 1.5 x one-at-a-time.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402
from tests.images import scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none", help='"none" = random weights')
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch

    from scanner.classifier.clip import ClipClassifier, ClipSettings, pick_device

    print(f"machine: {describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    device = pick_device(args.device)
    if device == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(0)}")
    images = [scene(i, (640, 480)) for i in range(args.images)]
    clf = ClipClassifier(ClipSettings(model=args.model, pretrained=args.pretrained,
                                      device=device, batch_size=1,
                                      allow_random_weights=args.pretrained == "none"))
    print(f"model: {clf.model_id} on {device}")
    clf.classify_batch(images[:4])  # warm-up: text features, kernels

    def rate(fn: object) -> float:
        runs = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            if device == "cuda":
                torch.cuda.synchronize()
            runs.append(len(images) / (time.perf_counter() - t0))
        return statistics.median(runs)

    single = rate(lambda: clf.classify_one_at_a_time(images))
    print(f"  one at a time (horde-safety computes each image's features): {single:6.2f} images/s")
    best = single
    for size in (int(b) for b in args.batches.split(",")):
        clf.settings = dataclasses.replace(clf.settings, batch_size=size)
        r = rate(lambda: clf.classify_batch(images))
        best = max(best, r)
        print(f"  batch {size:3d}: {r:6.2f} images/s ({r / single:.2f}x one at a time)")
    print(f"best batched / one at a time: {best / single:.2f}x "
          f"(target >= 1.5x: {'met' if best / single >= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
