"""``create_app(config)``: the same factory for ``serve``, tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from attestd.config import Config
from attestd.federation.runtime import open_federation
from attestd.http import activitypub_routes, admin_api, admin_pages, hma_api, jobs, ops, scan
from attestd.http.appkeys import CONFIG, FEDERATION, INDEX, METRICS, PIPELINE, SERVICES, STORE
from attestd.http.errors import error_middleware
from attestd.http.jobs import JOBS
from attestd.http.proxies import LISTENERS, Listeners, surface_middleware
from attestd.metrics import Metrics
from attestd.review import expire_loop
from attestd.services import open_services


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
        expiry = asyncio.create_task(expire_loop(services.review, timedelta(
            days=app[CONFIG].review.unreadable_expire_days)), name="review-expiry")
        yield
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry


async def _stop_long_polls(app: web.Application) -> None:
    # Runs before open requests are waited for: long-polling workers must not hold up
    # SIGTERM for up to the long-poll's wait.
    if JOBS in app:
        await app[JOBS].stop_waiting()


async def _federation(app: web.Application) -> AsyncIterator[None]:
    async with open_federation(app[CONFIG], app[STORE], app[PIPELINE].writes) as fed:
        app[FEDERATION] = fed
        # Own verdicts recorded from now on are attested too.
        app[SERVICES].arrival.publisher = fed.publisher
        yield
        app[SERVICES].arrival.publisher = None


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
