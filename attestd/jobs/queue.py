"""The job queue as the node uses it: submit an image, wait (woken, never polling) for
its verdict, and the operations the worker API and the in-node worker call."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.blobs import Blobs
from attestd.db.store import Store
from attestd.jobs.store import ClaimedJob, CompleteOutcome, JobStore
from attestd.jobs.wakeups import POLL_S_UNLISTENED, Wakeups
from attestd.model import Verdict
from attestd.review import ReviewQueue
from attestd.trust import job_is_moot, weigh_claims
from scanner import ImageHashes
from scanner.classifier import Classification

log = logging.getLogger(__name__)


class Arrival(Protocol):
    """What a classifier result brings about besides the verdict (review routing,
    publishing): attestd.verdicts.VerdictArrival, given to the queue by the wiring. Its
    ``prepare`` result is handed back to the other steps as it is."""

    async def prepare(self, sha256: str, label: str, model: str | None,
                      hashes: ImageHashes | None, detail: dict[str, Any], blobs: Blobs
                      ) -> Any: ...

    async def record_in(self, conn: AsyncConnection, verdict: Verdict,
                        hashes: ImageHashes | None, detail: dict[str, Any],
                        arriving: Any) -> str | None: ...

    async def arrived(self, verdict: Verdict, kind: str | None, arriving: Any,
                      blobs: Blobs) -> None: ...

    async def abandoned(self, arriving: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class JobSettings:
    lease_s: float = 120.0
    max_claim: int = 64
    max_wait_s: float = 30.0
    quorum: int = 1  # federation.bad_quorum


class JobQueue:
    def __init__(self, store: Store, jobs: JobStore, blobs: Blobs,
                 settings: JobSettings = JobSettings(), wakeups: Wakeups | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.blobs = blobs
        self.settings = settings
        self._queued = asyncio.Condition()
        self._waiters: dict[str, list[asyncio.Future[Verdict]]] = {}
        # What a recorded verdict brings about (review item, attestation), in its
        # transaction; set by open_services.
        self.arrival: Arrival | None = None
        # Other processes' verdicts and jobs (PostgreSQL); without, waiters poll briefly.
        self.wakeups = wakeups
        if wakeups is not None:
            wakeups.on_verdict = self._verdict_elsewhere
            wakeups.on_job = self._job_elsewhere
        self._looking: set[asyncio.Task[None]] = set()
        # Where a job no worker could classify goes, with its bytes, for a human.
        self.review: ReviewQueue | None = None
        # Set when the node shuts down: long-polls answer at once instead of holding the
        # shutdown for up to max_wait_s.
        self._stopping = False

    async def stop_waiting(self) -> None:
        """End every long-poll now (they answer no jobs), and any later one at once."""
        self._stopping = True
        async with self._queued:
            self._queued.notify_all()

    async def submit(self, sha256: str, data: bytes, reason: str,
                     hashes: ImageHashes | None = None) -> None:
        """Keep the bytes and queue the image (with its ``hashes``, saved in the job's
        commit); wakes claimers waiting in this process."""
        await self.blobs.put(sha256, data)
        await self.jobs.enqueue(sha256, reason, hashes)
        async with self._queued:
            self._queued.notify_all()
        if self.wakeups is not None:
            await self.wakeups.job_queued()

    async def wait_for_verdict(self, sha256: str, timeout_s: float) -> Verdict | None:
        """The verdict for ``sha256`` once a worker posts it (through any node process
        on the same database), or None at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        fut: asyncio.Future[Verdict] = loop.create_future()
        self._waiters.setdefault(sha256, []).append(fut)
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut),
                                                  min(remaining, self._poll_s()))
                except TimeoutError:
                    # Nothing woke us: a lost notification, or no listener (SQLite).
                    verdict = await self.stored_verdict(sha256)
                    if verdict is not None:
                        return verdict
            return None
        finally:
            waiters = self._waiters.get(sha256, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(sha256, None)

    async def claim(self, worker: str, max_jobs: int, wait_s: float) -> list[ClaimedJob]:
        """Long-poll: lease up to ``max_jobs``, waiting up to ``wait_s`` for any to appear.

        Woken at once by jobs queued in this process, and on PostgreSQL by jobs queued by
        any other; otherwise those are seen on a short poll.
        """
        max_jobs = max(1, min(max_jobs, self.settings.max_claim))
        deadline = asyncio.get_running_loop().time() + max(0.0, min(wait_s, self.settings.max_wait_s))
        while True:
            claimed = await self._unjudged(
                worker, await self.jobs.claim(worker, max_jobs, self.settings.lease_s))
            remaining = deadline - asyncio.get_running_loop().time()
            if claimed or remaining <= 0 or self._stopping:
                return claimed
            async with self._queued:
                try:
                    # At least 1 s: on SQLite an empty claim is still a write.
                    await asyncio.wait_for(self._queued.wait(),
                                           min(max(self._poll_s(), 1.0), remaining))
                except TimeoutError:
                    pass

    async def _unjudged(self, worker: str, claimed: list[ClaimedJob]) -> list[ClaimedJob]:
        """Drop jobs whose image was judged while they waited (our verdict, or a trusted
        peer's attestation that decides it): the GPU is spent only on what is new."""
        keep = []
        for job in claimed:
            lookup = await self.store.lookup(job.sha256)
            judged = lookup.verdict is not None or lookup.override is not None
            peers = (weigh_claims(lookup.claims, quorum=self.settings.quorum)
                     if lookup.claims else None)
            if job_is_moot(judged, peers):
                how = ("judged meanwhile by " + (peers.claim.attestation if peers and not judged
                                                 else "this node"))
                await self.jobs.settle(worker, job.id, how)
                await self.blobs.delete(job.sha256)
                log.debug("job %s: %s", job.id, how)
            else:
                keep.append(job)
        return keep

    async def complete(self, worker: str, job_id: int,
                       result: Classification) -> tuple[CompleteOutcome, Verdict | None]:
        """Record a worker's result as this node's verdict and wake whoever waits for it.

        One transaction: the job done, the verdict and its index entries, and what
        ``arrival`` adds (review item, attestation, deliveries). If it fails the job stays
        leased and the worker's retry records it."""
        arrival = self.arrival
        job = await self.jobs.get(job_id)
        hashes: ImageHashes | None = None
        arriving: Any = None
        if job is not None and job.state == "leased" and job.lease_owner == worker:
            hashes = await self.store.get_hashes(job.sha256)
            if arrival is not None:
                arriving = await arrival.prepare(
                    job.sha256, result.label, result.model_id, hashes,
                    self._detail(worker, result, job.reason), self.blobs)
        kind: str | None = None

        async def record(conn: AsyncConnection, sha: str, reason: str | None) -> Verdict:
            nonlocal hashes, kind
            if hashes is None:
                hashes = await self.store.hashes_in(conn, sha)
            detail = self._detail(worker, result, reason)
            verdict = await self.store.insert_verdict(
                conn, sha, result.label, "classifier", f"classifier:{result.model_id}",
                model=result.model_id, detail=detail, hashes=hashes)
            if arrival is not None:
                kind = await arrival.record_in(conn, verdict, hashes, detail, arriving)
            return verdict

        outcome, sha, _, verdict = await self.jobs.complete(worker, job_id, result.label, record)
        if outcome != "done" or verdict is None:
            if arrival is not None and arriving is not None:
                await arrival.abandoned(arriving)
            if outcome == "repeat":  # the first answer may have died before the bytes went
                await self.blobs.delete(sha)
            return outcome, None
        if arrival is not None:
            # Before the bytes go: a review item's copy comes from them.
            await arrival.arrived(verdict, kind, arriving, self.blobs)
        await self.blobs.delete(sha)
        await self._wake_waiters(sha, verdict)
        return "done", verdict

    async def _wake_waiters(self, sha: str, verdict: Verdict) -> None:
        """Checks waiting for ``sha`` here, and in other processes through the database."""
        for fut in self._waiters.pop(sha, []):
            if not fut.done():
                fut.set_result(verdict)
        if self.wakeups is not None:
            await self.wakeups.verdict_stored(sha)

    @staticmethod
    def _detail(worker: str, result: Classification, reason: str | None) -> dict[str, Any]:
        return {"scores": result.scores, "publishable": result.publishable, "worker": worker,
                "job_reason": reason}

    async def fail(self, worker: str, job_id: int, error: str) -> bool:
        """A worker could not classify the image: the job is marked failed and the image
        goes to the review queue with its bytes, so a human decides what no model did.
        False if the job is not leased to ``worker``."""
        sha = await self.jobs.sha256_of(job_id)
        if sha is None:
            return False
        if self.review is None:  # tools, tests: the bytes stay where they are
            return await self.jobs.fail(worker, job_id, error)
        data = await self.blobs.get(sha)
        if data is not None:
            await self.review.keep_copy(sha, data)
        # The job failed and its review item are one commit: a failure never leaves an
        # image that nobody classified and nobody will review.
        async with self.store.writing() as conn:
            failed = await self.jobs.fail_in(conn, worker, job_id, error)
            if failed:
                kept = await self.review.add_in(
                    conn, sha, "failed", f"worker {worker} could not classify it: {error}",
                    size=None if data is None else len(data))
        if failed:
            await self.blobs.delete(sha)
            if data is not None and not kept:
                await self.review.drop_copy(sha)  # no room for it (the item says so)
        elif data is not None and ((item := await self.review.get(sha)) is None
                                   or item.resolved_at is not None):
            await self.review.drop_copy(sha)  # kept for an item that was not queued
        return failed

    async def stored_verdict(self, sha256: str) -> Verdict | None:
        """The newest live verdict for ``sha256`` as the database has it now (not cached)."""
        self.store.forget(sha256)
        return (await self.store.lookup(sha256)).verdict

    def _poll_s(self) -> float:
        return self.wakeups.poll_s if self.wakeups is not None else POLL_S_UNLISTENED

    def _verdict_elsewhere(self, sha256: str | None) -> None:
        """A verdict was stored (by any process; None: maybe several): wake its waiters."""
        shas = [sha256] if sha256 is not None else list(self._waiters)
        for sha in shas:
            if self._waiters.get(sha):
                task = asyncio.create_task(self._look_again(sha))
                self._looking.add(task)
                task.add_done_callback(self._looking.discard)

    async def _look_again(self, sha256: str) -> None:
        try:
            verdict = await self.stored_verdict(sha256)
        except Exception:  # the waiter's own poll reads it again
            log.warning("could not read the verdict for %s", sha256, exc_info=True)
            return
        if verdict is not None:
            for fut in self._waiters.get(sha256, []):
                if not fut.done():
                    fut.set_result(verdict)

    def _job_elsewhere(self) -> None:
        task = asyncio.create_task(self._wake_claimers())
        self._looking.add(task)
        task.add_done_callback(self._looking.discard)

    async def _wake_claimers(self) -> None:
        async with self._queued:
            self._queued.notify_all()
