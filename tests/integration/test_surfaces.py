"""The node on one combined listener (no server.public_listen), as ``make run`` serves it:
a reverse proxy put in front of it publishes federation, never the private routes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.images import jpeg

PRIVATE = (("POST", "/api/v1/scan/IPADDR"), ("POST", "/api/v1/scan/test-caller-0123456789"),
           ("POST", "/api/v1/jobs/claim"), ("GET", "/metrics"), ("GET", "/admin/login"),
           ("GET", "/api/admin/stats"))


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_proxied_request_sees_only_federation_on_the_combined_listener(
        node: Any, header: str) -> None:
    via = {header: "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"}
    for method, path in PRIVATE:
        resp = await node.request(method, path, data=jpeg(5, (32, 32)), headers=via)
        assert resp.status == 404, (path, resp.status, await resp.text())
    for path in ("/actor", "/healthz", "/.well-known/nodeinfo"):
        assert (await node.get(path, headers=via)).status == 200, path


async def test_direct_request_reaches_private_routes_on_the_combined_listener(node: Any) -> None:
    resp = await node.post("/api/v1/scan/IPADDR", data=jpeg(6, (32, 32)))
    assert resp.status == 200, await resp.text()
    assert (await node.get("/metrics")).status == 200
