"""The node as an admin runs it: `attestd init`, `db upgrade`, `serve`, `check`, `override`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, stop_server, wait_for
from tests.images import jpeg, reencoded

ATTESTD = str(Path(sys.executable).with_name("attestd"))


@pytest.fixture
def fresh_db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, un-migrated database."""
    if db_backend == "sqlite":
        return ""  # the config's default: sqlite under the data folder
    return str(request.getfixturevalue("postgres").create_database())


@pytest.fixture
def home(tmp_path: Path, fresh_db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env["ATTESTD_CONFIG"] = str(tmp_path / "etc" / "config.toml")
    env["ATTESTD_SERVER__PORT"] = str(free_port())
    env["ATTESTD_SCANNER__WORKERS"] = "2"
    if fresh_db_url:
        env["ATTESTD_DATABASE__URL"] = fresh_db_url
    return env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([ATTESTD, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"attestd {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def server(home: dict[str, str]) -> Iterator[str]:
    run(home, "init")
    run(home, "db", "upgrade")
    log = open(Path(home["ATTESTD_CONFIG"]).parent / "serve.log", "w")
    proc = subprocess.Popen([ATTESTD, "serve"], env=home, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{home['ATTESTD_SERVER__PORT']}"
    try:
        assert wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30), \
            Path(log.name).read_text()
        yield base
    finally:
        code = stop_server(proc)
        log.close()
        assert code is not None, "attestd serve did not stop within 15 s of SIGTERM"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def post(url: str, data: bytes, ctype: str = "image/jpeg") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_init_writes_config_and_keys_once(home: dict[str, str]) -> None:
    first = run(home, "init", "--base-url", "https://attestd.example.org/")
    cfg = Path(home["ATTESTD_CONFIG"])
    assert "wrote" in first.stdout and 'base_url = "https://attestd.example.org"' in cfg.read_text()
    keys = sorted((cfg.parent / "data" / "keys").iterdir())
    assert [k.name for k in keys] == ["ed25519.pem", "rsa-2048.pem"]
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    snapshot = {p: p.read_bytes() for p in [cfg, *keys]}
    again = run(home, "init")
    assert "left unchanged" in again.stdout and "generated" not in again.stdout
    assert {p: p.read_bytes() for p in snapshot} == snapshot


def test_serve_refuses_unmigrated_database_naming_the_command(home: dict[str, str]) -> None:
    run(home, "init")
    proc = run(home, "serve", check=False)
    assert proc.returncode == 3
    assert "attestd db upgrade" in proc.stderr


def test_bad_config_stops_startup_naming_the_key(home: dict[str, str]) -> None:
    run(home, "init")
    proc = run({**home, "ATTESTD_POLICY__ON_UNKNOWN": "sometimes"}, "serve", check=False)
    assert proc.returncode == 3 and "policy.on_unknown" in proc.stderr


def test_pictrs_upload_is_checked_and_admin_block_takes_effect_live(
        server: str, home: dict[str, str], tmp_path: Path) -> None:
    photo = jpeg(1, (1200, 900))
    status, body = post(server + "/api/v1/scan/IPADDR", photo)
    assert status == 200 and body["decision"] == "accept"

    f = tmp_path / "bad.jpg"
    f.write_bytes(photo)
    out = run(home, "override", "block", str(f), "--note", "reported by a moderator")
    assert "perceptual" in out.stdout
    # The running server follows the database: the block applies within seconds,
    # to the exact file and to a re-encoded, half-size copy.
    assert wait_for(lambda: post(server + "/api/v1/scan/IPADDR", photo)[0] == 406, timeout=10)
    copy = reencoded(photo)
    assert wait_for(lambda: post(server + "/api/v1/scan/IPADDR", copy)[0] == 406, timeout=10)
    assert post(server + "/api/v1/scan/IPADDR", copy)[1]["label"] == "blocked"

    listing = run(home, "override", "list", "--json").stdout.splitlines()
    ov = json.loads(listing[0])
    assert ov["action"] == "block" and ov["note"] == "reported by a moderator"
    run(home, "override", "remove", str(ov["id"]))
    assert wait_for(lambda: post(server + "/api/v1/scan/IPADDR", photo)[0] == 200, timeout=10)

    status, metrics = _get(server + "/metrics")
    assert status == 200 and b'attestd_checks_total{decided_by="override"' in metrics


def test_check_command_json_and_exit_codes(home: dict[str, str], tmp_path: Path) -> None:
    run(home, "init")
    run(home, "db", "upgrade")
    good, bad, broken = tmp_path / "good.jpg", tmp_path / "bad.jpg", tmp_path / "broken.jpg"
    good.write_bytes(jpeg(5))
    bad.write_bytes(jpeg(6))
    broken.write_bytes(jpeg(7)[:3000])

    proc = run(home, "check", "--json", str(good), check=False)
    assert proc.returncode == 0
    line = json.loads(proc.stdout)
    for key in ("file", "sha256", "pdq", "phash", "label", "decision", "source"):
        assert key in line
    assert line["decision"] == "accept"

    run(home, "override", "block", "--sha256", line["sha256"].upper())
    proc = run(home, "check", "--json", str(good), str(bad), str(broken), check=False)
    assert proc.returncode == 1
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["decision"] for x in lines] == ["reject", "accept", "reject"]
    assert lines[0]["label"] == "blocked" and lines[2]["label"] == "unreadable"

    assert run(home, "check", str(tmp_path / "missing.jpg"), check=False).returncode == 2
    assert run(home, "check", check=False).returncode == 2
    proc = run(home, "override", "block", "--sha256", "xyz", check=False)
    assert proc.returncode == 2 and "64 hex digits" in proc.stderr


def test_shutdown_is_clean(server: str) -> None:
    # The fixture stops the server with SIGINT; here we only make sure it was serving.
    assert _get(server + "/healthz")[0] == 200
    time.sleep(0.1)
