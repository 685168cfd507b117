"""The admin JSON API through a real aiohttp server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from attestd.admin_tokens import AdminTokens
from attestd.federation.peers import PeerStore
from attestd.http.appkeys import FEDERATION, SERVICES, STORE
from tests.conftest import CALLER, async_wait_for, run_cli
from tests.images import jpeg, reencoded

A = "/api/v1/admin"
ROUTES = [("GET", f"{A}/stats"), ("GET", f"{A}/audit"), ("GET", f"{A}/audit?format=csv"),
          ("GET", f"{A}/overrides"), ("POST", f"{A}/overrides"), ("DELETE", f"{A}/overrides/1")]


async def _token(node: Any, name: str = "ops") -> dict[str, str]:
    token = await AdminTokens(node.server.app[STORE].engine).create(name)
    return {"Authorization": f"Bearer {token}"}


async def _scan(node: Any, data: bytes) -> dict[str, Any]:
    resp = await node.post(f"/api/v1/scan/{CALLER}", data=data,
                           headers={"Content-Type": "image/jpeg"})
    body: dict[str, Any] = await resp.json()
    # pict-rs's contract: 200 keeps the upload, 406 refuses it.
    assert resp.status == (200 if body["decision"] == "accept" else 406), body
    return body


async def _copy_rejected(node: Any, data: bytes) -> bool:
    return (await _scan(node, data))["decision"] == "reject"


async def _audited(node: Any, auth: dict[str, str], n: int) -> None:
    """Checks reach the audit log through the write-behind batch: wait for ``n``."""
    async def enough() -> bool:
        resp = await node.get(f"{A}/audit", headers=auth)
        return len((await resp.json())["entries"]) >= n
    assert await async_wait_for(enough, timeout=10)


async def _accepted(node: Any, data: bytes) -> bool:
    return (await _scan(node, data))["decision"] == "accept"


async def test_every_admin_route_refuses_missing_wrong_and_revoked_tokens(node: Any) -> None:
    auth = await _token(node)
    tokens = AdminTokens(node.server.app[STORE].engine)
    other = await tokens.create("gone")
    assert await tokens.revoke("gone")
    for headers in ({}, {"Authorization": "Bearer atd_wrong"}, {"Authorization": "Basic eDp5"},
                    {"Authorization": auth["Authorization"][:-1]},
                    {"Authorization": f"Bearer {other}"}):
        for method, path in ROUTES:
            resp = await node.request(method, path, headers=headers, json={})
            assert resp.status == 401, (method, path, headers)
            assert "token" in (await resp.json())["error"]
    assert (await node.get(f"{A}/stats", headers=auth)).status == 200


async def test_overrides_through_the_api_decide_checks_and_are_audited(node: Any) -> None:
    auth = await _token(node)
    bad, good = jpeg(301), jpeg(302)
    first = await _scan(node, bad)
    resp = await node.post(f"{A}/overrides", headers=auth,
                           json={"sha256": first["sha256"], "action": "block", "note": "reported"})
    assert resp.status == 201, await resp.text()
    block = await resp.json()
    assert block["perceptual_frames"] == 1 and block["created_by"] == "admin:ops"
    assert (await _scan(node, bad))["decision"] == "reject"
    # The block reaches re-encoded copies once the change follower (1 s ticks) indexes it.
    copy = reencoded(bad, quality=60)
    assert await async_wait_for(lambda: _copy_rejected(node, copy), timeout=10)
    # Allow is exact only.
    ok = await _scan(node, good)
    resp = await node.post(f"{A}/overrides", headers=auth,
                           json={"sha256": ok["sha256"], "action": "allow"})
    assert resp.status == 201
    listed = (await (await node.get(f"{A}/overrides", headers=auth)).json())["overrides"]
    assert {o["action"] for o in listed} == {"allow", "block"}
    resp = await node.delete(f"{A}/overrides/{block['id']}", headers=auth)
    assert resp.status == 200
    assert (await node.delete(f"{A}/overrides/{block['id']}", headers=auth)).status == 404
    assert await async_wait_for(lambda: _accepted(node, bad), timeout=10)
    entries = (await (await node.get(f"{A}/audit?q=admin:ops", headers=auth)).json())["entries"]
    assert [e["action"] for e in entries] == ["override_remove", "override_allow", "override_block"]


async def test_bad_override_requests_get_clear_errors_and_change_nothing(node: Any) -> None:
    auth = await _token(node)
    cases = [
        (b"{not json", 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        (b'{"sha256": "zz", "action": "block"}', 400, "sha256"),
        (b'{"sha256": "' + b"a" * 64 + b'", "action": "delete"}', 400, "action"),
        (b'{"sha256": "' + b"a" * 64 + b'", "action": "allow", "note": 5}', 400, "note"),
        (b'{"note": "' + b"x" * 70_000 + b'"}', 413, ""),
    ]
    for body, status, word in cases:
        resp = await node.post(f"{A}/overrides", headers={**auth, "Content-Type": "application/json"},
                               data=body)
        assert resp.status == status, (body[:40], await resp.text())
        assert word in (await resp.json())["error"]
    for path in (f"{A}/overrides/x1", f"{A}/overrides/{'9' * 30}"):
        assert (await node.delete(path, headers=auth)).status == 400
    for query in ("limit=0", "limit=-1", "limit=abc", "before=x", "format=xml", "q=" + "a" * 300):
        resp = await node.get(f"{A}/audit?{query}", headers=auth)
        assert resp.status == 400, query
    listed = (await (await node.get(f"{A}/overrides", headers=auth)).json())["overrides"]
    assert listed == []


async def test_audit_search_paging_and_csv_export(node: Any) -> None:
    auth = await _token(node)
    shas = [(await _scan(node, jpeg(400 + i)))["sha256"] for i in range(5)]
    await _audited(node, auth, 5)
    page = (await (await node.get(f"{A}/audit?limit=2", headers=auth)).json())
    assert len(page["entries"]) == 2 and page["next_before"] is not None
    rest = (await (await node.get(f"{A}/audit?limit=100&before={page['next_before']}",
                                  headers=auth)).json())["entries"]
    assert len(rest) == 3
    found = (await (await node.get(f"{A}/audit?q={shas[2][:12]}", headers=auth)).json())["entries"]
    assert [e["sha256"] for e in found] == [shas[2]]
    # LIKE wildcards in the search are literal.
    assert (await (await node.get(f"{A}/audit?q=%25", headers=auth)).json())["entries"] == []
    resp = await node.get(f"{A}/audit?format=csv", headers=auth)
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert {r["sha256"] for r in rows} == set(shas) and {r["action"] for r in rows} == {"check"}


async def test_stats_count_checks_by_outcome_and_source(node: Any) -> None:
    auth = await _token(node)
    for i in range(3):
        await _scan(node, jpeg(500 + i))
    await _audited(node, auth, 3)
    stats = await (await node.get(f"{A}/stats", headers=auth)).json()
    assert stats["checks_24h"]["by_decision"] == {"accept": 3}
    assert stats["checks_24h"]["by_source"] == {"policy": 3}
    assert stats["queue_depth"] == 0


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_admin_token_cli_creates_lists_and_revokes(cli_env: dict[str, str]) -> None:
    code, out = run_cli(cli_env, "admin", "token", "create", "laptop")
    assert code == 0, out
    token = out.splitlines()[0].strip()
    assert token.startswith("atd_") and len(token) > 40 and "not shown again" in out
    code, out = run_cli(cli_env, "admin", "token", "create", "laptop")
    assert code != 0 and "exists" in out
    code, out = run_cli(cli_env, "admin", "token", "list")
    assert code == 0 and "laptop" in out and "never used" in out and token not in out
    assert run_cli(cli_env, "admin", "token", "revoke", "laptop")[0] == 0
    code, out = run_cli(cli_env, "admin", "token", "revoke", "laptop")
    assert code != 0 and "no admin token" in out


async def test_review_resource_lists_and_acts_with_clear_errors(node: Any) -> None:
    auth = await _token(node)
    review = node.server.app[SERVICES].review
    await review.add("c" * 64, "flagged", "classified nsfw", label="nsfw", data=jpeg(401))
    await review.add("d" * 64, "disputed", "peers disagree", label="csam_suspect")
    items = (await (await node.get(f"{A}/review", headers=auth)).json())["items"]
    assert [(i["sha256"][0], i["kind"], i["never_shown_without_opt_in"]) for i in items] == [
        ("c", "flagged", False), ("d", "disputed", True)]
    flagged = (await (await node.get(f"{A}/review?kind=flagged", headers=auth)).json())["items"]
    assert [i["sha256"][0] for i in flagged] == ["c"]
    for path, body, status in [
            (f"{A}/review?kind=bogus", None, 400),
            (f"{A}/review/{'c' * 64}", {"action": "delete"}, 400),
            (f"{A}/review/{'c' * 64}", {"action": "confirm", "label": "ok"}, 400),
            (f"{A}/review/{'c' * 64}", {"action": "confirm", "note": 7}, 400),
            (f"{A}/review/xyz", {"action": "mark_ok"}, 400),
            (f"{A}/review/{'c' * 64}", {"action": "quarantine"}, 409)]:
        resp = await (node.post(path, json=body, headers=auth) if body is not None
                      else node.get(path, headers=auth))
        assert resp.status == status, (path, body, await resp.text())
        assert (await resp.json())["error"]
    resp = await node.post(f"{A}/review/{'c' * 64}", data=b"{not json", headers=auth)
    assert resp.status == 400
    assert len((await (await node.get(f"{A}/review", headers=auth)).json())["items"]) == 2
    # confirm without a label takes the label the item was queued with
    resp = await node.post(f"{A}/review/{'c' * 64}", json={"action": "confirm"}, headers=auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["label"] == "nsfw"
    resp = await node.post(f"{A}/review/{'d' * 64}", json={"action": "mark_ok", "note": "fine"},
                           headers=auth)
    assert resp.status == 200 and (await resp.json())["override"]
    assert (await (await node.get(f"{A}/review", headers=auth)).json())["items"] == []
    record = await (await node.get(f"{A}/hashes/{'d' * 64}", headers=auth)).json()
    assert record["override"]["action"] == "allow"
    assert record["decision"]["decision"] == "accept"


async def test_peers_followers_workers_and_hashes_resources(node: Any) -> None:
    auth = await _token(node)
    app = node.server.app
    peer = "https://peer.example/actor"
    await PeerStore(app[STORE]).add(peer, "https://peer.example/inbox", None, "bad_only", "f1")
    await app[FEDERATION].store.add_follower("https://f.example/actor", "https://f.example/in", None)
    peers = (await (await node.get(f"{A}/peers", headers=auth)).json())["peers"]
    assert [(p["actor"], p["trust"]) for p in peers] == [(peer, "bad_only")]
    for body, status in [({"actor": peer, "trust": "total"}, 400),
                         ({"actor": peer, "trust": "bad_only", "perceptual_ok": True}, 400),
                         ({"actor": peer, "trust": "full", "perceptual_ok": "yes"}, 400),
                         ({"actor": "https://nobody.example/actor", "trust": "full"}, 404),
                         ({"trust": "full"}, 400)]:
        resp = await node.post(f"{A}/peers/trust", json=body, headers=auth)
        assert resp.status == status, (body, await resp.text())
    resp = await node.post(f"{A}/peers/trust", json={"actor": peer, "trust": "full"}, headers=auth)
    assert resp.status == 200
    assert (await PeerStore(app[STORE]).get(peer)).trust == "full"  # type: ignore[union-attr]
    # A follow target that cannot be reached is a clear 422, and nothing is recorded.
    resp = await node.post(f"{A}/peers", json={"target": "https://127.0.0.1:9/actor",
                                               "trust": "full"}, headers=auth)
    assert resp.status == 422 and "cannot follow" in (await resp.json())["error"]
    assert len(await PeerStore(app[STORE]).all()) == 1

    resp = await node.post(f"{A}/followers/approve", json={"actor": "https://f.example/actor"},
                           headers=auth)
    assert resp.status == 200 and (await resp.json())["state"] == "accepted"
    resp = await node.post(f"{A}/followers/reject", json={"actor": "https://x.example/a"},
                           headers=auth)
    assert resp.status == 404
    followers = (await (await node.get(f"{A}/followers", headers=auth)).json())["followers"]
    assert [f["state"] for f in followers] == ["accepted"]

    resp = await node.post(f"{A}/workers", json={"name": "gpu-1"}, headers=auth)
    assert resp.status == 201 and (await resp.json())["token"].startswith("attestd_wk_")
    for body in ({"name": "in-node"}, {"name": "x" * 101}, {"name": "bad name"}, {"name": 3}):
        assert (await node.post(f"{A}/workers", json=body, headers=auth)).status == 400, body
    assert (await node.post(f"{A}/workers", json={"name": "gpu-1"}, headers=auth)).status == 409
    workers = (await (await node.get(f"{A}/workers", headers=auth)).json())["workers"]
    assert [w["name"] for w in workers] == ["gpu-1"]
    assert (await node.delete(f"{A}/workers/gpu-1", headers=auth)).status == 200
    assert (await node.delete(f"{A}/workers/gpu-1", headers=auth)).status == 404

    assert (await (await node.get(f"{A}/hashes", headers=auth)).json()) == {"sources": []}
    body = await _scan(node, jpeg(402))
    record = await (await node.get(f"{A}/hashes/{body['sha256']}", headers=auth)).json()
    assert record["hashes"]["frames"][0]["pdq"] == body["pdq"]
    assert (await node.get(f"{A}/hashes/{'e' * 63}", headers=auth)).status == 400
    resp = await node.post(f"{A}/peers/remove", json={"actor": peer}, headers=auth)
    assert resp.status == 200 and await PeerStore(app[STORE]).all() == []
