"""``create_app(config)``: the same factory for ``serve``, tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from attestd.config import Config
from attestd.errors import ConfigError
from attestd.federation import routes as federation_routes
from attestd.federation.routes import FEDERATION
from attestd.federation.runtime import open_federation
from attestd.http import ops, scan
from attestd.http.appkeys import CONFIG, INDEX, METRICS, PIPELINE, STORE
from attestd.http.errors import error_middleware
from attestd.metrics import Metrics
from attestd.services import open_services


def create_app(config: Config) -> web.Application:
    """The node's aiohttp application; its resources start and stop with it."""
    if config.classifier.enabled:
        raise ConfigError("classifier.enabled = true: the CLIP classifier is not part of this "
                          "version yet; set it to false (checks then follow policy.on_unknown)")
    app = web.Application(
        middlewares=[error_middleware],
        # The scan handler streams and caps the body itself; this caps form parsing.
        client_max_size=config.pictrs.max_body_bytes,
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_node_services)
    app.cleanup_ctx.append(_federation)
    scan.add_routes(app)
    ops.add_routes(app)
    federation_routes.add_routes(app)
    return app


async def _node_services(app: web.Application) -> AsyncIterator[None]:
    async with open_services(app[CONFIG], metrics=app[METRICS]) as services:
        app[STORE] = services.store
        app[INDEX] = services.index
        app[PIPELINE] = services.pipeline
        yield


async def _federation(app: web.Application) -> AsyncIterator[None]:
    async with open_federation(app[CONFIG], app[STORE], app[PIPELINE].writes) as fed:
        app[FEDERATION] = fed
        yield
