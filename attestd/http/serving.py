"""Serving the node's app as ``attestd serve`` does: aiohttp's runner on a listening socket
whose open connections are capped, with time limits for idle and lingering connections.

Without a cap, thousands of slow clients use up the process's file descriptors: accepts
then fail in a loop, and nothing, not even ``/healthz``, is answered. With one, a new
connection at the cap takes the place of the oldest idle one, or, when all are busy,
gets a short 503 and is closed at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import resource
import signal
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from attestd.config import ServerConfig
from attestd.http.proxies import LISTENERS
from attestd.logs import REPEAT_KEY

log = logging.getLogger(__name__)

# File descriptors kept for everything but client connections: the database, decoder
# workers, outgoing federation requests, log files.
FD_RESERVE = 64
# How long a finished request's unread body is drained before the connection is closed.
LINGER_S = 2.0
# The listen backlog; asyncio accepts up to this many connections at once before any of
# them reaches the cap, so the cap leaves room for as many descriptors.
BACKLOG = 128
# Connections closed to make room still hold their descriptor until the loop gets to them
# (one accept burst can close a backlog's worth): while this many are closing, new
# connections are refused instead.
MAX_CLOSING = BACKLOG
# How long SIGTERM waits for requests in flight before cancelling them: an admin's restart
# (systemd, docker stop) must not hang on them. Long-polling workers are ended at once.
SHUTDOWN_GRACE_S = 1.0

_BUSY_BODY = (b'{"error": "the node has as many open connections as server.max_connections '
              b'allows; try again shortly"}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 5\r\nConnection: close\r\nContent-Length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def connection_limit(wanted: int, fd_limit: int | None) -> int:
    """``wanted``, lowered so client connections (with a backlog's worth being accepted
    and ``MAX_CLOSING`` being closed) leave the process ``FD_RESERVE`` descriptors, or an
    eighth of its limit if more, for its own work."""
    if fd_limit is None or fd_limit <= 0:
        return wanted
    spare = BACKLOG + MAX_CLOSING + max(FD_RESERVE, fd_limit // 8)
    return max(1, min(wanted, fd_limit - spare))


def raise_fd_limit(wanted: int) -> int | None:
    """Raise the soft open-file limit towards ``wanted`` (up to the hard limit); the soft
    limit now in force, or None where there is none."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None
    infinite = resource.RLIM_INFINITY
    if soft == infinite:
        return None
    target = wanted if hard == infinite else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


