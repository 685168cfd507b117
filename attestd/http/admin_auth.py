"""Who is asking, for the admin API and pages: a bearer token or a browser session.

A browser session is an HttpOnly, SameSite=Strict cookie (Secure when the node's base URL
is https). Every state-changing request made with it must carry the session's CSRF token,
in the form field ``csrf_token`` or the ``X-CSRF-Token`` header; a bearer token needs none,
since a browser never adds one to a request by itself.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from attestd.admin_tokens import AdminTokens
from attestd.admin_users import SESSION_TTL, AdminSession, AdminUsers
from attestd.errors import RequestError
from attestd.http.appkeys import CONFIG, STORE

SESSION_COOKIE = "attestd_admin"
LOGIN_CSRF_COOKIE = "attestd_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Failed logins allowed per client address and name before it must wait.
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 15 * 60



@dataclass(frozen=True, slots=True)
class Admin:
    """An authenticated admin: the audit actor, and the session when it is a browser."""

    actor: str
    session: AdminSession | None = None
    secret: str | None = None


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
    """The authenticated admin, checked once per request; 401 or 403 otherwise.

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
    """Refuses a client address and name after repeated failed logins, for a while."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S) -> None:
        self.failures = failures
        self.window_s = window_s
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def blocked(self, remote: str, name: str) -> bool:
        times = self._recent(remote, name)
        return len(times) >= self.failures

    def failed(self, remote: str, name: str) -> None:
        self._recent(remote, name).append(time.monotonic())
        if len(self._seen) > 10_000:  # a flood of names: forget the oldest
            self._seen.pop(next(iter(self._seen)))

    def succeeded(self, remote: str, name: str) -> None:
        self._seen.pop((remote, name[:100]), None)

    def _recent(self, remote: str, name: str) -> deque[float]:
        times = self._seen.setdefault((remote, name[:100]), deque(maxlen=self.failures))
        while times and time.monotonic() - times[0] > self.window_s:
            times.popleft()
        return times
