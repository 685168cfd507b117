"""The admin JSON API under /api/v1/admin/: what the CLI does, for a browser or a script.

Every route needs ``Authorization: Bearer <token>`` from ``attestd admin token create``, or
a logged-in browser session (whose state-changing requests carry its CSRF token).
Actions are audited with the actor ``admin:<token name>`` or ``admin-ui:<login>``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from activitypub import ActivityPubError
from attestd import admin_queries, overrides, review_actions
from attestd.errors import AttestdError, RequestError
from attestd.federation import manage
from attestd.federation.attestations import ATTESTED_LABELS
from attestd.federation.follow import FollowError
from attestd.federation.peers import Peer
from attestd.http.admin_auth import require_admin, require_reviewer
from attestd.http.admin_context import federated, quarantine_target, reviewer
from attestd.http.appkeys import CONFIG, FEDERATION, INDEX, SERVICES, STORE
from attestd.http.body import read_json_object
from attestd.jobs.store import JobStore, worker_name_problem
from attestd.model import Override
from attestd.review import REVIEW_KINDS, ReviewItem, lemmy_image_url
from scanner import normalise_hex

PREFIX = "/api/v1/admin"
BODY_MAX_BYTES = 64 * 1024
AUDIT_MAX_ROWS = 10_000
REVIEW_ACTIONS = ("confirm", "mark_ok", "quarantine", "dismiss")
BAD_LABELS = tuple(label for label in ATTESTED_LABELS if label != "ok")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/stats", stats)
    r.add_get(f"{PREFIX}/audit", audit)
    r.add_get(f"{PREFIX}/overrides", list_overrides)
    r.add_post(f"{PREFIX}/overrides", add_override)
    r.add_delete(f"{PREFIX}/overrides/{{id}}", delete_override)
    r.add_get(f"{PREFIX}/review", list_review)
    r.add_post(f"{PREFIX}/review/{{sha256}}", act_on_review)
    r.add_get(f"{PREFIX}/peers", list_peers)
    r.add_post(f"{PREFIX}/peers", add_peer)
    r.add_post(f"{PREFIX}/peers/trust", set_peer_trust)
    r.add_post(f"{PREFIX}/peers/remove", remove_peer)
    r.add_get(f"{PREFIX}/followers", list_followers)
    r.add_post(f"{PREFIX}/followers/approve", approve_follower)
    r.add_post(f"{PREFIX}/followers/reject", reject_follower)
    r.add_get(f"{PREFIX}/workers", list_workers)
    r.add_post(f"{PREFIX}/workers", add_worker)
    r.add_delete(f"{PREFIX}/workers/{{name}}", remove_worker)
    r.add_get(f"{PREFIX}/hashes", list_hash_sources)
    r.add_get(f"{PREFIX}/hashes/{{sha256}}", image_record)


# -- parameters ---------------------------------------------------------------------------

def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestError(400, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def sha_param(raw: str, what: str = "sha256") -> str:
    try:
        return normalise_hex(raw, 64, what)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None


def note_param(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 2000:
        raise RequestError(400, "note must be a string of at most 2000 characters")
    return value


def text_param(doc: dict[str, Any], name: str, max_chars: int = 2048) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise RequestError(400, f"{name} must be a non-empty string of at most {max_chars} "
                                "characters")
    return value.strip()


def bool_param(doc: dict[str, Any], name: str) -> bool:
    value = doc.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be true or false")
    return value


# -- overrides ----------------------------------------------------------------------------

def override_json(ov: Override) -> dict[str, Any]:
    return {"id": ov.id, "sha256": ov.sha256, "action": ov.action, "note": ov.note,
            "created_by": ov.created_by, "created_at": ov.created_at.isoformat()}


async def list_overrides(request: web.Request) -> web.Response:
    await require_admin(request)
    return web.json_response({"overrides": [
        override_json(ov) for ov in await request.app[STORE].list_overrides()]})


async def add_override(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    doc = await read_json_object(request, BODY_MAX_BYTES)
    action = doc.get("action")
    if action not in ("allow", "block"):
        raise RequestError(400, "action must be \"allow\" or \"block\"")
    note = note_param(doc.get("note"))
    sha = sha_param(str(doc.get("sha256", "")))
    store = request.app[STORE]
    ov, frames = await overrides.set_override(store, action, sha, await store.get_hashes(sha),
                                              note, admin.actor, "api")
    return web.json_response({**override_json(ov), "perceptual_frames": frames}, status=201)


async def delete_override(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise RequestError(400, f"{raw[:40]!r} is not an override id")
    removed = await overrides.remove_override(request.app[STORE], admin.actor,
                                              override_id=int(raw))
    if removed is None:
        raise RequestError(404, f"no override {raw}")
    return web.json_response(override_json(removed))


# -- audit and stats ----------------------------------------------------------------------

def audit_csv(entries: list[dict[str, Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=admin_queries.AUDIT_FIELDS)
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: admin_queries.spreadsheet_safe(v) for k, v in entry.items()})
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="attestd-audit.csv"'})


async def audit(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first. ``q`` searches sha256 (prefix), actor, action, source
    and reason; ``before`` pages by id; ``format=csv`` downloads it."""
    await require_admin(request)
    limit = int_param(request, "limit", 100, 1, AUDIT_MAX_ROWS)
    before = int_param(request, "before", 0, 0, 2**62)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise RequestError(400, "format must be json or csv")
    q = request.query.get("q", "")
    if len(q) > admin_queries.AUDIT_QUERY_MAX_CHARS:
        raise RequestError(400, f"q is at most {admin_queries.AUDIT_QUERY_MAX_CHARS} characters")
    items = await admin_queries.audit_entries(request.app[STORE].engine, q=q, limit=limit,
                                              before=before)
    if fmt == "csv":
        return audit_csv(items)
    return web.json_response({"entries": items,
                              "next_before": items[-1]["id"] if len(items) == limit else None})


