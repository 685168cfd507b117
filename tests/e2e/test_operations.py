"""Operating a real `attestd serve`: stopping it, backing it up, restoring it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port, stop_server, wait_for
from tests.e2e.test_cli_and_serve import (  # noqa: F401
    ATTESTD,
    _get,
    fresh_db_url,
    home,
    post,
    run,
)
from tests.images import jpeg


def test_sigterm_stops_the_node_promptly_while_a_worker_long_polls(
        home: dict[str, str]) -> None:  # noqa: F811
    run(home, "init")
    run(home, "db", "upgrade")
    token = run(home, "workers", "add", "gpu").stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{home['ATTESTD_SERVER__PORT']}"
    log = Path(home["ATTESTD_CONFIG"]).parent / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([ATTESTD, "serve"], env=home, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30), log.read_text()
        answered: list[int] = []

        def long_poll() -> None:
            req = urllib.request.Request(base + "/api/v1/jobs/claim?max=1&wait=25", data=b"",
                                         headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=40) as r:
                    answered.append(r.status)
            except OSError:
                answered.append(0)

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(1.0)  # the claim is waiting inside the node now
        assert not answered
        started = time.monotonic()
        code = stop_server(proc, timeout=30)
        took = time.monotonic() - started
        poller.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    # The long-poll waits 25 s; SIGTERM must not (issue 18: within 2 s; 5 leaves room for
    # a loaded test machine).
    assert took < 5, f"attestd serve took {took:.1f} s to stop after SIGTERM"
    assert answered == [200]  # the worker got an empty answer, not a reset


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    base = f"http://127.0.0.1:{env['ATTESTD_SERVER__PORT']}"
    with open(log, "w") as out:
        proc = subprocess.Popen([ATTESTD, "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    assert wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30), log.read_text()
    return proc, base


def _actor_key(base: str) -> str:
    return str(json.loads(_get(base + "/actor")[1])["publicKey"]["publicKeyPem"])


def test_backup_then_restore_into_an_empty_folder_gives_the_same_node(
        home: dict[str, str], db_backend: str, tmp_path: Path) -> None:  # noqa: F811
    # Verdicts are the point here, not speed: a loaded test machine may start slowly.
    home = {**home, "ATTESTD_POLICY__DEADLINE_S": "60"}
    run(home, "init")
    run(home, "db", "upgrade")
    etc = Path(home["ATTESTD_CONFIG"]).parent
    if db_backend == "sqlite":
        assert (etc / "data").stat().st_mode & 0o777 == 0o700
        assert (etc / "data" / "attestd.db").stat().st_mode & 0o777 == 0o600
    blocked, fine = jpeg(11, (640, 480)), jpeg(12, (640, 480))
    (tmp_path / "bad.jpg").write_bytes(blocked)
    run(home, "override", "block", str(tmp_path / "bad.jpg"), "--note", "reported")
    proc, base = _serve(home, etc / "serve.log")
    try:
        assert wait_for(lambda: post(base + "/api/v1/scan/IPADDR", blocked)[0] == 406)
        assert post(base + "/api/v1/scan/IPADDR", fine)[0] == 200
        key = _actor_key(base)
        archive = tmp_path / "node.tar.gz"
        out = run(home, "backup", str(archive))  # while the node runs
    finally:
        assert stop_server(proc) is not None
    assert archive.stat().st_mode & 0o777 == 0o600
    if db_backend == "postgres":
        assert "pg_dump" in out.stdout
    again = run(home, "backup", str(archive), check=False)
    assert again.returncode == 3 and "exists" in again.stderr

    # A new machine: the same configuration, an empty data folder.
    new_etc = tmp_path / "new" / "etc"
    new_etc.mkdir(parents=True)
    shutil.copy(home["ATTESTD_CONFIG"], new_etc / "config.toml")
    moved = {**home, "ATTESTD_CONFIG": str(new_etc / "config.toml"),
             "ATTESTD_SERVER__PORT": str(free_port()), "ATTESTD_LOGGING__FORMAT": "json"}
    run(moved, "restore", str(archive))
    refused = run(moved, "restore", str(archive), check=False)
    assert refused.returncode == 3 and "not empty" in refused.stderr
    keys = sorted((new_etc / "data" / "keys").iterdir())
    assert [k.name for k in keys] == ["ed25519.pem", "rsa-2048.pem"]
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    run(moved, "db", "upgrade")
    proc, base = _serve(moved, new_etc / "serve.log")
    try:
        assert _actor_key(base) == key
        assert post(base + "/api/v1/scan/IPADDR", blocked)[0] == 406
        assert post(base + "/api/v1/scan/IPADDR", fine)[0] == 200
    finally:
        assert stop_server(proc) is not None
    # logging.format = "json": the rejection is one JSON object on one line.
    records = [json.loads(line) for line in (new_etc / "serve.log").read_text().splitlines()
               if line.startswith("{")]
    rejected = [r for r in records if r["message"].startswith("rejected")]
    assert len(rejected) == 1 and rejected[0]["level"] == "INFO", records
    assert hashlib.sha256(blocked).hexdigest()[:16] in rejected[0]["message"]


def test_port_in_use_is_one_line_and_exit_3(home: dict[str, str], db_backend: str) -> None:  # noqa: F811
    # On both backends: the port check must come out the same whichever database is named.
    run(home, "init")
    run(home, "db", "upgrade")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(home["ATTESTD_SERVER__PORT"])))
        taken.listen()
        proc = run(home, "serve", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("attestd: cannot listen") and "server.port" in line, proc.stderr


def test_database_down_is_one_line_and_exit_3(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env["ATTESTD_CONFIG"] = str(tmp_path / "config.toml")
    run(env, "init")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env["ATTESTD_DATABASE__URL"] = f"postgresql://attestd:secret@127.0.0.1:{port}/attestd"
    for args in (("override", "list"), ("workers", "list")):
        proc = run(env, *args, check=False)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot reach the database" in proc.stderr and "secret" not in proc.stderr
