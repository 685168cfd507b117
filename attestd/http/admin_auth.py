"""Who is asking, for the admin API and pages: a bearer token or a browser session.

A browser session is an HttpOnly, SameSite=Strict cookie (Secure when the node's base URL
is https). Every state-changing request made with it must carry the session's CSRF token,
in the form field ``csrf_token`` or the ``X-CSRF-Token`` header; a bearer token needs none,
since a browser never adds one to a request by itself.

Every handler asks for the least it needs: ``require_admin`` (the default; a full admin)
or ``require_reviewer`` (an admin or a moderator, for the review pages and API only), so a
new route is closed to moderators unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from attestd.admin_tokens import AdminTokens
from attestd.admin_users import SESSION_TTL, AdminSession, AdminUsers, Role
from attestd.errors import RequestError
from attestd.http.appkeys import CONFIG, STORE
from attestd.login_failures import LoginFailures

SESSION_COOKIE = "attestd_admin"
LOGIN_CSRF_COOKIE = "attestd_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Failed logins per client address, and per name, before attempts wait; the wait doubles
# with each further failure up to LOGIN_MAX_DELAY_S; failures are forgotten after
# LOGIN_WINDOW_S without one.
LOGIN_FREE_FAILURES = 3
LOGIN_MAX_DELAY_S = 30.0
LOGIN_WINDOW_S = 15 * 60

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admin:
    """An authenticated admin: the audit actor, and the session when it is a browser."""

    actor: str
    session: AdminSession | None = None
    secret: str | None = None

    @property
    def role(self) -> Role:
        """A bearer token is a full admin's; a browser session has its login's role."""
        return "admin" if self.session is None else self.session.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ADMIN_KEY = web.RequestKey("admin", Admin)


def users(request: web.Request) -> AdminUsers:
    return AdminUsers(request.app[STORE].engine)


async def admin_from_request(request: web.Request) -> Admin | None:
    """The admin behind the request's bearer token or session cookie, or None."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        name = await AdminTokens(request.app[STORE].engine).name_for(token.strip())
        return None if name is None else Admin(f"admin:{name}")
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > 200:
        return None
    session = await users(request).session(secret)
    if session is None:
        return None
    return Admin(f"admin-ui:{session.name}", session, secret)


async def require_admin(request: web.Request) -> Admin:
    """The authenticated full admin; 401 without a login, 403 for a moderator (or a
    session request without its CSRF token)."""
    admin = await require_reviewer(request)
    if not admin.is_admin:
        raise RequestError(403, "moderators can review, nothing more: this needs an admin "
                                "login (`attestd admin set-password NAME --role admin`)")
    return admin


async def require_reviewer(request: web.Request) -> Admin:
    """The authenticated admin or moderator, checked once per request; 401 or 403 otherwise.

    Session requests that change state must carry the session's CSRF token and, where
    the browser sends one, an Origin of this node.
    """
    if ADMIN_KEY in request:
        return request[ADMIN_KEY]
    admin = await admin_from_request(request)
    if admin is None:
        if "Authorization" in request.headers:
            raise RequestError(401, "unknown or malformed admin token: send Authorization: "
                                    "Bearer <token> from `attestd admin token create NAME`")
        raise RequestError(401, "log in at /admin/login, or send Authorization: Bearer <token> "
                                "from `attestd admin token create NAME`")
    if admin.session is not None and request.method in UNSAFE_METHODS:
        await check_csrf(request, admin.session.csrf_token)
    request[ADMIN_KEY] = admin
    return admin


