"""A stand-in for pict-rs 0.5's internal API (pict-rs itself cannot run here).

It reproduces what attestd's sweep uses, as pict-rs serves it (src/lib.rs, src/repo.rs,
src/repo/hash.rs, src/middleware/internal.rs):

- every /internal route needs ``X-Api-Token`` equal to server.api_key, else 401 with
  ``{"msg": "Invalid API Key", "code": "invalid-api-token"}``;
- ``GET /internal/hashes?limit=N&slug=S`` pages hashes newest first. A hash is
  sha256 (32 bytes) + size (u64 big-endian) + the format's name (e.g. ``image:jpeg``);
  ``hex`` is that hex-encoded and a slug is it in URL-safe base64. ``current`` is the
  page's first hash, ``next`` the first hash of the following page, ``prev`` the first of
  the one before; absent keys are left out, not null. A slug naming a hash pict-rs no
  longer has pages from the start, as pict-rs's ``bound`` does;
- ``details`` is ``{"width", "height", "frames", "content_type", "created_at"}`` with
  RFC 3339 nanosecond times;
- ``GET /image/original/{alias}`` serves the bytes, 404 for an unknown alias;
- ``POST /internal/purge?alias=A`` forgets the hash and all its aliases:
  ``{"msg": "ok", "aliases": [...]}``, or 400 ``{"msg": "No images associated with
  provided alias"}``.

Faults can be injected: the next N requests answer 503, or 429 with Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

FORMATS = {"image/jpeg": b"image:jpeg", "image/png": b"image:png", "image/webp": b"image:webp",
           "image/gif": b"animation:gif", "video/mp4": b"video:mp4"}


@dataclass
class Entry:
    data: bytes
    content_type: str
    created_at: datetime
    aliases: list[str]

    @property
    def key(self) -> bytes:
        return (hashlib.sha256(self.data).digest() + len(self.data).to_bytes(8, "big")
                + FORMATS[self.content_type])


@dataclass
class PictrsStandIn:
    api_key: str
    entries: list[Entry] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    retry_after: str | None = None

    def add(self, data: bytes, content_type: str = "image/jpeg", *,
            age: timedelta = timedelta(0), aliases: int = 1) -> Entry:
        entry = Entry(data, content_type, datetime.now(UTC) - age,
                      [f"{uuid.uuid4()}.jpg" for _ in range(aliases)])
        self.entries.append(entry)
        return entry

    def originals_fetched(self) -> int:
        return sum(1 for m, p in self.requests if p.startswith("/image/original/"))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/internal/hashes", self._hashes)
        app.router.add_post("/internal/purge", self._purge)
        app.router.add_get("/image/original/{alias}", self._original)
        return app

    @web.middleware
    async def _faults(self, request: web.Request, handler: object) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.fail_next > 0:
            self.fail_next -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"msg": "busy", "code": "busy"}, status=self.fail_status,
                                     headers=headers)
        if request.path.startswith("/internal") and \
                request.headers.get("X-Api-Token") != self.api_key:
            return web.json_response({"msg": "Invalid API Key", "code": "invalid-api-token"},
                                     status=401)
        return await handler(request)  # type: ignore[operator, no-any-return]

    def _ordered(self) -> list[Entry]:
        return sorted(self.entries, key=lambda e: (e.created_at, e.key), reverse=True)

    async def _hashes(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "20"))
        ordered = self._ordered()
        start = 0
        slug = request.query.get("slug")
        if slug:
            try:
                wanted = base64.urlsafe_b64decode(slug)
            except ValueError:
                wanted = b""
            start = next((i for i, e in enumerate(ordered) if e.key == wanted), 0)
        page = ordered[start:start + limit]
        body: dict[str, object] = {"limit": limit}
        if page:
            body["current"] = _slug(page[0])
        if start > 0:
            body["prev"] = _slug(ordered[max(0, start - limit)])
        if start + limit < len(ordered):
            body["next"] = _slug(ordered[start + limit])
        body["hashes"] = [{"hex": e.key.hex(), "aliases": list(e.aliases),
                           "details": _details(e)} for e in page]
        return web.json_response({"msg": "ok", "page": body})

    async def _original(self, request: web.Request) -> web.Response:
        alias = request.match_info["alias"]
        for e in self.entries:
            if alias in e.aliases:
                return web.Response(body=e.data, content_type=e.content_type)
        return web.Response(status=404)

    async def _purge(self, request: web.Request) -> web.Response:
        alias = request.query.get("alias", "")
        for e in self.entries:
            if alias in e.aliases:
                self.entries.remove(e)
                return web.json_response({"msg": "ok", "aliases": e.aliases})
        return web.json_response({"msg": "No images associated with provided alias"},
                                 status=400)


def _slug(e: Entry) -> str:
    return base64.urlsafe_b64encode(e.key).decode()


def _details(e: Entry) -> dict[str, object]:
    stamp = e.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as pict-rs
    return {"width": 640, "height": 480, "frames": None, "content_type": e.content_type,
            "created_at": stamp}
