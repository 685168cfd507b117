"""Hash lists fetched from a URL: a guarded, size-capped fetch, the import, and the
refreshes `attestd serve` runs; a failed fetch or a bad file keeps the list as it was."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from sqlalchemy import delete, insert, select, update

from activitypub import ActivityPubError, BlockedAddressError
from activitypub.fetch import check_url, make_session, read_capped
from attestd.config import Config
from attestd.db import schema as t
from attestd.db.store import ListChange, Store
from attestd.errors import AttestdError
from attestd.hash_lists import HashListError, ParseReport, parse
from attestd.model import LABELS, AuditEntry, as_utc, utcnow

log = logging.getLogger(__name__)

USER_AGENT = "attestd (hash list refresh)"
MAX_REDIRECTS = 3
# A failed refresh is tried again this soon (or at the list's own interval, if shorter).
RETRY_AFTER = timedelta(hours=1)
# How often serve looks for lists due, at most (a shorter refresh_hours looks sooner).
CHECK_INTERVAL_S = 60.0


class ListFetchError(AttestdError):
    """A hash list could not be fetched; the message says from where and what went wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class UrlSource:
    source: str  # "list:NAME"
    url: str
    label: str | None
    refresh_hours: float | None
    last_try_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    entries: int | None = None


def is_url(text: str) -> bool:
    return text.lower().startswith(("https://", "http://"))


