"""Sweep runs, swept objects and continuous cursors, in the node's database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from attestd.db import schema as t
from attestd.db.rows import audit_row, insert_ignore
from attestd.db.store import Store
from attestd.model import AuditEntry, CheckOutcome, as_utc, utcnow
from attestd.sweep.model import PriorCheck, RunSummary, StoredObject


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    source: str
    mode: str
    action: str
    dry_run: bool
    status: str
    cursor: str | None
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingAction:
    key: str
    sha256: str | None
    size: int | None
    etag: str | None
    action: str
    label: str | None
    decided_by: str | None
    reason: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    obj: StoredObject
    outcome: CheckOutcome
    downloaded: bool
    action: str
    action_state: str
    audit: AuditEntry
    action_detail: str | None = None


class SweepStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def start_run(self, source: str, mode: str, action: str, dry_run: bool) -> int:
        now = utcnow()
        async with self.store.writing() as conn:
            res = await conn.execute(insert(t.sweep_runs).values(
                source=source, mode=mode, action=action, dry_run=dry_run, status="running",
                started_at=now, updated_at=now).returning(t.sweep_runs.c.id))
            return int(res.scalar_one())

    async def unfinished_run(self, source: str, mode: str) -> RunInfo | None:
        q = (select(t.sweep_runs).where((t.sweep_runs.c.source == source)
                                        & (t.sweep_runs.c.mode == mode)
                                        & (t.sweep_runs.c.status != "done"))
             .order_by(t.sweep_runs.c.id.desc()).limit(1))
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _run(row) if row is not None else None

    async def run(self, run_id: int) -> RunInfo | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(t.sweep_runs).where(
                t.sweep_runs.c.id == run_id))).first()
        return _run(row) if row is not None else None

    async def runs(self, limit: int = 20) -> list[RunInfo]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.sweep_runs).order_by(
                t.sweep_runs.c.id.desc()).limit(limit))).all()
        return [_run(r) for r in rows]

    async def progress(self, run_id: int, cursor: str | None, summary: RunSummary) -> None:
        """Where a resumed run lists from, once every object before it is recorded."""
        async with self.store.writing() as conn:
            await conn.execute(update(t.sweep_runs).where(t.sweep_runs.c.id == run_id).values(
                cursor=cursor, summary=summary.as_json(), updated_at=utcnow()))

    async def finish(self, run_id: int, status: str, summary: RunSummary,
                     error: str | None = None) -> None:
        async with self.store.writing() as conn:
            await conn.execute(update(t.sweep_runs).where(t.sweep_runs.c.id == run_id).values(
                status=status, summary=summary.as_json(), error=error, finished_at=utcnow(),
                updated_at=utcnow()))

    async def stop(self, run_id: int, status: str, summary: RunSummary, error: str) -> None:
        """A run that stopped before its end (an ``--all`` one is resumed later)."""
        async with self.store.writing() as conn:
            await conn.execute(update(t.sweep_runs).where(t.sweep_runs.c.id == run_id).values(
                status=status, summary=summary.as_json(), error=error, updated_at=utcnow()))

    async def priors(self, source: str, keys: Sequence[str]) -> dict[str, PriorCheck]:
        out: dict[str, PriorCheck] = {}
        c = t.sweep_objects.c
        async with self.store.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                rows = (await conn.execute(select(
                    c.key, c.size, c.etag, c.sha256, c.label, c.run_id, c.action_state,
                    c.decision, c.decided_by, c.downloaded, c.action).where(
                    (c.source == source) & c.key.in_(keys[i:i + 500])))).all()
                for r in rows:
                    out[r.key] = PriorCheck(r.size, r.etag, r.sha256, r.label, int(r.run_id),
                                            r.action_state, r.decision, r.decided_by,
                                            bool(r.downloaded), r.action)
        return out

    async def record(self, run_id: int, source: str, checks: Sequence[CheckRecord]) -> None:
        """Objects' checks and their audit entries, in one transaction."""
        if not checks:
            return
        now = utcnow()
        rows = [dict(source=source, key=c.obj.key, size=c.obj.size, etag=c.obj.etag,
                     sha256=c.outcome.sha256, run_id=run_id, decision=c.outcome.decision,
                     label=c.outcome.label, decided_by=c.outcome.source,
                     reason=c.outcome.reason[:2000], downloaded=c.downloaded, action=c.action,
                     action_state=c.action_state, action_detail=c.action_detail, checked_at=now)
                for c in checks]
        async with self.store.writing() as conn:
            stmt = insert_ignore(conn)(t.sweep_objects)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["source", "key"],
                set_={k: stmt.excluded[k] for k in rows[0] if k not in ("source", "key")}), rows)
            await conn.execute(insert(t.audit_log), [audit_row(c.audit) for c in checks])

    async def action_done(self, source: str, key: str, state: str, detail: str,
                          audit: AuditEntry | None) -> None:
        async with self.store.writing() as conn:
            await conn.execute(update(t.sweep_objects).where(
                (t.sweep_objects.c.source == source) & (t.sweep_objects.c.key == key)).values(
                action_state=state, action_detail=detail[:2000]))
            if audit is not None:
                await conn.execute(insert(t.audit_log).values(audit_row(audit)))

    async def pending_actions(self, source: str) -> list[PendingAction]:
        c = t.sweep_objects.c
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(
                c.key, c.sha256, c.size, c.etag, c.action, c.label, c.decided_by, c.reason,
                c.action_detail)
                .where((c.source == source) & (c.action_state == "pending"))
                .order_by(c.id))).all()
        return [PendingAction(r.key, r.sha256, r.size, r.etag, r.action, r.label,
                              r.decided_by, r.reason, r.action_detail) for r in rows]

    async def cursor(self, source: str) -> str | None:
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(t.sweep_cursors.c.value).where(
                t.sweep_cursors.c.source == source))).scalar_one_or_none()

    async def set_cursor(self, source: str, value: str) -> None:
        async with self.store.writing() as conn:
            stmt = insert_ignore(conn)(t.sweep_cursors).values(source=source, value=value,
                                                                 updated_at=utcnow())
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["source"], set_={"value": value, "updated_at": utcnow()}))

    async def acted(self, run_id: int, limit: int = 1000) -> list[AuditEntry]:
        """The acts (deletions, quarantines, flags) a run recorded in the audit log."""
        q = (select(t.audit_log).where((t.audit_log.c.actor == run_actor(run_id))
                                       & (t.audit_log.c.action != "sweep_check"))
             .order_by(t.audit_log.c.id).limit(limit))
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [AuditEntry(actor=r.actor, action=r.action, at=r.at, sha256=r.sha256,
                           decision=r.decision, label=r.label, source=r.source, reason=r.reason,
                           detail=r.detail) for r in rows]


def run_actor(run_id: int) -> str:
    """The audit log's actor for what sweep run ``run_id`` did."""
    return f"sweep:{run_id}"


def _run(r: Any) -> RunInfo:
    return RunInfo(id=int(r.id), source=r.source, mode=r.mode, action=r.action,
                   dry_run=bool(r.dry_run), status=r.status, cursor=r.cursor,
                   started_at=as_utc(r.started_at) or utcnow(),
                   finished_at=as_utc(r.finished_at), error=r.error, summary=r.summary or {})
