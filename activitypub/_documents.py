"""Actor, WebFinger and NodeInfo documents, and OrderedCollection pages (pure builders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from activitypub._errors import LocalProtocolError, RemoteProtocolError

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
# Defines assertionMethod (FEP-521a); multikey/v1 defines only Multikey's own properties.
DID_CONTEXT = "https://www.w3.org/ns/did/v1"
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v2"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
ACTIVITY_JSON = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JRD_JSON = "application/jrd+json"
NODEINFO_21 = "http://nodeinfo.diaspora.software/ns/schema/2.1"


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """What an actor document says about a service actor."""

    id: str  # e.g. https://node.example/actor
    preferred_username: str
    name: str
    summary: str
    public_key_pem: str
    ed25519_multibase: str
    manually_approves_followers: bool = True
    type: str = "Service"

    @property
    def main_key_id(self) -> str:
        return f"{self.id}#main-key"

    @property
    def ed25519_key_id(self) -> str:
        return f"{self.id}#ed25519-key"


def actor_document(spec: ActorSpec, *, inbox: str, outbox: str, followers: str,
                   shared_inbox: str | None = None) -> dict[str, Any]:
    """The actor: Mastodon-compatible ``publicKey`` plus a FEP-521a ``assertionMethod``.

    The contexts are Fedify's for actors, in its order; every one is preloaded by
    JSON-LD-aware servers, so nobody has to fetch them.
    """
    doc: dict[str, Any] = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT, DID_CONTEXT, MULTIKEY_CONTEXT,
                     {"manuallyApprovesFollowers": "as:manuallyApprovesFollowers"}],
        "id": spec.id,
        "type": spec.type,
        "preferredUsername": spec.preferred_username,
        "name": spec.name,
        "summary": spec.summary,
        "inbox": inbox,
        "outbox": outbox,
        "followers": followers,
        "manuallyApprovesFollowers": spec.manually_approves_followers,
        "url": spec.id,
        "publicKey": {"id": spec.main_key_id, "owner": spec.id,
                      "publicKeyPem": spec.public_key_pem},
        "assertionMethod": [{"id": spec.ed25519_key_id, "type": "Multikey",
                             "controller": spec.id,
                             "publicKeyMultibase": spec.ed25519_multibase}],
    }
    if shared_inbox:
        doc["endpoints"] = {"sharedInbox": shared_inbox}
    return doc


def webfinger_document(subject: str, actor_id: str, profile_url: str | None = None
                       ) -> dict[str, Any]:
    """A WebFinger JRD whose ``self`` link is the actor id (served as application/jrd+json)."""
    links: list[dict[str, str]] = [{"rel": "self", "type": ACTIVITY_JSON, "href": actor_id}]
    if profile_url:
        links.append({"rel": "http://webfinger.net/rel/profile-page", "type": "text/html",
                      "href": profile_url})
    return {"subject": subject, "aliases": [actor_id], "links": links}


def parse_acct(resource: str, host: str) -> str:
    """The user name in ``acct:user@host`` for this host; raises RemoteProtocolError."""
    if not resource.startswith("acct:"):
        raise RemoteProtocolError("resource must be acct:user@host")
    user, sep, rhost = resource[5:].rpartition("@")
    if not sep or not user or rhost.lower() != host.lower():
        raise RemoteProtocolError(f"resource must be acct:user@{host}")
    return user


def nodeinfo_links(base_url: str) -> dict[str, Any]:
    """/.well-known/nodeinfo"""
    return {"links": [{"rel": NODEINFO_21, "href": f"{base_url}/nodeinfo/2.1"}]}


def nodeinfo_document(*, software: str, version: str, repository: str | None = None,
                      metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """NodeInfo 2.1."""
    sw: dict[str, Any] = {"name": software, "version": version}
    if repository:
        sw["repository"] = repository
    return {
        "version": "2.1",
        "software": sw,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {"users": {"total": 1, "activeMonth": 1, "activeHalfyear": 1}},
        "metadata": dict(metadata or {}),
    }


def ordered_collection(collection_id: str, total: int | None, first: str | None
                       ) -> dict[str, Any]:
    """An OrderedCollection's summary, pointing at its first (newest) page."""
    doc: dict[str, Any] = {"@context": AS_CONTEXT, "id": collection_id,
                           "type": "OrderedCollection"}
    if total is not None:
        doc["totalItems"] = total
    if first:
        doc["first"] = first
    return doc


def page_url(collection_id: str, **cursor: str) -> str:
    """The URL of a page of ``collection_id`` addressed by a cursor (``min_id``/``max_id``)."""
    return f"{collection_id}?{urlencode({'page': 'true', **cursor})}"


def ordered_collection_page(collection_id: str, page_id: str, items: Sequence[Any], *,
                            next_url: str | None, prev_url: str | None) -> dict[str, Any]:
    """One page, newest item first (ActivityStreams order for outboxes)."""
    doc: dict[str, Any] = {"@context": AS_CONTEXT, "id": page_id,
                           "type": "OrderedCollectionPage", "partOf": collection_id,
                           "orderedItems": list(items)}
    if next_url:
        doc["next"] = next_url
    if prev_url:
        doc["prev"] = prev_url
    return doc


def types_of(obj: Mapping[str, Any]) -> set[str]:
    """The object's type names as a set (``type`` may be a string or a list)."""
    t = obj.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return set(t)
    raise RemoteProtocolError("the object's type must be a string or a list of strings")


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (who may speak for whom)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def require_id(obj: Mapping[str, Any], what: str = "object") -> str:
    """The object's ``id``; raises RemoteProtocolError if it is missing or not an http(s) URL."""
    oid = obj.get("id")
    if not isinstance(oid, str) or not oid.startswith(("https://", "http://")):
        raise RemoteProtocolError(f"the {what} has no http(s) id")
    return oid


def actor_keys(actor: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Key id → (kind, material) for an actor's ``publicKey`` and ``assertionMethod`` keys.

    kind is ``pem`` or ``multibase``. Keys whose owner/controller is not the actor are
    ignored: an actor cannot lend itself someone else's key.
    """
    actor_id = require_id(actor, "actor")
    out: dict[str, tuple[str, str]] = {}
    pk = actor.get("publicKey")
    for entry in (pk if isinstance(pk, list) else [pk] if pk else []):
        if (isinstance(entry, Mapping) and isinstance(entry.get("id"), str)
                and entry.get("owner", actor_id) == actor_id
                and isinstance(entry.get("publicKeyPem"), str)):
            out[entry["id"]] = ("pem", entry["publicKeyPem"])
    am = actor.get("assertionMethod")
    for entry in (am if isinstance(am, list) else [am] if am else []):
        if (isinstance(entry, Mapping) and entry.get("type") == "Multikey"
                and isinstance(entry.get("id"), str)
                and entry.get("controller", actor_id) == actor_id
                and isinstance(entry.get("publicKeyMultibase"), str)):
            out[entry["id"]] = ("multibase", entry["publicKeyMultibase"])
    if not out:
        raise RemoteProtocolError(f"the actor {actor_id} publishes no usable key")
    return out


def key_owner(key_id: str) -> str:
    """The actor URL a key id belongs to by convention (``{actor}#main-key``)."""
    if "#" not in key_id:
        raise LocalProtocolError(f"key id {key_id!r} has no fragment")
    return key_id.split("#", 1)[0]
