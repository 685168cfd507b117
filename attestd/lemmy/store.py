"""The durable Lemmy follow-up steps, in the node's database; each change of a step and
its audit entry are one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.db import schema as t
from attestd.db.rows import audit_row, insert_ignore
from attestd.db.store import Store
from attestd.model import AuditEntry, as_utc, utcnow

# A claimed step is left alone by other node processes this long (then it is due again:
# the process that claimed it stopped).
LEASE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class StepRow:
    id: int
    sha256: str
    step: str
    target: str
    evidence: str
    state: str
    attempts: int
    next_try: datetime
    detail: dict[str, Any]
    last_error: str | None


@dataclass(frozen=True, slots=True)
class NewStep:
    sha256: str
    step: str
    target: str
    evidence: str
    detail: dict[str, Any]
    state: str = "pending"


class LemmyStepStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, steps: Sequence[NewStep], *, retry_dry_run: bool = False) -> int:
        """Record steps not recorded yet (a step already there is left as it is, so a hit
        seen twice acts once); with ``retry_dry_run``, one that only ran dry is due again.
        Returns how many are new or due again."""
        async with self.store.writing() as conn:
            return await _add(conn, steps, retry_dry_run)

    async def planned(self, find: StepRow, state: str, detail: dict[str, Any],
                      steps: Sequence[NewStep], audit: Sequence[AuditEntry], *,
                      retry_dry_run: bool) -> None:
        """A look-up's outcome in one transaction: its state, the steps it planned and
        their audit entries."""
        async with self.store.writing() as conn:
            await _add(conn, steps, retry_dry_run)
            await conn.execute(update(t.lemmy_steps).where(t.lemmy_steps.c.id == find.id)
                               .values(state=state, detail=detail, attempts=find.attempts + 1,
                                       last_error=None, updated_at=utcnow()))
            if audit:
                await conn.execute(insert(t.audit_log), [audit_row(a) for a in audit])

    async def claim_due(self, limit: int = 20) -> list[StepRow]:
        """Steps due now, oldest first, each leased to this process."""
        now = utcnow()
        c = t.lemmy_steps.c
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.lemmy_steps).where(
                (c.state == "pending") & (c.next_try <= now)).order_by(c.id).limit(limit))).all()
        claimed = []
        for r in rows:
            async with self.store.writing() as conn:
                got = (await conn.execute(update(t.lemmy_steps).where(
                    (c.id == r.id) & (c.state == "pending") & (c.next_try == r.next_try))
                    .values(next_try=now + LEASE))).rowcount
            if got:
                claimed.append(_row(r))
        return claimed

    async def finish(self, step_id: int, state: str, audit: AuditEntry, *,
                     detail: dict[str, Any] | None = None, error: str | None = None,
                     attempts: int | None = None, next_try: datetime | None = None) -> None:
        values: dict[str, Any] = {"state": state, "updated_at": utcnow(), "last_error": error}
        if detail is not None:
            values["detail"] = detail
        if attempts is not None:
            values["attempts"] = attempts
        if next_try is not None:
            values["next_try"] = next_try
        async with self.store.writing() as conn:
            await conn.execute(update(t.lemmy_steps).where(t.lemmy_steps.c.id == step_id)
                               .values(**values))
            await conn.execute(insert(t.audit_log).values(audit_row(audit)))

    async def steps(self, sha256: str) -> list[StepRow]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.lemmy_steps).where(
                t.lemmy_steps.c.sha256 == sha256).order_by(t.lemmy_steps.c.id))).all()
        return [_row(r) for r in rows]

    async def listed(self, *, sha256: str | None = None, state: str | None = None,
                     limit: int = 200) -> list[StepRow]:
        c = t.lemmy_steps.c
        q = select(t.lemmy_steps).order_by(c.id.desc()).limit(limit)
        if sha256:
            q = q.where(c.sha256 == sha256)
        if state:
            q = q.where(c.state == state)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [_row(r) for r in reversed(rows)]

    async def requeue(self, ids: Sequence[int] | None, actor: str) -> list[StepRow]:
        """Failed steps (``ids``, or all when None) due again with fresh tries, audited;
        returns those requeued."""
        c = t.lemmy_steps.c
        now = utcnow()
        async with self.store.writing() as conn:
            q = select(t.lemmy_steps).where(c.state == "failed")
            if ids is not None:
                q = q.where(c.id.in_(list(ids)))
            rows = [_row(r) for r in (await conn.execute(q)).all()]
            if rows:
                await conn.execute(update(t.lemmy_steps).where(c.id.in_([r.id for r in rows]))
                                   .values(state="pending", attempts=0, next_try=now,
                                           updated_at=now))
                await conn.execute(insert(t.audit_log), [audit_row(AuditEntry(
                    actor=actor, action="lemmy_requeue", sha256=r.sha256,
                    reason=f"{r.step} {r.target} due again (was: {r.last_error})",
                    detail={"step": r.step, "target": r.target, "id": r.id})) for r in rows])
        return rows

    async def next_due(self) -> datetime | None:
        c = t.lemmy_steps.c
        async with self.store.engine.connect() as conn:
            value = (await conn.execute(select(c.next_try).where(c.state == "pending")
                                        .order_by(c.next_try).limit(1))).scalar_one_or_none()
        return as_utc(value)


async def _add(conn: AsyncConnection, steps: Sequence[NewStep], retry_dry_run: bool) -> int:
    now = utcnow()
    c = t.lemmy_steps.c
    n = 0
    for s in steps:
        added = (await conn.execute(insert_ignore(conn)(t.lemmy_steps).values(
            sha256=s.sha256, step=s.step, target=s.target, evidence=s.evidence, state=s.state,
            attempts=0, next_try=now, detail=s.detail, last_error=None, created_at=now,
            updated_at=now).on_conflict_do_nothing())).rowcount
        if not added and retry_dry_run:
            added = (await conn.execute(update(t.lemmy_steps).where(
                (c.sha256 == s.sha256) & (c.step == s.step) & (c.target == s.target)
                & (c.state == "dry_run")).values(
                state=s.state, detail=s.detail, attempts=0, next_try=now,
                updated_at=now))).rowcount
        n += added or 0
    return n


def _row(r: Any) -> StepRow:
    return StepRow(id=r.id, sha256=r.sha256, step=r.step, target=r.target, evidence=r.evidence,
                   state=r.state, attempts=r.attempts, next_try=as_utc(r.next_try) or utcnow(),
                   detail=dict(r.detail or {}), last_error=r.last_error)