def shown(url: str) -> str:
    """``url`` without user info, query or fragment (they may hold an access token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def list_rows(text: str, label: str | None) -> tuple[list[dict[str, Any]], ParseReport]:
    """The rows to import from ``text`` (parsed whole: one bad line imports nothing)."""
    report = ParseReport({})
    rows = [dict(pdq=h.pdq, pdq_quality=h.pdq_quality, phash=h.phash, sha256=h.sha256,
                 md5=h.md5, label=h.label if h.label in LABELS and h.label != "ok" else None)
            for h in parse(text, report)]
    if not rows:
        raise HashListError("it holds no image or file hashes")
    unlabelled = sum(1 for r in rows if not r["label"])
    if label is None and unlabelled:
        raise HashListError(f"{unlabelled} of {len(rows)} rows have no label of their own; "
                            "give a label to say what a match means")
    return rows, report


async def fetch_list(url: str, *, allow_private: bool, max_bytes: int,
                     timeout_s: float) -> str:
    """The text at ``url``: HTTPS only (plain http only with ``allow_private``, which is
    for tests), every hop through the SSRF guard, at most ``max_bytes``."""
    current = url
    async with make_session(allow_private=allow_private, user_agent=USER_AGENT,
                            timeout_s=timeout_s) as session:
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(current).scheme.lower() != "https" and not allow_private:
                raise ListFetchError(f"refusing {shown(current)}: hash lists are fetched over "
                                     "HTTPS only")
            try:
                check_url(current, allow_private)
                async with session.get(current, allow_redirects=False) as r:
                    if r.status in (301, 302, 303, 307, 308) and "Location" in r.headers:
                        current = urljoin(current, r.headers["Location"])
                        continue
                    if r.status != 200:
                        raise ListFetchError(f"GET {shown(current)} answered {r.status}")
                    body = await read_capped(r, max_bytes, current)
            except ActivityPubError as exc:
                raise ListFetchError(str(exc).replace(current, shown(current))) from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                if isinstance(exc.__cause__, BlockedAddressError):
                    raise ListFetchError(f"refusing {shown(current)}: non-public address"
                                         ) from None
                raise ListFetchError(f"GET {shown(current)} failed: "
                                     f"{type(exc).__name__}") from None
            try:
                return body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ListFetchError(f"{shown(current)} is not UTF-8 text") from None
    raise ListFetchError(f"GET {shown(url)}: more than {MAX_REDIRECTS} redirects")


async def import_url(store: Store, cfg: Config, source: str, url: str, label: str | None,
                     *, actor: str, refresh_hours: float | None = None
                     ) -> tuple[ListChange, ParseReport]:
    """Fetch ``url`` and make it ``source``'s entries; its status is recorded either way.
    Raises ListFetchError or HashListError, leaving the entries as they were."""
    await register(store, UrlSource(source, url, label, refresh_hours))
    try:
        text = await fetch_list(url, allow_private=cfg.federation.allow_private_addresses,
                                max_bytes=cfg.hash_lists.max_bytes,
                                timeout_s=cfg.hash_lists.timeout_s)
        rows, report = list_rows(text, label)
    except (ListFetchError, HashListError) as exc:
        await _record(store, source, error=str(exc))
        raise
    change = await store.replace_list(source, label or "", rows)
    await _record(store, source, entries=change.added + change.kept)
    await store.write_audit([AuditEntry(
        actor=actor, action="hashes_import", label=label, source=source,
        detail={"url": shown(url), "added": change.added, "kept": change.kept,
                "dropped": change.dropped, "skipped": report.skipped})])
    return change, report


async def register(store: Store, src: UrlSource) -> None:
    """Remember where ``src.source`` comes from and how often to refresh it."""
    u = t.hash_list_urls
    values = {"url": src.url, "label": src.label, "refresh_hours": src.refresh_hours}
    async with store.writing() as conn:
        done = await conn.execute(update(u).where(u.c.source == src.source).values(**values))
        if not done.rowcount:
            await conn.execute(insert(u).values(source=src.source, **values))


async def forget(store: Store, source: str) -> None:
    """``source`` is no longer fetched (it was removed)."""
    async with store.writing() as conn:
        await conn.execute(delete(t.hash_list_urls).where(t.hash_list_urls.c.source == source))


async def _record(store: Store, source: str, *, error: str | None = None,
                  entries: int | None = None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"last_try_at": now, "last_error": error}
    if error is None:
        values |= {"last_ok_at": now, "entries": entries}
    async with store.writing() as conn:
        await conn.execute(update(t.hash_list_urls)
                           .where(t.hash_list_urls.c.source == source).values(**values))


async def url_sources(store: Store) -> list[UrlSource]:
    u = t.hash_list_urls
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(u).order_by(u.c.source))).all()
    return [UrlSource(r.source, r.url, r.label, r.refresh_hours, as_utc(r.last_try_at),
                      as_utc(r.last_ok_at), r.last_error, r.entries) for r in rows]


def due(sources: Sequence[UrlSource], now: datetime) -> list[UrlSource]:
    """Sources whose refresh is due: never tried, or tried ``refresh_hours`` ago (or,
    after a failure, RETRY_AFTER ago if that is sooner)."""
    out = []
    for s in sources:
        if s.refresh_hours is None:
            continue
        every = timedelta(hours=s.refresh_hours)
        if s.last_error is not None:
            every = min(every, RETRY_AFTER)
        if s.last_try_at is None or s.last_try_at + every <= now:
            out.append(s)
    return out


async def refresh_loop(store: Store, cfg: Config) -> None:
    """`attestd serve`'s refreshes: the configured sources are registered, then every
    source due is fetched again; a failure is logged and recorded, the list kept."""
    registered = False
    while True:
        sources: list[UrlSource] = []
        try:
            if not registered:
                for c in cfg.hash_lists.sources:
                    await register(store, UrlSource(f"list:{c.name}", c.url, c.label,
                                                    c.refresh_hours))
                registered = True
            sources = await url_sources(store)
            for s in due(sources, utcnow()):
                await _refresh_one(store, cfg, s)
        except Exception:  # the database may be away for a while: try again next round
            log.error("could not refresh the hash lists", exc_info=True)
        hours = [s.refresh_hours for s in sources if s.refresh_hours is not None]
        await asyncio.sleep(max(0.5, min([CHECK_INTERVAL_S, *(h * 1800 for h in hours)])))


async def _refresh_one(store: Store, cfg: Config, s: UrlSource) -> None:
    try:
        change, _ = await import_url(store, cfg, s.source, s.url, s.label,
                                     actor="system:hash-list-refresh",
                                     refresh_hours=s.refresh_hours)
    except (ListFetchError, HashListError) as exc:
        log.warning("hash list %s was not refreshed (it stays as it was): %s", s.source, exc)
        return
    log.info("hash list %s refreshed from %s: %d added, %d kept, %d dropped", s.source,
             shown(s.url), change.added, change.kept, change.dropped)


@contextlib.asynccontextmanager
async def refreshing(store: Store, cfg: Config) -> AsyncIterator[None]:
    """Run refresh_loop while the context is open."""
    task = asyncio.create_task(refresh_loop(store, cfg), name="hash-list-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
