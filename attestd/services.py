"""Starting and stopping the node's resources, shared by the server and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from attestd.alerts.notifier import Notifier, open_alerts
from attestd.bad_hashes import BadHashIndex
from attestd.blobs import open_blobs
from attestd.change_follower import ChangeFollower
from attestd.config import Config
from attestd.db.engine import check_schema_current, create_engine
from attestd.db.store import Store
from attestd.evidence.preserver import Evidence, open_evidence
from attestd.hits import Hits
from attestd.jobs.queue import JobQueue, JobSettings
from attestd.jobs.store import JobStore
from attestd.jobs.wakeups import Wakeups
from attestd.lemmy.followup import LemmyFollowUp, open_followup
from attestd.metrics import Metrics
from attestd.pipeline import CheckPipeline
from attestd.review import ReviewQueue
from attestd.verdicts import VerdictArrival
from attestd.write_behind import WriteBehind
from scanner import DecodeLimits
from scanner.pool import DecodePool


@dataclass
class NodeServices:
    store: Store
    index: BadHashIndex
    follower: ChangeFollower
    pool: DecodePool
    pipeline: CheckPipeline
    jobs: JobQueue
    review: ReviewQueue
    # What an own classifier verdict brings about; the federation side sets its publisher.
    arrival: VerdictArrival
    # What acts on stored media judged bad (Lemmy follow-up, alerts, evidence) subscribes.
    hits: Hits = field(default_factory=Hits)
    alerts: Notifier | None = None  # [alerts]: tells admins of hits
    # [lemmy] url set: turns hits into follow-up steps; `serve` runs them (run()).
    lemmy: LemmyFollowUp | None = None
    # [evidence] enabled: preserves what is deleted, quarantined or confirmed bad.
    evidence: Evidence | None = None


@contextlib.asynccontextmanager
async def open_services(config: Config, *, metrics: Metrics | None = None,
                        follow_index: bool = True) -> AsyncIterator[NodeServices]:
    """Database, index, decoder pool, audit writer and pipeline; closed in reverse order.

    Raises DatabaseNotReady if the schema is missing or old.
    """
    engine = create_engine(config.database.url)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        await check_schema_current(engine, config.database.url)
        store = Store(engine)
        index = BadHashIndex(config.matching)
        follower = ChangeFollower(store, index)
        await follower.load()
        if follow_index:
            task = asyncio.create_task(follower.run(), name="change-follower")
            stack.push_async_callback(_cancel, task)
        pool = open_decode_pool(config)
        stack.callback(pool.close)
        writes = WriteBehind(store, metrics=metrics)
        writes.start()
        stack.push_async_callback(writes.close)
        blobs = open_blobs(config, store, "jobs")
        wakeups = Wakeups(engine)
        wakeups.start()
        stack.push_async_callback(wakeups.close)
        jobs = JobQueue(store, JobStore(store), blobs, JobSettings(
            lease_s=config.workers.lease_s, max_claim=config.workers.max_claim,
            max_wait_s=config.workers.max_wait_s, quorum=config.federation.bad_quorum),
            wakeups=wakeups)
        review = ReviewQueue(store, open_blobs(config, store, "review"), config.review,
                             on_not_kept=_count_not_kept(metrics))
        jobs.review = review
        hits = Hits()
        jobs.arrival = arrival = VerdictArrival(review, hits, config.policy.actions)
        pipeline = CheckPipeline(
            store=store, index=index, hasher=pool.hash, policy=config.policy, writes=writes,
            metrics=metrics, jobs=jobs,
            classify_unknown=config.classifier.enabled or config.workers.enabled,
            review=review, quorum=config.federation.bad_quorum,
            current=follower.ensure_current)
        stack.push_async_callback(pipeline.close)
        lemmy = None
        # Evidence first: the record exists before the Lemmy follow-up annotates it.
        evidence = open_evidence(config, store, store.get_hashes)
        if evidence is not None:
            hits.subscribe("evidence", evidence.on_hit)
        if config.lemmy.url:
            lemmy = await stack.enter_async_context(open_followup(
                config, store,
                annotate=evidence.annotate_image if evidence is not None else None))
            hits.subscribe("lemmy follow-up", lemmy.on_hit)
        alerts = await stack.enter_async_context(open_alerts(config, store))
        if alerts is not None:
            hits.subscribe("alerts", alerts.on_hit)
        yield NodeServices(store=store, index=index, follower=follower, pool=pool,
                           pipeline=pipeline, jobs=jobs, review=review, hits=hits,
                           arrival=arrival, alerts=alerts, lemmy=lemmy, evidence=evidence)


def _count_not_kept(metrics: Metrics | None) -> Callable[[str], None] | None:
    if metrics is None:
        return None
    return lambda why: metrics.review_not_kept.labels(why).inc()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def open_decode_pool(config: Config) -> DecodePool:
    """The decoder pool configured by ``[scanner]``."""
    sc = config.scanner
    return DecodePool(
        DecodeLimits(max_bytes=config.pictrs.max_body_bytes, max_pixels=sc.max_pixels,
                     max_frames=sc.max_frames, max_total_frames=sc.max_total_frames,
                     max_distinct_frames=sc.max_distinct_frames,
                     frame_budget_s=sc.frame_budget_s,
                     max_metadata_bytes=sc.max_metadata_bytes),
        workers=sc.workers or None, timeout_s=sc.decode_timeout_s,
        memory_limit_bytes=sc.worker_memory_mib * 1024 * 1024)
