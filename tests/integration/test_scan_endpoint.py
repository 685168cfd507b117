"""The pict-rs endpoint through a real aiohttp server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from attestd.db import schema as t
from attestd.db.engine import create_engine
from attestd.http import create_app
from attestd.http.appkeys import INDEX, STORE
from tests.conftest import CALLER, async_wait_for, make_config
from tests.images import animated_gif, jpeg, png_bomb, reencoded

SCAN = f"/api/v1/scan/{CALLER}"
JPEG = {"Content-Type": "image/jpeg"}


async def _post(client: Any, data: bytes, path: str = SCAN, ctype: str = "image/jpeg") -> Any:
    return await client.post(path, data=data, headers={"Content-Type": ctype})


async def _still_serving(client: Any) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    resp = await _post(client, jpeg(999))
    assert resp.status == 200, await resp.text()


async def test_new_image_is_hashed_and_accepted_by_default(node: Any) -> None:
    resp = await _post(node, jpeg(1))
    body = await resp.json()
    assert resp.status == 200
    assert body["decision"] == "accept"
    assert body["source"] == "policy:on_unknown"
    assert len(body["pdq"]) == 64 and len(body["phash"]) == 16
    assert body["media_type"] == "image/jpeg"


async def test_ipaddr_caller_is_allowed_from_loopback_and_the_short_route(node: Any) -> None:
    assert (await _post(node, jpeg(2), "/api/v1/scan/IPADDR")).status == 200
    assert (await _post(node, jpeg(2), "/api/v1/scan")).status == 200


async def test_multipart_upload_like_pictrs_safety(node: Any) -> None:
    form = aiohttp.FormData()
    form.add_field("file", jpeg(3), filename="cat.jpg", content_type="image/jpeg")
    resp = await node.post(SCAN, data=form)
    assert resp.status == 200
    assert (await resp.json())["media_type"] == "image/jpeg"


async def test_animated_gif_is_hashed_per_frame(node: Any) -> None:
    resp = await _post(node, animated_gif(4, frames=5), ctype="image/gif")
    body = await resp.json()
    assert resp.status == 200 and body["frames"] == 5


async def test_block_override_rejects_exact_and_reencoded_copies(node: Any) -> None:
    original = jpeg(10, (1024, 768))
    store = node.app[STORE]
    resp = await _post(node, original)
    assert resp.status == 200
    hashes = await store.get_hashes((await resp.json())["sha256"])
    await store.set_override(hashes.sha256, "block", "test", "pytest", hashes.frames)
    await _wait_index(node, 1)

    resp = await _post(node, original)
    body = await resp.json()
    assert resp.status == 406 and body["label"] == "blocked"
    assert body["source"].startswith("override:")

    resp = await _post(node, reencoded(original, scale=0.5, quality=55))
    body = await resp.json()
    assert resp.status == 406, body
    assert body["label"] == "blocked" and "perceptually" in body["reason"]

    # An unrelated image is unaffected.
    assert (await _post(node, jpeg(11, (1024, 768)))).status == 200


async def test_allow_override_is_exact_sha256_only(tmp_path: Path, db_url: str,
                                                   aiohttp_client: Any) -> None:
    cfg = make_config(tmp_path, db_url, policy={"on_unknown": "reject"})
    node = await aiohttp_client(create_app(cfg))
    original = jpeg(20)
    assert (await _post(node, original)).status == 406
    from scanner import sha256_hex
    await node.app[STORE].set_override(sha256_hex(original), "allow", "", "pytest")
    resp = await _post(node, original)
    assert resp.status == 200 and (await resp.json())["label"] == "ok"
    # A near-copy is not whitelisted: a forged look-alike must not pass as allowed.
    assert (await _post(node, reencoded(original))).status == 406


async def test_bad_verdict_rejects_exact_and_near_copies(node: Any) -> None:
    original = jpeg(30, (800, 600))
    resp = await _post(node, original)
    hashes = await node.app[STORE].get_hashes((await resp.json())["sha256"])
    verdict = await node.app[STORE].record_verdict(hashes, "csam_suspect", "human_review",
                                                   "reviewer:alice")
    await _wait_index(node, 1)
    resp = await _post(node, original)
    body = await resp.json()
    assert resp.status == 406 and body["source"] == f"verdict:{verdict.id}"
    resp = await _post(node, reencoded(original))
    body = await resp.json()
    assert resp.status == 406 and body["label"] == "csam_suspect"


async def test_nsfw_follows_policy_actions(tmp_path: Path, db_url: str,
                                           aiohttp_client: Any) -> None:
    cfg = make_config(tmp_path, db_url, policy={"actions.nsfw": "reject"})
    node = await aiohttp_client(create_app(cfg))
    img = jpeg(40)
    resp = await _post(node, img)
    hashes = await node.app[STORE].get_hashes((await resp.json())["sha256"])
    await node.app[STORE].record_verdict(hashes, "nsfw", "human_review", "reviewer:bob")
    assert (await _post(node, img)).status == 406


async def test_on_unknown_reject_and_accept_and_rescan(tmp_path: Path, db_url: str,
                                                       aiohttp_client: Any) -> None:
    rejecting = await aiohttp_client(create_app(
        make_config(tmp_path / "a", db_url, policy={"on_unknown": "reject"})))
    resp = await _post(rejecting, jpeg(50))
    assert resp.status == 406 and (await resp.json())["label"] is None

    rescan_cfg = make_config(tmp_path / "b", db_url, policy={"on_unknown": "accept_and_rescan"})
    rescanning = await aiohttp_client(create_app(rescan_cfg))
    img = jpeg(51)
    resp = await _post(rescanning, img)
    sha = (await resp.json())["sha256"]
    assert resp.status == 200
    assert await rescanning.app[STORE].queue_depth() == 1
    blob = rescan_cfg.node.data_dir / "blobs" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == img
    assert (blob.stat().st_mode & 0o077) == 0
    await _post(rescanning, img)  # the same image is queued once
    assert await rescanning.app[STORE].queue_depth() == 1


async def test_every_decision_is_audited(node: Any, config: Any) -> None:
    await _post(node, jpeg(60))
    await _post(node, b"not an image", ctype="image/png")
    await asyncio.sleep(0.6)  # the audit writer flushes in batches
    entries = await node.app[STORE].recent_audit()
    assert [e.decision for e in entries[:2]] == ["reject", "accept"]
    assert entries[0].label == "unreadable" and entries[0].actor.startswith("pictrs:")
    # The caller name is a secret: it never reaches the audit log.
    assert all(CALLER not in (e.actor or "") for e in entries)


async def test_metrics_and_health(node: Any) -> None:
    await _post(node, jpeg(70))
    text = await (await node.get("/metrics")).text()
    assert 'attestd_checks_total{decided_by="policy",decision="accept",label="unknown"} 1.0' in text
    assert "attestd_check_seconds_bucket" in text and "attestd_queue_depth 0.0" in text
    health = await (await node.get("/healthz")).json()
    assert health["status"] == "ok"


# -- bad input: each a clear 4xx with a JSON message, and the node keeps serving -----------

@pytest.mark.parametrize("body,ctype,status,words", [
    (b"", "image/jpeg", 400, "empty"),
    (None, "image/jpeg", 400, "truncated"),  # truncated JPEG, built below
    (bytes(range(256)) * 40, "image/png", 400, "not a readable image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
     "image/svg+xml", 415, "image/svg+xml"),
    (b"<!doctype html><html><body>hi</body></html>", "text/html", 415, "text/html"),
    (b"<!doctype html><html><body>hi</body></html>", "image/png", 415, "markup"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png", 415, "markup"),
    (b"%PDF-1.4 fake", "application/pdf", 415, "application/pdf"),
])
async def test_bad_bodies(node: Any, body: bytes | None, ctype: str, status: int,
                          words: str) -> None:
    if body is None:
        body = jpeg(80)[:4000]
    resp = await _post(node, body, ctype=ctype)
    payload = await resp.json()
    assert resp.status == status, payload
    message = payload.get("error") or payload.get("reason")
    assert words in message
    await _still_serving(node)


async def test_png_decompression_bomb_is_refused_without_decoding(node: Any) -> None:
    bomb = png_bomb()
    assert len(bomb) < 1_000_000
    started = time.monotonic()
    resp = await _post(node, bomb, ctype="image/png")
    payload = await resp.json()
    assert resp.status == 413, payload
    assert "50000x50000" in payload["reason"] and "scanner.max_pixels" in payload["reason"]
    assert time.monotonic() - started < 5
    await _still_serving(node)


async def test_body_over_the_limit_is_refused_before_it_is_read(
        tmp_path: Path, db_url: str, aiohttp_client: Any) -> None:
    cfg = make_config(tmp_path, db_url, pictrs={"max_body_bytes": 256 * 1024})
    node = await aiohttp_client(create_app(cfg))

    # Declared too large: refused on the header alone.
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        chunk = b"\xff" * 65536
        while sent < 1024**3:
            sent += len(chunk)
            yield chunk

    resp = await node.post(SCAN, data=endless(), headers={**JPEG, "Content-Length": str(1024**3)})
    assert resp.status == 413
    assert "pictrs.max_body_bytes" in (await resp.json())["error"]
    assert sent < 64 * 1024 * 1024

    # Chunked, no length: refused once the limit is crossed.
    sent = 0
    resp = await node.post(SCAN, data=endless(), headers=JPEG)
    assert resp.status == 413
    assert sent < 64 * 1024 * 1024
    await _still_serving(node)


async def test_unknown_caller_and_address(tmp_path: Path, db_url: str,
                                          aiohttp_client: Any) -> None:
    cfg = make_config(tmp_path, db_url, pictrs={"allowed_ips": ["10.0.0.0/8"]})
    node = await aiohttp_client(create_app(cfg))
    resp = await _post(node, jpeg(90), "/api/v1/scan/not-a-caller")
    assert resp.status == 401 and "allowed_callers" in (await resp.json())["error"]
    resp = await _post(node, jpeg(90), "/api/v1/scan/IPADDR")
    assert resp.status == 401 and "allowed_ips" in (await resp.json())["error"]
    assert (await _post(node, jpeg(90))).status == 200


@pytest.mark.parametrize("raw", [
    b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff",  # never closed
    b"this is not multipart at all",
    b"--OTHER\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--OTHER--\r\n",
    b"--XYZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XYZ--\r\n",
])
async def test_malformed_multipart(node: Any, raw: bytes) -> None:
    resp = await node.post(SCAN, data=raw,
                           headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
    payload = await resp.json()
    assert resp.status == 400, payload
    assert "multipart" in payload.get("error", "") or "truncated" in payload.get("reason", "")
    await _still_serving(node)


async def test_serve_refuses_an_unmigrated_database(tmp_path: Path, aiohttp_client: Any) -> None:
    from attestd.errors import DatabaseNotReady

    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseNotReady, match="attestd db upgrade"):
        await aiohttp_client(create_app(cfg))


async def test_image_hashes_are_stored_once(node: Any, config: Any) -> None:
    img = jpeg(100)
    for _ in range(3):
        assert (await _post(node, img)).status == 200
    await asyncio.sleep(0.6)  # hashes are written behind the answer, in batches
    engine = create_engine(config.database.url)
    try:
        async with engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(t.images))).scalar_one()
    finally:
        await engine.dispose()
    assert n == 1


async def _wait_index(client: Any, n: int) -> None:
    """The index follows the database within about a second."""
    assert await async_wait_for(lambda: len(client.app[INDEX]) >= n, timeout=5)


async def test_videos_from_pictrs_are_checked(node: Any) -> None:
    from tests.images import video

    clip = video(7, "mp4")
    resp = await _post(node, clip, ctype="video/mp4")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["media_type"] == "video/mp4" and body["frames"] >= 2
    resp = await _post(node, clip[: len(clip) // 3], ctype="video/mp4")
    assert resp.status == 400 and (await resp.json())["label"] == "unreadable"
    await _still_serving(node)