async def stats(request: web.Request) -> web.Response:
    """Checks in the last 24 hours by outcome and by what decided them, per hour; queue,
    review and index sizes."""
    await require_reviewer(request)  # moderators too
    svc = request.app[SERVICES]
    act = await admin_queries.activity(svc.store.engine, 24)
    return web.json_response({
        "checks_24h": {"by_decision": act.by_decision, "by_source": act.by_source,
                       "per_hour": [{"hour": h.isoformat(), **counts} for h, counts in act.per_hour]},
        "queue_depth": await svc.store.queue_depth(),
        "review_open": await svc.review.open_count(),
        "index_entries": len(request.app[INDEX]),
    })


# -- review -------------------------------------------------------------------------------

def review_json(item: ReviewItem, never_shown: bool, has_copy: bool,
                lemmy_url: str = "") -> dict[str, Any]:
    return {"sha256": item.sha256, "kind": item.kind, "label": item.label,
            "reason": item.reason, "since": item.created_at.isoformat(),
            "never_shown_without_opt_in": never_shown, "has_copy": has_copy,
            "copy_note": None if has_copy else item.copy_note,
            "aliases": list(item.aliases),
            "lemmy_urls": lemmy_links(lemmy_url, item, never_shown)}


def lemmy_links(lemmy_url: str, item: ReviewItem, never_shown: bool) -> list[str]:
    """Where Lemmy shows the item's image (``review.lemmy_url``): none for an image that
    is never shown without an opt-in, since Lemmy serves it clear."""
    if not lemmy_url or never_shown:
        return []
    return [lemmy_image_url(lemmy_url, alias) for alias in item.aliases]


async def list_review(request: web.Request) -> web.Response:
    """Open review items, oldest first (``kind`` filters)."""
    await require_reviewer(request)  # moderators too
    kind = request.query.get("kind") or None
    if kind is not None and kind not in REVIEW_KINDS:
        raise RequestError(400, f"kind must be one of {', '.join(REVIEW_KINDS)}")
    review = request.app[SERVICES].review
    items = await review.items(kind, limit=int_param(request, "limit", 200, 1, 1000))
    withheld = await review.never_shown_of([it.sha256 for it in items])
    lemmy_url = request.app[CONFIG].review.lemmy_url
    return web.json_response({"items": [
        review_json(it, it.sha256 in withheld, await review.has_copy(it.sha256), lemmy_url)
        for it in items]})


async def review_action(request: web.Request, actor: str, sha: str, action: str, label: str,
                        note: str) -> dict[str, Any]:
    """Take a review action (confirm, mark_ok, quarantine, dismiss) on ``sha``; shared by
    the API and the pages. Raises RequestError for what cannot be done."""
    if action not in REVIEW_ACTIONS:
        raise RequestError(400, f"action must be one of {', '.join(REVIEW_ACTIONS)}")
    rv = reviewer(request.app)
    hashes = await rv.store.get_hashes(sha) if action in ("confirm", "quarantine") else None
    try:
        if action == "confirm":
            if not label:
                item = await rv.review.get(sha)
                label = item.label if item is not None and item.label else ""
            if not label:
                raise RequestError(400, "choose a label: this item was queued without one "
                                        f"(one of {', '.join(BAD_LABELS)})")
            if label not in BAD_LABELS:
                raise RequestError(400, f"label must be one of {', '.join(BAD_LABELS)}")
            verdict, attestation = await review_actions.confirm(rv, sha, hashes, label,
                                                                actor=actor, note=note)
            return {"verdict": verdict.id, "label": label, "attestation": attestation}
        if action == "mark_ok":
            ov, n, retracted = await review_actions.mark_ok(rv, sha, actor=actor, note=note)
            return {"override": None if ov is None else ov.id, "dismissed": ov is None,
                    "verdicts_withdrawn": n, "retracted": retracted}
        if action == "dismiss":
            await review_actions.dismiss(rv, sha, actor=actor, note=note)
            return {"dismissed": True}
        where = await review_actions.quarantine(
            rv, sha, hashes, quarantine_target(request.app), actor=actor,
            node=request.app[CONFIG].node.base_url, note=note)
        return {"quarantined_to": where}
    except review_actions.ReviewActionError as exc:
        raise RequestError(409, str(exc)) from None


