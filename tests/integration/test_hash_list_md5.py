"""HMA's ``video_md5`` and ``md5`` signals, imported with `attestd hashes import`, reject
the exact uploaded bytes at the scan endpoint, whether or not the decoder can read them."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from attestd.http import create_app
from attestd.http.appkeys import INDEX
from tests.conftest import CALLER, async_wait_for, make_config_env, run_cli
from tests.images import broken_video, jpeg, video

SCAN = f"/api/v1/scan/{CALLER}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def _import(env: dict[str, str], path: Path, name: str) -> str:
    code, out = await asyncio.to_thread(run_cli, env, "hashes", "import", str(path),
                                        "--label", "csam_suspect", "--source", name)
    assert code == 0, out
    return out


async def _post(client: Any, data: bytes, ctype: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post(SCAN, data=data, headers={"Content-Type": ctype})
    return resp.status, await resp.json()


async def test_video_md5_and_md5_rows_reject_the_exact_bytes(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    cfg, env = make_config_env(tmp_path, db_url)
    mp4, webm, other, photo = video(3, "mp4"), video(5, "webm"), video(9, "mp4"), jpeg(77)
    hma = tmp_path / "hma.csv"
    hma.write_text("signal_type,signal\n"
                   f"video_md5,{_md5(mp4).upper()}\nvideo_md5,{_md5(webm)}\nmd5,{_md5(photo)}\n")
    out = await _import(env, hma, "hma")
    assert "3 added" in out
    node = await aiohttp_client(create_app(cfg))
    assert await async_wait_for(lambda: len(node.app[INDEX]) >= 3, timeout=5)
    for data, ctype in ((mp4, "video/mp4"), (webm, "video/webm"), (photo, "image/jpeg")):
        status, body = await _post(node, data, ctype)
        assert status == 406, body
        assert body["source"] == "list:hma" and body["label"] == "csam_suspect"
        assert "md5" in body["reason"]
    status, body = await _post(node, other, "video/mp4")
    assert status == 200 and body["source"] != "list:hma", body


async def test_a_listed_video_the_decoder_cannot_read_is_rejected_by_its_md5(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    # Unreadable uploads are accepted here, so only the list can reject this one.
    cfg, env = make_config_env(tmp_path, db_url, policy={"actions.unreadable": "accept"})
    corrupt, unlisted = broken_video(), broken_video()
    signals = tmp_path / "signals.txt"
    signals.write_text(f"video_md5 {_md5(corrupt)}\n")
    await _import(env, signals, "te")
    node = await aiohttp_client(create_app(cfg))
    assert await async_wait_for(lambda: len(node.app[INDEX]) >= 1, timeout=5)
    status, body = await _post(node, corrupt, "video/mp4")
    assert status == 406 and body["source"] == "list:te", body
    status, body = await _post(node, unlisted, "video/mp4")
    assert status == 200 and body["label"] == "unreadable", body


async def test_a_stored_image_listed_by_md5_is_not_decided_without_its_bytes(
        aiohttp_client: Any, tmp_path: Path, db_url: str) -> None:
    # A sweep decides images it has hashed before from their stored sha256; an md5 entry
    # can only be matched against the bytes, so with any md5 listed it must fetch them.
    from attestd.http.appkeys import PIPELINE

    cfg, env = make_config_env(tmp_path, db_url)
    photo = jpeg(78)
    node = await aiohttp_client(create_app(cfg))
    status, body = await _post(node, photo, "image/jpeg")
    assert status == 200, body
    pipeline = node.app[PIPELINE]
    await pipeline.writes.flush()
    sha = hashlib.sha256(photo).hexdigest()
    assert (await pipeline.decide_stored(sha)) is not None  # decided from what is stored
    signals = tmp_path / "signals.txt"
    signals.write_text(f"md5 {_md5(photo)}\n")
    await _import(env, signals, "te")
    assert await async_wait_for(lambda: len(node.app[INDEX]) >= 1, timeout=5)
    assert await pipeline.decide_stored(sha) is None  # the bytes are needed now
    status, body = await _post(node, photo, "image/jpeg")
    assert status == 406 and body["source"] == "list:te", body