async def check_csrf(request: web.Request, expected: str) -> None:
    """403 unless the request carries ``expected`` and comes from this node's pages."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and origin != _own_origin(request):
        raise RequestError(403, "cross-site request refused (Origin does not match this node)")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        given = str((await request.post()).get(CSRF_FIELD, ""))
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise RequestError(403, "missing or wrong CSRF token: reload the page and try again")


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def secure_cookies(request: web.Request) -> bool:
    return request.app[CONFIG].node.base_url.startswith("https://") or request.secure


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(SESSION_TTL.total_seconds()),
                        path="/", httponly=True, samesite="Strict",
                        secure=secure_cookies(request))


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


class LoginThrottle:
    """Growing delays after failed logins, counted by client address and by name apart.

    Nothing is ever locked: an attempt waits (``delay_s``) and is then checked, so a right
    password gets in after at most ``cap_s`` however many wrong ones came first, from
    wherever. Each address has at most one attempt in flight, so guesses at a name go at
    the pace of the delays whatever the attacker runs in parallel, and a new address gets
    no fresh free tries at a name under attack. Failures are forgotten after ``forget_s``
    without one.
    """

    def __init__(self, free: int = LOGIN_FREE_FAILURES, base_s: float = 1.0,
                 cap_s: float = LOGIN_MAX_DELAY_S, forget_s: float = LOGIN_WINDOW_S,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 alert_every_s: float = 300.0) -> None:
        self.free = free
        self.base_s = base_s
        self.cap_s = cap_s
        self.forget_s = forget_s
        self.clock = clock
        self.sleep = sleep
        self.alert_every_s = alert_every_s
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._in_flight: set[str] = set()
        self._alerted_at: float | None = None
        self.failures_total = 0
        self.delayed_total = 0
        # Counts in the database, shared with every node process (None: this one only).
        # The clock is then wall time, which processes on several hosts agree on.
        self.shared: LoginFailures | None = None

    @staticmethod
    def _keys(remote: str, name: str) -> tuple[str, str]:
        return f"addr:{remote}"[:120], f"name:{name[:100]}"

    async def refresh(self, remote: str, name: str) -> None:
        """Take the shared counts for this address and name (failures other processes
        saw) before ``delay_s`` or ``attempt`` decides the wait."""
        if self.shared is None:
            return
        keys = self._keys(remote, name)
        rows = await self.shared.read(keys)
        for key in keys:
            if key in rows:
                self._failures[key] = rows[key]
            else:
                self._failures.pop(key, None)

    async def record_failure(self, remote: str, name: str) -> None:
        self.failed(remote, name)
        if self.shared is not None:
            await self.shared.add(self._keys(remote, name), self.clock(), self.forget_s)

    async def record_success(self, remote: str, name: str) -> None:
        self.succeeded(remote, name)
        if self.shared is not None:
            await self.shared.clear(self._keys(remote, name))

    def delay_s(self, remote: str, name: str) -> float:
        """How long an attempt from ``remote`` for ``name`` waits before it is checked."""
        now = self.clock()
        wait = 0.0
        for key in (f"addr:{remote}", f"name:{name[:100]}"):
            count, last = self._failures.get(key, (0, now))
            if now - last > self.forget_s:
                self._failures.pop(key, None)
                continue
            if count >= self.free:
                step = min(self.cap_s, self.base_s * 2 ** (count - self.free))
                wait = max(wait, last + step - now)
        return max(0.0, min(wait, self.cap_s))

    @contextlib.asynccontextmanager
    async def attempt(self, remote: str, name: str) -> AsyncIterator[None]:
        """Wait out the delay, then let the caller check the password (one at a time per
        address). Raises LoginBusy if this address already has an attempt waiting."""
        if remote in self._in_flight:
            raise LoginBusy("one login attempt at a time: wait for the last one's answer")
        self._in_flight.add(remote)
        try:
            wait = self.delay_s(remote, name)
            if wait > 0:
                self.delayed_total += 1
                self._alert(remote, name, wait)
                await self.sleep(wait)
            yield
        finally:
            self._in_flight.discard(remote)

    def failed(self, remote: str, name: str) -> None:
        self.failures_total += 1
        now = self.clock()
        for key in (f"addr:{remote}", f"name:{name[:100]}"):
            count, last = self._failures.pop(key, (0, now))
            self._failures[key] = (count + 1 if now - last <= self.forget_s else 1, now)
        while len(self._failures) > 10_000:  # a flood of names: forget the oldest
            self._failures.popitem(last=False)

    def succeeded(self, remote: str, name: str) -> None:
        self._failures.pop(f"addr:{remote}", None)
        self._failures.pop(f"name:{name[:100]}", None)

    def alert(self) -> str | None:
        """A line for the dashboard while logins were being held back in the last hour."""
        if self._alerted_at is None or self.clock() - self._alerted_at > 3600:
            return None
        return (f"Admin logins were slowed down in the last hour after repeated wrong "
                f"passwords ({self.failures_total} since the node started). If nobody here "
                "mistyped, someone is guessing passwords: see the audit log (login_failed).")

    def _alert(self, remote: str, name: str, wait: float) -> None:
        now = self.clock()
        if self._alerted_at is not None and now - self._alerted_at < self.alert_every_s:
            return
        self._alerted_at = now
        log.warning("admin logins are being slowed down after repeated wrong passwords "
                    "(latest: name %r from %s, held %.0f s); %d failed logins so far. If "
                    "nobody here mistyped, someone is guessing passwords.",
                    name[:100], remote, wait, self.failures_total)


class LoginBusy(Exception):
    """An address tried to log in again before its previous attempt was answered."""
