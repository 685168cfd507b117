"""Jobs and workers in the database. Claims are atomic: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (several node processes share one queue); SQLite serialises writers anyway."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.db import schema as t
from attestd.db.store import Store
from attestd.model import Verdict, as_utc, utcnow
from scanner import ImageHashes

CompleteOutcome = Literal["done", "repeat", "expired", "not_yours", "unknown", "conflict"]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    sha256: str
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str
    created_at: datetime
    last_seen_at: datetime | None


TOKEN_PREFIX = "attestd_wk_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class CompletedJob(NamedTuple):
    outcome: CompleteOutcome
    sha256: str
    reason: str | None  # unknown | accept_and_rescan | …
    verdict: Verdict | None = None  # what ``record`` wrote, when the job was done now


class JobRow(NamedTuple):
    sha256: str
    reason: str | None
    state: str
    lease_owner: str | None


# Records a finished job's verdict inside the transaction that marks it done:
# (connection, sha256, why the job was queued) → the verdict.
RecordVerdict = Callable[[AsyncConnection, str, "str | None"], Awaitable[Verdict]]


def worker_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a worker name, or None."""
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum() \
            or not name.isascii():
        return "use letters, digits, '-' and '_' (at most 100)"
    if name == "in-node":
        return "'in-node' is the node's own worker"
    return None


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # -- workers --------------------------------------------------------------------------

    async def add_worker(self, name: str) -> str:
        """Register a worker; returns its bearer token (shown once, stored as a digest)."""
        # The prefix keeps a token from ever starting with "-" (which argument parsers
        # read as an option) and lets secret scanners recognise a leaked one.
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.store.writing() as conn:
            exists = (await conn.execute(select(t.workers.c.id)
                                         .where(t.workers.c.name == name))).first()
            if exists is not None:
                raise ValueError(f"a worker named {name!r} exists; remove it first")
            await conn.execute(t.workers.insert().values(
                name=name, token_sha256=token_digest(token), created_at=utcnow()))
        return token

    async def remove_worker(self, name: str) -> bool:
        async with self.store.writing() as conn:
            res = await conn.execute(delete(t.workers).where(t.workers.c.name == name))
            # Its leases go back to the queue at once.
            await conn.execute(update(t.jobs).where(and_(
                t.jobs.c.lease_owner == name, t.jobs.c.state == "leased")).values(
                state="queued", lease_owner=None, lease_expires_at=None))
        return bool(res.rowcount)

    async def list_workers(self) -> list[WorkerInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.workers).order_by(t.workers.c.name))).all()
        return [WorkerInfo(r.name, r.created_at, r.last_seen_at) for r in rows]

    async def worker_for_token(self, token: str) -> str | None:
        """The worker a token belongs to. Looked up by digest: the comparison never
        touches the secret itself, so its timing reveals nothing."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.workers.c.name).where(
                t.workers.c.token_sha256 == token_digest(token)))).first()
        return None if row is None else str(row.name)

    # -- jobs -----------------------------------------------------------------------------

    async def enqueue(self, sha256: str, reason: str, hashes: ImageHashes | None = None) -> None:
        """Queue ``sha256`` once (a job that exists already is left as it is), with its
        hashes saved in the same commit."""
        await self.store.enqueue_job(sha256, reason, hashes)

    async def claim(self, worker: str, max_jobs: int, lease_s: float) -> list[ClaimedJob]:
        """Lease up to ``max_jobs`` queued jobs (or ones whose lease expired), oldest first."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_s)
        claimable = or_(t.jobs.c.state == "queued",
                        and_(t.jobs.c.state == "leased", t.jobs.c.lease_expires_at < now))
        async with self.store.writing() as conn:
            q = select(t.jobs.c.id, t.jobs.c.sha256).where(claimable).order_by(
                t.jobs.c.id).limit(max_jobs)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = (await conn.execute(q)).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            await conn.execute(update(t.jobs).where(t.jobs.c.id.in_(ids)).values(
                state="leased", lease_owner=worker, lease_expires_at=expires,
                attempts=t.jobs.c.attempts + 1))
            await conn.execute(update(t.workers).where(t.workers.c.name == worker)
                               .values(last_seen_at=now))
        return [ClaimedJob(int(r.id), r.sha256, expires) for r in rows]

    async def lease_holder(self, job_id: int) -> tuple[str, str | None, datetime | None] | None:
        """(state, owner, lease expiry) of a job, or None if there is no such job."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.jobs.c.state, t.jobs.c.lease_owner,
                                             t.jobs.c.lease_expires_at, t.jobs.c.sha256)
                                      .where(t.jobs.c.id == job_id))).first()
        if row is None:
            return None
        return row.state, row.lease_owner, as_utc(row.lease_expires_at)

    async def get(self, job_id: int) -> JobRow | None:
        """A job's image, why it was queued, its state and who holds its lease."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.jobs.c.sha256, t.jobs.c.reason, t.jobs.c.state,
                                             t.jobs.c.lease_owner)
                                      .where(t.jobs.c.id == job_id))).first()
        return None if row is None else JobRow(row.sha256, row.reason, row.state,
                                               row.lease_owner)

    async def sha256_of(self, job_id: int) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(t.jobs.c.sha256)
                                       .where(t.jobs.c.id == job_id))).scalar()

    async def complete(self, worker: str, job_id: int, label: str,
                       record: RecordVerdict | None = None) -> CompletedJob:
        """Finish a leased job. Returns the outcome, the job's sha256 and why it was queued.

        ``record`` writes the verdict in the same transaction: if it fails, the job stays
        leased and the worker's retry is recorded (never answered "repeat" with no verdict).
        """
        now = utcnow()
        async with self.store.writing() as conn:
            row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).first()
            if row is None:
                return CompletedJob("unknown", "", None)
            if row.state == "done":
                same = row.lease_owner == worker and row.result_label == label
                return CompletedJob("repeat" if same else "conflict", row.sha256, row.reason)
            if row.state != "leased" or row.lease_owner != worker:
                return CompletedJob("not_yours", row.sha256, row.reason)
            expires = as_utc(row.lease_expires_at)
            if expires is None or expires < now:
                return CompletedJob("expired", row.sha256, row.reason)
            await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(
                state="done", finished_at=now, result_label=label))
            verdict = None if record is None else await record(conn, row.sha256, row.reason)
        if verdict is not None:
            self.store.forget(row.sha256)
        return CompletedJob("done", row.sha256, row.reason, verdict)

    async def settle(self, worker: str, job_id: int, how: str) -> bool:
        """Finish a leased job without classifying it: the image was judged meanwhile
        (a trusted peer's attestation arrived while the job waited)."""
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.jobs).where(and_(
                t.jobs.c.id == job_id, t.jobs.c.lease_owner == worker,
                t.jobs.c.state == "leased")).values(state="done", error=how[:1000],
                                                    finished_at=utcnow()))
        return bool(res.rowcount)

    async def fail(self, worker: str, job_id: int, error: str) -> bool:
        """The worker could not classify the image: keep it for review, never retry forever."""
        async with self.store.writing() as conn:
            return await self.fail_in(conn, worker, job_id, error)

    async def fail_in(self, conn: AsyncConnection, worker: str, job_id: int, error: str) -> bool:
        """``fail`` inside the caller's transaction (with the image's review item)."""
        res = await conn.execute(update(t.jobs).where(and_(
            t.jobs.c.id == job_id, t.jobs.c.lease_owner == worker,
            t.jobs.c.state == "leased")).values(state="failed", error=error[:1000],
                                                finished_at=utcnow()))
        return bool(res.rowcount)

    async def release(self, worker: str, job_ids: list[int]) -> int:
        """Give leases back (a worker shutting down)."""
        if not job_ids:
            return 0
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.jobs).where(and_(
                t.jobs.c.id.in_(job_ids), t.jobs.c.lease_owner == worker,
                t.jobs.c.state == "leased")).values(state="queued", lease_owner=None,
                                                    lease_expires_at=None))
        return int(res.rowcount or 0)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.jobs.c.state, func.count())
                                       .group_by(t.jobs.c.state))).all()
        return {r[0]: int(r[1]) for r in rows}

