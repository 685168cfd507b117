"""Login throttling under attack (issue 16, item 13): wrong passwords slow later attempts
down, by address and by name, but never lock the right password out for long."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from attestd.admin_users import AdminUsers
from attestd.http.admin_context import ADMIN_STATE
from attestd.http.appkeys import STORE

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"])


class FakeTime:
    """The throttle's clock and sleep: waiting advances the clock, and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
async def fake_time(node: Any) -> AsyncIterator[FakeTime]:
    fake = FakeTime()
    throttle = node.server.app[ADMIN_STATE].throttle
    throttle.clock, throttle.sleep = fake.clock, fake.sleep
    await AdminUsers(node.server.app[STORE].engine).set_password("mod", PASSWORD)
    yield fake


async def _attempt(session: Any, url: Any, password: str, name: str = "mod") -> int:
    async with session.get(url("/admin/login")) as page:
        token = CSRF.search(await page.text())
    assert token
    async with session.post(url("/admin/login"), allow_redirects=False, data={
            "csrf_token": token.group(1), "name": name, "password": password}) as resp:
        return int(resp.status)


@pytest.fixture
async def other_address(node: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A second client, connecting from 127.0.0.2 (another address on loopback)."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def test_wrong_passwords_never_lock_out_the_right_one(node: Any,
                                                            fake_time: FakeTime) -> None:
    def url(path: str) -> Any:
        return path

    assert [await _attempt(node, url, "wrong password!") for _ in range(5)] == [401] * 5
    # The right password gets in, after a short wait at most.
    assert await _attempt(node, url, PASSWORD) == 303
    assert fake_time.waits and max(fake_time.waits) <= 30
    # However long the guessing goes on: the waits grow, up to 30 s, and no further.
    fake_time.waits.clear()
    assert [await _attempt(node, url, "wrong password!") for _ in range(12)] == [401] * 12
    assert await _attempt(node, url, PASSWORD) == 303
    assert fake_time.waits == sorted(fake_time.waits) and fake_time.waits[-1] == 30


async def test_another_address_gets_no_fresh_tries_at_a_name(
        node: Any, fake_time: FakeTime, other_address: aiohttp.ClientSession) -> None:
    for _ in range(6):
        assert await _attempt(node, lambda p: p, "wrong password!") == 401
    before = len(fake_time.waits)
    # From another address, the very first guess at the same name waits too.
    assert await _attempt(other_address, node.make_url, "still wrong!!") == 401
    assert len(fake_time.waits) == before + 1 and fake_time.waits[-1] > 0
    # The name's owner, from wherever, still gets in.
    assert await _attempt(other_address, node.make_url, PASSWORD) == 303


async def test_throttling_is_logged_once_and_counted(node: Any, fake_time: FakeTime,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="attestd.http.admin_auth"):
        for _ in range(10):
            assert await _attempt(node, lambda p: p, "wrong password!") == 401
    warnings = [r for r in caplog.records if "admin logins are being slowed" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert PASSWORD not in caplog.text and "wrong password!" not in caplog.text
    metrics = await (await node.get("/metrics")).text()
    failures = re.search(r"^attestd_admin_login_failures_total (\S+)$", metrics, re.M)
    delayed = re.search(r"^attestd_admin_logins_delayed_total (\S+)$", metrics, re.M)
    assert failures and float(failures.group(1)) == 10
    assert delayed and float(delayed.group(1)) >= 6
    # The dashboard says so too, after the right password got in.
    assert await _attempt(node, lambda p: p, PASSWORD) == 303
    dashboard = await (await node.get("/admin/")).text()
    assert "Admin logins were slowed down" in dashboard and "login_failed" in dashboard
