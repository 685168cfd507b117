"""The federation tables: the delivery queue and the received-activity log."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid6 import uuid7

from activitypub import PageItems, PageRequest
from activitypub.delivery import Delivery
from attestd.db import schema as t
from attestd.db.rows import insert_ignore
from attestd.db.store import Store
from attestd.model import as_utc, utcnow
from attestd.write_behind import WriteBehind


class FederationStore:
    """Implements activitypub's DeliveryStore and SeenActivities on the node's database."""

    # Signatures older than the clock-skew window are refused anyway, so remembering the
    # ids seen in the last few hours is enough to refuse every replay.
    RECENT_IDS = 200_000
    FAILING_REFRESH_S = 60.0

    def __init__(self, store: Store, writes: WriteBehind | None = None, *,
                 body_max_bytes: int = 64 * 1024) -> None:
        self.store = store
        self.engine = store.engine
        self.writes = writes
        # Received activities keep their body only for the types we use, up to this size.
        self.body_max_bytes = body_max_bytes
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._failing: set[str] | None = None  # hosts with parked or backed-off deliveries
        self._failing_at = 0.0

    async def enqueue(self, inboxes: Sequence[str], activity: dict[str, Any]) -> int:
        """Queue ``activity`` for each inbox (de-duplicated); returns how many were queued."""
        if not inboxes:
            return 0
        async with self.store.writing() as conn:
            return await self.enqueue_in(conn, inboxes, activity)

    async def enqueue_in(self, conn: AsyncConnection, inboxes: Sequence[str],
                         activity: dict[str, Any]) -> int:
        """``enqueue`` inside the caller's transaction (a transactional outbox: the
        delivery loop sends it once the change that queued it committed)."""
        body = json.dumps(activity, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        now = utcnow()
        rows = [{"inbox": inbox, "host": (urlsplit(inbox).hostname or "").lower(),
                 "activity_id": str(activity.get("id", "")), "body": body, "state": "queued",
                 "attempts": 0, "next_attempt_at": now, "created_at": now}
                for inbox in dict.fromkeys(inboxes)]
        if rows:
            # A parked destination stays parked: its new activities wait with the rest
            # until it shows signs of life, instead of starting a new backoff.
            parked = {r[0] for r in (await conn.execute(
                select(t.deliveries.c.inbox).where(and_(
                    t.deliveries.c.state == "parked",
                    t.deliveries.c.inbox.in_([r["inbox"] for r in rows]))).distinct())).all()}
            for r in rows:
                if r["inbox"] in parked:
                    r["state"] = "parked"
            await conn.execute(t.deliveries.insert(), rows)
        return len(rows)

    async def cancel_deliveries_to(self, inbox: str) -> int:
        """Drop what is queued (or waiting to retry) for ``inbox``; returns how many."""
        async with self.store.writing() as conn:
            res = await conn.execute(t.deliveries.delete().where(and_(
                t.deliveries.c.inbox == inbox, t.deliveries.c.state.in_(("queued", "parked")))))
        return int(res.rowcount or 0)

    # -- activitypub.delivery.DeliveryStore ------------------------------------------------

    async def due(self, now: datetime, limit: int, busy: Collection[str] = ()
                  ) -> Sequence[Delivery]:
        """Each destination's oldest queued delivery, where its backoff is over."""
        d = t.deliveries
        heads = (select(d.c.inbox, func.min(d.c.id).label("head"))
                 .where(d.c.state == "queued").group_by(d.c.inbox).subquery())
        q = (select(d.c.id, d.c.inbox, d.c.body, d.c.attempts, d.c.first_failed_at)
             .join(heads, d.c.id == heads.c.head).where(d.c.next_attempt_at <= now))
        if busy:
            q = q.where(d.c.inbox.not_in(list(busy)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q.order_by(d.c.next_attempt_at, d.c.id).limit(limit))).all()
        return [_delivery(r) for r in rows]

    async def queued(self, inbox: str, limit: int) -> Sequence[Delivery]:
        d = t.deliveries
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(d.c.id, d.c.inbox, d.c.body, d.c.attempts, d.c.first_failed_at)
                .where(and_(d.c.inbox == inbox, d.c.state == "queued"))
                .order_by(d.c.id).limit(limit))).all()
        return [_delivery(r) for r in rows]

    async def delivered(self, delivery: Delivery) -> None:
        await self._set(delivery.id, state="delivered", delivered_at=utcnow(), last_error=None)

    async def retry(self, delivery: Delivery, next_at: datetime, error: str) -> None:
        """The head failed: it waits for its backoff, and its destination's queue with it."""
        async with self.store.writing() as conn:
            await conn.execute(update(t.deliveries).where(t.deliveries.c.id == delivery.id).values(
                attempts=t.deliveries.c.attempts + 1, next_attempt_at=next_at,
                first_failed_at=func.coalesce(t.deliveries.c.first_failed_at, utcnow()),
                last_error=error[:1000]))
        self._note_failing(delivery.inbox)

    async def stop(self, delivery: Delivery, error: str) -> None:
        await self._set(delivery.id, state="stopped", last_error=error[:1000])

    async def park(self, delivery: Delivery, error: str) -> None:
        """Failing for days: park everything queued for the destination (one row's worth
        of retries, not one per activity)."""
        d = t.deliveries
        async with self.store.writing() as conn:
            await conn.execute(update(d).where(and_(d.c.inbox == delivery.inbox,
                                                    d.c.state == "queued"))
                               .values(state="parked"))
            await conn.execute(update(d).where(d.c.id == delivery.id)
                               .values(last_error=error[:1000]))
        self._note_failing(delivery.inbox)

    def _note_failing(self, inbox: str) -> None:
        if self._failing is not None:
            self._failing.add((urlsplit(inbox).hostname or "").lower())

    async def resume_host(self, host: str) -> int:
        """A peer contacted us: whatever waits for it (parked, or in backoff) goes now,
        in order."""
        host = host.lower()
        d = t.deliveries
        # Called on every inbox hit: answer from a set of failing hosts refreshed each
        # minute (other processes fail deliveries too) instead of writing every time.
        if self._failing is None or time.monotonic() - self._failing_at > self.FAILING_REFRESH_S:
            async with self.engine.connect() as conn:
                self._failing = {r[0] for r in (await conn.execute(
                    select(d.c.host).where(or_(
                        d.c.state == "parked",
                        and_(d.c.state == "queued", d.c.first_failed_at.is_not(None))))
                    .distinct())).all()}
            self._failing_at = time.monotonic()
        if host not in self._failing:
            return 0
        self._failing.discard(host)
        async with self.store.writing() as conn:
            res = await conn.execute(update(d).where(and_(
                d.c.host == host, or_(d.c.state == "parked", and_(
                    d.c.state == "queued", d.c.first_failed_at.is_not(None)))))
                .values(state="queued", next_attempt_at=utcnow(), first_failed_at=None))
        return int(res.rowcount or 0)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.deliveries.c.state, func.count())
                                       .group_by(t.deliveries.c.state))).all()
        return {r[0]: int(r[1]) for r in rows}

    async def _set(self, delivery_id: int, **values: Any) -> None:
        async with self.store.writing() as conn:
            await conn.execute(update(t.deliveries).where(t.deliveries.c.id == delivery_id)
                               .values(**values))

    # -- activitypub.inbox.SeenActivities --------------------------------------------------

    async def first_sighting(self, activity: dict[str, Any]) -> bool:
        """Record a verified activity; False if its id was already received."""
        aid = str(activity["id"])
        if aid in self._recent:
            return False
        if self.writes is not None and self.engine.dialect.name == "sqlite":
            # One process owns a SQLite database, and load_recent filled memory with every
            # id a replay could still carry a valid signature for: memory decides, and the
            # row is written with the next batch.
            self._remember(aid)
            self.writes.received(_received_row(activity, self.body_max_bytes))
            return True
        first = await self._insert_received(activity)
        self._remember(aid)
        return first

    async def load_recent(self, window_s: float) -> int:
        """Remember the ids received within ``window_s`` (twice the clock-skew allowance
        covers every replay whose signature could still verify)."""
        since = utcnow() - timedelta(seconds=window_s)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(t.received_activities.c.id)
                .where(t.received_activities.c.received_at >= since)
                .order_by(t.received_activities.c.received_at)
                .limit(self.RECENT_IDS))).all()
        for r in rows:
            self._remember(r.id)
        return len(rows)

    async def prune_received(self, older_than: timedelta) -> int:
        """Forget received activities logged longer than ``older_than`` ago (beyond any
        replay window); returns how many."""
        async with self.store.writing() as conn:
            res = await conn.execute(delete(t.received_activities).where(
                t.received_activities.c.received_at < utcnow() - older_than))
        return int(res.rowcount or 0)

    def _remember(self, aid: str) -> None:
        self._recent[aid] = None
        while len(self._recent) > self.RECENT_IDS:
            self._recent.popitem(last=False)

    async def _insert_received(self, activity: dict[str, Any]) -> bool:
        """Keep a verified activity; False if its id was already received."""
        async with self.store.writing() as conn:
            ins = insert_ignore(conn)(t.received_activities).values(
                **_received_row(activity, self.body_max_bytes)).on_conflict_do_nothing()
            res = await conn.execute(ins)
        return bool(res.rowcount)

    # -- outbox and followers ----------------------------------------------------------------

    async def publish(self, activity: dict[str, Any]) -> str:
        """Append to the outbox; returns its cursor id (UUIDv7)."""
        async with self.store.writing() as conn:
            return await self.publish_in(conn, activity)

    async def publish_in(self, conn: AsyncConnection, activity: dict[str, Any]) -> str:
        """``publish`` inside the caller's transaction."""
        oid = str(uuid7())
        await conn.execute(t.outbox.insert().values(id=oid, activity=activity,
                                                    published_at=utcnow()))
        return oid

    async def outbox_page(self, req: PageRequest) -> PageItems:
        return await self._page(t.outbox, t.outbox.c.activity, req, None)

    async def outbox_total(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.outbox))).scalar_one())

    async def add_follower(self, actor: str, inbox: str, shared_inbox: str | None,
                           state: str = "pending", follow_activity: str | None = None) -> str:
        """Record (or update) a follower; returns its cursor id."""
        async with self.store.writing() as conn:
            row = (await conn.execute(select(t.followers.c.id)
                                      .where(t.followers.c.actor == actor))).first()
            if row is not None:
                await conn.execute(update(t.followers).where(t.followers.c.id == row.id).values(
                    inbox=inbox, shared_inbox=shared_inbox, state=state,
                    follow_activity=follow_activity))
                return str(row.id)
            fid = str(uuid7())
            await conn.execute(t.followers.insert().values(
                id=fid, actor=actor, inbox=inbox, shared_inbox=shared_inbox, state=state,
                follow_activity=follow_activity, created_at=utcnow()))
            return fid

    async def is_accepted_follower(self, actor: str) -> bool:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.followers.c.state)
                                      .where(t.followers.c.actor == actor))).first()
        return row is not None and row.state == "accepted"

    async def accepted_inboxes(self) -> list[str]:
        """Where to deliver to every accepted follower (shared inboxes once each)."""
        async with self.engine.connect() as conn:
            return await self.accepted_inboxes_in(conn)

    async def accepted_inboxes_in(self, conn: AsyncConnection) -> list[str]:
        """``accepted_inboxes`` as the caller's transaction sees them."""
        rows = (await conn.execute(
            select(t.followers.c.inbox, t.followers.c.shared_inbox)
            .where(t.followers.c.state == "accepted"))).all()
        return list(dict.fromkeys(r.shared_inbox or r.inbox for r in rows))

    async def get_follower(self, actor: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.followers)
                                      .where(t.followers.c.actor == actor))).first()
        return dict(row._mapping) if row is not None else None

    async def list_followers(self, *, limit: int | None = None, after: str | None = None,
                             state: str | None = None) -> list[dict[str, Any]]:
        """Followers oldest first; ``limit`` of them after the cursor ``after`` (an id)."""
        q = select(t.followers).order_by(t.followers.c.id)
        if after:
            q = q.where(t.followers.c.id > after)
        if state:
            q = q.where(t.followers.c.state == state)
        if limit is not None:
            q = q.limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [dict(r._mapping) for r in rows]

    async def pending_full(self, actor: str, limit: int) -> bool:
        """True if ``actor`` would be one pending follow request more than ``limit``
        (one already waiting may ask again)."""
        async with self.engine.connect() as conn:
            if (await conn.execute(select(t.followers.c.id).where(
                    t.followers.c.actor == actor))).first() is not None:
                return False
            n = (await conn.execute(select(func.count()).select_from(t.followers).where(
                t.followers.c.state == "pending"))).scalar_one()
        return int(n) >= limit

    async def expire_pending_follows(self, older_than: timedelta) -> int:
        """Drop follow requests that waited longer than ``older_than``; returns how many."""
        async with self.store.writing() as conn:
            res = await conn.execute(delete(t.followers).where(
                (t.followers.c.state == "pending")
                & (t.followers.c.created_at <= utcnow() - older_than)))
        return int(res.rowcount or 0)

    async def set_follower_state(self, actor: str, state: str) -> bool:
        async with self.store.writing() as conn:
            res = await conn.execute(update(t.followers).where(t.followers.c.actor == actor)
                                     .values(state=state))
        return bool(res.rowcount)

    async def remove_follower(self, actor: str) -> bool:
        async with self.store.writing() as conn:
            res = await conn.execute(t.followers.delete().where(t.followers.c.actor == actor))
        return bool(res.rowcount)

    async def followers_page(self, req: PageRequest) -> PageItems:
        return await self._page(t.followers, t.followers.c.actor, req,
                                t.followers.c.state == "accepted")

    async def followers_total(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.followers)
                                           .where(t.followers.c.state == "accepted"))).scalar_one())

    async def _page(self, table: Any, value: Any, req: PageRequest, where: Any) -> PageItems:
        q = select(table.c.id, value.label("value"))
        if where is not None:
            q = q.where(where)
        if req.min_id:
            # Newer than the cursor, oldest first (so a resuming follower misses nothing),
            # shown newest first like every page.
            q = q.where(table.c.id > req.min_id).order_by(table.c.id.asc())
        else:
            if req.max_id:
                q = q.where(table.c.id < req.max_id)
            q = q.order_by(table.c.id.desc())
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q.limit(req.limit + 1))).all()
        more = len(rows) > req.limit
        rows = rows[: req.limit]
        if req.min_id:
            rows = list(reversed(rows))
            return PageItems([(r.id, r.value) for r in rows], more_older=True, more_newer=more)
        return PageItems([(r.id, r.value) for r in rows], more_older=more,
                         more_newer=req.max_id is not None)


