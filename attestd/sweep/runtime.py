"""Building a Sweeper from the configuration, and the node's continuous sweep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from attestd.config import Config, SweepConfig
from attestd.lemmy.api import LemmyError
from attestd.lemmy.followup import AliasLookup
from attestd.services import NodeServices
from attestd.sweep.quarantine import open_quarantine
from attestd.sweep.runner import Sweeper, SweepSettings
from attestd.sweep.sources import open_source
from attestd.sweep.sources.pictrs import PictrsSource
from attestd.sweep.store import SweepStore

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_sweeper(cfg: Config, sc: SweepConfig, services: NodeServices, *,
                       dry_run: bool = False) -> AsyncIterator[Sweeper]:
    """A Sweeper over the node's services for ``sc`` (its source closed afterwards)."""
    source = open_source(sc)
    try:
        client = getattr(source, "client", None)
        sealed_to = cfg.evidence.recipient if cfg.evidence.enabled else ""
        quarantine = (open_quarantine(sc, client, encrypt_to=sealed_to)
                      if sc.action == "quarantine" else None)
        settings = SweepSettings(action=sc.action, dry_run=dry_run, concurrency=sc.concurrency,
                                 layout=sc.layout, overlap_s=sc.overlap_s,
                                 unordered_pages_per_loop=sc.unordered_pages_per_loop,
                                 node=cfg.node.base_url)
        yield Sweeper(pipeline=services.pipeline, sweeps=SweepStore(services.store),
                      source=source, settings=settings, review=services.review,
                      quarantine=quarantine, hits=services.hits,
                      keep=services.evidence.keep if services.evidence else None)
    finally:
        await source.close()


async def run_continuous(sweeper: Sweeper, interval_s: float) -> None:
    """Sweep what is new every ``interval_s`` until cancelled; one log line per loop."""
    while True:
        try:
            summary = await sweeper.sweep_new()
            level = logging.WARNING if summary.errors else logging.INFO
            log.log(level, "sweep loop %s", json.dumps(summary.as_json()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next loop tries again; the node keeps serving
            log.warning("sweep loop of %s failed: %s", sweeper.source.name, exc)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def open_pictrs_aliases(cfg: Config) -> AsyncIterator[AliasLookup | None]:
    """The pict-rs aliases of an image by its sha256, asked of ``[sweep.pictrs]`` (None
    when it is not configured): what the Lemmy follow-up needs for hits that carry none."""
    pc = cfg.sweep.pictrs
    if not (pc.url and pc.api_token.get_secret_value()):
        yield None
        return
    source = PictrsSource(pc)
    try:
        yield _pictrs_lookup(source, cfg.lemmy.max_media_pages)
    finally:
        await source.close()


def _pictrs_lookup(source: PictrsSource, max_pages: int) -> AliasLookup:
    async def aliases_of(sha256: str) -> tuple[str, ...]:
        # pict-rs lists newest first and a hit here is usually recent (a rescan of an
        # upload, a review of a sweep's flag): a few pages find it.
        cursor = None
        for _ in range(max_pages):
            try:
                page = await source.page(cursor)
            except Exception as exc:  # pict-rs away: Lemmy is asked nothing this time
                raise LemmyError(0, None, f"pict-rs could not list hashes: {exc}") from None
            for obj in page.objects:
                if obj.sha256 == sha256:
                    return tuple(obj.aliases)
            cursor = page.next_cursor
            if cursor is None:
                break
        return ()
    return aliases_of
