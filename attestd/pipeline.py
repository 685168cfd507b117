"""The check pipeline for one image (DESIGN.md, "The check pipeline")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from attestd.bad_hashes import BadHashIndex
from attestd.blobs import BlobStore
from attestd.config import PolicyConfig
from attestd.db.store import Store
from attestd.decisions import decide_known, decide_unknown
from attestd.jobs.queue import JobQueue
from attestd.metrics import Metrics
from attestd.model import AuditEntry, CheckOutcome
from attestd.write_behind import WriteBehind
from scanner import ImageHashes, UnreadableImage, sha256_hex
from scanner.classifier import Classifier

log = logging.getLogger(__name__)

Hasher = Callable[[bytes], Awaitable[ImageHashes]]


class CheckPipeline:
    """Decides accept or reject for image bytes, recording why."""

    def __init__(self, *, store: Store, index: BadHashIndex, hasher: Hasher,
                 policy: PolicyConfig, writes: WriteBehind, blobs: BlobStore,
                 metrics: Metrics | None = None, classifier: Classifier | None = None,
                 jobs: JobQueue | None = None, classify_unknown: bool = False) -> None:
        self.store = store
        self.index = index
        self.hasher = hasher
        self.policy = policy
        self.writes = writes
        self.blobs = blobs
        self.metrics = metrics
        self.classifier = classifier
        # With a classifier in the node or remote workers, unknown images become jobs and
        # a check waits for the verdict within its deadline.
        self.jobs = jobs
        self.classify_unknown = classify_unknown and jobs is not None

    async def check(self, data: bytes, *, actor: str) -> CheckOutcome:
        """Check ``data`` for ``actor`` (a pict-rs caller, the CLI, a sweep)."""
        started = time.perf_counter()
        sha = sha256_hex(data)
        try:
            async with asyncio.timeout(self.policy.deadline_s):
                outcome = await self._decide(sha, data)
        except TimeoutError:
            why = f"no verdict within policy.deadline_s = {self.policy.deadline_s:g} s"
            outcome = await self._unknown(sha, data, None, why)
        self.writes.audit(AuditEntry(
            actor=actor, action="check", sha256=sha, decision=outcome.decision,
            label=outcome.label, source=outcome.source, reason=outcome.reason,
            detail=outcome.detail or None))
        if self.metrics is not None:
            self.metrics.checks.labels(outcome.decision, outcome.label or "unknown",
                                       outcome.source.split(":", 1)[0]).inc()
            self.metrics.check_seconds.observe(time.perf_counter() - started)
        return outcome

    async def _decide(self, sha: str, data: bytes) -> CheckOutcome:
        lookup = await self.store.lookup(sha)
        hashes = lookup.hashes
        if hashes is None and lookup.override is None:
            try:
                hashes = await self.hasher(data)
            except UnreadableImage as exc:
                return CheckOutcome(sha, self.policy.actions.unreadable, "unreadable",
                                    "decoder", exc.reason, unreadable_kind=exc.kind)
            self.writes.image(hashes)
            lookup = type(lookup)(hashes=hashes, override=lookup.override, verdict=lookup.verdict)
        matches = self.index.match(hashes.frames) if hashes is not None else []
        outcome = decide_known(sha, lookup, matches, self.policy.actions)
        if outcome is not None:
            return outcome
        assert hashes is not None
        if self.classifier is not None:
            return await self._classify(sha, data, hashes)
        if self.classify_unknown:
            assert self.jobs is not None
            await self.jobs.submit(sha, data, "unknown")
            verdict = await self.jobs.wait_for_verdict(sha, self.policy.deadline_s)
            if verdict is not None:
                return CheckOutcome(sha, self.policy.actions.for_label(verdict.label),
                                    verdict.label, f"verdict:{verdict.id}",
                                    f"classified {verdict.label} by {verdict.source}",
                                    hashes=hashes)
            return await self._unknown(sha, data, hashes, "no classifier answered in time")
        return await self._unknown(sha, data, hashes, "nobody has judged this image and no "
                                   "classifier is enabled")

    async def _classify(self, sha: str, data: bytes, hashes: ImageHashes) -> CheckOutcome:
        assert self.classifier is not None
        result = await self.classifier.classify(data, hashes)
        verdict = await self.store.record_verdict(
            hashes, result.label, "classifier", f"classifier:{result.model_id}",
            model=result.model_id, detail={"scores": result.scores,
                                           "publishable": result.publishable})
        return CheckOutcome(sha, self.policy.actions.for_label(result.label), result.label,
                            f"verdict:{verdict.id}",
                            f"classified {result.label} by {result.model_id}", hashes=hashes)

    async def _unknown(self, sha: str, data: bytes, hashes: ImageHashes | None,
                       why: str) -> CheckOutcome:
        if self.policy.on_unknown == "accept_and_rescan":
            # Keep the bytes so a classifier can judge the image once one is free.
            if self.jobs is not None:
                await self.jobs.submit(sha, data, "accept_and_rescan")
            else:
                await asyncio.to_thread(self.blobs.put, sha, data)
                await self.store.enqueue_job(sha, "accept_and_rescan")
        return decide_unknown(sha, self.policy, why, hashes)