def _delivery(r: Any) -> Delivery:
    return Delivery(id=int(r.id), inbox=r.inbox, body=bytes(r.body), attempts=int(r.attempts),
                    first_failed_at=as_utc(r.first_failed_at))


# Activity types the handler acts on: their bodies are worth keeping in the log.
USED_TYPES = frozenset({"Follow", "Accept", "Reject", "Undo", "Create", "Update", "Delete"})
_SUMMARY_CHARS = 500


def _received_row(activity: dict[str, Any], body_max_bytes: int) -> dict[str, Any]:
    t_value = activity.get("type")
    names = [t_value] if isinstance(t_value, str) else [str(x) for x in t_value or []]
    type_name = ",".join(names)
    size = len(json.dumps(activity, separators=(",", ":"), ensure_ascii=False).encode())
    body: dict[str, Any] = activity
    if not USED_TYPES.intersection(names) or size > body_max_bytes:
        # Anyone with a key can send these: the log keeps what identifies the activity,
        # not what it carries.
        obj = activity.get("object")
        obj_id = obj.get("id") if isinstance(obj, dict) else obj
        body = {"id": str(activity["id"])[:_SUMMARY_CHARS], "type": type_name[:64],
                "actor": str(activity["actor"])[:_SUMMARY_CHARS],
                "object": str(obj_id)[:_SUMMARY_CHARS] if obj_id is not None else None,
                "bytes": size, "kept": "summary"}
    return {"id": str(activity["id"]), "actor": activity["actor"], "type": type_name[:64],
            "body": body, "received_at": utcnow()}

