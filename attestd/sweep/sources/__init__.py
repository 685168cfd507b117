"""Where a sweep finds images: pict-rs's internal API, an S3 bucket, a folder."""

from __future__ import annotations

from typing import Protocol

from attestd.config import SweepConfig
from attestd.sweep.model import Order, Page, StoredObject, SweepError

__all__ = ["Order", "Source", "open_source"]


class Source(Protocol):
    """A store of images a sweep can list, read and act on."""

    # Stable name the runs and swept objects are recorded under (no secrets in it).
    name: str
    # "key": listing in key order, so a cursor is the last key; "newest_first": pict-rs.
    order: Order
    # What keys start with (an S3 prefix); time-ordered keys follow it.
    key_prefix: str

    async def page(self, cursor: str | None) -> Page:
        """The next page of the listing after ``cursor`` (None: from the start)."""

    async def fetch(self, obj: StoredObject) -> bytes:
        """The object's bytes. Raises ObjectGone if it was removed meanwhile."""

    async def delete(self, obj: StoredObject) -> str:
        """Remove the object; says what was done. Raises ObjectGone if already gone."""

    async def count(self) -> int | None:
        """How many objects there are (for a progress bar), or None if unknown."""

    async def close(self) -> None: ...


def open_source(cfg: SweepConfig, *, allow_private: bool = True) -> Source:
    """The source ``cfg.source`` names, checked for the settings it needs."""
    if cfg.source == "s3":
        from attestd.sweep.sources.s3 import S3Source
        if not cfg.s3.bucket:
            raise SweepError("sweep.source is s3 but sweep.s3.bucket is empty: set it "
                             "(or pass --bucket)")
        return S3Source(cfg.s3)
    if cfg.source == "fs":
        from attestd.sweep.sources.fs import FolderSource
        if not cfg.fs.path:
            raise SweepError("sweep.source is fs but sweep.fs.path is empty: set it "
                             "(or pass --path)")
        return FolderSource(cfg.fs.path, exclude=cfg.quarantine or None)
    from attestd.sweep.sources.pictrs import PictrsSource
    if not cfg.pictrs.url:
        raise SweepError("sweep.source is pictrs but sweep.pictrs.url is not set: set it to "
                         "pict-rs's own address, e.g. http://pictrs:8080 (or pass --pictrs-url)")
    if not cfg.pictrs.api_token.get_secret_value():
        raise SweepError("sweep.source is pictrs but sweep.pictrs.api_token is empty: set "
                         "it to pict-rs's server.api_key (ATTESTD_SWEEP__PICTRS__API_TOKEN)")
    return PictrsSource(cfg.pictrs)
