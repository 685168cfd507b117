"""A real `attestd serve` behind Debian's nginx with the documented configuration
(deploy/nginx/): federation works through it, the private routes do not, and the
addresses attestd sees are the real clients', never what a client wrote in a header."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port, stop_server, wait_for
from tests.e2e.test_cli_and_serve import ATTESTD, _get, run
from tests.images import jpeg
from tests.peers import Peer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
NGINX = os.environ.get("ATTESTD_NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
# Real clients on other loopback addresses than nginx's own 127.0.0.1.
CLIENT, OTHER_CLIENT = "127.0.0.2", "127.0.0.3"


@dataclass
class Deployment:
    public: str  # through nginx, as the fediverse sees the node
    admin: str  # through nginx's internal admin server block
    private: str  # the private listener, direct (pict-rs, workers)
    db: Path
    log: Path


def _location_block() -> str:
    """The documented `location / { ... }` block, verbatim."""
    text = (DEPLOY / "attestd.conf").read_text()
    m = re.search(r"^    location / \{\n.*?^    \}\n", text, re.S | re.M)
    assert m, "deploy/nginx/attestd.conf lost its `location /` block"
    return m.group(0)


def _nginx_conf(prefix: Path, public_port: int, admin_port: int, attestd_public: int,
                attestd_private: int) -> str:
    temp = "\n".join(f"    {kind}_temp_path {prefix / 'tmp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""
    admin_location = _location_block().replace("attestd_public", "attestd_private")
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix / 'access.log'};
{temp}
    upstream attestd_public {{ server 127.0.0.1:{attestd_public}; }}
    upstream attestd_private {{ server 127.0.0.1:{attestd_private}; }}
    server {{
        listen 127.0.0.1:{public_port};
        client_max_body_size 1m;
{_location_block()}    }}
    server {{
        listen 127.0.0.1:{admin_port};
{admin_location}    }}
}}
"""


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: install Debian's nginx (make test does, through "
                    ".ci/install-services) or set ATTESTD_NGINX")
    ports = {k: free_port() for k in ("nginx", "admin", "public", "private")}
    base_url = f"http://127.0.0.1:{ports['nginx']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update({
        "ATTESTD_CONFIG": str(tmp_path / "etc" / "config.toml"),
        "ATTESTD_SERVER__PORT": str(ports["private"]),
        "ATTESTD_SERVER__PUBLIC_LISTEN": f"127.0.0.1:{ports['public']}",
        "ATTESTD_SERVER__TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "ATTESTD_NODE__BASE_URL": base_url,
        "ATTESTD_SCANNER__WORKERS": "1",
        "ATTESTD_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "true",
        # A loaded test machine can take longer than 8 s to start the decoders; the
        # accepted control scans here are about who may ask, not about speed.
        "ATTESTD_POLICY__DEADLINE_S": "60",
    })
    run(env, "init")
    run(env, "db", "upgrade")
    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(_nginx_conf(prefix, ports["nginx"], ports["admin"], ports["public"],
                                ports["private"]))
    (prefix / "snippets").mkdir()
    shutil.copy(DEPLOY / "attestd-proxy.conf", prefix / "snippets" / "attestd-proxy.conf")
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    node = subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        up = wait_for(lambda: _get(base_url + "/healthz")[0] == 200, timeout=30)
        assert up, (log_path.read_text(), (prefix / "error.log").read_text()
                    if (prefix / "error.log").exists() else "")
        yield Deployment(base_url, f"http://127.0.0.1:{ports['admin']}",
                         f"http://127.0.0.1:{ports['private']}",
                         tmp_path / "etc" / "data" / "attestd.db", log_path)
    finally:
        nginx.terminate()
        nginx.wait(10)
        assert stop_server(node) is not None
        log.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer().start()
    yield p
    await p.stop()


