"""Read-only questions the admin API and pages ask of the database: the audit log and
what the node has been doing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attestd.db import schema as t
from attestd.model import as_utc, utcnow

AUDIT_FIELDS = ("id", "at", "actor", "action", "sha256", "decision", "label", "source", "reason")
AUDIT_QUERY_MAX_CHARS = 200


async def audit_entries(engine: AsyncEngine, *, q: str = "", limit: int = 100,
                        before: int = 0) -> list[dict[str, Any]]:
    """Audit entries, newest first. ``q`` matches a sha256 prefix, an action exactly, or
    part of the actor, source or reason; ``before`` pages by id."""
    a = t.audit_log
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if before:
        query = query.where(a.c.id < before)
    q = q.strip()[:AUDIT_QUERY_MAX_CHARS]
    if q:
        query = query.where(or_(a.c.sha256.startswith(q.lower(), autoescape=True),
                                a.c.actor.contains(q, autoescape=True),
                                a.c.action == q,
                                a.c.source.contains(q, autoescape=True),
                                a.c.reason.contains(q, autoescape=True)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [{f: ((as_utc(r.at) or r.at).isoformat() if f == "at" else getattr(r, f))
             for f in AUDIT_FIELDS} for r in rows]


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@dataclass
class Activity:
    """What the node decided over the last ``hours``."""

    hours: int
    by_decision: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    # One row per hour, oldest first: (hour start, {decision: count}).
    per_hour: list[tuple[datetime, dict[str, int]]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_decision.values())

    def share(self, kind: str) -> float:
        """The share of checks decided by ``kind`` (peer, verdict, override, list, …)."""
        return self.by_source.get(kind, 0) / self.total if self.total else 0.0


# What decided a check, from its audit source ("attestation:12", "verdict:7", …).
SOURCE_KINDS = {"attestation": "peers", "verdict": "own verdicts", "override": "overrides",
                "list": "hash lists", "policy": "policy", "decoder": "unreadable",
                "index": "near copies"}


async def activity(engine: AsyncEngine, hours: int = 24) -> Activity:
    """Checks in the last ``hours`` by outcome, by what decided them, and per hour.
    Counted by the database, so a busy node's day of checks is never loaded whole."""
    a = t.audit_log
    now = utcnow()
    since = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    kind = case(*((or_(a.c.source == k, a.c.source.startswith(f"{k}:")), k) for k in SOURCE_KINDS),
                else_="other")
    checks = (a.c.action == "check") & (a.c.at >= since)
    async with engine.connect() as conn:
        hour = (func.date_trunc("hour", a.c.at) if conn.dialect.name == "postgresql"
                else func.strftime("%Y-%m-%d %H:00:00", a.c.at))
        per_hour = (await conn.execute(select(hour, a.c.decision, func.count()).where(checks)
                                       .group_by(hour, a.c.decision))).all()
        by_kind = (await conn.execute(select(kind, func.count()).where(checks)
                                      .group_by(kind))).all()
    out = Activity(hours)
    buckets: dict[datetime, dict[str, int]] = {
        since + timedelta(hours=i): {} for i in range(hours)}
    for at, decision, n in per_hour:
        d = decision or "none"
        out.by_decision[d] = out.by_decision.get(d, 0) + n
        start = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        start = as_utc(start) or now
        if start in buckets:
            buckets[start][d] = buckets[start].get(d, 0) + n
    out.by_source = {str(k): int(n) for k, n in by_kind}
    out.per_hour = sorted(buckets.items())
    return out
