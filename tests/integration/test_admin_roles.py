"""Admin and moderator logins: a moderator reviews, and is refused everything else on
the pages and the API alike; the navigation shows it only what it may use."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from attestd.admin_tokens import AdminTokens
from attestd.admin_users import AdminUsers
from attestd.config import load_config
from attestd.db.engine import create_engine
from attestd.http.appkeys import SERVICES, STORE
from tests.conftest import run_cli
from tests.images import jpeg
from tests.integration.test_admin_pages import SHA, _routes

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

# What a moderator may use: the dashboard, the review pages, their forms and API, logout.
MODERATOR_ROUTES = {
    ("GET", "/admin/"),
    ("GET", "/admin/review"),
    ("POST", f"/admin/review/{SHA}/action"),
    ("POST", f"/admin/review/{SHA}/reveal"),
    ("GET", f"/admin/review/{SHA}/preview"),
    ("GET", f"/admin/review/{SHA}/image"),
    ("POST", "/admin/logout"),
    ("GET", "/api/v1/admin/stats"),
    ("GET", "/api/v1/admin/review"),
    ("POST", f"/api/v1/admin/review/{SHA}"),
}
ADMIN_NAV = ("/admin/peers", "/admin/followers", "/admin/overrides", "/admin/audit")


async def login_as(node: Any, name: str, role: str) -> str:
    """Create the login ``name`` with ``role``, log in through the form; the CSRF token."""
    await AdminUsers(node.server.app[STORE].engine).set_password(name, PASSWORD, role)  # type: ignore[arg-type]
    page = await node.get("/admin/login")
    token = CSRF.search(await page.text())
    assert token
    resp = await node.post("/admin/login", allow_redirects=False, data={
        "csrf_token": token.group(1), "name": name, "password": PASSWORD})
    assert resp.status == 303, await resp.text()
    found = CSRF.search(await (await node.get("/admin/")).text())
    assert found
    return found.group(1)


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_moderator_is_refused_on_every_admin_only_route(node: Any) -> None:
    app = node.server.app
    csrf = await login_as(node, "mod", "moderator")
    routes = _routes(node)
    # Every moderator route exists: a renamed one would otherwise pass unnoticed.
    assert MODERATOR_ROUTES <= set(routes), MODERATOR_ROUTES - set(routes)
    refused = [(m, p) for m, p in routes if (m, p) not in MODERATOR_ROUTES]
    assert len(refused) >= 25, refused
    for method, path in refused:
        resp = await node.request(method, path, allow_redirects=False,
                                  headers={"X-CSRF-Token": csrf},
                                  data={"csrf_token": csrf, "sha256": SHA, "action": "allow",
                                        "actor": "https://peer.example/actor",
                                        "trust": "full", "target": "https://peer.example/actor",
                                        "answer": "approve"} if method == "POST" else None)
        assert resp.status == 403, (method, path, resp.status, await resp.text())
        assert "moderator" in await resp.text(), (method, path)
    # Nothing was changed by any of them.
    assert await app[STORE].list_overrides() == []
    assert await AdminTokens(app[STORE].engine).list() == []
    # ... and the session still works for what a moderator may do.
    for method, path in sorted(MODERATOR_ROUTES - {("POST", "/admin/logout")}):
        resp = await node.request(method, path, allow_redirects=False,
                                  headers={"X-CSRF-Token": csrf},
                                  json={"action": "confirm"} if path.startswith("/api") and
                                  method == "POST" else None,
                                  data={"csrf_token": csrf} if path.startswith("/admin") and
                                  method == "POST" else None)
        assert resp.status not in (401, 403), (method, path, resp.status, await resp.text())


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_moderator_reviews_on_the_pages_and_the_api(node: Any) -> None:
    app = node.server.app
    review, store = app[SERVICES].review, app[STORE]
    shas = []
    for seed in (40, 41):
        hashes = await app[SERVICES].pool.hash(jpeg(seed))
        await store.save_image(hashes)
        await review.add(hashes.sha256, "flagged", "classified nsfw", label="nsfw",
                         data=jpeg(seed))
        shas.append(hashes.sha256)
    csrf = await login_as(node, "mod", "moderator")

    page = await node.get("/admin/review")
    assert page.status == 200 and shas[0] in await page.text()
    assert (await node.get(f"/admin/review/{shas[0]}/preview")).status == 200
    resp = await node.post(f"/admin/review/{shas[0]}/action", data={
        "csrf_token": csrf, "action": "confirm", "label": "nsfw", "note": "seen"})
    assert resp.status == 200 and "confirmed nsfw" in await resp.text()
    verdict = (await store.lookup(shas[0])).verdict
    assert verdict is not None and verdict.method == "human_review"

    listed = await node.get("/api/v1/admin/review", headers={"X-CSRF-Token": csrf})
    assert [it["sha256"] for it in (await listed.json())["items"]] == [shas[1]]
    resp = await node.post(f"/api/v1/admin/review/{shas[1]}", headers={"X-CSRF-Token": csrf},
                           json={"action": "mark_ok", "note": "fine"})
    assert resp.status == 200, await resp.text()
    ov = (await store.lookup(shas[1])).override
    assert ov is not None and ov.action == "allow" and ov.created_by == "admin-ui:mod"


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_navigation_shows_a_moderator_only_what_it_may_use(node: Any) -> None:
    await login_as(node, "boss", "admin")
    admin_page = await (await node.get("/admin/")).text()
    assert all(f'href="{link}"' in admin_page for link in ADMIN_NAV)
    node.session.cookie_jar.clear()
    await login_as(node, "mod", "moderator")
    for path in ("/admin/", "/admin/review"):
        html = await (await node.get(path)).text()
        assert 'href="/admin/review"' in html and "(moderator)" in html
        assert not any(f'href="{link}"' in html for link in ADMIN_NAV), path


def _roles(env: dict[str, str]) -> list[tuple[str, str]]:
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)

    async def go() -> list[tuple[str, str]]:
        engine = create_engine(cfg.database.url)
        try:
            return list(await AdminUsers(engine).roles())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_set_password_sets_a_role_and_keeps_it_when_not_given(cli_env: dict[str, str]) -> None:
    code, out = run_cli(cli_env, "admin", "set-password", "--password-stdin", "--role",
                        "moderator", "mod", input=PASSWORD + "\n")
    assert code == 0 and "moderator login 'mod' created" in out, out
    assert _roles(cli_env) == [("mod", "moderator")]
    # A new password alone keeps the role; --role admin promotes.
    code, out = run_cli(cli_env, "admin", "set-password", "--password-stdin", "mod",
                        input=PASSWORD + "!\n")
    assert code == 0 and _roles(cli_env) == [("mod", "moderator")], out
    code, out = run_cli(cli_env, "admin", "set-password", "--password-stdin", "--role", "admin",
                        "mod", input=PASSWORD + "\n")
    assert code == 0 and _roles(cli_env) == [("mod", "admin")], out
    run_cli(cli_env, "admin", "set-password", "--password-stdin", "--role", "moderator",
            "helper", input=PASSWORD + "\n")
    code, out = run_cli(cli_env, "admin", "logins")
    assert code == 0 and out.splitlines() == ["helper  moderator", "mod  admin"], out
    code, out = run_cli(cli_env, "admin", "set-password", "--password-stdin", "--role", "root",
                        "mod", input=PASSWORD + "\n")
    assert code == 2 and "root" in out
