"""Each rejected upload leaves one log line an admin can act on, without secrets."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from attestd.http import create_app
from tests.conftest import CALLER, make_config
from tests.images import jpeg


async def test_rejection_is_logged_once_with_what_decided_and_no_caller(
        aiohttp_client: Any, tmp_path: Path, db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    client = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, policy={"on_unknown": "reject"})))
    photo = jpeg(21, (64, 48))
    with caplog.at_level(logging.INFO):
        resp = await client.post(f"/api/v1/scan/{CALLER}", data=photo)
        assert resp.status == 406
        accepted = await client.get("/healthz")
        assert accepted.status == 200
    # Our own records (the test server's stock access log is not what `serve` uses).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("attestd"))
    lines = [line for line in ours.splitlines() if "rejected" in line]
    sha = hashlib.sha256(photo).hexdigest()
    assert len(lines) == 1, lines
    assert sha[:16] in lines[0] and "policy:on_unknown" in lines[0] and "406" in lines[0]
    assert CALLER not in ours
    assert hashlib.sha256(CALLER.encode()).hexdigest()[:8] not in ours
