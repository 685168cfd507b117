"""The write-behind against a real database (SQLite and PostgreSQL): a record that cannot
be stored is skipped, counted and logged once; it never blocks the records around it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from attestd.db import schema as t
from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.metrics import Metrics
from attestd.model import AuditEntry, utcnow
from attestd.write_behind import WriteBehind
from scanner import DecodeLimits, hash_image_bytes
from tests.images import jpeg


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(create_engine(db_url))
    yield s
    await s.engine.dispose()


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def skipped(metrics: Metrics, kind: str) -> float:
    return metrics.registry.get_sample_value("attestd_write_skipped_total",
                                             {"kind": kind}) or 0.0


async def test_poison_records_are_skipped_and_the_rest_written(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    writes = WriteBehind(store, metrics=metrics)
    image = hash_image_bytes(jpeg(3, (64, 48)), DecodeLimits())
    writes.audit(AuditEntry(actor="a", action="check", reason="first"))
    # Repairable: a lone surrogate, NUL, a label over its column, JSON nested ~1000 deep.
    writes.audit(AuditEntry(actor="peer\ud800", action="activity_received",
                            source="https://evil.example/\ud800", reason="a\x00b",
                            label="x" * 40, detail={"k\x00": deep(1000), "s": "\udfff"}))
    writes.received({"id": "https://evil.example/a/\ud800", "actor": "https://evil.example/u",
                     "type": "Create", "body": {"deep": deep(1000), "n": "\x00"},
                     "received_at": utcnow()})
    # Not repairable: a required column left empty.
    writes.audit(AuditEntry(actor="a", action=None))  # type: ignore[arg-type]
    writes.image(image)
    writes.audit(AuditEntry(actor="a", action="check", reason="last"))
    with caplog.at_level(logging.ERROR, logger="attestd.write_behind"):
        await writes.flush()
    assert writes.pending == 0
    async with store.engine.connect() as conn:
        audit = (await conn.execute(select(t.audit_log).order_by(t.audit_log.c.id))).all()
        received = (await conn.execute(select(t.received_activities))).all()
    assert [r.reason for r in audit] == ["first", "a\ufffdb", "last"]
    repaired = audit[1]
    assert repaired.actor == "peer\ufffd" and repaired.label == "x" * 32
    assert repaired.source == "https://evil.example/\ufffd"
    assert repaired.detail["s"] == "\ufffd" and "k\ufffd" in repaired.detail
    assert [r.id for r in received] == ["https://evil.example/a/\ufffd"]
    assert await store.get_hashes(image.sha256) is not None
    assert skipped(metrics, "audit") == 1
    assert [r for r in caplog.records if "skipped" in r.getMessage()], caplog.text
    # Nothing is stuck: the next batch goes straight in.
    writes.audit(AuditEntry(actor="a", action="check", reason="later"))
    await writes.flush()
    assert (await store.recent_audit(1))[0].reason == "later"


async def test_a_database_outage_keeps_everything_queued(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bisecting is for bad records only: while the database refuses every write, nothing
    is skipped; it is all written once the database is back."""
    metrics = Metrics()
    writes = WriteBehind(store, metrics=metrics)
    real = store.write_batch
    calls = 0

    async def full(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(store, "write_batch", full)
    for i in range(10):
        writes.audit(AuditEntry(actor="a", action="check", reason=f"r{i}"))
    with pytest.raises(OperationalError):
        await writes.flush()
    assert writes.pending == 10 and calls == 1 and skipped(metrics, "audit") == 0
    monkeypatch.setattr(store, "write_batch", real)
    await writes.flush()
    assert sorted(e.reason or "" for e in await store.recent_audit(20)) == [
        f"r{i}" for i in range(10)]
