"""kill -9 under load loses no audit entry of an answered check (issue 16, item 14): an
answer goes out only once its audit record is committed."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select

from attestd.db import schema as t
from attestd.db.engine import create_engine
from scanner import sha256_hex
from tests.conftest import CALLER, async_wait_for, stop_server
from tests.e2e.test_cli_and_serve import _get
from tests.peers import free_port

ATTESTD = str(Path(sys.executable).with_name("attestd"))


def _images(n: int) -> list[bytes]:
    rng = random.Random(16)
    out = []
    for _ in range(n):
        img = Image.frombytes("RGB", (16, 16), rng.randbytes(16 * 16 * 3))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


async def test_kill_9_under_load_keeps_the_audit_of_every_answer(tmp_path: Path,
                                                                 db_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update(ATTESTD_CONFIG=str(tmp_path / "config.toml"), ATTESTD_SERVER__PORT=str(port),
               ATTESTD_NODE__BASE_URL=base, ATTESTD_DATABASE__URL=db_url,
               ATTESTD_PICTRS__ALLOWED_CALLERS=f'["{CALLER}"]', ATTESTD_SCANNER__WORKERS="1")
    subprocess.run([ATTESTD, "init"], env=env, check=True, capture_output=True)
    images = _images(3000)
    log = tmp_path / "serve.log"
    proc = _start(env, log)
    answered: set[str] = set()
    try:
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30)
        todo = list(images)

        async def client(session: aiohttp.ClientSession) -> None:
            while todo:
                data = todo.pop()
                try:
                    async with session.post(f"{base}/api/v1/scan/{CALLER}", data=data,
                                            headers={"Content-Type": "image/png"}) as r:
                        await r.read()
                        if r.status in (200, 406):
                            answered.add(sha256_hex(data))
                except aiohttp.ClientError:
                    return  # the node is gone

        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(client(session)) for _ in range(8)]
            # Killed mid-load, without warning, while checks are being answered.
            assert await async_wait_for(lambda: len(answered) >= 150, timeout=60), \
                log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            await asyncio.wait_for(asyncio.gather(*clients), 30)
        assert todo, "the load ended before the kill: send more images"

        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                audited = set((await conn.execute(
                    select(t.audit_log.c.sha256).where(t.audit_log.c.action == "check"))
                ).scalars())
        finally:
            await engine.dispose()
        lost = answered - audited
        assert not lost, f"{len(lost)} of {len(answered)} answered checks have no audit entry"

        proc = _start(env, log)
        assert await async_wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30)
    finally:
        code = stop_server(proc)
    assert code is not None, "attestd serve did not stop within 15 s of SIGTERM"


pytestmark = pytest.mark.timeout(240)
