"""Signed fetching of remote documents, hardened in one place (the network edge).

Size cap, content-type check, timeouts, redirect limit, an address guard against SSRF,
and "the returned id must be the URL we ended at" so nobody can serve a document that
claims to be someone else's.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from activitypub._documents import ACTIVITY_JSON, LD_JSON, actor_keys, require_id
from activitypub._errors import (
    ActivityPubError,
    BlockedAddressError,
    FetchError,
    RemoteProtocolError,
)
from activitypub._hosts import canonical_host
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
    """Resolves names on a thread pool of its own, then refuses non-public addresses (SSRF
    guard).

    Lookups are isolated by site (the last two labels of the name): a site whose names are
    slow to resolve holds at most ``per_site`` lookups at a time and each gives up after
    ``timeout_s``, so it cannot fill the pool that every other host's lookups need.
    """

    def __init__(self, allow_private: bool = False, *, threads: int = 32, per_site: int = 4,
                 timeout_s: float = 5.0) -> None:
        self.allow_private = allow_private
        self.per_site = per_site
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="resolver")
        self._busy: dict[str, int] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The host's addresses, resolved on the pool. Raises BlockedAddressError for a
        non-public one (unless ``allow_private``), OSError when the site already has
        ``per_site`` lookups in flight, the lookup is slow, or it finds no address."""
        site = _site(host)
        if self._busy.get(site, 0) >= self.per_site:
            raise OSError(errno.EAGAIN, f"too many lookups under {site} in flight; try later")
        self._busy[site] = self._busy.get(site, 0) + 1
        lookup = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(
            socket.getaddrinfo, host, port, family=family, type=socket.SOCK_STREAM,
            flags=socket.AI_ADDRCONFIG))
        # The thread runs until the system resolver gives up; it counts until then.
        lookup.add_done_callback(lambda _: self._done(site))
        try:
            infos = await asyncio.wait_for(asyncio.shield(lookup), self.timeout_s)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"resolving {host} took over {self.timeout_s} s") from None
        results = [ResolveResult(hostname=host, host=str(addr[0]), port=int(addr[1]),
                                 family=fam, proto=proto,
                                 flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                   for fam, _, proto, _, addr in infos
                   if fam in (socket.AF_INET, socket.AF_INET6) and len(addr) >= 2]
        if not results:
            raise OSError(errno.ENOENT, f"{host} has no usable address")
        if not self.allow_private:
            for r in results:
                if not address_is_public(r["host"]):
                    raise BlockedAddressError(
                        f"{host} resolves to the non-public address {r['host']}; refusing to "
                        "connect (set federation.allow_private_addresses for tests only)")
        return results

    def _done(self, site: str) -> None:
        left = self._busy.get(site, 1) - 1
        if left > 0:
            self._busy[site] = left
        else:
            self._busy.pop(site, None)

    async def close(self) -> None:
        """Stop the resolver threads (lookups under way are abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _site(host: str) -> str:
    """What one party controls, roughly: an address, or a name's last two labels."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ".".join(host.lower().rstrip(".").split(".")[-2:])


class GuardedConnector(aiohttp.TCPConnector):
    """A connector that checks the addresses it is about to connect to, whatever they
    came from: aiohttp skips the resolver for IP literals, which a URL library may have
    made out of a name (``１２７.０.０.１``)."""

    def __init__(self, *, allow_private: bool = False, **kwargs: Any) -> None:
        super().__init__(resolver=GuardedResolver(allow_private), **kwargs)
        self.allow_private = allow_private

    async def _wrap_create_connection(
            self, *args: Any, addr_infos: list[Any], req: aiohttp.ClientRequest,
            timeout: aiohttp.ClientTimeout,
            client_error: type[Exception] = aiohttp.ClientConnectorError,
            **kwargs: Any) -> tuple[asyncio.Transport, ResponseHandler]:
        if not self.allow_private:
            for info in addr_infos:
                address = str(info[4][0])
                if not address_is_public(address):
                    blocked = BlockedAddressError(
                        f"refusing to connect to the non-public address {address} (host "
                        f"{req.url.host}); set federation.allow_private_addresses for tests only")
                    raise client_error(req.connection_key,
                                       OSError(errno.EACCES, str(blocked))) from blocked
        return await super()._wrap_create_connection(
            *args, addr_infos=addr_infos, req=req, timeout=timeout, client_error=client_error,
            **kwargs)


def make_session(*, allow_private: bool = False, user_agent: str = "activitypub-py",
                 timeout_s: float = 10.0) -> aiohttp.ClientSession:
    """A client session whose every connection goes through the address guard."""
    connector = GuardedConnector(allow_private=allow_private, limit=100, limit_per_host=8,
                                 ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": user_agent},
                                 timeout=aiohttp.ClientTimeout(total=timeout_s))


def check_url(url: str, allow_private: bool) -> None:
    """Refuse non-http(s) URLs and literal non-public addresses before connecting.

    The host is checked as the connection will use it (normalised once: IDNA / UTS 46),
    not as it is spelled."""
    host = canonical_host(url)
    if urlsplit(url).scheme not in ("https", "http") or not host:
        raise FetchError(f"refusing to fetch {url!r}: only http(s) URLs with a host", status_hint=400)
    if allow_private:
        return
    try:
        public = address_is_public(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            raise BlockedAddressError(f"refusing to fetch {url}: loopback host") from None
        return  # a name: the resolver and the connector check what it resolves to
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
                    body = await read_capped(r, self.max_bytes, current)
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


async def read_capped(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The body of ``resp``, read in chunks; FetchError once it passes ``limit`` bytes
    (a declared length over it is refused before anything is read)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise FetchError(f"GET {url}: body of {resp.content_length} bytes is over {limit} bytes")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        if len(buf) > limit:
            raise FetchError(f"GET {url}: body over {limit} bytes")
    return bytes(buf)


class Keyring:
    """Actors and their public keys: cache first, then the origin; refetch on request, at
    most once per ``refresh_every_s`` for one actor (a bad signature must not turn into a
    fetch each time: keys rotate rarely).

    Concurrent look-ups of the same actor share one fetch, and one that failed is not tried
    again for ``retry_failed_after_s`` (keyIds naming someone else's server must not make
    this node hammer it). Fetches to one host run at most ``per_host`` at a time and each
    gives up after ``timeout_s``: a slow host's keys cannot hold the others up.
    """

    def __init__(self, fetcher: Fetcher, *, ttl_s: float = 24 * 3600,
                 clock: Callable[[], float] = time.monotonic, refresh_every_s: float = 300.0,
                 per_host: int = 4, timeout_s: float = 5.0,
                 retry_failed_after_s: float = 60.0) -> None:
        self.fetcher = fetcher
        self.ttl_s = ttl_s
        self.clock = clock
        self.refresh_every_s = refresh_every_s
        self.per_host = per_host
        self.timeout_s = timeout_s
        self.retry_failed_after_s = retry_failed_after_s
        self._failed: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._actors: dict[str, tuple[float, dict[str, Any]]] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refreshed: OrderedDict[str, float] = OrderedDict()
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    def remember(self, actor: dict[str, Any]) -> None:
        """Seed the cache (e.g. with our own actor, or in tests)."""
        self._actors[require_id(actor, "actor")] = (self.clock(), actor)

    async def actor(self, actor_id: str, *, refresh: bool = False) -> dict[str, Any]:
        """The actor document, from the cache or fetched (``refresh``: fetched again, at
        most so often per actor). Raises ActivityPubError (e.g. FetchError) when it cannot
        be had; a recent failure is answered from memory, not tried again at once."""
        cached = self._actors.get(actor_id)
        if refresh and cached and not self._may_refresh(actor_id):
            refresh = False
        if cached and not refresh and self.clock() - cached[0] < self.ttl_s:
            return cached[1]
        if actor_id in self._inflight:
            return await asyncio.shield(self._inflight[actor_id])
        failed = self._failed.get(actor_id)
        if failed is not None and self.clock() - failed[0] < self.retry_failed_after_s:
            raise FetchError(f"{failed[1]} (not tried again for {self.retry_failed_after_s:.0f} s)")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[actor_id] = fut
        try:
            try:
                doc = await self._fetch(actor_id)
            except ActivityPubError as exc:
                self._failed[actor_id] = (self.clock(), str(exc))
                self._failed.move_to_end(actor_id)
                while len(self._failed) > 10_000:
                    self._failed.popitem(last=False)
                raise
            self._failed.pop(actor_id, None)
            self._actors[actor_id] = (self.clock(), doc)
            fut.set_result(doc)
            return doc
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[actor_id]

    def _may_refresh(self, actor_id: str) -> bool:
        now = self.clock()
        last = self._refreshed.get(actor_id)
        if last is not None and now - last < self.refresh_every_s:
            return False
        self._refreshed[actor_id] = now
        self._refreshed.move_to_end(actor_id)
        while len(self._refreshed) > 10_000:
            self._refreshed.popitem(last=False)
        return True

    async def _fetch(self, actor_id: str) -> dict[str, Any]:
        host = canonical_host(actor_id)
        sem = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        self._users[host] = self._users.get(host, 0) + 1
        try:
            async with asyncio.timeout(self.timeout_s):
                async with sem:
                    return await self.fetcher.get(actor_id)
        except TimeoutError:
            raise FetchError(f"GET {actor_id}: no answer within {self.timeout_s} s") from None
        finally:
            self._users[host] -= 1
            if not self._users[host]:  # nobody fetching from there: forget its slot
                del self._users[host], self._hosts[host]

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
