"""Preserving evidence: what the sweep calls before it deletes or quarantines, what hits
are handed to, and the purge of what has expired."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from attestd.errors import AttestdError
from attestd.evidence import crypto
from attestd.evidence.files import EvidenceFiles, EvidenceFilesError, open_files
from attestd.evidence.record import (
    AnnotationError,
    EvidenceRecord,
    add_event,
    annotate,
    has_event,
    new_record,
    should_preserve,
)
from attestd.evidence.store import EvidenceStore
from attestd.hits import Hit
from attestd.model import AuditEntry, utcnow
from scanner import ImageHashes, sha256_hex

if TYPE_CHECKING:
    from attestd.config import Config
    from attestd.db.store import Store

log = logging.getLogger(__name__)

PURGE_ACTOR = "evidence-purge"


class EvidenceError(AttestdError):
    """Evidence could not be preserved, found or changed as asked."""


@dataclass(frozen=True)
class EvidenceSettings:
    recipient: str  # the admin's age public key
    retention: timedelta
    labels: frozenset[str]
    node: str


HashLookup = Callable[[str], Awaitable[ImageHashes | None]]


class Evidence:
    def __init__(self, records: EvidenceStore, files: EvidenceFiles,
                 settings: EvidenceSettings, hashes: HashLookup | None = None) -> None:
        if not settings.recipient:
            raise EvidenceError("evidence needs the admin's age public key (evidence.recipient)")
        crypto.parse_recipient(settings.recipient)
        self.records = records
        self.files = files
        self.settings = settings
        self._hashes = hashes

    # -- preserving ------------------------------------------------------------------------

    async def on_hit(self, hit: Hit) -> None:
        """The Hits subscriber: quarantines, confirmed reviews (and deletes, which the sweep
        has already preserved through ``keep``: then this only adds the event)."""
        if should_preserve(hit, self.settings.labels):
            await self.preserve(hit)

    async def keep(self, hit: Hit, store: str) -> None:
        """The sweep's hook before it deletes or quarantines: raises if the bytes could
        not be preserved, so the object stays in the store."""
        if should_preserve(hit, self.settings.labels):
            if hit.data is None:
                raise EvidenceError(f"no bytes of {hit.key or hit.sha256} to preserve")
            await self.preserve(hit, store)

    async def preserve(self, hit: Hit, store: str | None = None) -> int:
        """Keep ``hit`` as evidence (its bytes encrypted, when it has them); one record per
        image, later hits added to it and its retention extended. Returns the record's id."""
        if hit.data is not None and sha256_hex(hit.data) != hit.sha256:
            raise EvidenceError(f"the bytes given for {hit.sha256} are not that image "
                                "(changed since checked?); not preserved")
        now = utcnow()
        retain_until = now + self.settings.retention
        existing = await self.records.by_sha256(hit.sha256)
        location, about_bytes = None, None
        if hit.data is not None and (existing is None or existing.location is None):
            location, about_bytes = await self._write(hit.data)
        if existing is None:
            hashes = await self._hashes(hit.sha256) if self._hashes is not None else None
            record = new_record(hit, hashes=hashes, store=store, node=self.settings.node,
                                now=now, retention=self.settings.retention)
            record["bytes"] = about_bytes
            try:
                return await self.records.insert(
                    sha256=hit.sha256, found_at=hit.at, preserved_at=now,
                    retain_until=retain_until, location=location, record=record,
                    audit=self._audit("evidence_preserve", hit, location, retain_until))
            except IntegrityError:  # preserved by another process meanwhile
                existing = await self.records.by_sha256(hit.sha256)
                if existing is None:
                    raise
        if about_bytes is None and has_event(existing.record, hit):
            return existing.id  # this very hit again (the sweep's, after its delete)
        record = add_event(existing.record, hit, store)
        retain_until = max(existing.retain_until, retain_until)
        record["retain_until"] = retain_until.isoformat()
        if about_bytes is not None:
            record["bytes"] = about_bytes
        await self.records.update(existing.id, record=record, retain_until=retain_until,
                                  location=location,
                                  audit=self._audit("evidence_update", hit, location,
                                                    retain_until))
        return existing.id

    async def _write(self, data: bytes) -> tuple[str, dict[str, Any]]:
        sealed = await asyncio.to_thread(crypto.encrypt, data, self.settings.recipient)
        name = secrets.token_hex(16) + ".age"
        try:
            await self.files.put(name, sealed)
        except EvidenceFilesError as exc:
            raise EvidenceError(str(exc)) from None
        return name, {"size": len(data), "encrypted_size": len(sealed),
                      "encryption": crypto.ENCRYPTION, "recipient": self.settings.recipient,
                      "file": name, "where": self.files.where}

    def _audit(self, action: str, hit: Hit, location: str | None,
               retain_until: datetime) -> AuditEntry:
        return AuditEntry(actor=hit.actor or "evidence", action=action, sha256=hit.sha256,
                          label=hit.label, source=hit.source,
                          detail={"origin": hit.origin, "did": hit.action, "key": hit.key,
                                  "bytes_kept": location is not None,
                                  "retain_until": retain_until.isoformat()})

    # -- reading and annotating ------------------------------------------------------------

    async def get(self, record_id: int) -> EvidenceRecord:
        rec = await self.records.get(record_id)
        if rec is None:
            raise EvidenceError(f"no evidence record {record_id} (see `attestd evidence list`)")
        return rec

    async def encrypted_bytes(self, rec: EvidenceRecord) -> bytes | None:
        return None if rec.location is None else await self.files.get(rec.location)

    async def annotate(self, record_id: int, fields: Mapping[str, Any], *,
                       actor: str = "lemmy-follow-up") -> EvidenceRecord:
        """Add what the Lemmy follow-up (or an admin) found: uploader, post, community,
        IP... (``record.ANNOTATION_FIELDS``)."""
        rec = await self.get(record_id)
        try:
            body = annotate(rec.record, fields)
        except AnnotationError as exc:
            raise EvidenceError(str(exc)) from None
        await self.records.update(rec.id, record=body, audit=AuditEntry(
            actor=actor, action="evidence_annotate", sha256=rec.sha256,
            detail={"fields": sorted(fields)}))
        return await self.get(record_id)

    async def annotate_image(self, sha256: str, fields: Mapping[str, Any], *,
                             actor: str = "lemmy-follow-up") -> EvidenceRecord | None:
        """``annotate`` by the image's sha256 (what a hit carries); None when the image
        was not preserved."""
        rec = await self.records.by_sha256(sha256)
        return None if rec is None else await self.annotate(rec.id, fields, actor=actor)

    # -- retention -------------------------------------------------------------------------

    async def purge(self, now: datetime | None = None, *, actor: str = PURGE_ACTOR) -> list[int]:
        """Remove records (and their bytes) whose retain_until has passed, each with an
        audit entry; nothing before its time. Returns the ids removed."""
        now = now or utcnow()
        gone: list[int] = []
        for rec in await self.records.expired(now):
            removed = await self.records.remove(rec.id, now, AuditEntry(
                actor=actor, action="evidence_purge", sha256=rec.sha256,
                reason="retention ended",
                detail={"preserved_at": rec.preserved_at.isoformat(),
                        "retain_until": rec.retain_until.isoformat(),
                        "bytes_kept": rec.has_bytes}))
            if not removed:
                continue
            if rec.location is not None:
                try:
                    await self.files.delete(rec.location)
                except Exception as exc:  # the record is gone; an orphan file is encrypted
                    log.warning("evidence %d purged but its file %s stays: %s",
                                rec.id, rec.location, exc)
            gone.append(rec.id)
        return gone


def open_evidence(config: Config, store: Store,
                  hashes: HashLookup | None = None) -> Evidence | None:
    """The node's Evidence when ``[evidence] enabled``, else None."""
    ec = config.evidence
    if not ec.enabled:
        return None
    base = config.source.parent if config.source is not None else Path.cwd()
    try:
        files = open_files(ec.path, data_dir=config.node.data_dir, base=base,
                           s3_cfg=config.sweep.s3)
    except EvidenceFilesError as exc:
        raise EvidenceError(str(exc)) from None
    return Evidence(EvidenceStore(store), files, EvidenceSettings(
        recipient=ec.recipient, retention=timedelta(days=ec.retention_days),
        labels=frozenset(ec.labels), node=config.node.base_url), hashes)


async def purge_loop(evidence: Evidence, interval_s: float) -> None:
    """Purge expired evidence every ``interval_s`` until cancelled."""
    while True:
        try:
            gone = await evidence.purge()
            if gone:
                log.info("purged %d evidence record(s) past retention: %s", len(gone), gone)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # tried again next time; the node keeps serving
            log.warning("evidence purge failed: %s", exc)
        await asyncio.sleep(interval_s)
