"""The node's own worker: the same loop as a remote one, without HTTP in between."""

from __future__ import annotations

from collections.abc import Sequence

from attestd.jobs.queue import JobQueue
from scanner.classifier import Classification
from scanner.errors import UnreadableImage
from scanner.worker import Job

IN_NODE = "in-node"


class LocalJobClient:
    def __init__(self, queue: JobQueue, name: str = IN_NODE) -> None:
        self.queue = queue
        self.name = name

    async def claim(self, max_jobs: int, wait_s: float) -> list[Job]:
        return [Job(j.id, j.sha256) for j in await self.queue.claim(self.name, max_jobs, wait_s)]

    async def image(self, job: Job) -> bytes:
        data = await self.queue.blobs.get(job.sha256)
        if data is None:
            raise UnreadableImage("corrupt", f"the image of job {job.id} is no longer kept")
        return data

    async def result(self, job: Job, result: Classification) -> None:
        await self.queue.complete(self.name, job.id, result)

    async def fail(self, job: Job, error: str) -> None:
        await self.queue.fail(self.name, job.id, error)

    async def release(self, jobs: Sequence[Job]) -> None:
        await self.queue.jobs.release(self.name, [j.id for j in jobs])
