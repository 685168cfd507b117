"""ActivityPub routes: actor, WebFinger, NodeInfo, inbox, outbox, followers, attestations."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from activitypub import (
    ACTIVITY_JSON,
    JRD_JSON,
    ActivityPubError,
    actor_document,
    build_page,
    nodeinfo_document,
    nodeinfo_links,
    ordered_collection,
    page_url,
    parse_acct,
    parse_page_request,
    webfinger_document,
)
from activitypub.inbox import InboxRequest, verify_signed
from attestd import __version__
from attestd.errors import RequestError
from attestd.federation.runtime import Federation
from attestd.http.appkeys import FEDERATION, PIPELINE
from attestd.http.body import read_body
from attestd.model import AuditEntry

log = logging.getLogger(__name__)

def add_routes(app: web.Application) -> None:
    app.router.add_get("/actor", actor)
    app.router.add_get("/.well-known/webfinger", webfinger)
    app.router.add_get("/.well-known/nodeinfo", nodeinfo_index)
    app.router.add_get("/nodeinfo/2.1", nodeinfo)
    app.router.add_post("/inbox", inbox)
    app.router.add_get("/outbox", outbox)
    app.router.add_get("/followers", followers)
    app.router.add_get("/attestations/{uid}", attestation)


def _activity_json(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(doc), status=status, content_type=ACTIVITY_JSON)


def _urls(fed: Federation) -> dict[str, str]:
    base = fed.actor.id.rsplit("/actor", 1)[0]
    return {"inbox": f"{base}/inbox", "outbox": f"{base}/outbox",
            "followers": f"{base}/followers", "shared_inbox": f"{base}/inbox"}


async def actor(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    return _activity_json(actor_document(fed.actor, **_urls(fed)))


async def webfinger(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    resource = request.query.get("resource", "")
    if resource != fed.actor.id:
        try:
            user = parse_acct(resource, fed.host)
        except ActivityPubError as exc:
            raise RequestError(400, f"{exc}") from None
        if user != fed.actor.preferred_username:
            raise RequestError(404, f"no such account: {user}@{fed.host}")
    subject = f"acct:{fed.actor.preferred_username}@{fed.host}"
    return web.Response(text=json.dumps(webfinger_document(subject, fed.actor.id)),
                        content_type=JRD_JSON)


async def nodeinfo_index(request: web.Request) -> web.Response:
    base = request.app[FEDERATION].actor.id.rsplit("/actor", 1)[0]
    return web.json_response(nodeinfo_links(base))


async def nodeinfo(request: web.Request) -> web.Response:
    doc = nodeinfo_document(software="attestd", version=__version__,
                            metadata={"nodeName": request.app[FEDERATION].actor.name})
    return web.json_response(doc, content_type=(
        'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"'))


async def inbox(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    body = await read_body(request, fed.inbox.max_bytes, "the activity")
    # Signatures cover the path and query as sent, not as decoded.
    req = InboxRequest(method=request.method, path=request.rel_url.raw_path,
                       query=request.rel_url.raw_query_string,
                       headers=dict(request.headers), body=body)
    try:
        verified = await fed.inbox.verify(req)
    except ActivityPubError as exc:
        raise RequestError(exc.status_hint, str(exc)) from None
    if verified.duplicate:
        return web.json_response({"status": "duplicate", "id": verified.activity["id"]},
                                 status=202)
    # The peer is alive: anything parked for it may go again.
    host = urlsplit(verified.actor).hostname or ""
    if await fed.store.resume_host(host):
        fed.deliverer.poke()
    log.info("received %s from %s", verified.activity.get("type"), verified.actor)
    request.app[PIPELINE].writes.audit(AuditEntry(
        actor=verified.actor, action="activity_received",
        source=str(verified.activity["id"])[:500],
        label=str(verified.activity.get("type"))[:32]))
    handled = await fed.handler.handle(verified.actor, verified.activity)
    if handled.status == "refused":
        # Verified as sent by its actor, but what it carries is unusable (a forged or
        # malformed attestation): say why; a retry will not help.
        raise RequestError(400, handled.detail)
    return web.json_response({"status": handled.status, "detail": handled.detail,
                              "id": verified.activity["id"]}, status=202)


async def _signed_follower(request: web.Request) -> str:
    """The signer of a GET, who must be an accepted follower: attestations and the list of
    who follows us are not public."""
    fed = request.app[FEDERATION]
    req = InboxRequest(method="GET", path=request.rel_url.raw_path,
                       query=request.rel_url.raw_query_string,
                       headers=dict(request.headers), body=b"")
    try:
        signer = await verify_signed(fed.keyring, req, max_skew_s=fed.inbox.max_skew_s)
    except ActivityPubError as exc:
        raise RequestError(exc.status_hint, str(exc)) from None
    if not await fed.store.is_accepted_follower(signer):
        raise RequestError(403, f"{signer} is not an accepted follower of this node")
    return signer


async def _collection(request: web.Request, name: str, total: int, page: Any) -> web.Response:
    fed = request.app[FEDERATION]
    collection_id = f"{_urls(fed)['inbox'].rsplit('/inbox', 1)[0]}/{name}"
    if "page" not in request.query:
        return _activity_json(ordered_collection(collection_id, total,
                                                 page_url(collection_id)))
    try:
        preq = parse_page_request(request.query)
    except ActivityPubError as exc:
        raise RequestError(400, str(exc)) from None
    return _activity_json(build_page(collection_id, preq, await page(preq)))


async def outbox(request: web.Request) -> web.Response:
    await _signed_follower(request)
    fed = request.app[FEDERATION]
    return await _collection(request, "outbox", await fed.store.outbox_total(),
                             fed.store.outbox_page)


async def followers(request: web.Request) -> web.Response:
    await _signed_follower(request)
    fed = request.app[FEDERATION]
    return await _collection(request, "followers", await fed.store.followers_total(),
                             fed.store.followers_page)


async def attestation(request: web.Request) -> web.Response:
    """One of our live attestations, for accepted followers (as the outbox is)."""
    await _signed_follower(request)
    doc = await request.app[FEDERATION].publisher.get(request.match_info["uid"])
    if doc is None:
        raise RequestError(404, "no such attestation (it may have been retracted)")
    return _activity_json(doc)
