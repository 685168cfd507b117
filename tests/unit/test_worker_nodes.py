"""One worker loop serving several nodes: one model, turns taken batch by batch."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence

import pytest
from PIL import Image, PngImagePlugin

from scanner.classifier import Classification
from scanner.hashes import sha256_hex
from scanner.worker import Job, run_workers
from scanner.worker_client import WorkerAuthError, pair_nodes_with_tokens


class FakeNode:
    """A node with ``n`` queued jobs whose images carry its name (a PNG text chunk), so
    the test sees whose batch the model runs; it records what it is told."""

    def __init__(self, name: str, n: int, refuse: bool = False) -> None:
        self.name, self.refuse = name, refuse
        self.queue = list(range(n))
        meta = PngImagePlugin.PngInfo()
        meta.add_text("node", name)
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, "PNG", pnginfo=meta)
        self.data = buf.getvalue()
        self.results: list[int] = []
        self.released: list[int] = []

    async def claim(self, max_jobs: int, wait_s: float) -> list[Job]:
        if self.refuse:
            raise WorkerAuthError(f"{self.name}: unknown token")
        ids, self.queue = self.queue[:max_jobs], self.queue[max_jobs:]
        await asyncio.sleep(0.01 if not ids else 0)
        return [Job(i, sha256_hex(self.data)) for i in ids]

    async def image(self, job: Job) -> bytes:
        return self.data

    async def result(self, job: Job, result: Classification) -> None:
        self.results.append(job.id)

    async def fail(self, job: Job, error: str) -> None:
        raise AssertionError(error)

    async def release(self, jobs: Sequence[Job]) -> None:
        self.released.extend(j.id for j in jobs)


async def test_one_model_takes_turns_between_nodes_and_reports_to_each() -> None:
    a, b = FakeNode("a", 300), FakeNode("b", 300)
    order: list[str] = []
    busy = 0
    stop = asyncio.Event()

    def classify(images: list[Image.Image]) -> list[Classification]:
        nonlocal busy
        busy += 1
        assert busy == 1, "two batches on the one model at once"
        order.append(images[0].info["node"])
        # The model is the slow part (as on a GPU with real weights): both nodes' next
        # batches are decoded and waiting for their turn, the case the fairness is for.
        time.sleep(0.2)
        busy -= 1
        if len(order) == 10:
            stop.set()
        return [Classification("ok", "one-model") for _ in images]

    done = await asyncio.wait_for(run_workers([a, b], classify, batch=3, stop=stop), 60)
    # Each node's results went to that node, and what it had claimed beyond them back to it.
    assert done == [len(a.results), len(b.results)]
    assert a.results == list(range(len(a.results))) and b.results == list(range(len(b.results)))
    # Fair share: with both nodes busy, turns are first come, first served, so neither
    # node waits while the other gets a second turn in a row for long.
    assert abs(order.count("a") - order.count("b")) <= 1, order
    assert "aaa" not in "".join(order) and "bbb" not in "".join(order), order


async def test_a_refused_token_stops_every_loop_and_gives_jobs_back() -> None:
    good, bad = FakeNode("good", 1000), FakeNode("bad", 0, refuse=True)
    stop = asyncio.Event()
    with pytest.raises(WorkerAuthError, match="bad"):
        await asyncio.wait_for(run_workers(
            [good, bad], lambda ims: [Classification("ok", "m") for _ in ims],
            batch=4, stop=stop), 60)
    assert len(good.results) < 1000  # it stopped rather than running on alone


def test_each_node_needs_its_own_token() -> None:
    assert pair_nodes_with_tokens(["https://a", "https://b"], ["t1", " t2\n"]) == [
        ("https://a", "t1"), ("https://b", "t2")]
    with pytest.raises(ValueError, match="2 --node URLs but 1 tokens"):
        pair_nodes_with_tokens(["https://a", "https://b"], ["t1"])
    with pytest.raises(ValueError, match="twice"):
        pair_nodes_with_tokens(["https://a", "https://a/"], ["t1", "t2"])
    with pytest.raises(ValueError, match="empty"):
        pair_nodes_with_tokens(["https://a"], [" "])