async def act_on_review(request: web.Request) -> web.Response:
    """``{"action": "confirm" | "mark_ok" | "quarantine" | "dismiss", "label": ...,
    "note": ...}``"""
    admin = await require_reviewer(request)  # moderators too
    sha = sha_param(request.match_info["sha256"])
    doc = await read_json_object(request, BODY_MAX_BYTES)
    result = await review_action(request, admin.actor, sha, str(doc.get("action", "")),
                                 str(doc.get("label") or ""), note_param(doc.get("note")))
    return web.json_response({"sha256": sha, "action": doc["action"], **result})


# -- peers and followers ------------------------------------------------------------------

def peer_json(p: Peer) -> dict[str, Any]:
    return {"actor": p.actor, "state": p.state, "trust": p.trust,
            "perceptual_ok": p.perceptual_ok,
            "last_seen": p.last_seen_at.isoformat() if p.last_seen_at else None,
            "attestations": p.attestations, "disagreements": p.disagreements,
            "last_error": p.last_error}


async def list_peers(request: web.Request) -> web.Response:
    await require_admin(request)
    return web.json_response({"peers": [peer_json(p) for p in
                                        await request.app[FEDERATION].peers.all()]})


async def follow(request: web.Request, actor: str, target: str, trust: str,
                 perceptual_ok: bool) -> str:
    """Follow ``target``; shared by the API and the pages."""
    fed = request.app[FEDERATION]
    private = request.app[CONFIG].federation.allow_private_addresses
    try:
        return await manage.add_peer(federated(request.app), fed.fetcher, target, trust,
                                     perceptual_ok=perceptual_ok, actor=actor,
                                     plain_http=private)
    except (ActivityPubError, FollowError, manage.ManageError) as exc:
        raise RequestError(422, f"cannot follow {target}: {exc}") from None


async def add_peer(request: web.Request) -> web.Response:
    """``{"target": URL or @name@host, "trust": ..., "perceptual_ok": false}``"""
    admin = await require_admin(request)
    doc = await read_json_object(request, BODY_MAX_BYTES)
    actor_url = await follow(request, admin.actor, text_param(doc, "target"),
                             text_param(doc, "trust", 16), bool_param(doc, "perceptual_ok"))
    return web.json_response({"actor": actor_url, "state": "pending"}, status=201)


async def change_trust(request: web.Request, actor: str, peer: str, trust: str,
                       perceptual_ok: bool) -> None:
    """Set a peer's trust; shared by the API and the pages."""
    try:
        found = await manage.set_trust(federated(request.app), peer, trust,
                                       perceptual_ok=perceptual_ok, actor=actor)
    except manage.ManageError as exc:
        raise RequestError(400, str(exc)) from None
    if not found:
        raise RequestError(404, f"{peer} is not a peer")


async def set_peer_trust(request: web.Request) -> web.Response:
    """``{"actor": URL, "trust": "none" | "bad_only" | "full", "perceptual_ok": false}``"""
    admin = await require_admin(request)
    doc = await read_json_object(request, BODY_MAX_BYTES)
    peer = text_param(doc, "actor")
    await change_trust(request, admin.actor, peer, text_param(doc, "trust", 16),
                       bool_param(doc, "perceptual_ok"))
    return web.json_response({"actor": peer, "trust": doc["trust"],
                              "perceptual_ok": bool(doc.get("perceptual_ok"))})


