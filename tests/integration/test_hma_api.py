"""HMA's hashing and matching routes on a real node (issue 15): the shapes HMA's
OpenMediaMatch answers (blueprints/hashing.py and matching.py), with hash lists as banks."""

from __future__ import annotations

from typing import Any

import aiohttp

from attestd.admin_tokens import AdminTokens
from attestd.http.appkeys import STORE
from scanner import DecodeLimits, hash_image_bytes
from tests.conftest import async_wait_for
from tests.images import jpeg, reencoded


def _form(data: bytes, field: str = "photo") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, data, filename="upload.jpg", content_type="image/jpeg")
    return form


async def test_hma_hash_and_lookup_routes(node: Any) -> None:
    store = node.server.app[STORE]
    auth = {"Authorization": f"Bearer {await AdminTokens(store.engine).create('hma')}"}
    listed, other = jpeg(51), jpeg(52)
    frame = hash_image_bytes(listed, DecodeLimits()).first
    await store.replace_list("list:ncmec", "csam_suspect", [
        {"pdq": frame.pdq, "pdq_quality": frame.pdq_quality, "phash": frame.phash}])

    for method, path in (("POST", "/h/hash"), ("GET", f"/m/lookup?signal_type=pdq&signal={frame.pdq}"),
                         ("POST", "/m/lookup")):
        resp = await node.request(method, path, data=_form(listed) if method == "POST" else None)
        assert resp.status == 401, (method, path)

    resp = await node.post("/h/hash", data=_form(listed), headers=auth)
    assert resp.status == 200 and await resp.json() == {"pdq": frame.pdq}

    async def banked() -> dict[str, Any]:
        resp = await node.get("/m/lookup", params={"signal_type": "pdq", "signal": frame.pdq},
                              headers=auth)
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body
    assert await async_wait_for(banked, timeout=10)  # the index follows the change log
    body = await banked()
    assert list(body) == ["ncmec"] and len(body["ncmec"]) == 1
    hit = body["ncmec"][0]
    assert set(hit) == {"bank_content_id", "distance"}
    assert isinstance(hit["bank_content_id"], int) and hit["distance"] == "0"

    resp = await node.post("/m/lookup", data=_form(reencoded(listed)), headers=auth)
    near = (await resp.json())["pdq"]["ncmec"][0]
    assert near["bank_content_id"] == hit["bank_content_id"] and 0 < int(near["distance"]) <= 31
    resp = await node.post("/m/lookup", data=_form(other), headers=auth)
    assert await resp.json() == {"pdq": {}}
    resp = await node.get("/m/lookup", params={"signal_type": "pdq", "signal": frame.pdq,
                                               "banks": "stopncii"}, headers=auth)
    assert await resp.json() == {}

    for params in ({"signal_type": "pdq", "signal": "nothex"}, {"signal_type": "md5",
                   "signal": "0" * 32}, {"signal_type": "pdq"}, {"url": "https://x.example/a.jpg"}):
        resp = await node.get("/m/lookup", params=params, headers=auth)
        assert resp.status == 400 and (await resp.json())["error"], params
    resp = await node.post("/h/hash", data=_form(listed, "video"), headers=auth)
    assert resp.status == 400
    resp = await node.post("/h/hash", data=_form(b"not an image"), headers=auth)
    assert resp.status == 400 and "unreadable" in (await resp.json())["error"]
