"""Signed fetching of remote documents, hardened in one place (the network edge).

Size cap, content-type check, timeouts, redirect limit, an address guard against SSRF,
and "the returned id must be the URL we ended at" so nobody can serve a document that
claims to be someone else's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from activitypub._documents import ACTIVITY_JSON, LD_JSON, actor_keys, require_id
from activitypub._errors import BlockedAddressError, FetchError, RemoteProtocolError
from activitypub._json import JSONInputError, load_json
from activitypub._keys import PublicKey, load_ed25519_multibase, load_public_key_pem
from activitypub._signatures import sign_request

ACCEPT = f"{ACTIVITY_JSON}, {LD_JSON}"
_JSON_TYPES = ("application/activity+json", "application/ld+json", "application/json",
               "application/jrd+json")


def address_is_public(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses non-public addresses (SSRF guard)."""

    def __init__(self, allow_private: bool = False) -> None:
        self._inner = DefaultResolver()
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self.allow_private:
            for r in results:
                if not address_is_public(r["host"]):
                    raise BlockedAddressError(
                        f"{host} resolves to the non-public address {r['host']}; refusing to "
                        "connect (set federation.allow_private_addresses for tests only)")
        return results

    async def close(self) -> None:
        await self._inner.close()


def make_session(*, allow_private: bool = False, user_agent: str = "activitypub-py",
                 timeout_s: float = 10.0) -> aiohttp.ClientSession:
    """A client session whose every connection goes through the address guard."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), limit=100,
                                     limit_per_host=8, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": user_agent},
                                 timeout=aiohttp.ClientTimeout(total=timeout_s))


def check_url(url: str, allow_private: bool) -> None:
    """Refuse non-http(s) URLs and literal non-public addresses before connecting."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FetchError(f"refusing to fetch {url!r}: only http(s) URLs with a host", status_hint=400)
    if allow_private:
        return
    try:
        public = address_is_public(parts.hostname)
    except ValueError:
        if parts.hostname.lower() in ("localhost",) or parts.hostname.endswith(".localhost"):
            raise BlockedAddressError(f"refusing to fetch {url}: loopback host") from None
        return  # a name: the resolver checks what it resolves to
    if not public:
        raise BlockedAddressError(f"refusing to fetch {url}: non-public address")


class Fetcher:
    """Signed GETs of ActivityPub documents."""

    def __init__(self, session: aiohttp.ClientSession, *, key_id: str,
                 private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
                 allow_private: bool = False, max_bytes: int = 1024 * 1024,
                 max_redirects: int = 3) -> None:
        self.session = session
        self.key_id = key_id
        self.private_key = private_key
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects

    async def get(self, url: str, *, accept: str = ACCEPT, check_id: bool = True) -> dict[str, Any]:
        """Fetch and parse a JSON document. Raises FetchError / BlockedAddressError /
        RemoteProtocolError saying what was wrong."""
        current = url
        for _ in range(self.max_redirects + 1):
            check_url(current, self.allow_private)
            headers = sign_request(method="GET", url=current, key_id=self.key_id,
                                   private_key=self.private_key, headers={"Accept": accept})
            try:
                async with self.session.get(current, headers=headers, allow_redirects=False) as r:
                    if r.status in (301, 302, 303, 307, 308) and "Location" in r.headers:
                        current = urljoin(current, r.headers["Location"])
                        continue
                    if r.status != 200:
                        raise FetchError(f"GET {current} answered {r.status}",
                                         status_hint=502 if r.status >= 500 else 404)
                    ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if ctype not in _JSON_TYPES:
                        raise FetchError(f"GET {current} returned {ctype or 'no type'}, not JSON")
                    body = await _read_capped(r, self.max_bytes, current)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if isinstance(exc.__cause__, BlockedAddressError):
                    raise exc.__cause__ from None
                raise FetchError(f"GET {current} failed: {exc or type(exc).__name__}") from None
            try:
                doc = load_json(body)
            except JSONInputError as exc:
                raise RemoteProtocolError(f"GET {current} returned unusable JSON: {exc}"
                                          ) from None
            if not isinstance(doc, dict):
                raise RemoteProtocolError(f"GET {current} returned JSON that is not an object")
            if check_id and require_id(doc) != current.split("#", 1)[0]:
                raise RemoteProtocolError(
                    f"the document at {current} claims the id {doc.get('id')!r}")
            return doc
        raise FetchError(f"GET {url}: more than {self.max_redirects} redirects")


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise FetchError(f"GET {url}: body of {resp.content_length} bytes is over {limit}")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        if len(buf) > limit:
            raise FetchError(f"GET {url}: body over {limit} bytes")
    return bytes(buf)


class Keyring:
    """Actors and their public keys: cache first, then the origin; refetch once on request.

    Concurrent look-ups of the same actor share one fetch.
    """

    def __init__(self, fetcher: Fetcher, *, ttl_s: float = 24 * 3600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fetcher = fetcher
        self.ttl_s = ttl_s
        self.clock = clock
        self._actors: dict[str, tuple[float, dict[str, Any]]] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def remember(self, actor: dict[str, Any]) -> None:
        """Seed the cache (e.g. with our own actor, or in tests)."""
        self._actors[require_id(actor, "actor")] = (self.clock(), actor)

    async def actor(self, actor_id: str, *, refresh: bool = False) -> dict[str, Any]:
        cached = self._actors.get(actor_id)
        if cached and not refresh and self.clock() - cached[0] < self.ttl_s:
            return cached[1]
        if actor_id in self._inflight:
            return await asyncio.shield(self._inflight[actor_id])
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[actor_id] = fut
        try:
            doc = await self.fetcher.get(actor_id)
            self._actors[actor_id] = (self.clock(), doc)
            fut.set_result(doc)
            return doc
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[actor_id]

    async def public_key(self, key_id: str, *, refresh: bool = False) -> tuple[str, PublicKey]:
        """(owner actor id, key) for ``key_id``. Raises FetchError/RemoteProtocolError."""
        actor_id = key_id.split("#", 1)[0]
        doc = await self.actor(actor_id, refresh=refresh)
        if doc.get("type") in ("Key", "CryptographicKey", "Multikey") and isinstance(
                doc.get("owner") or doc.get("controller"), str):
            # The key id points at a key document (GoToSocial style): follow it to its owner.
            actor_id = str(doc.get("owner") or doc.get("controller"))
            doc = await self.actor(actor_id, refresh=refresh)
        keys = actor_keys(doc)
        if key_id not in keys:
            raise RemoteProtocolError(f"the actor {actor_id} does not publish the key {key_id}")
        kind, material = keys[key_id]
        key = load_public_key_pem(material) if kind == "pem" else load_ed25519_multibase(material)
        return require_id(doc, "actor"), key
