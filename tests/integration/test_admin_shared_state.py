"""Several node processes behind one load balancer share the admin's session, the
message a form leaves for the next page, and the login throttle (issue 20, item 4):
two app instances with their own data folders on one database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attestd.admin_users import AdminUsers
from attestd.http import create_app
from attestd.http.admin_context import ADMIN_STATE
from attestd.http.appkeys import STORE
from tests.conftest import make_config
from tests.integration.test_admin_login_throttle import FakeTime

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FLASH = re.compile(r'<p class="flash (ok|error)"[^>]*>([^<]*)</p>')


@pytest.fixture
async def two(aiohttp_client: Any, tmp_path: Path, db_url: str) -> AsyncIterator[list[Any]]:
    nodes = [await aiohttp_client(create_app(make_config(tmp_path / n, db_url)))
             for n in ("a", "b")]
    await AdminUsers(nodes[0].server.app[STORE].engine).set_password("root", PASSWORD)
    yield nodes


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    # Cookies belong to a host, not a port: one browser in front of both instances,
    # as behind a load balancer.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def _login(s: aiohttp.ClientSession, node: Any, password: str) -> int:
    async with s.get(node.make_url("/admin/login")) as page:
        token = CSRF.search(await page.text())
    assert token
    async with s.post(node.make_url("/admin/login"), allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "root", "password": password}) as r:
        return int(r.status)


async def test_a_session_from_a_works_through_b_with_its_messages(
        two: list[Any], browser: aiohttp.ClientSession) -> None:
    a, b = two
    assert await _login(browser, a, PASSWORD) == 303
    async with browser.get(b.make_url("/admin/"), allow_redirects=False) as r:
        assert r.status == 200 and "root" in await r.text()
        csrf = CSRF.search(await r.text())
    assert csrf
    # A form posted through A: what it says is shown by the next page, served by B.
    async with browser.post(a.make_url("/admin/overrides"), allow_redirects=False, data={
            "csrf_token": csrf.group(1), "action": "maybe", "sha256": "0" * 64}) as r:
        assert r.status == 303
    async with browser.get(b.make_url("/admin/overrides")) as r:
        flash = FLASH.search(await r.text())
    assert flash and flash.group(1) == "error" and "allow or block" in flash.group(2)
    # Shown once, whichever process serves the page after.
    for node in (a, b):
        async with browser.get(node.make_url("/admin/overrides")) as r:
            assert FLASH.search(await r.text()) is None
    # Logging out through B ends the session on A too.
    async with browser.post(b.make_url("/admin/logout"), allow_redirects=False,
                            data={"csrf_token": csrf.group(1)}) as r:
        assert r.status == 303
    async with browser.get(a.make_url("/admin/"), allow_redirects=False) as r:
        assert r.status == 303 and "/admin/login" in r.headers["Location"]


async def test_failures_through_a_slow_logins_through_b(
        two: list[Any], browser: aiohttp.ClientSession) -> None:
    a, b = two
    fake = FakeTime()
    for node in two:
        throttle = node.server.app[ADMIN_STATE].throttle
        throttle.clock, throttle.sleep = fake.clock, fake.sleep
    for _ in range(5):
        assert await _login(browser, a, "wrong password!") == 401
    fake.waits.clear()
    # B never saw a wrong password itself, and still makes the next guess wait.
    assert await _login(browser, b, "still wrong!!") == 401
    assert fake.waits and fake.waits[-1] > 0
    # The right password still gets in, through either, and forgives the failures.
    assert await _login(browser, b, PASSWORD) == 303
    fake.waits.clear()
    assert await _login(browser, a, PASSWORD) == 303
    assert fake.waits == []
