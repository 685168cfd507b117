"""Evidence records in the database; each change and its audit entry in one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.db import schema as t
from attestd.db.rows import audit_row
from attestd.db.store import Store
from attestd.evidence.record import EvidenceRecord
from attestd.model import AuditEntry

_E = t.evidence


def _row(r: Any) -> EvidenceRecord:
    return EvidenceRecord(id=int(r.id), sha256=r.sha256, found_at=_aware(r.found_at),
                          preserved_at=_aware(r.preserved_at),
                          retain_until=_aware(r.retain_until), location=r.location,
                          record=dict(r.record or {}))


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class EvidenceStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, record_id: int) -> EvidenceRecord | None:
        async with self.store.engine.connect() as conn:
            r = (await conn.execute(select(_E).where(_E.c.id == record_id))).first()
        return None if r is None else _row(r)

    async def by_sha256(self, sha256: str) -> EvidenceRecord | None:
        async with self.store.engine.connect() as conn:
            r = (await conn.execute(select(_E).where(_E.c.sha256 == sha256))).first()
        return None if r is None else _row(r)

    async def all(self, limit: int = 1000) -> list[EvidenceRecord]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(_E).order_by(_E.c.id).limit(limit))).all()
        return [_row(r) for r in rows]

    async def insert(self, *, sha256: str, found_at: datetime, preserved_at: datetime,
                     retain_until: datetime, location: str | None, record: dict[str, Any],
                     audit: AuditEntry) -> int:
        async with self.store.writing() as conn:
            res = await conn.execute(insert(_E).values(
                sha256=sha256, found_at=found_at, preserved_at=preserved_at,
                retain_until=retain_until, location=location, record=record))
            key = res.inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            await _audit(conn, audit, evidence=new_id)
        return new_id

    async def update(self, record_id: int, *, record: dict[str, Any], audit: AuditEntry,
                     retain_until: datetime | None = None, location: str | None = None) -> None:
        values: dict[str, Any] = {"record": record}
        if retain_until is not None:
            values["retain_until"] = retain_until
        if location is not None:
            values["location"] = location
        async with self.store.writing() as conn:
            await conn.execute(update(_E).where(_E.c.id == record_id).values(**values))
            await _audit(conn, audit, evidence=record_id)

    async def expired(self, now: datetime) -> list[EvidenceRecord]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(_E).where(_E.c.retain_until <= now)
                                       .order_by(_E.c.id))).all()
        return [_row(r) for r in rows]

    async def remove(self, record_id: int, now: datetime, audit: AuditEntry) -> bool:
        """Remove the record if it has expired by ``now`` (checked again in the same
        transaction, so a hit that extended it meanwhile keeps it); True if removed."""
        async with self.store.writing() as conn:
            res = await conn.execute(delete(_E).where(
                (_E.c.id == record_id) & (_E.c.retain_until <= now)))
            if not res.rowcount:
                return False
            await _audit(conn, audit, evidence=record_id)
        return True

    async def write_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self.store.write_audit(entries)


async def _audit(conn: AsyncConnection, entry: AuditEntry, **detail: Any) -> None:
    entry = dataclasses.replace(entry, detail={**(entry.detail or {}), **detail})
    await conn.execute(insert(t.audit_log), [audit_row(entry)])
