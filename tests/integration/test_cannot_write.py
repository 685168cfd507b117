"""When the database cannot write (issue 16, item 14): checks are refused rather than
answered unaudited, /healthz says so, and the CLI prints one line and exits 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from attestd.db import engine as db_engine
from attestd.http.appkeys import PIPELINE, STORE
from tests.conftest import CALLER, async_wait_for, run_cli
from tests.images import jpeg


async def test_a_node_that_cannot_write_refuses_checks_and_says_so(
        node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = node.server.app
    store, writes = app[STORE], app[PIPELINE].writes
    writes.durable_timeout_s = 1.0
    real = store.write_batch

    async def full(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT INTO audit_log …", {},
                               Exception("database or disk is full"))

    monkeypatch.setattr(store, "write_batch", full)
    resp = await node.post(f"/api/v1/scan/{CALLER}", data=jpeg(1, (64, 48)),
                           headers={"Content-Type": "image/jpeg"})
    body = await resp.json()
    # Not accepted (pict-rs keeps only 2xx answers), and the reason is given.
    assert resp.status == 503, body
    assert "could not be written" in body["error"] and "disk is full" in body["error"]
    health = await node.get("/healthz")
    status = await health.json()
    assert health.status == 503, status
    assert "cannot write" in status["writes"] and "disk is full" in status["writes"]

    monkeypatch.setattr(store, "write_batch", real)
    resp = await node.post(f"/api/v1/scan/{CALLER}", data=jpeg(2, (64, 48)),
                           headers={"Content-Type": "image/jpeg"})
    assert resp.status == 200, await resp.text()

    async def healthy() -> bool:
        return (await node.get("/healthz")).status == 200
    assert await async_wait_for(healthy, timeout=10)


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_cli_on_a_full_disk_prints_one_line_and_exits_3(
        tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own "disk is full" (SQLITE_FULL), reached by capping the file's size at
    what it holds now: the next page it needs cannot be had."""
    real_pragmas = db_engine._sqlite_pragmas

    def capped(dbapi_conn: Any, record: Any) -> None:
        real_pragmas(dbapi_conn, record)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA page_count")
        pages = cur.fetchone()[0]
        cur.execute(f"PRAGMA max_page_count = {pages}")
        cur.close()

    monkeypatch.setattr(db_engine, "_sqlite_pragmas", capped)
    rows = tmp_path / "list.csv"
    rows.write_text("sha256\n" + "".join(f"{i:064x}\n" for i in range(20_000)))
    code, output = run_cli(cli_env, "hashes", "import", str(rows), "--source", "big",
                           "--label", "blocked")
    assert code == 3, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("attestd: ") and "disk is full" in lines[0], output
    assert "Traceback" not in output
