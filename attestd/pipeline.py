"""The check pipeline for one image (docs/architecture.md, "One check, end to end")."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from attestd.bad_hashes import BadHashIndex
from attestd.config import PolicyConfig
from attestd.db.store import Store
from attestd.decisions import ATTESTATION_SOURCE, decide_known, decide_unhashable, decide_unknown
from attestd.jobs.queue import JobQueue
from attestd.metrics import Metrics
from attestd.model import AuditEntry, CheckOutcome, Lookup
from attestd.review import ReviewQueue
from attestd.write_behind import WriteBehind
from scanner import ImageHashes, UnreadableImage, sha256_hex
from scanner.errors import UNHASHABLE_KINDS

log = logging.getLogger(__name__)

# Images that could not be hashed are remembered this long, and this many, so the next
# try of the same bytes is answered at once instead of costing another slow decode.
_FAILED_TTL_S = 600.0
_FAILED_MAX = 10_000
# The last look before on_unknown runs past the deadline, so it is kept short.
_LAST_LOOK_S = 2.0


class Hasher(Protocol):
    def __call__(self, data: bytes, *, caller: str) -> Awaitable[ImageHashes]: ...


@dataclasses.dataclass
class _Progress:
    """How far one check got, for the deadline to say what it cut short."""

    hashed: bool = False
    # What was known before decoding (exact sha256 / md5 list hits among it).
    lookup: Lookup | None = None


class CheckPipeline:
    """Decides accept or reject for image bytes, recording why."""

    def __init__(self, *, store: Store, index: BadHashIndex, hasher: Hasher,
                 policy: PolicyConfig, writes: WriteBehind, jobs: JobQueue,
                 metrics: Metrics | None = None, classify_unknown: bool = False,
                 review: ReviewQueue | None = None, quorum: int = 1,
                 current: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.index = index
        self.hasher = hasher
        self.policy = policy
        self.writes = writes
        self.metrics = metrics
        self.jobs = jobs
        self.review = review
        self.quorum = quorum
        # Brings the index and cached look-ups up to what the database has committed
        # (ChangeFollower.ensure_current), before each decision.
        self.current = current
        # With a classifier in the node or remote workers, unknown images become jobs and
        # a check waits for the verdict within its deadline (one path for both).
        self.classify_unknown = classify_unknown
        # Hashing in progress, by sha256: a check cut short by its deadline leaves it
        # running, and every check of the same bytes meanwhile waits on the same decode.
        self._hashing: dict[str, asyncio.Future[ImageHashes]] = {}
        self._failed: OrderedDict[str, tuple[float, UnreadableImage]] = OrderedDict()

    async def check(self, data: bytes, *, actor: str, audit: bool = True) -> CheckOutcome:
        """Check ``data`` for ``actor`` (a pict-rs caller, the CLI, a sweep).

        ``audit=False`` is for callers that write the audit entry themselves, in the same
        transaction as their own record of the check (sweeps).
        """
        started = time.perf_counter()
        sha = sha256_hex(data)
        # Cheap next to sha256, and known before decoding: a listed file (HMA md5 /
        # video_md5) is rejected even when the decoder cannot read it.
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        progress = _Progress()
        try:
            async with asyncio.timeout(self.policy.deadline_s):
                outcome = await self._decide(sha, md5, data, actor, progress)
        except TimeoutError:
            if progress.hashed:
                why = f"no verdict within policy.deadline_s = {self.policy.deadline_s:g} s"
                outcome = (await self._decided_meanwhile(sha)
                           or await self._unknown(sha, data, None, why))
            else:
                outcome = (await self._exact_reject(sha, progress.lookup)
                           or await self._unhashable(
                               sha, data, "deadline",
                               f"not hashed within policy.deadline_s = "
                               f"{self.policy.deadline_s:g} s; hashing goes on, and a later "
                               "try of the same bytes is answered from it"))
        if audit:  # the answer waits until its audit entry is committed
            await self.writes.audit_durable(AuditEntry(
                actor=actor, action="check", sha256=sha, decision=outcome.decision,
                label=outcome.label, source=outcome.source, reason=outcome.reason,
                detail=outcome.detail or None))
        self._count(outcome, started)
        return outcome

    async def close(self) -> None:
        """Stop hashing that no check waits for any more (at shutdown)."""
        running = list(self._hashing.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def decide_stored(self, sha: str) -> CheckOutcome | None:
        """Decide an image from what is stored about its sha256, without its bytes.

        None when the bytes are needed: the image was never hashed here, nobody has
        judged it and a classifier could, or it would be accepted while md5 entries are
        listed (only the bytes give its md5). Not audited (the caller records the check).
        """
        started = time.perf_counter()
        await self._current()
        lookup = await self.store.lookup(sha)
        if lookup.hashes is None and lookup.override is None:
            return None
        outcome = await self._decide_known(sha, lookup)
        if outcome is None:
            if self.classify_unknown:
                return None
            outcome = decide_unknown(sha, self.policy, "nobody has judged this image and no "
                                     "classifier is enabled", lookup.hashes)
        if outcome.decision == "accept" and self.index.has_md5_entries:
            return None  # an md5 entry (md5, video_md5) could match the bytes: fetch them
        self._count(outcome, started)
        return outcome

    def _count(self, outcome: CheckOutcome, started: float) -> None:
        if self.metrics is not None:
            self.metrics.checks.labels(outcome.decision, outcome.label or "unknown",
                                       outcome.source.split(":", 1)[0]).inc()
            self.metrics.check_seconds.observe(time.perf_counter() - started)

    async def _decide(self, sha: str, md5: str, data: bytes, actor: str,
                      progress: _Progress) -> CheckOutcome:
        await self._current()
        lookup = await self.store.lookup(sha)
        md5_hit = self.index.match_md5(md5)
        if md5_hit is not None:
            lookup = dataclasses.replace(lookup, md5_hit=md5_hit)
        progress.lookup = lookup
        hashes = lookup.hashes
        if hashes is None and lookup.override is None:
            try:
                hashes = await self._hash(sha, data, actor)
            except UnreadableImage as exc:
                exact = await self._exact_reject(sha, lookup)
                if exact is not None:
                    return exact
                if exc.kind in UNHASHABLE_KINDS:
                    return await self._unhashable(sha, data, exc.kind, exc.reason)
                return CheckOutcome(sha, self.policy.actions.unreadable, "unreadable",
                                    "decoder", exc.reason, unreadable_kind=exc.kind)
            lookup = dataclasses.replace(lookup, hashes=hashes)
        progress.hashed = True
        outcome = await self._decide_known(sha, lookup, data)
        if outcome is not None:
            return outcome
        hashes = lookup.hashes
        assert hashes is not None
        if self.classify_unknown:
            # Shielded: a deadline that ends the check here must not cancel the job, or an
            # image accepted under on_unknown = accept would never be classified.
            await asyncio.shield(self.jobs.submit(sha, data, "unknown", hashes))
            verdict = await self.jobs.wait_for_verdict(sha, self.policy.deadline_s)
            if verdict is not None:
                return CheckOutcome(sha, self.policy.actions.for_label(verdict.label),
                                    verdict.label, f"verdict:{verdict.id}",
                                    f"classified {verdict.label} by {verdict.source}",
                                    hashes=hashes)
            return (await self._decided_meanwhile(sha)
                    or await self._unknown(sha, data, hashes, "no classifier answered in time"))
        return await self._unknown(sha, data, hashes, "nobody has judged this image and no "
                                   "classifier is enabled")

    async def _decide_known(self, sha: str, lookup: Lookup,
                            data: bytes | None = None) -> CheckOutcome | None:
        """Steps 1 to 4 (overrides, verdicts, lists, peers, index); None if nobody judged."""
        hashes = lookup.hashes
        matches = self.index.match(hashes.frames) if hashes is not None else []
        near_ok = self.index.match_ok(hashes.frames) if hashes is not None else []
        # Perceptual matches on peers' attestations are weighed with the peer's current
        # trust (step 3), so they are looked up rather than read from the index alone.
        rows: dict[int, tuple[str, int]] = {}
        for m in [*matches, *near_ok]:
            if m.entry.source.startswith(ATTESTATION_SOURCE):
                rid = int(m.entry.source[len(ATTESTATION_SOURCE):])
                if rid not in rows or m.distance < rows[rid][1]:
                    rows[rid] = (m.kind, m.distance)
        peer_claims = await self.store.claims_for_rows(rows) if rows else []
        outcome = decide_known(sha, lookup, matches, self.policy.actions,
                               peer_claims=peer_claims, quorum=self.quorum)
        if outcome is not None and outcome.detail.get("disputed") and self.review is not None:
            await self.review.add(sha, "disputed", outcome.reason, label=outcome.label, data=data)
        return outcome

    async def _exact_reject(self, sha: str, lookup: Lookup | None) -> CheckOutcome | None:
        """The rejection an exact list hit (sha256 or md5) makes without the pixels, for
        bytes that could not be hashed; None if there is no such hit or it does not reject
        (then the unreadable or unhashable policy decides, as without a list)."""
        if lookup is None or (lookup.list_hit is None and lookup.md5_hit is None):
            return None
        outcome = await self._decide_known(sha, lookup)
        return outcome if outcome is not None and outcome.decision == "reject" else None

    async def _hash(self, sha: str, data: bytes, actor: str) -> ImageHashes:
        """The hashes of ``data``, from the decode already running for these bytes if any.

        Shielded: when the deadline ends the check, hashing goes on and its result is kept
        for the next check of these bytes instead of being thrown away.
        """
        running = self._hashing.get(sha)
        if running is None:
            failed = self._failed.get(sha)
            if failed is not None and time.monotonic() - failed[0] < _FAILED_TTL_S:
                raise UnreadableImage(failed[1].kind, failed[1].reason)
            running = asyncio.ensure_future(self._hash_and_keep(sha, data, actor))
            self._hashing[sha] = running
            running.add_done_callback(functools.partial(self._hashed, sha))
        return await asyncio.shield(running)

    def _hashed(self, sha: str, task: asyncio.Future[ImageHashes]) -> None:
        self._hashing.pop(sha, None)
        if task.cancelled():
            return
        exc = task.exception()  # also marks it retrieved when no check waits any more
        if isinstance(exc, UnreadableImage) and exc.kind != "busy":
            # Decoding is deterministic (a timeout nearly so): the same bytes fail again.
            self._failed[sha] = (time.monotonic(), exc)
            self._failed.move_to_end(sha)
            while len(self._failed) > _FAILED_MAX:
                self._failed.popitem(last=False)
        elif exc is not None and not isinstance(exc, UnreadableImage):
            log.error("hashing %s failed: %s", sha, exc, exc_info=exc)

    async def _hash_and_keep(self, sha: str, data: bytes, actor: str) -> ImageHashes:
        try:
            hashes = await self.hasher(data, caller=actor)
        except UnreadableImage as exc:
            # Here, not in the check: once per decode, even when no check waits any more.
            if self.review is not None and exc.kind != "busy":
                await self.review.add(sha, "unreadable", exc.reason, data=data, caller=actor)
            raise
        self.writes.image(hashes)  # also cached at once, so no later check hashes it again
        return hashes

    async def _current(self) -> None:
        if self.current is None:
            return
        try:
            await self.current()
        except Exception:  # the ticking follower catches up later; decide from what we have
            log.error("could not read the change logs before a check", exc_info=True)

    async def _decided_meanwhile(self, sha: str) -> CheckOutcome | None:
        """Look at the database once more before ``on_unknown`` applies: a verdict (or
        override) stored by any process while the check waited decides it; a bad verdict
        is never ignored for want of a wake-up."""
        self.store.forget(sha)
        try:
            async with asyncio.timeout(_LAST_LOOK_S):
                return await self._decide_known(sha, await self.store.lookup(sha))
        except Exception:
            log.error("could not read %s's judgements again before on_unknown", sha,
                      exc_info=True)
            return None

    async def _unhashable(self, sha: str, data: bytes, kind: str, why: str) -> CheckOutcome:
        """``policy.on_unhashable``: the image was not hashed, so nothing about it is known
        (a listed image could hide behind a slow decode); this is not ``on_unknown``."""
        if self.metrics is not None:
            self.metrics.unhashable.labels(kind).inc()
        if self.policy.on_unhashable == "accept_and_rescan":
            await self.jobs.submit(sha, data, "accept_and_rescan")
        return decide_unhashable(sha, self.policy, kind, why)

    async def _unknown(self, sha: str, data: bytes, hashes: ImageHashes | None,
                       why: str) -> CheckOutcome:
        if self.policy.on_unknown == "accept_and_rescan":
            # Keep the bytes so a classifier can judge the image once one is free.
            await self.jobs.submit(sha, data, "accept_and_rescan", hashes)
        return decide_unknown(sha, self.policy, why, hashes)