async def remove_peer(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    peer = text_param(await read_json_object(request, BODY_MAX_BYTES), "actor")
    if await manage.unfollow(federated(request.app), peer, actor=admin.actor) is None:
        raise RequestError(404, f"{peer} is not a peer")
    return web.json_response({"actor": peer, "removed": True})


async def list_followers(request: web.Request) -> web.Response:
    """Followers oldest first, ``limit`` (default 100) at a time; ``after`` is the
    ``next_after`` of the page before, ``state`` keeps one state (pending, accepted,
    rejected)."""
    await require_admin(request)
    rows, next_after = await followers_slice(request, FOLLOWERS_PAGE)
    return web.json_response({"followers": [
        {"id": r["id"], "actor": r["actor"], "state": r["state"], "since": str(r["created_at"])}
        for r in rows], "next_after": next_after})


FOLLOWERS_PAGE = 100
FOLLOWER_STATES = ("pending", "accepted", "rejected")


async def followers_slice(request: web.Request,
                          default_limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of followers by the query's limit, after and state, and the cursor of the
    next page (None on the last); shared by the API and the pages."""
    limit = int_param(request, "limit", default_limit, 1, 1000)
    after = request.query.get("after") or None
    if after is not None and len(after) > 36:
        raise RequestError(400, "after must be the next_after of the page before")
    state = request.query.get("state") or None
    if state is not None and state not in FOLLOWER_STATES:
        raise RequestError(400, f"state must be one of {', '.join(FOLLOWER_STATES)}")
    rows = await request.app[FEDERATION].store.list_followers(limit=limit + 1, after=after,
                                                              state=state)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1]["id"]) if more and rows else None)


async def answer(request: web.Request, actor: str, follower: str, accept: bool) -> None:
    """Approve or reject a follower; shared by the API and the pages."""
    if not await manage.answer_follower(federated(request.app), follower, accept=accept,
                                        actor=actor):
        raise RequestError(404, f"{follower} has not asked to follow this node")


async def _answer_follower(request: web.Request, accept: bool) -> web.Response:
    admin = await require_admin(request)
    follower = text_param(await read_json_object(request, BODY_MAX_BYTES), "actor")
    await answer(request, admin.actor, follower, accept)
    return web.json_response({"actor": follower,
                              "state": "accepted" if accept else "rejected"})


async def approve_follower(request: web.Request) -> web.Response:
    return await _answer_follower(request, True)


async def reject_follower(request: web.Request) -> web.Response:
    return await _answer_follower(request, False)


# -- workers and hashes -------------------------------------------------------------------

async def list_workers(request: web.Request) -> web.Response:
    await require_admin(request)
    workers = await JobStore(request.app[STORE]).list_workers()
    return web.json_response({"workers": [
        {"name": w.name, "created_at": w.created_at.isoformat(),
         "last_seen": w.last_seen_at.isoformat() if w.last_seen_at else None} for w in workers]})


async def add_worker(request: web.Request) -> web.Response:
    """``{"name": ...}``: registers a GPU worker; its token is in the answer, once."""
    await require_admin(request)
    name = text_param(await read_json_object(request, BODY_MAX_BYTES), "name", 100)
    problem = worker_name_problem(name)
    if problem is not None:
        raise RequestError(400, f"name: {problem}")
    try:
        token = await JobStore(request.app[STORE]).add_worker(name)
    except ValueError as exc:
        raise RequestError(409, str(exc)) from None
    return web.json_response({"name": name, "token": token}, status=201)


async def remove_worker(request: web.Request) -> web.Response:
    await require_admin(request)
    name = request.match_info["name"]
    if not await JobStore(request.app[STORE]).remove_worker(name):
        raise RequestError(404, f"no worker named {name[:100]!r}")
    return web.json_response({"name": name, "removed": True})


async def list_hash_sources(request: web.Request) -> web.Response:
    """Imported hash lists and how many active hashes each holds."""
    await require_admin(request)
    rows = await request.app[STORE].list_sources()
    return web.json_response({"sources": [
        {"name": source.removeprefix("list:"), "label": label, "hashes": n}
        for source, label, n in rows]})


async def image_record(request: web.Request) -> web.Response:
    """What the node holds about one image: its hashes, override, verdict, peers' claims,
    and how a check of it would be decided now."""
    await require_admin(request)
    sha = sha_param(request.match_info["sha256"])
    svc = request.app[SERVICES]
    lookup = await svc.store.lookup(sha)
    try:
        outcome = await svc.pipeline.decide_stored(sha)
    except AttestdError as exc:
        raise RequestError(409, str(exc)) from None
    hashes = lookup.hashes
    return web.json_response({
        "sha256": sha,
        "hashes": None if hashes is None else {
            "media_type": hashes.media_type, "width": hashes.width, "height": hashes.height,
            "frame_count": hashes.frame_count,
            "frames": [{"pdq": f.pdq, "pdq_quality": f.pdq_quality, "phash": f.phash}
                       for f in hashes.frames]},
        "override": None if lookup.override is None else override_json(lookup.override),
        "verdict": None if lookup.verdict is None else {
            "id": lookup.verdict.id, "label": lookup.verdict.label,
            "method": lookup.verdict.method, "source": lookup.verdict.source},
        "peer_claims": [{"issuer": c.issuer, "label": c.label, "method": c.method,
                         "trust": c.trust, "attestation": c.attestation} for c in lookup.claims],
        "decision": None if outcome is None else {
            "decision": outcome.decision, "label": outcome.label, "source": outcome.source,
            "reason": outcome.reason},
    })
