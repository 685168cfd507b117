"""The classification worker's loop: claim jobs, decode, classify in batches, post results.

It talks to its node through a ``JobClient``: over HTTP for a remote GPU worker
(``scanner.worker_client``), or directly for the node's own in-process worker; the loop
is the same code either way.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from scanner.classifier import Classification
from scanner.decoding import SUPPORTED_FORMATS, DecodeLimits
from scanner.errors import UnreadableImage
from scanner.hashes import sha256_hex
from scanner.video import looks_like_video, sample_video

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """A classification job a node handed out: its id and the image's sha256."""

    id: int
    sha256: str


class JobClient(Protocol):
    """A node's job API as the worker uses it (``scanner.worker_client`` is one)."""

    async def claim(self, max_jobs: int, wait_s: float) -> list[Job]:
        """Up to ``max_jobs`` jobs, waiting up to ``wait_s`` for one to come."""
        ...

    async def image(self, job: Job) -> bytes:
        """The job's image bytes."""
        ...

    async def result(self, job: Job, result: Classification) -> None:
        """Return the job's verdict."""
        ...

    async def fail(self, job: Job, error: str) -> None:
        """Report that the job could not be classified, and why."""
        ...

    async def release(self, jobs: Sequence[Job]) -> None:
        """Hand claimed jobs back unworked (the worker is stopping)."""
        ...


class WorkerUnavailable(Exception):
    """The node could not be reached; the loop backs off and tries again."""


def image_for_classification(data: bytes, sha256: str, limits: DecodeLimits) -> Image.Image:
    """Check the bytes are the job's (sha256), decode within the same limits as hashing,
    and return the first frame in its own mode (palette, 1-bit, RGBA, CMYK…): the classifier's
    transform resizes before it converts to RGB, as horde-safety's own path does, and
    converting here first would shift scores. Raises UnreadableImage.
    """
    if sha256_hex(data) != sha256:
        raise UnreadableImage("corrupt", "the image's sha256 does not match the job's")
    if looks_like_video(data):
        *_, frames = sample_video(data, 1, limits.max_pixels)
        return next(iter(frames))
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in SUPPORTED_FORMATS:
                raise UnreadableImage("unsupported", f"{im.format} images are not supported")
            if im.width * im.height > limits.max_pixels:
                raise UnreadableImage("too_large", f"{im.width}x{im.height} is over the pixel limit")
            im.load()
            return im.copy()
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage("corrupt", f"cannot decode for classification: {exc}") from None


Classify = Callable[[list[Image.Image]], list[Classification]]


async def run_worker(client: JobClient, classify: Classify,
                     *, batch: int, stop: asyncio.Event, wait_s: float = 20.0,
                     limits: DecodeLimits | None = None, max_backoff_s: float = 60.0,
                     turn: asyncio.Lock | None = None) -> int:
    """Work until ``stop`` is set; returns how many jobs it finished.

    On stop, the batch in hand is finished and anything claimed but not done is released.
    ``turn``, shared by the loops of several nodes, lets one model classify for all of them.
    """
    limits = limits or DecodeLimits()
    turn = turn or asyncio.Lock()
    done = 0
    backoff = 1.0
    while not stop.is_set():
        try:
            jobs = await client.claim(batch, wait_s)
            backoff = 1.0
        except WorkerUnavailable as exc:
            log.warning("node unreachable (%s); retrying in %.0f s", exc, backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(max_backoff_s, backoff * 2)
            continue
        if not jobs:
            continue
        pending = list(jobs)
        try:
            images: list[Image.Image] = []
            ready: list[Job] = []
            for job in jobs:
                try:
                    data = await client.image(job)
                    images.append(await asyncio.to_thread(image_for_classification, data,
                                                          job.sha256, limits))
                    ready.append(job)
                except UnreadableImage as exc:
                    # Kept for a person to review; never deleted for being unreadable.
                    await client.fail(job, exc.reason)
                    pending.remove(job)
            if ready:
                # One batch on the model at a time (its batch state is not thread-safe);
                # the lock hands turns out first come, first served, so nodes alternate.
                async with turn:
                    results = await asyncio.to_thread(classify, images)
                for job, res in zip(ready, results, strict=True):
                    await client.result(job, res)
                    pending.remove(job)
                    done += 1
        except WorkerUnavailable as exc:
            log.warning("lost the node mid-batch (%s); leases will expire and be re-queued", exc)
        finally:
            if pending:
                try:
                    await client.release(pending)
                except WorkerUnavailable:
                    pass
    return done


async def run_workers(clients: Sequence[JobClient], classify: Classify, *, batch: int,
                      stop: asyncio.Event, **kw: Any) -> list[int]:
    """One loop per node around one model, taking turns batch by batch; returns each
    node's finished jobs, in order. When one loop fails (a refused token), the others
    finish their batch in hand and give back the rest, then the error is raised.
    """
    turn = asyncio.Lock()
    inner = asyncio.Event()
    tasks = [asyncio.create_task(run_worker(c, classify, batch=batch, stop=inner, turn=turn,
                                            **kw)) for c in clients]
    stopper = asyncio.create_task(stop.wait())
    try:
        # A loop ends only on stop or an error: either way, the rest finish cleanly.
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        inner.set()
        stopper.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for o in outcomes:
        if isinstance(o, BaseException):
            raise o
    return [int(o) for o in outcomes]  # type: ignore[arg-type]
