"""Connection-level helpers every repository shares: a dialect's insert-or-ignore and
the storable form of an audit entry. Used inside a caller's transaction (no I/O here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.model import AuditEntry
from attestd.sanitise import clean_json, clean_optional


def insert_ignore(conn: AsyncConnection) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing``) for ``conn``."""
    if conn.dialect.name == "postgresql":
        return pg_insert
    return sqlite_insert


def audit_row(e: AuditEntry) -> dict[str, Any]:
    """The audit_log row for ``e``, its quoted fields made storable."""
    # Audit fields quote what strangers sent (activity ids, key ids, error messages):
    # made storable here, at the last step before the database.
    return {"at": e.at, "actor": clean_optional(e.actor), "action": clean_optional(e.action, 32),
            "sha256": clean_optional(e.sha256, 64), "decision": clean_optional(e.decision, 16),
            "label": clean_optional(e.label, 32), "source": clean_optional(e.source),
            "reason": clean_optional(e.reason),
            "detail": None if e.detail is None else clean_json(e.detail)}
