"""Following a peer: resolve it, record the trust, queue the Follow (the CLI, the admin
API and the benchmarks share this)."""

from __future__ import annotations

from uuid6 import uuid7

from activitypub import follow
from activitypub.fetch import Fetcher
from attestd.errors import AttestdError
from attestd.federation.peers import PeerStore
from attestd.federation.publisher import Identity
from attestd.federation.store import FederationStore
from attestd.trust import Trust, may_allow_perceptually


class FollowError(AttestdError):
    """The peer cannot be followed (unreachable, not an actor, ourselves)."""


async def resolve_actor(fetcher: Fetcher, target: str, *, plain_http: bool = False) -> str:
    """An actor URL for ``target``: a URL as given, or ``@name@host`` through WebFinger
    (over http only when ``plain_http``: test setups on loopback)."""
    if target.startswith(("https://", "http://")):
        return target
    name, _, host = target.lstrip("@").partition("@")
    if not name or not host:
        raise FollowError(f"{target!r} is neither an actor URL nor @name@host")
    scheme = "http" if plain_http else "https"
    jrd = await fetcher.get(f"{scheme}://{host}/.well-known/webfinger?resource=acct:{name}@{host}",
                            accept="application/jrd+json", check_id=False)
    for link in jrd.get("links") or []:
        if (isinstance(link, dict) and link.get("rel") == "self"
                and isinstance(link.get("href"), str)
                and "activity+json" in str(link.get("type", ""))):
            return str(link["href"])
    raise FollowError(f"{target} has no ActivityPub actor (WebFinger lists none)")


async def follow_peer(*, fetcher: Fetcher, peers: PeerStore, fstore: FederationStore,
                      me: Identity, target: str, trust: Trust, perceptual_ok: bool = False,
                      plain_http: bool = False) -> str:
    """Record ``target`` as a peer with ``trust`` and queue a Follow; returns its actor URL.

    Raises FollowError, or activitypub's FetchError/RemoteProtocolError if it cannot be read.
    """
    if perceptual_ok and not may_allow_perceptually(trust):
        raise FollowError("perceptual ok needs trust full")
    actor_url = await resolve_actor(fetcher, target, plain_http=plain_http)
    if actor_url == me.actor:
        raise FollowError("a node cannot follow itself")
    doc = await fetcher.get(actor_url)
    inbox, outbox = doc.get("inbox"), doc.get("outbox")
    if not isinstance(inbox, str):
        raise FollowError(f"{actor_url} has no inbox: it is not an actor")
    fid = f"{me.base}/activities/{uuid7()}"
    await peers.add(actor_url, inbox, outbox if isinstance(outbox, str) else None, trust, fid,
                    perceptual_ok)
    await fstore.enqueue([inbox], follow(fid, me.actor, actor_url))
    return actor_url