class ConnectionCap:
    """A protocol factory for ``loop.create_server``: aiohttp's own protocol while fewer
    than ``limit`` connections are open. At the cap, a connection makes room: the oldest
    one not in the middle of a request (idle, or still trickling its headers: what slow
    clients hold), else the oldest whose request body has been arriving for longer than
    ``slow_body_s``. Only when none qualifies is the new connection answered 503 and
    closed."""

    def __init__(self, server: web.Server, limit: int,
                 on_refused: Callable[[], None] | None = None,
                 slow_body_s: float = 60.0) -> None:
        self.server = server
        self.limit = limit
        self.slow_body_s = slow_body_s
        self.refused = 0
        self.evicted = 0
        self.on_refused = on_refused
        # Requests seen still receiving their body, by id, and since when (monotonic): only
        # those open now, so it stays as small as the cap. The request is held with its
        # time so its id cannot pass to a newer one.
        self._incomplete: dict[int, tuple[web.BaseRequest, float]] = {}
        # Protocols made but not yet registered with the server: asyncio accepts a whole
        # backlog's worth of connections before any of them is, and they count too.
        self._fresh: collections.deque[tuple[RequestHandler, float]] = collections.deque()

    def __call__(self) -> asyncio.BaseProtocol:
        open_now = self.server.connections
        fresh = self._unregistered(open_now)
        if len(open_now) + fresh < self.limit:
            return self._make()
        # Connections closed to make room stay listed until their task ends: they count
        # apart (their descriptors are the MAX_CLOSING reserve), not against the cap.
        closing = sum(1 for h in open_now if h.transport is None or h.transport.is_closing())
        if len(open_now) - closing + fresh < self.limit:
            return self._make()
        try:
            if closing < MAX_CLOSING and (self._evict_idle(open_now)
                                          or self._evict_slow_body(open_now)):
                return self._make()
        except Exception:  # aiohttp's internals moved: refuse rather than fail the accept
            log.exception("could not look for a connection to close at the cap",
                          extra={REPEAT_KEY: "connection_cap_error"})
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused()
        log.warning("refusing new connections with 503: %d are open (%d of them closing), "
                    "as many as server.max_connections allows, and none is idle (%d refused "
                    "since start)", len(open_now), closing, self.refused,
                    extra={REPEAT_KEY: "connection_cap"})
        return _Busy()

    def _make(self) -> RequestHandler:
        handler = self.server()
        self._fresh.append((handler, time.monotonic()))
        return handler

    def _unregistered(self, open_now: list[RequestHandler]) -> int:
        # A protocol registers within the loop iteration that made it; one older than a
        # second never will (its transport failed), so it is forgotten, as is one already
        # registered or already gone (its manager is dropped when its connection is lost).
        if not self._fresh:
            return 0
        horizon = time.monotonic() - 1.0
        registered = set(open_now)
        self._fresh = collections.deque(
            (h, at) for h, at in self._fresh
            if at >= horizon and h not in registered and h.transport is None
            and getattr(h, "_manager", None) is not None)
        return len(self._fresh)

    def _evict_idle(self, open_now: list[RequestHandler]) -> bool:
        # Oldest first (the server keeps them in the order they came); closing one that is
        # closing already would free nothing.
        for handler in open_now:
            if handler.transport is None or handler.transport.is_closing():
                continue
            # aiohttp has no public "between requests" flag; without one, nobody is evicted
            # and the cap refuses instead.
            if getattr(handler, "_current_request", True) is None:
                handler.force_close()
                self.evicted += 1
                log.warning("closed the oldest idle connection to make room: %d are open, "
                            "as many as server.max_connections allows (%d closed since "
                            "start)", len(open_now), self.evicted,
                            extra={REPEAT_KEY: "connection_evicted"})
                return True
        return False

    def _evict_slow_body(self, open_now: list[RequestHandler]) -> bool:
        now = time.monotonic()
        seen: dict[int, tuple[web.BaseRequest, float]] = {}
        victim: RequestHandler | None = None
        for handler in open_now:
            if handler.transport is None or handler.transport.is_closing():
                continue
            request = getattr(handler, "_current_request", None)
            if not isinstance(request, web.BaseRequest) or request.content.is_eof():
                continue  # idle, or its handler is working on a body it has whole
            since = self._incomplete.get(id(request), (request, now))[1]
            seen[id(request)] = (request, since)
            if victim is None and now - since >= self.slow_body_s:
                victim = handler
        self._incomplete = seen
        if victim is None:
            return False
        victim.force_close()
        self.evicted += 1
        log.warning("closed the oldest connection whose request body has been arriving for "
                    "over %g s (server.body_timeout_s) to make room: %d are open, as many as "
                    "server.max_connections allows", self.slow_body_s, len(open_now),
                    extra={REPEAT_KEY: "connection_slow_body"})
        return True


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


async def bind(host: str, port: int) -> tuple[asyncio.base_events.Server, _LateFactory]:
    """Bind ``host:port`` without accepting yet, so that a port in use stops the node
    before any of its background work (database listeners, workers) has started."""
    factory = _LateFactory()
    server = await asyncio.get_running_loop().create_server(
        factory, host, port, backlog=BACKLOG, start_serving=False)
    return server, factory


class _LateFactory:
    """A protocol factory whose target (the capped app server) is set once it exists."""

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: ConnectionCap | None = None

    def __call__(self) -> asyncio.BaseProtocol:
        assert self.target is not None, "start_serving before the site was started"
        return self.target()


