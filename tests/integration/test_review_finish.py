"""Review a moderator can finish (issue 19 item 4): sweep flags keep a copy for a preview
(bounded, expiring), unreadable junk can be dismissed and is never allowed by "Mark ok",
no label is preselected on an item queued without one, and items a sweep of pict-rs
found link to Lemmy."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from attestd import overrides
from attestd.admin_tokens import AdminTokens
from attestd.db import schema as t
from attestd.http import create_app
from attestd.http.appkeys import CONFIG, SERVICES, STORE
from attestd.model import utcnow
from attestd.sweep.runtime import open_sweeper
from tests.conftest import CALLER, make_config
from tests.images import jpeg
from tests.integration.test_admin_pages import login
from tests.pictrs_standin import PictrsStandIn

A = "/api/v1/admin"
HTML = b"<!doctype html><html><body>not an image at all</body></html>"
LEMMY = "https://lemmy.example"


async def _auth(node: Any) -> dict[str, str]:
    token = await AdminTokens(node.server.app[STORE].engine).create(f"ops-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {token}"}


async def _items(node: Any) -> dict[str, dict[str, Any]]:
    resp = await node.get(f"{A}/review", headers=await _auth(node))
    assert resp.status == 200, await resp.text()
    return {i["sha256"]: i for i in (await resp.json())["items"]}


def _cards(page: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(
        r'<article class="card" id="item-(\w+)".*?>(.*?)</article>', page, re.S)}


async def _block(node: Any, data: bytes) -> str:
    """Block ``data`` the way an admin does (its hashes stored, so a sweep that knows its
    sha256 decides it without downloading it)."""
    app = node.server.app
    hashes = await app[SERVICES].pool.hash(data)
    await app[STORE].save_image(hashes)
    await overrides.set_override(app[STORE], "block", hashes.sha256, hashes, "planted", "test",
                                 "test")
    return str(hashes.sha256)


async def _sweep(node: Any) -> Any:
    app = node.server.app
    cfg = app[CONFIG]
    async with open_sweeper(cfg, cfg.sweep, app[SERVICES]) as sweeper:
        return await sweeper.sweep_all()


# -- sweep flags keep a copy ---------------------------------------------------------------

@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_sweep_flag_of_a_downloaded_image_shows_a_preview(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    bad = jpeg(950)
    (folder / "bad.jpg").write_bytes(bad)
    (folder / "fine.jpg").write_bytes(jpeg(951))
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, sweep={"source": "fs", "fs.path": str(folder), "action": "flag"})))
    sha = await _block(node, bad)
    summary = await _sweep(node)
    assert summary.acted == {"flag": 1} and summary.downloaded == 2, summary
    await login(node)
    card = _cards(await (await node.get("/admin/review")).text())[sha]
    assert f'src="/admin/review/{sha}/preview"' in card and "no copy was kept" not in card
    preview = await node.get(f"/admin/review/{sha}/preview")
    assert preview.status == 200 and preview.content_type == "image/jpeg"
    item = (await _items(node))[sha]
    assert item["kind"] == "flagged" and item["has_copy"] is True, item


async def test_a_sweep_flag_decided_from_stored_hashes_downloads_a_copy_and_links_to_lemmy(
        aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, db_url: str) -> None:
    standin = PictrsStandIn(api_key="pictrs-key-for-review-tests")
    pictrs = await aiohttp_server(standin.app())
    bad = standin.add(jpeg(960), aliases=2)
    standin.add(jpeg(961))
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, review={"lemmy_url": LEMMY + "/"},
        sweep={"source": "pictrs", "pictrs.url": str(pictrs.make_url("")).rstrip("/"),
               "pictrs.api_token": standin.api_key, "action": "flag"})))
    sha = await _block(node, bad.data)
    summary = await _sweep(node)
    assert summary.acted == {"flag": 1}, summary
    # One download for the unknown image's check, one for the flagged image's copy.
    assert standin.originals_fetched() == 2
    item = (await _items(node))[sha]
    assert item["has_copy"] is True and item["copy_note"] is None, item
    assert item["aliases"] == bad.aliases
    assert item["lemmy_urls"] == [f"{LEMMY}/pictrs/image/{a}" for a in bad.aliases]
    await login(node)
    card = _cards(await (await node.get("/admin/review")).text())[sha]
    assert f'src="/admin/review/{sha}/preview"' in card
    assert f'href="{LEMMY}/pictrs/image/{bad.aliases[0]}"' in card and "Open in Lemmy" in card
    # A second sweep finds the item open with its copy (and the other image known):
    # nothing is downloaded again.
    await _sweep(node)
    assert standin.originals_fetched() == 2


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_flag_whose_copy_would_break_the_limit_is_not_downloaded_and_says_so(
        aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, db_url: str) -> None:
    standin = PictrsStandIn(api_key="pictrs-key-for-review-tests")
    pictrs = await aiohttp_server(standin.app())
    bad = standin.add(jpeg(970))
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, review={"copy_max_bytes": 100},
        sweep={"source": "pictrs", "pictrs.url": str(pictrs.make_url("")).rstrip("/"),
               "pictrs.api_token": standin.api_key, "action": "flag"})))
    sha = await _block(node, bad.data)
    await _sweep(node)
    assert standin.originals_fetched() == 0
    item = (await _items(node))[sha]
    assert item["has_copy"] is False and "review.copy_max_bytes" in item["copy_note"], item
    assert item["lemmy_urls"] == []  # no review.lemmy_url
    await login(node)
    card = _cards(await (await node.get("/admin/review")).text())[sha]
    assert "no copy was kept" in card and "review.copy_max_bytes" in card and "<img" not in card


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_copies_of_readable_items_are_bounded_and_expire_leaving_the_item(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    first, second = jpeg(980), jpeg(981)
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, review={"copy_max_bytes": len(first) + len(second) - 1})))
    review = node.server.app[SERVICES].review
    await review.add("1" * 64, "rescan", "classified nsfw", label="nsfw", data=first)
    await review.add("2" * 64, "rescan", "classified nsfw", label="nsfw", data=second)
    items = await _items(node)
    assert items["1" * 64]["has_copy"] is True
    assert items["2" * 64]["has_copy"] is False
    assert "review.copy_max_bytes" in items["2" * 64]["copy_note"]
    # Once the first is resolved there is room again for the second's copy.
    await review.resolve("1" * 64)
    await review.add("2" * 64, "rescan", "classified nsfw", label="nsfw", data=second)
    assert (await _items(node))["2" * 64]["has_copy"] is True
    # Old copies go; the item stays open and says why it has none.
    async with node.server.app[STORE].writing() as conn:
        await conn.execute(update(t.review_items).values(
            created_at=utcnow() - timedelta(days=31)))
    assert await review.expire_copies(timedelta(days=30)) == 1
    item = (await _items(node))["2" * 64]
    assert item["has_copy"] is False and "review.copy_expire_days" in item["copy_note"]
    assert await review.copy("2" * 64) is None


# -- unreadable junk -----------------------------------------------------------------------

async def _scan(node: Any, data: bytes) -> int:
    resp = await node.post(f"/api/v1/scan/{CALLER}", data=data,
                           headers={"Content-Type": "image/png"})
    return int(resp.status)


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_mark_ok_on_unreadable_html_dismisses_it_and_the_html_still_gets_415(
        node: Any) -> None:
    assert await _scan(node, HTML) == 415
    review, store = node.server.app[SERVICES].review, node.server.app[STORE]
    [item] = await review.items("unreadable")
    csrf = await login(node)
    card = _cards(await (await node.get("/admin/review")).text())[item.sha256]
    # Nothing is preselected: a confirm must be a choice, never csam_suspect by default.
    assert re.search(r"<option [^>]*selected[^>]*>csam_suspect", card) is None
    assert '<option value="" selected>' in card
    assert 'value="dismiss">Dismiss</button>' in card

    async def act(action: str, **extra: str) -> str:
        resp = await node.post(f"/admin/review/{item.sha256}/action",
                               data={"csrf_token": csrf, "action": action, **extra})
        assert resp.status == 200
        return str(await resp.text())

    assert "choose a label" in await act("confirm", label="")
    assert (await store.lookup(item.sha256)).verdict is None
    assert "dismissed, not allowed" in await act("mark_ok")
    assert (await store.lookup(item.sha256)).override is None
    assert await store.list_overrides() == []
    assert await review.items() == []
    assert await _scan(node, HTML) == 415
    entries = await store.recent_audit(50)
    assert any(e.action == "review_dismiss" and e.sha256 == item.sha256 for e in entries)


async def test_the_api_dismisses_unreadable_items_only_and_says_has_copy(node: Any) -> None:
    auth = await _auth(node)
    review = node.server.app[SERVICES].review
    assert await _scan(node, HTML) == 415
    [junk] = await review.items("unreadable")
    await review.add("c" * 64, "flagged", "classified nsfw", label="nsfw", data=jpeg(990))
    items = await _items(node)
    assert items["c" * 64]["has_copy"] is True and items[junk.sha256]["has_copy"] is True

    async def act(sha: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await node.post(f"{A}/review/{sha}", json=body, headers=auth)
        return resp.status, await resp.json()

    status, body = await act(junk.sha256, {"action": "confirm"})
    assert status == 400 and "choose a label" in body["error"]
    status, body = await act("c" * 64, {"action": "dismiss"})
    assert status == 409 and "only unreadable items" in body["error"]
    status, body = await act(junk.sha256, {"action": "dismiss", "note": "html junk"})
    assert status == 200 and body["dismissed"] is True, body
    assert set(await _items(node)) == {"c" * 64}
    status, body = await act(junk.sha256, {"action": "dismiss"})
    assert status == 409 and "no open review item" in body["error"]
    assert await node.server.app[STORE].list_overrides() == []
    assert await _scan(node, HTML) == 415


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_no_lemmy_link_for_an_image_never_shown_unasked(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    node = await aiohttp_client(create_app(make_config(
        tmp_path, db_url, review={"lemmy_url": LEMMY})))
    review = node.server.app[SERVICES].review
    await review.add("8" * 64, "flagged", "x", label="nsfw", aliases=["nsfw.jpg"])
    await review.add("9" * 64, "flagged", "x", label="csam_suspect", aliases=["csam.jpg"])
    items = await _items(node)
    assert items["8" * 64]["lemmy_urls"] == [f"{LEMMY}/pictrs/image/nsfw.jpg"]
    assert items["9" * 64]["aliases"] == ["csam.jpg"] and items["9" * 64]["lemmy_urls"] == []
    csrf = await login(node)
    # Lemmy serves the image clear: not linked even after the opt-in to see it blurred.
    await node.post(f"/admin/review/{'9' * 64}/reveal", data={"csrf_token": csrf})
    cards = _cards(await (await node.get("/admin/review")).text())
    assert f'href="{LEMMY}/pictrs/image/nsfw.jpg"' in cards["8" * 64]
    assert "Open in Lemmy" not in cards["9" * 64] and "csam.jpg" not in cards["9" * 64]
