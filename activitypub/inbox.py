"""Inbox verification: the transport layer authenticates and parses; handlers receive
``(verified actor, activity)`` and never see HTTP (Synapse's split)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from activitypub._documents import require_id, types_of
from activitypub._errors import ActivityPubError, RemoteProtocolError, SignatureError
from activitypub._json import JSONInputError, load_json
from activitypub._keys import PublicKey
from activitypub._rfc9421 import (
    is_message_signature,
    parse_message_signature,
    verify_message_signature,
)
from activitypub._signatures import SignatureParams, parse_signature_header, verify_request

log = logging.getLogger(__name__)


class KeySource(Protocol):
    """Where signing keys come from (``activitypub.fetch.Keyring`` is one)."""

    async def public_key(self, key_id: str, *, refresh: bool = False) -> tuple[str, PublicKey]:
        """The key's owner (actor id) and the key; ``refresh``: not from a cache."""
        ...


class SeenActivities(Protocol):
    """The record of activity ids already received, for replay protection."""

    async def first_sighting(self, activity: dict[str, Any]) -> bool:
        """Record the activity by its id; True if that id had not been seen before."""
        ...


class Blocked(ActivityPubError):
    """The signer or its host is blocked (answered 403)."""

    status_hint = 403


@dataclass(frozen=True, slots=True)
class InboxRequest:
    """An inbox POST as the caller's HTTP server received it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class VerifiedActivity:
    """An activity whose signature is the actor's own; ``duplicate``: seen before."""

    actor: str
    activity: dict[str, Any]
    duplicate: bool


class InboxVerifier:
    """Checks one inbox POST: size, JSON, signature, signer = actor, block list, replays.

    Errors carry the status to answer: 400 malformed, 401 bad or missing signature,
    403 blocked, 413 too large. A repeated activity id is reported as ``duplicate`` (the
    caller answers 202 and does nothing: a sender retrying after a lost answer must not
    retry forever, and nothing is applied twice).
    """

    def __init__(self, keys: KeySource, seen: SeenActivities, *,
                 is_blocked: Callable[[str], Awaitable[bool]] | None = None,
                 max_bytes: int = 1024 * 1024, max_skew_s: int = 3600) -> None:
        self.keys = keys
        self.seen = seen
        self.is_blocked = is_blocked
        self.max_bytes = max_bytes
        self.max_skew_s = max_skew_s

    async def verify(self, req: InboxRequest, *, now: datetime | None = None) -> VerifiedActivity:
        """Check ``req``; raises RemoteProtocolError or SignatureError (with their status
        hints) or Blocked when it must not be applied."""
        if len(req.body) > self.max_bytes:
            raise RemoteProtocolError(f"the activity is over {self.max_bytes} bytes",
                                      status_hint=413)
        lower = {k.lower(): v for k, v in req.headers.items()}
        sig_header = lower.get("signature") or lower.get("authorization")
        if not sig_header:
            raise SignatureError("the request is not signed (no Signature header)")
        activity = parse_activity(req.body)
        actor = activity["actor"]
        params: SignatureParams | None = None
        if is_message_signature(req.headers):  # RFC 9421
            key_id = parse_message_signature(req.headers).key_id
        else:
            params = parse_signature_header(sig_header)
            key_id = params.key_id
        if self.is_blocked is not None:
            for who in (actor, key_id):
                if await self.is_blocked(who):
                    raise Blocked(f"{urlsplit(who).hostname} is blocked here")
        owner = await verify_signed(self.keys, req, params, now=now, max_skew_s=self.max_skew_s)
        if owner != actor:
            raise SignatureError(f"signed by {owner}, but the activity's actor is {actor}")
        duplicate = not await self.seen.first_sighting(activity)
        return VerifiedActivity(actor=actor, activity=activity, duplicate=duplicate)


def parse_activity(body: bytes) -> dict[str, Any]:
    """Parse an activity's JSON and check its shape; raises RemoteProtocolError (400)."""
    try:
        activity = load_json(body)
    except JSONInputError as exc:
        raise RemoteProtocolError(str(exc)) from None
    if not isinstance(activity, dict):
        raise RemoteProtocolError("the activity must be a JSON object")
    require_id(activity, "activity")
    types_of(activity)
    actor = activity.get("actor")
    if isinstance(actor, dict):
        actor = actor.get("id")
    if not isinstance(actor, str) or not actor.startswith(("https://", "http://")):
        raise RemoteProtocolError("the activity has no actor URL")
    activity["actor"] = actor
    return activity


async def verify_signed(keys: KeySource, req: InboxRequest, params: SignatureParams | None = None,
                        *, now: datetime | None = None, max_skew_s: int = 3600) -> str:
    """Verify any signed request (a POST, or a GET of a protected collection); return the
    signer's actor id. Refetches the key once if the first check fails (keys rotate).

    Raises SignatureError (401).
    """
    if params is None and is_message_signature(req.headers):
        return await _verify_message_signed(keys, req, now=now, max_skew_s=max_skew_s)
    if params is None:
        lower = {k.lower(): v for k, v in req.headers.items()}
        header = lower.get("signature") or lower.get("authorization")
        if not header:
            raise SignatureError("the request is not signed (no Signature header)")
        params = parse_signature_header(header)
    body = req.body if req.method.upper() != "GET" else None
    try:
        owner, key = await keys.public_key(params.key_id)
    except ActivityPubError as exc:
        # The sender is a stranger: what the key's host answered (its status, whether it
        # is reachable) stays in our log, or the inbox becomes a port scanner.
        log.info("cannot get the signing key %s: %s", params.key_id, exc)
        raise SignatureError(f"cannot get the signing key {params.key_id}: it was not "
                             "served as a usable actor document") from None
    try:
        verify_request(method=req.method, path=req.path, query=req.query, headers=req.headers,
                       body=body, params=params, public_key=key, now=now, max_skew_s=max_skew_s)
    except SignatureError as first:
        try:
            owner, key = await keys.public_key(params.key_id, refresh=True)
        except ActivityPubError:
            raise first from None
        verify_request(method=req.method, path=req.path, query=req.query, headers=req.headers,
                       body=body, params=params, public_key=key, now=now, max_skew_s=max_skew_s)
    return owner


async def _verify_message_signed(keys: KeySource, req: InboxRequest, *, now: datetime | None,
                                 max_skew_s: int) -> str:
    """verify_signed for RFC 9421 signatures."""
    sig = parse_message_signature(req.headers)
    body = req.body if req.method.upper() not in ("GET", "HEAD") else None

    async def check(refresh: bool) -> str:
        try:
            owner, key = await keys.public_key(sig.key_id, refresh=refresh)
        except ActivityPubError as exc:
            raise SignatureError(f"cannot get the signing key {sig.key_id}: {exc}") from None
        verify_message_signature(sig, method=req.method, path=req.path, query=req.query,
                                 headers=req.headers, body=body, public_key=key, now=now,
                                 max_skew_s=max_skew_s)
        return owner

    try:
        return await check(False)
    except SignatureError as first:
        try:
            return await check(True)
        except SignatureError:
            raise first from None
