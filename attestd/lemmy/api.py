"""A client for the parts of Lemmy's HTTP API (v3, Lemmy 0.19.x) a follow-up uses.

Read from Lemmy 0.19.20's source: routes in src/api_routes_http.rs, request and response
types in crates/api_common/src/{person,post,comment,site}.rs, errors in
crates/utils/src/error.rs (``{"error": "snake_case_type"}``, optionally with
``"message"``; 400, or 401 for ``incorrect_login``, 404 when a row is not found). Auth is
``Authorization: Bearer <jwt>`` from ``POST /api/v3/user/login``; Lemmy ignores a bad
token and then answers 401 ``incorrect_login`` on routes that need a user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from activitypub.fetch import make_session
from attestd.lemmy.policy import Content, Person, Planned

MAX_BODY = 4 * 1024 * 1024
PAGE_LIMIT = 50  # Lemmy's FETCH_LIMIT_MAX


class LemmyError(Exception):
    """Lemmy (or what stands in front of it) answered other than 2xx, or not at all
    (``status`` 0)."""

    def __init__(self, status: int, error: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


# Each step's route: (path, the JSON body's fields come from Planned.body).
ROUTES: dict[tuple[str, str], str] = {
    ("report", "post"): "post/report",
    ("report", "comment"): "comment/report",
    ("remove", "post"): "post/remove",
    ("remove", "comment"): "comment/remove",
    ("purge", "post"): "admin/purge/post",
    ("purge", "comment"): "admin/purge/comment",
    ("ban", "person"): "user/ban",
    ("ban_remove_data", "person"): "user/ban",
    ("purge_person", "person"): "admin/purge/person",
}


@dataclass(frozen=True, slots=True)
class LemmySettings:
    url: str  # the API's base, e.g. http://lemmy:8536
    public_url: str  # how its image URLs begin, e.g. https://lemmy.example
    username: str
    password: str
    timeout_s: float = 10.0
    max_media_pages: int = 20


class LemmyClient:
    """Logs in once, again when Lemmy forgets the token; never follows redirects (a
    Location elsewhere would carry the token off this host)."""

    def __init__(self, settings: LemmySettings,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        # The admin configured this URL; Lemmy usually runs on a private address next
        # to the node (compose), so private addresses are allowed here.
        self._session = session or make_session(allow_private=True, user_agent="attestd",
                                                timeout_s=settings.timeout_s)
        self._jwt: str | None = None

    async def close(self) -> None:
        await self._session.close()

    async def login(self) -> None:
        try:
            body = await self._call("POST", "user/login", {
                "username_or_email": self.settings.username,
                "password": self.settings.password}, auth=False)
        except LemmyError as exc:
            if exc.error != "incorrect_login":
                raise
            # Lemmy says the same for a wrong name, a wrong password and a missing TOTP.
            raise LemmyError(exc.status, exc.error, (
                f"Lemmy refused the login of {self.settings.username!r} (incorrect_login): "
                "check lemmy.username and lemmy.password(_file); a bot with two-factor "
                "login enabled cannot log in")) from None
        jwt = body.get("jwt")
        if not isinstance(jwt, str) or not jwt:
            raise LemmyError(200, None, "Lemmy's login gave no token (is the bot's e-mail "
                                        "unverified or its application pending?)")
        self._jwt = jwt

    async def uploader(self, alias: str) -> Person | None:
        """Who uploaded ``alias`` (Lemmy's local_image), paging the admin's media list
        newest first: 0.19 has no look-up by alias."""
        for page in range(1, self.settings.max_media_pages + 1):
            body = await self._call("GET", "admin/list_all_media",
                                    {"page": page, "limit": PAGE_LIMIT})
            images = body.get("images")
            if not isinstance(images, list) or not images:
                return None
            for view in images:
                if _dig(view, "local_image", "pictrs_alias") == alias:
                    return _person(view.get("person"))
            if len(images) < PAGE_LIMIT:
                return None
        return None

    def image_url(self, alias: str) -> str:
        return f"{self.settings.public_url}/pictrs/image/{quote(alias)}"

    async def content_using(self, alias: str) -> list[Content]:
        """Posts whose link is the image, and posts and comments whose text names it."""
        found: dict[str, Content] = {}
        for type_, q in (("Url", self.image_url(alias)), ("Posts", alias),
                         ("Comments", alias)):
            body = await self._call("GET", "search", {
                "q": q, "type_": type_, "listing_type": "All", "limit": PAGE_LIMIT})
            for c in _contents(body):
                found.setdefault(f"{c.kind}:{c.id}", c)
        return list(found.values())

    async def act(self, planned: Planned) -> dict[str, Any]:
        path = ROUTES[(planned.step, planned.target.split(":", 1)[0])]
        return await self._call("POST", path, planned.body)

    async def _call(self, method: str, path: str, payload: dict[str, Any], *,
                    auth: bool = True) -> dict[str, Any]:
        if auth and self._jwt is None:
            await self.login()
        try:
            return await self._once(method, path, payload, auth)
        except LemmyError as exc:
            if not (auth and exc.status == 401 and exc.error == "incorrect_login"):
                raise
        self._jwt = None  # expired or revoked: log in again, once
        await self.login()
        return await self._once(method, path, payload, auth)

    async def _once(self, method: str, path: str, payload: dict[str, Any],
                    auth: bool) -> dict[str, Any]:
        url = f"{self.settings.url}/api/v3/{path}"
        headers = {"Accept": "application/json"}
        if auth and self._jwt:
            headers["Authorization"] = f"Bearer {self._jwt}"
        kwargs: dict[str, Any] = {"params": payload} if method == "GET" else {"json": payload}
        try:
            async with self._session.request(method, url, headers=headers,
                                             allow_redirects=False, **kwargs) as resp:
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_BODY:
                        break
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LemmyError(0, None, f"{method} /api/v3/{path}: Lemmy unreachable "
                                      f"({type(exc).__name__})") from None
        body: Any = None
        try:
            body = json.loads(raw) if raw and len(raw) <= MAX_BODY else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, str) else None
        what = f" {error}" if error else (" (not JSON)" if status < 300 else "")
        if 300 <= status < 400:
            what = " (a redirect; not followed: check lemmy.url)"
        raise LemmyError(status, error, f"{method} /api/v3/{path}: {status}{what}")


def _dig(obj: Any, *keys: str) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def _person(obj: Any) -> Person | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
        return None
    return Person(id=obj["id"], name=str(obj.get("name", "")),
                  actor_id=str(obj.get("actor_id", "")), local=bool(obj.get("local", True)))


def _contents(body: dict[str, Any]) -> Iterator[Content]:
    for kind, views in (("post", body.get("posts")), ("comment", body.get("comments"))):
        for view in views if isinstance(views, list) else ():
            item = _dig(view, kind)
            creator = _person(_dig(view, "creator"))
            if not isinstance(item, dict) or not isinstance(item.get("id"), int) or not creator:
                continue
            yield Content(kind=kind, id=item["id"], creator=creator,  # type: ignore[arg-type]
                          community=str(_dig(view, "community", "actor_id") or ""),
                          ap_id=str(item.get("ap_id", "")))
