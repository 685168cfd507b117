"""Who a request really came from, and through which listener (surface) it arrived.

The node serves two surfaces: the public one (federation, WebFinger, NodeInfo, health)
that a reverse proxy puts on the internet, and the private one (pict-rs scan, worker API,
admin, metrics) that only pict-rs, workers and admins on the internal network reach.

``X-Forwarded-For``/``Forwarded`` are believed only from a peer in
``server.trusted_proxies``, and then only up to the right-most hop that is not itself a
trusted proxy: everything to its left was written by the client and can be forged.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Surface = Literal["public", "private", "combined"]

# Headers by which something between the client and the node says who the client was.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")

# Paths answered on the public surface: everything else is private (a new route is
# private until it is added here on purpose).
_PUBLIC_EXACT = frozenset({"/actor", "/inbox", "/outbox", "/followers", "/healthz",
                           "/.well-known/webfinger", "/.well-known/nodeinfo",
                           "/nodeinfo/2.1"})
_PUBLIC_PREFIXES = ("/attestations/",)
# Answered on both: a load balancer or orchestrator may probe either listener.
_BOTH = frozenset({"/healthz"})


def is_public_path(path: str) -> bool:
    return path in _PUBLIC_EXACT or path.startswith(_PUBLIC_PREFIXES)


def served_on(surface: Surface, path: str, forwarded: bool) -> bool:
    """Whether ``path`` is answered on ``surface``. On the combined listener (no separate
    public one configured), a request that came through a proxy (it carries forwarding
    headers) is treated as public: a proxy in front of the node publishes only federation."""
    if path in _BOTH:
        return True
    if surface == "public" or (surface == "combined" and forwarded):
        return is_public_path(path)
    if surface == "private":
        return not is_public_path(path)
    return True


@dataclass(frozen=True, slots=True)
class Client:
    """``address``: the real client as far as trusted proxies vouch for it.
    ``untrusted_hop``: forwarding headers came from (or through) something that is not a
    trusted proxy, so the address belongs to whatever relayed it, not to the client."""
    address: str | None
    forwarded: bool
    untrusted_hop: bool


@functools.lru_cache(maxsize=8)
def parse_networks(networks: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def _address(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port, as Forwarded writes it
        text = text[1:text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _hops(headers: Mapping[str, str], header: str) -> list[str]:
    """The hops the proxy header lists, nearest last. All copies of the header count."""
    getall = getattr(headers, "getall", None)
    values = getall(header, []) if getall is not None else (
        [headers[header]] if header in headers else [])
    hops: list[str] = []
    for value in values:
        for part in value.split(","):
            if header.lower() == "forwarded":
                for pair in part.split(";"):
                    key, _, val = pair.strip().partition("=")
                    if key.lower() == "for":
                        hops.append(val)
            elif part.strip():
                hops.append(part)
    return hops


def real_client(peer: str | None, headers: Mapping[str, str],
                trusted: tuple[str, ...], header: str = "X-Forwarded-For") -> Client:
    """The client behind ``peer`` (the TCP peer), reading ``header`` only as far as
    ``trusted`` proxies wrote it."""
    forwarded = any(h in headers for h in FORWARDING_HEADERS)
    nets = parse_networks(trusted)
    peer_addr = _address(peer) if peer else None

    def is_trusted(addr: Address | None) -> bool:
        return addr is not None and any(addr in n for n in nets)

    if not is_trusted(peer_addr):
        return Client(peer, forwarded, untrusted_hop=forwarded)
    hops = _hops(headers, header)
    if not hops:
        # A trusted proxy that names nobody: it is the client itself (a health probe),
        # unless it passed on some other forwarding header it does not vouch for.
        return Client(peer, forwarded, untrusted_hop=forwarded)
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            # Unparseable ("unknown", garbage): nothing to its left can be believed.
            return Client(None, True, untrusted_hop=True)
        if not is_trusted(addr):
            return Client(str(addr), True, untrusted_hop=False)
    # Every hop is a trusted proxy: the left-most is as close to the client as we know.
    first = _address(hops[0])
    return Client(str(first) if first else None, True, untrusted_hop=False)




class Listeners:
    """The sockets ``serve`` listens on, each with its surface; filled once they are bound.
    An app served without any (tests, benchmarks) is one combined listener."""

    def __init__(self) -> None:
        self._bound: list[tuple[Surface, str, int]] = []

    def add(self, surface: Surface, sockets: list[tuple[str, int]]) -> None:
        self._bound.extend((surface, host, port) for host, port in sockets)

    def surface_of(self, request: web.BaseRequest) -> Surface:
        if not self._bound:
            return "combined"
        transport = request.transport
        local = transport.get_extra_info("sockname") if transport is not None else None
        if not local:
            return "public"  # unknown: the narrowest surface
        host, port = _address(str(local[0])), int(local[1])
        for surface, bound_host, bound_port in self._bound:
            bound = _address(bound_host)
            wildcard = bound is not None and bound.is_unspecified
            if bound_port == port and (wildcard or bound == host):
                return surface
        return "public"


LISTENERS: web.AppKey[Listeners] = web.AppKey("listeners")
# Set on each request by the middleware.
CLIENT_KEY: web.RequestKey[Client] = web.RequestKey("client", Client)


def surface_middleware(trusted: tuple[str, ...], header: str,
                       surface_of: Callable[[web.BaseRequest], Surface]
                       ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Answer 404 for routes not served on the listener a request came in on, and make
    ``request.remote`` the real client (so the audit, the access log of handlers, and the
    login throttle see it)."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        client = real_client(request.remote, request.headers, trusted, header)
        if not served_on(surface_of(request), request.path, client.forwarded):
            raise web.HTTPNotFound(text='{"error": "not found"}',
                                   content_type="application/json")
        request[CLIENT_KEY] = client
        if client.address != request.remote:
            request = request.clone(remote=client.address or "unknown")
        return await handler(request)

    return middleware


def client_of(request: web.BaseRequest) -> Client:
    """The real client of a request that went through the middleware; a request that did
    not (a test app without it) is its TCP peer, with forwarding headers distrusted."""
    found = request.get(CLIENT_KEY)
    if isinstance(found, Client):
        return found
    forwarded = any(h in request.headers for h in FORWARDING_HEADERS)
    return Client(request.remote, forwarded, untrusted_hop=forwarded)
