"""The admin JSON API under /api/v1/admin/: what the CLI does, for a browser or a script.

Every route needs ``Authorization: Bearer <token>`` from ``attestd admin token create``.
Actions are audited with the actor ``admin:<token name>``.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select

from attestd import overrides
from attestd.admin_tokens import AdminTokens
from attestd.db import schema as t
from attestd.errors import RequestError
from attestd.http.appkeys import INDEX, STORE
from attestd.http.body import read_json_object
from attestd.model import Override, utcnow
from scanner import normalise_hex

PREFIX = "/api/v1/admin"
BODY_MAX_BYTES = 64 * 1024
AUDIT_MAX_ROWS = 10_000


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/stats", stats)
    app.router.add_get(f"{PREFIX}/audit", audit)
    app.router.add_get(f"{PREFIX}/overrides", list_overrides)
    app.router.add_post(f"{PREFIX}/overrides", add_override)
    app.router.add_delete(f"{PREFIX}/overrides/{{id}}", delete_override)


async def _admin(request: web.Request) -> str:
    """The audit actor for an authenticated admin request; 401 otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "missing bearer token: send Authorization: Bearer <token> from "
                                "`attestd admin token create NAME`")
    name = await AdminTokens(request.app[STORE].engine).name_for(token.strip())
    if name is None:
        raise RequestError(401, "unknown admin token (was it revoked?)")
    return f"admin:{name}"


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestError(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _override_json(ov: Override) -> dict[str, Any]:
    return {"id": ov.id, "sha256": ov.sha256, "action": ov.action, "note": ov.note,
            "created_by": ov.created_by, "created_at": ov.created_at.isoformat()}


async def list_overrides(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response({"overrides": [
        _override_json(ov) for ov in await request.app[STORE].list_overrides()]})


async def add_override(request: web.Request) -> web.Response:
    actor = await _admin(request)
    doc = await read_json_object(request, BODY_MAX_BYTES)
    action = doc.get("action")
    if action not in ("allow", "block"):
        raise RequestError(400, "action must be \"allow\" or \"block\"")
    note = doc.get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        raise RequestError(400, "note must be a string of at most 2000 characters")
    try:
        sha = normalise_hex(str(doc.get("sha256", "")), 64, "sha256")
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    store = request.app[STORE]
    ov, frames = await overrides.set_override(store, action, sha, await store.get_hashes(sha),
                                              note, actor, "api")
    return web.json_response({**_override_json(ov), "perceptual_frames": frames}, status=201)


async def delete_override(request: web.Request) -> web.Response:
    actor = await _admin(request)
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise RequestError(400, f"{raw[:40]!r} is not an override id")
    removed = await overrides.remove_override(request.app[STORE], actor, override_id=int(raw))
    if removed is None:
        raise RequestError(404, f"no override {raw}")
    return web.json_response(_override_json(removed))


async def audit(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first. ``q`` searches sha256 (prefix), actor, action, source
    and reason; ``before`` pages by id; ``format=csv`` downloads it."""
    await _admin(request)
    limit = _int_param(request, "limit", 100, 1, AUDIT_MAX_ROWS)
    before = _int_param(request, "before", 0, 0, 2**62)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise RequestError(400, "format must be json or csv")
    a = t.audit_log
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if before:
        query = query.where(a.c.id < before)
    q = request.query.get("q", "").strip()
    if len(q) > 200:
        raise RequestError(400, "q is at most 200 characters")
    if q:
        query = query.where(or_(a.c.sha256.startswith(q.lower(), autoescape=True),
                                a.c.actor.contains(q, autoescape=True),
                                a.c.action == q,
                                a.c.source.contains(q, autoescape=True),
                                a.c.reason.contains(q, autoescape=True)))
    async with request.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    fields = ("id", "at", "actor", "action", "sha256", "decision", "label", "source", "reason")
    items = [{f: (getattr(r, f).isoformat() if f == "at" else getattr(r, f)) for f in fields}
             for r in rows]
    if fmt == "json":
        return web.json_response({"entries": items,
                                  "next_before": items[-1]["id"] if len(items) == limit else None})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for item in items:
        # A cell starting with = + - @ would run as a formula in a spreadsheet.
        writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
                         for k, v in item.items()})
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="attestd-audit.csv"'})


async def stats(request: web.Request) -> web.Response:
    """Checks in the last 24 hours by outcome and by what decided them; queue and index."""
    await _admin(request)
    a = t.audit_log
    since = utcnow() - timedelta(hours=24)
    async with request.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(
            select(a.c.decision, a.c.source, func.count()).where(
                a.c.action == "check", a.c.at >= since).group_by(a.c.decision, a.c.source))).all()
    by_decision: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for decision, source, n in rows:
        by_decision[decision or "none"] = by_decision.get(decision or "none", 0) + n
        kind = (source or "none").split(":", 1)[0]
        by_source[kind] = by_source.get(kind, 0) + n
    return web.json_response({
        "checks_24h": {"by_decision": by_decision, "by_source": by_source},
        "queue_depth": await request.app[STORE].queue_depth(),
        "index_entries": len(request.app[INDEX]),
    })
