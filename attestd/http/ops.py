"""Health and metrics endpoints."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from attestd.http.appkeys import INDEX, METRICS, PIPELINE, STORE


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[STORE].engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    # Reading is not writing: a full disk or a read-only database answers SELECT 1.
    # The write-behind tries to write at least every quarter second while anything waits.
    writes = request.app[PIPELINE].writes
    if writes.last_failure is not None:
        since, why = writes.last_failure
        when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        return web.json_response({
            "status": "error", "pending_writes": writes.pending,
            "writes": f"cannot write to the database (last failure {when}): {why}"},
            status=503)
    return web.json_response({"status": "ok", "index_entries": len(request.app[INDEX]),
                              "pending_writes": writes.pending})


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    m.queue_depth.set(await request.app[STORE].queue_depth())
    m.index_entries.set(len(request.app[INDEX]))
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