class CappedSite(web.TCPSite):
    """A TCP site whose connections go through a ConnectionCap, on a socket bound
    beforehand by :func:`bind`."""

    __slots__ = ("_cap", "_bound_server", "_factory")

    def __init__(self, runner: web.BaseRunner, listening: tuple[asyncio.base_events.Server,
                                                                _LateFactory],
                 cap: ConnectionCap, **kwargs: object) -> None:
        server, factory = listening
        host, port = server.sockets[0].getsockname()[:2] if server.sockets else ("", 0)
        super().__init__(runner, str(host), int(port), **kwargs)  # type: ignore[arg-type]
        self._cap = cap
        self._bound_server = server
        self._factory = factory

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        self._factory.target = self._cap
        self._server = self._bound_server
        await self._bound_server.start_serving()
        sockets = self._bound_server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (address, port) of each socket listening now."""
        server = self._server
        if not isinstance(server, asyncio.base_events.Server):
            return []
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in server.sockets]


@contextlib.asynccontextmanager
async def serving(app: web.Application, cfg: ServerConfig, host: str, port: int, *,
                  access_log_class: type[AbstractAccessLogger] | None = None,
                  on_refused: Callable[[], None] | None = None,
                  public: tuple[str, int] | None = None,
                  ) -> AsyncIterator[CappedSite]:
    """Start ``app`` listening on ``host:port`` under ``cfg``'s limits; stopped on exit.

    With ``public`` (host, port), that second listener serves the public routes and
    ``host:port`` only the private ones, each under its own connection cap (a flood on the
    public side cannot crowd out pict-rs). The site yielded is ``host:port``'s."""
    wanted = cfg.max_connections
    n = 2 if public else 1
    # Each listener has its own backlog and closing reserve; the descriptors left are split.
    fd_limit = raise_fd_limit(n * (wanted + BACKLOG + MAX_CLOSING) + FD_RESERVE * 2)
    if fd_limit is not None and n > 1:
        fd_limit -= (n - 1) * (BACKLOG + MAX_CLOSING)  # connection_limit counts one set
    limit = max(1, min(wanted, connection_limit(wanted * n, fd_limit) // n))
    if limit < wanted:
        log.warning("server.max_connections lowered from %d to %d to fit the open-file "
                    "limit (ulimit -n); raise that limit to allow more", wanted, limit)
    kwargs: dict[str, object] = {"keepalive_timeout": cfg.keepalive_timeout_s,
                                 "lingering_time": LINGER_S}
    if access_log_class is not None:
        kwargs["access_log_class"] = access_log_class
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S,
                           **kwargs)  # type: ignore[arg-type]
    # Ports first: one in use is a one-line error with nothing started to undo.
    bound: list[asyncio.base_events.Server] = []
    try:
        public_listening = await bind(*public) if public is not None else None
        if public_listening is not None:
            bound.append(public_listening[0])
        listening = await bind(host, port)
        bound.append(listening[0])
    except BaseException:
        for server in bound:
            server.close()
        raise
    public_server: web.Server | None = None
    public_site: CappedSite | None = None
    try:
        await runner.setup()
        assert runner.server is not None
        if public_listening is not None:
            # A server of its own, so its connections are counted (and capped) apart.
            public_server = app._make_handler(**kwargs)  # type: ignore[arg-type]
            public_cap = ConnectionCap(public_server, limit, on_refused,
                                       slow_body_s=cfg.body_timeout_s)
            public_site = CappedSite(runner, public_listening, public_cap)
            await public_site.start()
            app[LISTENERS].add("public", public_site.bound)
        cap = ConnectionCap(runner.server, limit, on_refused, slow_body_s=cfg.body_timeout_s)
        site = CappedSite(runner, listening, cap)
        await site.start()
        app[LISTENERS].add("private" if public is not None else "combined", site.bound)
        yield site
    finally:
        if public_site is not None:
            await public_site.stop()
        if public_server is not None:
            public_server.pre_shutdown()
            await public_server.shutdown(SHUTDOWN_GRACE_S)
        await runner.cleanup()
        for server in bound:  # those no site took over (setup failed part-way)
            server.close()


def run(app: web.Application, cfg: ServerConfig, host: str, port: int, *,
        access_log_class: type[AbstractAccessLogger] | None = None,
        on_refused: Callable[[], None] | None = None,
        public: tuple[str, int] | None = None,
        echo: Callable[[str], None] = print) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serving(app, cfg, host, port, access_log_class=access_log_class,
                           on_refused=on_refused, public=public) as site:
            if public is not None:
                echo(f"======== Public (federation) on http://{_hostport(*public)} ========")
                echo(f"======== Private (pict-rs, workers, admin) on {site.name} ========")
            else:
                echo(f"======== Running on {site.name} ========")
            echo("(Press CTRL+C to quit)")
            await stop.wait()

    asyncio.run(main())


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