def _from(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (a loopback alias)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_federation_works_through_nginx(deployment: Deployment, peer: Peer) -> None:
    host = deployment.public.split("//")[1]
    async with _from(CLIENT) as http:
        async with http.get(f"{deployment.public}/.well-known/webfinger",
                            params={"resource": f"acct:attestd@{host}"}) as r:
            assert r.status == 200, await r.text()
            actor_url = [x for x in (await r.json(content_type=None))["links"]
                         if x["rel"] == "self"][0]["href"]
        assert actor_url == f"{deployment.public}/actor"
        async with http.get(actor_url) as r:
            assert r.status == 200 and (await r.json(content_type=None))["id"] == actor_url
        async with http.get(f"{deployment.public}/.well-known/nodeinfo") as r:
            assert r.status == 200
        inbox = f"{deployment.public}/inbox"
        activity = {"@context": "https://www.w3.org/ns/activitystreams",
                    "id": f"{peer.actor_id}/follows/1", "type": "Follow",
                    "actor": peer.actor_id, "object": actor_url}
        body, headers = peer.signed_post(inbox, activity)
        async with http.post(inbox, data=body, headers=headers) as r:
            assert r.status == 202, await r.text()


async def test_private_routes_are_not_reachable_through_the_public_side(
        deployment: Deployment) -> None:
    photo = jpeg(3, (64, 48))
    async with _from(CLIENT) as http:
        for method, path in (("POST", "/api/v1/scan/IPADDR"), ("POST", "/api/v1/scan"),
                             ("POST", "/api/v1/jobs/claim"), ("GET", "/metrics"),
                             ("GET", "/admin/login"), ("GET", "/admin/"),
                             ("GET", "/api/admin/stats")):
            async with http.request(method, deployment.public + path, data=photo) as r:
                assert r.status == 404, (path, r.status, await r.text())
    # They are there, on the private listener, for pict-rs talking to it directly.
    async with aiohttp.ClientSession() as http:
        async with http.post(deployment.private + "/api/v1/scan/IPADDR", data=photo) as r:
            assert r.status == 200, await r.text()
        async with http.get(deployment.private + "/metrics") as r:
            assert r.status == 200
        # The private listener publishes no federation routes.
        async with http.get(deployment.private + "/actor") as r:
            assert r.status == 404


async def _failed_login(http: aiohttp.ClientSession, base: str, name: str,
                        headers: dict[str, str] | None = None) -> int:
    async with http.get(base + "/admin/login", headers=headers) as r:
        page = await r.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page
    async with http.post(base + "/admin/login", headers=headers, data={
            "csrf_token": token.group(1), "name": name, "password": "wrong"}) as r:
        return r.status


def _audited_logins(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(
            "SELECT reason FROM audit_log WHERE action = 'login_failed' ORDER BY id")]


async def test_addresses_seen_are_the_real_clients_not_forged_headers(
        deployment: Deployment) -> None:
    forged = {"X-Forwarded-For": "10.6.6.6"}
    async with _from(CLIENT) as http:
        assert await _failed_login(http, deployment.admin, "someone", forged) == 401
    async with _from(OTHER_CLIENT) as http:
        assert await _failed_login(http, deployment.admin, "someone-else") == 401
    assert wait_for(lambda: len(_audited_logins(deployment.db)) == 2, timeout=10)
    # nginx connects from 127.0.0.1; the audit names each real client, and not the
    # address the first one forged.
    assert _audited_logins(deployment.db) == [f"from {CLIENT}", f"from {OTHER_CLIENT}"]


async def test_forged_forwarding_header_from_an_untrusted_hop_authorises_nothing(
        deployment: Deployment) -> None:
    photo = jpeg(4, (64, 48))
    # 127.0.0.2 is in pictrs.allowed_ips (127.0.0.0/8) but is not a trusted proxy.
    async with _from(CLIENT) as http:
        async with http.post(deployment.private + "/api/v1/scan/IPADDR", data=photo) as r:
            assert r.status == 200, await r.text()
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            value = "for=127.0.0.1" if header == "Forwarded" else "127.0.0.1"
            async with http.post(deployment.private + "/api/v1/scan/IPADDR", data=photo,
                                 headers={header: value}) as r:
                assert r.status == 401, (header, await r.text())
                assert "server.trusted_proxies" in (await r.json())["error"]
