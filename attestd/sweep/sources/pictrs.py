"""pict-rs's internal API as a sweep source.

Routes and shapes as pict-rs 0.5 serves them (all under its server.api_key, sent as
``X-Api-Token``; a wrong key answers 401 with code ``invalid-api-token``):

- ``GET /internal/hashes?limit=N[&slug=S]``: ``{"msg": "ok", "page": {"limit", "current",
  "prev", "next", "hashes": [{"hex", "aliases", "details"}]}}``, newest first. ``hex`` is
  the original's sha256 (32 bytes), its size (8 bytes, big-endian) and its format name,
  hex-encoded, so an image we already know is never downloaded.
- ``GET /image/original/{alias}``: the original's bytes.
- ``POST /internal/purge?alias=A``: forgets the image and every alias of it;
  ``{"msg": "ok", "aliases": [...]}``, or 400 when no image has that alias.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from attestd.config import SweepPictrsConfig
from attestd.sweep.model import ObjectGone, Order, Page, StoredObject, SweepError

_HEX = re.compile(r"^[0-9a-f]{80,}$")
_MAX_ORIGINAL = 512 * 1024 * 1024
_ATTEMPTS = 8


class _Transient(Exception):
    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


class _RetryAfter(wait_base):
    """Wait what the server asked (Retry-After), else exponential backoff with jitter."""

    def __init__(self) -> None:
        self.backoff = wait_exponential(multiplier=0.5, max=30) + wait_random(0, 1)

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, 300.0)
        return float(self.backoff(retry_state))


class PictrsSource:
    order: Order = "newest_first"
    key_prefix = ""

    def __init__(self, cfg: SweepPictrsConfig, *, attempts: int = _ATTEMPTS) -> None:
        self.cfg = cfg
        self.name = f"pictrs:{cfg.url}"
        self._attempts = attempts
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.cfg.url + "/",
                headers={"X-Api-Token": self.cfg.api_token.get_secret_value()},
                timeout=aiohttp.ClientTimeout(total=300, sock_connect=10))
        return self._session

    async def page(self, cursor: str | None) -> Page:
        params: dict[str, str] = {"limit": str(self.cfg.page_size)}
        if cursor:
            params["slug"] = cursor
        body = await self._json("GET", "internal/hashes", params)
        page = body.get("page") if isinstance(body, dict) else None
        if not isinstance(page, dict) or not isinstance(page.get("hashes"), list):
            raise SweepError("pict-rs answered /internal/hashes without a page of hashes: "
                             "is sweep.pictrs.url a pict-rs >= 0.5 server?")
        objects = [_object(h) for h in page["hashes"]]
        nxt = page.get("next")
        return Page(objects, nxt if isinstance(nxt, str) and nxt and objects else None)

    async def fetch(self, obj: StoredObject) -> bytes:
        for alias in obj.aliases:
            data = await self._request("GET", f"image/original/{_quote(alias)}", None,
                                       want_bytes=True)
            if data is not None:
                return data
        raise ObjectGone(f"pict-rs has no original for {obj.key[:16]}… under any alias")

    async def delete(self, obj: StoredObject) -> str:
        if not obj.aliases:
            raise ObjectGone(f"pict-rs lists no alias for {obj.key[:16]}…")
        body = await self._json("POST", "internal/purge", {"alias": obj.aliases[0]},
                                missing_ok=True)
        if body is None:
            raise ObjectGone(f"pict-rs has no image under alias {obj.aliases[0]}")
        return f"purged from pict-rs (aliases {', '.join(obj.aliases)})"

    async def count(self) -> int | None:
        n, cursor = 0, None
        while True:
            params = {"limit": "1000", **({"slug": cursor} if cursor else {})}
            body = await self._json("GET", "internal/hashes", params)
            page = body.get("page") if isinstance(body, dict) else None
            if not isinstance(page, dict) or not isinstance(page.get("hashes"), list):
                return None
            hashes = page["hashes"]
            n += len(hashes)
            cursor = page.get("next")
            if not hashes or not isinstance(cursor, str) or not cursor:
                return n

    async def _json(self, method: str, path: str, params: dict[str, str] | None, *,
                    missing_ok: bool = False) -> Any:
        raw = await self._request(method, path, params, missing_ok=missing_ok)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SweepError(f"pict-rs answered {path} with something that is not JSON") from None

    async def _request(self, method: str, path: str, params: dict[str, str] | None, *,
                       want_bytes: bool = False, missing_ok: bool = False) -> bytes | None:
        async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Transient), wait=_RetryAfter(),
                stop=stop_after_attempt(self._attempts), reraise=True):
            with attempt:
                return await self._once(method, path, params, want_bytes, missing_ok)
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, params: dict[str, str] | None,
                    want_bytes: bool, missing_ok: bool) -> bytes | None:
        try:
            async with self._http().request(method, path, params=params) as resp:
                if resp.status == 401:
                    raise SweepError("pict-rs refused the API token (401): set "
                                     "sweep.pictrs.api_token to pict-rs's server.api_key")
                if resp.status in (429, 500, 502, 503, 504):
                    raise _Transient(f"pict-rs answered {resp.status} to {path}",
                                     _retry_after(resp.headers.get("Retry-After")))
                if resp.status == 404 and want_bytes:
                    return None
                if resp.status in (400, 404) and missing_ok:
                    return None
                if resp.status >= 300:
                    text = (await resp.content.read(500)).decode("utf-8", "replace")
                    raise SweepError(f"pict-rs answered {resp.status} to {method} /{path}: {text}")
                limit = _MAX_ORIGINAL if want_bytes else 64 * 1024 * 1024
                data = await resp.content.read(limit + 1)
                if len(data) > limit:
                    raise SweepError(f"pict-rs sent more than {limit} bytes for /{path}")
                return data
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Transient(f"{method} /{path}: {exc.__class__.__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _object(h: Any) -> StoredObject:
    if not isinstance(h, dict) or not isinstance(h.get("hex"), str) or not _HEX.match(h["hex"]):
        raise SweepError(f"pict-rs listed a hash that is not pict-rs's hex form: {str(h)[:120]}")
    hexed: str = h["hex"]
    aliases = h.get("aliases")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise SweepError(f"pict-rs listed hash {hexed[:16]}… with malformed aliases")
    details = h.get("details")
    stamp = details.get("created_at") if isinstance(details, dict) else None
    created = None
    if isinstance(stamp, str):
        try:
            # pict-rs writes RFC 3339 with nanoseconds; Python keeps microseconds.
            created = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1",
                                                    stamp.replace("Z", "+00:00")))
        except ValueError:
            created = None
    return StoredObject(key=hexed, size=int(hexed[64:80], 16), sha256=hexed[:64],
                        modified=created, aliases=tuple(aliases))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _quote(alias: str) -> str:
    return quote(alias, safe="")
