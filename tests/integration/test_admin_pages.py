"""The admin pages and their sessions through a real aiohttp server: authentication on
every route, CSRF on every form, cookie flags, and the review queue's wellness defaults."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from attestd.admin_tokens import AdminTokens
from attestd.admin_users import AdminUsers
from attestd.federation.peers import PeerStore
from attestd.http import create_app
from attestd.http.admin_context import ADMIN_STATE
from attestd.http.appkeys import FEDERATION, SERVICES, STORE
from tests.conftest import make_config
from tests.images import jpeg

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SHA = "ab" * 32


async def login(node: Any, name: str = "mod") -> str:
    """Log ``name`` in through the login form; returns the session's CSRF token."""
    await AdminUsers(node.server.app[STORE].engine).set_password(name, PASSWORD)
    page = await node.get("/admin/login")
    token = CSRF.search(await page.text())
    assert token, await page.text()
    resp = await node.post("/admin/login", allow_redirects=False, data={
        "csrf_token": token.group(1), "name": name, "password": PASSWORD,
        "next": "/admin/review"})
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/admin/review"
    dash = await node.get("/admin/")
    assert dash.status == 200
    found = CSRF.search(await dash.text())
    assert found
    return found.group(1)


def _routes(node: Any) -> list[tuple[str, str]]:
    """Every admin route of the running app, with sample path parameters."""
    out = []
    for route in node.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if not (path.startswith("/admin") or path.startswith("/api/v1/admin")):
            continue
        if path.startswith("/admin/static") or path == "/admin/login" or route.method == "HEAD":
            continue
        if path == "/admin":
            continue  # a redirect to /admin/, which is checked
        out.append((route.method, path.replace("{sha256}", SHA).replace("{id}", "1")
                    .replace("{name}", "gpu1")))
    return out


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_every_admin_route_refuses_the_unauthenticated(node: Any) -> None:
    routes = _routes(node)
    assert len(routes) >= 35, routes  # pages, forms and API resources
    bearer = await AdminTokens(node.server.app[STORE].engine).create("ops")
    for headers in ({}, {"Authorization": "Bearer atd_wrong"}, {"Cookie": "attestd_admin=forged"}):
        for method, path in routes:
            resp = await node.request(method, path, headers=headers, allow_redirects=False,
                                      data={"csrf_token": "x"} if method == "POST" else None)
            if path.startswith("/admin") and method == "GET":
                assert resp.status == 303, (method, path, headers)
                assert resp.headers["Location"].startswith("/admin/login?next="), path
            else:
                assert resp.status == 401, (method, path, headers, await resp.text())
    # A good bearer token opens the API but not the browser pages or their forms.
    auth = {"Authorization": f"Bearer {bearer}"}
    assert (await node.get("/api/v1/admin/stats", headers=auth)).status == 200
    assert (await node.get("/admin/", headers=auth, allow_redirects=False)).status == 303
    resp = await node.post("/admin/overrides", headers=auth, data={"sha256": SHA, "action": "allow"})
    assert resp.status == 403
    assert await node.server.app[STORE].list_overrides() == []


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_session_cookie_is_httponly_samesite_and_logout_ends_it(node: Any) -> None:
    await AdminUsers(node.server.app[STORE].engine).set_password("mod", PASSWORD)
    page = await node.get("/admin/login")
    login_cookie = [h for h in page.headers.getall("Set-Cookie") if h.startswith("attestd_login=")]
    assert login_cookie and "HttpOnly" in login_cookie[0] and "SameSite=Strict" in login_cookie[0]
    token = CSRF.search(await page.text())
    assert token
    resp = await node.post("/admin/login", allow_redirects=False, data={
        "csrf_token": token.group(1), "name": "mod", "password": PASSWORD,
        "next": "https://evil.example/"})
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin/"  # never an open redirect
    cookie = [h for h in resp.headers.getall("Set-Cookie") if h.startswith("attestd_admin=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    secret = cookie.split(";")[0].split("=", 1)[1]
    # Only a digest is stored: the cookie's secret is nowhere in the database.
    from sqlalchemy import select

    from attestd.db import schema as t
    async with node.server.app[STORE].engine.connect() as conn:
        stored = (await conn.execute(select(t.admin_sessions.c.token_sha256))).scalars().all()
    assert stored and secret not in stored
    dash = await node.get("/admin/")
    csrf = CSRF.search(await dash.text())
    assert dash.status == 200 and csrf
    assert "default-src 'none'" in dash.headers["Content-Security-Policy"]
    assert dash.headers["Cache-Control"] == "no-store"
    resp = await node.post("/admin/logout", data={"csrf_token": csrf.group(1)},
                           allow_redirects=False)
    assert resp.status == 303
    # The old secret no longer works even if a copy of the cookie survives.
    again = await node.get("/admin/", headers={"Cookie": f"attestd_admin={secret}"},
                           allow_redirects=False)
    assert again.status == 303


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_forms_refuse_a_missing_or_wrong_csrf_token_and_change_nothing(node: Any) -> None:
    csrf = await login(node)
    store = node.server.app[STORE]
    await node.server.app[SERVICES].review.add(SHA, "flagged", "test", label="nsfw", data=jpeg(1))
    forms = [(m, p) for m, p in _routes(node) if m == "POST" and p.startswith("/admin/")]
    assert len(forms) >= 9
    for method, path in forms:
        for data in ({"sha256": SHA, "action": "block", "actor": "x"},
                     {"sha256": SHA, "action": "block", "csrf_token": "wrong"},
                     {"sha256": SHA, "action": "block", "csrf_token": csrf[:-1]}):
            resp = await node.request(method, path, data=data, allow_redirects=False)
            assert resp.status == 403, (path, data, await resp.text())
            assert "CSRF" in await resp.text()
    # The right token from another site is refused too.
    resp = await node.post("/admin/overrides", data={"sha256": SHA, "action": "block",
                                                     "csrf_token": csrf},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert resp.status == 403
    # The JSON API with a session cookie needs the token in a header.
    api = "/api/v1/admin/overrides"
    assert (await node.post(api, json={"sha256": SHA, "action": "block"})).status == 403
    assert await store.list_overrides() == []
    assert (await store.lookup(SHA)).override is None
    assert await node.server.app[SERVICES].review.get(SHA) is not None
    resp = await node.post(api, json={"sha256": SHA, "action": "block"},
                           headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
    # The login form has its own token.
    resp = await node.post("/admin/login", data={"name": "mod", "password": PASSWORD},
                           allow_redirects=False)
    assert resp.status == 403


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_wrong_passwords_are_audited_and_only_slow_the_login_down(node: Any) -> None:
    await AdminUsers(node.server.app[STORE].engine).set_password("mod", PASSWORD)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    node.server.app[ADMIN_STATE].throttle.sleep = sleep

    async def attempt(password: str) -> int:
        page = await node.get("/admin/login")
        token = CSRF.search(await page.text())
        assert token
        resp = await node.post("/admin/login", allow_redirects=False, data={
            "csrf_token": token.group(1), "name": "mod", "password": password})
        return resp.status

    assert [await attempt("wrong password!") for _ in range(5)] == [401] * 5
    assert await attempt(PASSWORD) == 303 and waits  # held back a little, not locked out
    resp = await node.get("/api/v1/admin/audit", headers={
        "Authorization": f"Bearer {await AdminTokens(node.server.app[STORE].engine).create('a')}"})
    actions = [e["action"] for e in (await resp.json())["entries"]]
    assert actions.count("login_failed") == 5
    assert PASSWORD not in await resp.text() and "wrong password!" not in await resp.text()


def _sharpness(jpeg_bytes: bytes) -> float:
    im = Image.open(io.BytesIO(jpeg_bytes)).convert("L").resize((320, 240))
    edges = np.asarray(im.filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    return float(edges[8:-8, 8:-8].var())  # the filter sees a false edge at the border


def _greyscale(jpeg_bytes: bytes) -> bool:
    im = Image.open(io.BytesIO(jpeg_bytes))
    if im.mode == "L":
        return True
    a = np.asarray(im.convert("RGB"), dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 4 and np.abs(a[..., 1] - a[..., 2]).max() <= 4)


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_review_previews_are_obscured_and_csam_suspect_is_withheld(node: Any) -> None:
    csrf = await login(node)
    review = node.server.app[SERVICES].review
    nsfw, csam = jpeg(11), jpeg(12)
    sha_nsfw, sha_csam = "1" * 64, "2" * 64
    await review.add(sha_nsfw, "flagged", "classified nsfw", label="nsfw", data=nsfw)
    await review.add(sha_csam, "flagged", "classified csam_suspect", label="csam_suspect",
                     data=csam)
    page = await (await node.get("/admin/review")).text()
    cards = {m.group(1): m.group(2) for m in re.finditer(
        r'<article class="card" id="item-(\w+)".*?>(.*?)</article>', page, re.S)}
    assert f'src="/admin/review/{sha_nsfw}/preview"' in cards[sha_nsfw]
    assert "<img" not in cards[sha_csam] and "Choose to see" in cards[sha_csam]
    # The obscured preview is a still, greyscale and blurred far below the clear image.
    obscured = await node.get(f"/admin/review/{sha_nsfw}/preview")
    clear = await node.get(f"/admin/review/{sha_nsfw}/image")
    assert obscured.status == clear.status == 200
    assert obscured.content_type == "image/jpeg" and obscured.headers["Cache-Control"] == "no-store"
    o, c = await obscured.read(), await clear.read()
    assert _greyscale(o) and not _greyscale(c)
    assert _sharpness(o) * 10 < _sharpness(c)
    # Nothing of the csam_suspect image is sent, not even blurred, before the opt-in.
    for kind in ("preview", "image"):
        assert (await node.get(f"/admin/review/{sha_csam}/{kind}")).status == 403
    resp = await node.post(f"/admin/review/{sha_csam}/reveal", data={"csrf_token": csrf},
                           allow_redirects=False)
    assert resp.status == 303
    assert (await node.get(f"/admin/review/{sha_csam}/preview")).status == 200
    page = await (await node.get("/admin/review")).text()
    assert f'src="/admin/review/{sha_csam}/preview"' in page
    # The opt-in is this session's and this image's only.
    await review.add("3" * 64, "flagged", "x", label="csam_suspect", data=jpeg(13))
    assert (await node.get(f"/admin/review/{'3' * 64}/preview")).status == 403
    entries = await node.server.app[STORE].recent_audit(50)
    assert any(e.action == "review_reveal" and e.sha256 == sha_csam for e in entries)


async def test_review_actions_confirm_mark_ok_and_quarantine(aiohttp_client: Any, tmp_path: Path,
                                                             db_url: str) -> None:
    quarantine = tmp_path / "quarantine"
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, sweep={"quarantine": str(quarantine)})))
    csrf = await login(node)
    app = node.server.app
    review, store = app[SERVICES].review, app[STORE]
    images = {k: jpeg(20 + i) for i, k in enumerate(("confirm", "ok", "quarantine"))}
    shas = {}
    for kind, data in images.items():
        hashes = await app[SERVICES].pool.hash(data)
        await store.save_image(hashes)
        shas[kind] = hashes.sha256
        await review.add(hashes.sha256, "flagged", "classified nsfw", label="nsfw", data=data)

    async def act(kind: str, action: str, **extra: str) -> str:
        resp = await node.post(f"/admin/review/{shas[kind]}/action", data={
            "csrf_token": csrf, "action": action, "note": "seen", **extra})
        assert resp.status == 200  # followed the redirect back to the queue
        return await resp.text()

    assert "confirmed csam_suspect" in await act("confirm", "confirm", label="csam_suspect")
    lookup = await store.lookup(shas["confirm"])
    assert lookup.verdict is not None and lookup.verdict.method == "human_review"
    assert lookup.verdict.label == "csam_suspect"
    assert await review.copy(shas["confirm"]) is None  # the reviewed copy is gone

    assert "marked ok" in await act("ok", "mark_ok")
    ov = (await store.lookup(shas["ok"])).override
    assert ov is not None and ov.action == "allow"

    assert "quarantined" in await act("quarantine", "quarantine")
    kept = list(quarantine.rglob(shas["quarantine"] + "*"))
    assert any(p.read_bytes() == images["quarantine"] for p in kept), kept
    ov = (await store.lookup(shas["quarantine"])).override
    assert ov is not None and ov.action == "block"
    assert [it.sha256 for it in await review.items()] == []


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_quarantine_without_a_quarantine_loses_nothing(node: Any) -> None:
    csrf = await login(node)
    review = node.server.app[SERVICES].review
    await review.add(SHA, "flagged", "x", label="nsfw", data=jpeg(30))
    resp = await node.post(f"/admin/review/{SHA}/action", data={
        "csrf_token": csrf, "action": "quarantine"})
    assert "sweep.quarantine" in await resp.text()
    assert await review.get(SHA) is not None and await review.copy(SHA) == jpeg(30)
    assert (await review.get(SHA)).resolved_at is None  # type: ignore[union-attr]
    assert (await node.server.app[STORE].lookup(SHA)).override is None


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_pages_render_and_peer_trust_follower_and_override_forms_work(node: Any) -> None:
    csrf = await login(node)
    app = node.server.app
    peer = "https://peer.example/actor"
    await PeerStore(app[STORE]).add(peer, "https://peer.example/inbox", None, "bad_only",
                                    "https://me/follow/1")
    await app[FEDERATION].store.add_follower("https://f.example/actor", "https://f.example/inbox",
                                             None)
    for path in ("/admin/", "/admin/review", "/admin/peers", "/admin/followers",
                 "/admin/overrides", "/admin/audit", "/admin/audit?q=%3Cscript%3E"):
        resp = await node.get(path)
        assert resp.status == 200, path
        assert "<script>" not in (await resp.text()).replace('<script src=', '')
    resp = await node.post("/admin/peers/trust", data={"csrf_token": csrf, "actor": peer,
                                                       "trust": "full", "perceptual_ok": "on"})
    assert f"{peer}: trust full" in await resp.text()
    got = await PeerStore(app[STORE]).get(peer)
    assert got is not None and got.trust == "full" and got.perceptual_ok
    resp = await node.post("/admin/peers/trust", data={"csrf_token": csrf, "actor": peer,
                                                       "trust": "bad_only", "perceptual_ok": "on"})
    assert "perceptual ok needs trust full" in await resp.text()
    resp = await node.post("/admin/followers/answer", data={
        "csrf_token": csrf, "actor": "https://f.example/actor", "answer": "approve"})
    assert "accepted" in await resp.text()
    resp = await node.post("/admin/overrides", data={"csrf_token": csrf, "sha256": "zz",
                                                     "action": "allow"})
    assert "sha256" in await resp.text() and await app[STORE].list_overrides() == []
    resp = await node.post("/admin/overrides", data={"csrf_token": csrf, "sha256": SHA.upper(),
                                                     "action": "allow", "note": "false positive"})
    assert "override" in await resp.text()
    assert [o.sha256 for o in await app[STORE].list_overrides()] == [SHA]
    csv_resp = await node.get("/admin/audit.csv?q=override")
    assert csv_resp.status == 200 and "override_allow" in await csv_resp.text()


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_set_password_command_refuses_weak_and_oversized_passwords(cli_env: dict[str, str]) -> None:
    from click.testing import CliRunner

    from attestd.cli import cli

    def set_password(name: str, password: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["admin", "set-password", "--password-stdin", name],
                                    env=cli_env, input=password + "\n")
        return result.exit_code, result.output

    for name, password, why in [("mod", "short", "at least 12"), ("mod", "x" * 2000, "at most"),
                                ("", PASSWORD, "NAME"), ("a\x1b[2Jb", PASSWORD, "printable")]:
        code, out = set_password(name, password)
        assert code != 0 and why in out, (name, out)
    code, out = set_password("mod", PASSWORD)
    assert code == 0 and "created" in out and PASSWORD not in out
    code, out = set_password("mod", PASSWORD + "!")
    assert code == 0 and "sessions ended" in out
