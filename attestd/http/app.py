"""``create_app(config)``: the same factory for ``serve``, tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from aiohttp import web

from attestd.alerts.channels import DirectMessageChannel
from attestd.alerts.notifier import Notifier
from attestd.config import Config
from attestd.federation.runtime import Federation, open_federation
from attestd.hash_list_urls import refreshing
from attestd.http import activitypub_routes, admin_api, admin_pages, hma_api, jobs, ops, scan
from attestd.http.appkeys import CONFIG, FEDERATION, INDEX, METRICS, PIPELINE, SERVICES, STORE
from attestd.http.errors import error_middleware
from attestd.http.jobs import JOBS
from attestd.http.proxies import LISTENERS, Listeners, surface_middleware
from attestd.metrics import Metrics
from attestd.review import expire_loop
from attestd.services import open_services
from attestd.sweep.runtime import open_pictrs_aliases


def create_app(config: Config) -> web.Application:
    """The node's aiohttp application; its resources start and stop with it."""
    listeners = Listeners()
    app = web.Application(
        middlewares=[surface_middleware(config.server.trusted_proxies,
                                        config.server.proxy_header, listeners.surface_of),
                     error_middleware],
        # The scan handler streams and caps the body itself; this caps form parsing.
        client_max_size=config.pictrs.max_body_bytes,
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[LISTENERS] = listeners
    app.cleanup_ctx.append(_node_services)
    app.on_shutdown.append(_stop_long_polls)
    app.cleanup_ctx.append(_federation)
    if config.classifier.enabled:
        app.cleanup_ctx.append(_in_node_worker)
    if config.sweep.enabled:
        app.cleanup_ctx.append(_continuous_sweep)
    if config.evidence.enabled:
        app.cleanup_ctx.append(_evidence_purge)
    scan.add_routes(app)
    jobs.add_routes(app)
    ops.add_routes(app)
    activitypub_routes.add_routes(app)
    admin_api.add_routes(app)
    admin_pages.add_routes(app)
    hma_api.add_routes(app)
    return app


async def _node_services(app: web.Application) -> AsyncIterator[None]:
    async with open_services(app[CONFIG], metrics=app[METRICS]) as services:
        app[STORE] = services.store
        app[INDEX] = services.index
        app[PIPELINE] = services.pipeline
        app[JOBS] = services.jobs
        app[SERVICES] = services
        if services.alerts is not None:
            services.alerts.adopt_orphans()  # tell what a killed process left untold
        expiry = asyncio.create_task(expire_loop(services.review, timedelta(
            days=app[CONFIG].review.unreadable_expire_days)), name="review-expiry")
        async with contextlib.AsyncExitStack() as stack:
            lemmy = None
            if services.lemmy is not None:
                services.lemmy.aliases_of = await stack.enter_async_context(
                    open_pictrs_aliases(app[CONFIG]))
                lemmy = asyncio.create_task(services.lemmy.run(), name="lemmy-follow-up")
            await stack.enter_async_context(refreshing(services.store, app[CONFIG]))
            yield
            for task in (expiry, lemmy):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def _stop_long_polls(app: web.Application) -> None:
    # Runs before open requests are waited for: long-polling workers must not hold up
    # SIGTERM for up to the long-poll's wait.
    if JOBS in app:
        await app[JOBS].stop_waiting()


async def _evidence_purge(app: web.Application) -> AsyncIterator[None]:
    """Evidence past its retention is purged (with an audit entry each) while serving."""
    from attestd.evidence.preserver import purge_loop

    evidence = app[SERVICES].evidence
    assert evidence is not None
    task = asyncio.create_task(purge_loop(evidence, app[CONFIG].evidence.purge_interval_s),
                               name="evidence-purge")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _federation(app: web.Application) -> AsyncIterator[None]:
    async with open_federation(app[CONFIG], app[STORE], app[PIPELINE].writes) as fed:
        app[FEDERATION] = fed
        # Own verdicts recorded from now on are attested too.
        app[SERVICES].arrival.publisher = fed.publisher
        alerts = app[SERVICES].alerts
        dm = _admin_messages(app[CONFIG], fed, alerts)
        yield
        if alerts is not None and dm is not None:
            alerts.remove_channel(dm)  # the deliverer stops with the federation
        app[SERVICES].arrival.publisher = None


def _admin_messages(config: Config, fed: Federation, alerts: Notifier | None
                    ) -> DirectMessageChannel | None:
    """``[alerts] admin_actors``: a direct message through the delivery queue. Actors are
    fetched directly, not through the key ring, whose memory of a failed fetch would
    turn every retry within a minute into the same failure."""
    if alerts is None or not config.alerts.admin_actors:
        return None

    async def enqueue(inboxes: Sequence[str], act: dict[str, Any]) -> None:
        await fed.store.enqueue(inboxes, act)
        fed.deliverer.poke()

    dm = DirectMessageChannel(actor=fed.actor.id, base=config.node.base_url,
                              recipients=config.alerts.admin_actors,
                              lookup=fed.fetcher.get, enqueue=enqueue)
    alerts.add_channel(dm)
    return dm


async def _continuous_sweep(app: web.Application) -> AsyncIterator[None]:
    """``[sweep] enabled``: sweep what the store gained every ``interval_s``."""
    from attestd.sweep.runtime import open_sweeper, run_continuous

    cfg = app[CONFIG]
    async with open_sweeper(cfg, cfg.sweep, app[SERVICES]) as sweeper:
        task = asyncio.create_task(run_continuous(sweeper, cfg.sweep.interval_s),
                                   name="continuous-sweep")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _in_node_worker(app: web.Application) -> AsyncIterator[None]:
    """The node's own classifier: the remote worker's loop, fed from the queue directly."""
    from attestd.jobs.local import LocalJobClient
    from scanner.classifier.clip import ClipClassifier, ClipSettings
    from scanner.worker import run_worker

    cfg = app[CONFIG].classifier
    classifier = await asyncio.to_thread(ClipClassifier, ClipSettings(
        model=cfg.model, pretrained=cfg.pretrained, cache_dir=cfg.cache_dir or None,
        device=cfg.device, batch_size=cfg.batch_size,
        allow_random_weights=cfg.allow_random_weights,
        attest_unlisted_weights=cfg.attest_unlisted_weights))
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(LocalJobClient(app[JOBS]), classifier.classify_batch,
                                          batch=cfg.batch_size, stop=stop, wait_s=5.0),
                               name="in-node-classifier")
    yield
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), 60)
    except TimeoutError:
        task.cancel()
