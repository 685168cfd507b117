"""Setting and removing admin overrides, with their audit entries: one path for the CLI
and the admin API. Each is one transaction: the override, its index entries and its
audit entry commit together."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.db.store import Store
from attestd.model import AuditEntry, Override
from scanner import ImageHashes


async def set_override(store: Store, action: str, sha256: str, hashes: ImageHashes | None,
                       note: str, actor: str, given: str) -> tuple[Override, int]:
    """Allow or block ``sha256``; returns the override and how many perceptual hash sets
    a block added. Allow is exact sha256 only: a forged near-copy must never be
    whitelisted."""
    async with store.writing() as conn:
        ov, frames = await set_override_in(conn, store, action, sha256, hashes, note, actor,
                                           given)
    store.forget(sha256)
    return ov, frames


async def set_override_in(conn: AsyncConnection, store: Store, action: str, sha256: str,
                          hashes: ImageHashes | None, note: str, actor: str, given: str
                          ) -> tuple[Override, int]:
    """``set_override`` inside the caller's transaction (it forgets ``sha256`` after)."""
    frames = hashes.frames if (hashes is not None and action == "block") else ()
    ov = await store.set_override_in(conn, sha256, action, note, actor, frames)
    await store.audit_in(conn, [AuditEntry(
        actor=actor, action=f"override_{action}", sha256=sha256,
        label="blocked" if action == "block" else "ok", source=f"override:{ov.id}",
        reason=note or None, detail={"given": given, "perceptual_frames": len(frames)})])
    return ov, len(frames)


async def remove_override(store: Store, actor: str, *, override_id: int | None = None,
                          sha256: str | None = None) -> Override | None:
    """Remove an override by id or sha256 and audit it; None when there was none."""
    async with store.writing() as conn:
        removed = await store.remove_override_in(conn, override_id=override_id, sha256=sha256)
        if removed is not None:
            await store.audit_in(conn, [AuditEntry(
                actor=actor, action="override_remove", sha256=removed.sha256,
                source=f"override:{removed.id}")])
    if removed is not None:
        store.forget(removed.sha256)
    return removed
