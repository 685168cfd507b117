"""Interop with the real Fedify (npm @fedify/fedify, pinned in tests/interop/fedify/).

A Fedify actor on loopback follows a real ``attestd serve``, checks the Accept's HTTP
signature, verifies an attestation's proof with Fedify's own ``verifyProof`` and pages the
outbox with signed GETs; then the node follows the Fedify actor, verifies its signed
deliveries and reads its keys. Every step prints what Fedify said.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, stop_server, wait_for

ATTESTD = str(Path(sys.executable).with_name("attestd"))
PEER_DIR = Path(__file__).parent / "fedify"
SHA = "5e" * 32


def npm_ci() -> None:
    """Install the pinned Fedify (``npm ci``) unless node_modules matches the lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("the Fedify interop test needs Node.js >= 20 and npm: run .ci/install-services")
    stamp = PEER_DIR / "node_modules" / ".package-lock.json"
    lock = PEER_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"npm ci in {PEER_DIR} failed:\n{proc.stdout}\n{proc.stderr}")


class FedifyPeer:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log
        self.actor = f"{base}/users/alice"

    def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.base}/_test/{path}", method="POST" if body is not None else "GET",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def event(self, step: str) -> dict[str, Any] | None:
        return next((e for e in self.call("events") if e["step"] == step), None)

    def said(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update(ATTESTD_CONFIG=str(tmp_path / "config.toml"), ATTESTD_SERVER__PORT=str(port),
               ATTESTD_NODE__BASE_URL=base, ATTESTD_FEDERATION__ALLOW_PRIVATE_ADDRESSES="true",
               ATTESTD_FEDERATION__RETRY_BASE_S="0.3", ATTESTD_SCANNER__WORKERS="1")
    for args in (["init"], ["db", "upgrade"]):
        subprocess.run([ATTESTD, *args], env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: _status(base + "/healthz") == 200, timeout=30), log.read_text()
        yield base, env, log
    finally:
        assert stop_server(proc) is not None, "attestd serve did not stop"


@pytest.fixture
def fedify(tmp_path: Path) -> Iterator[FedifyPeer]:
    npm_ci()
    port = free_port()
    log = tmp_path / "fedify.log"
    proc = subprocess.Popen(["node", str(PEER_DIR / "peer.mjs"), str(port)], cwd=PEER_DIR,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    peer = FedifyPeer(proc, f"http://127.0.0.1:{port}", log)
    try:
        assert wait_for(lambda: "listening on" in log.read_text(), timeout=30), log.read_text()
        yield peer
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([ATTESTD, *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"attestd {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def step(peer: FedifyPeer, name: str, timeout: float = 30) -> dict[str, Any]:
    """Wait for Fedify's report of ``name``; fail with what Fedify said unless it passed."""
    wait_for(lambda: peer.event(name) is not None, timeout=timeout, interval=0.3)
    ev = peer.event(name)
    print(f"Fedify, {name}: {ev['said'] if ev else 'no report'}")
    assert ev is not None, f"Fedify never reported {name}; its log:\n{peer.said()}"
    assert ev["ok"], f"Fedify: {ev['said']}\nits log:\n{peer.said()}"
    return ev


def fep_vector() -> dict[str, Any]:
    """docs/attestation-fep.md's signed attestation and its issuer's actor."""
    from tests.unit.test_attestation_fep_vectors import _BLOCK, DOC

    v = dict(_BLOCK.findall(DOC.read_text()))
    method = json.loads(v["assertion-method"])
    signed = {**json.loads(v["attestation"]),
              "proof": {**json.loads(v["proof-options"]), "proofValue": v["proof-value"]}}
    actor = {"@context": ["https://www.w3.org/ns/activitystreams",
                          "https://w3id.org/security/v1", "https://www.w3.org/ns/did/v1",
                          "https://w3id.org/security/multikey/v1"],
             "id": method["controller"], "type": "Service",
             "inbox": f"{method['controller']}/inbox", "assertionMethod": [method]}
    return {"signed": signed, "actor": actor}


@pytest.mark.timeout(240)
def test_fedify_follows_the_node_and_verifies_its_attestations(
        node: tuple[str, dict[str, str], Path], fedify: FedifyPeer) -> None:
    base, env, log = node
    # Fedify follows the node; the admin approves; Fedify checks the Accept's signature.
    first = fedify.call("follow", {"target": f"{base}/actor"})
    print(f"Fedify, {first['step']}: {first['said']}")
    assert first["ok"], f"Fedify: {first['said']}\n{fedify.said()}"
    step(fedify, "lookup_node")
    assert wait_for(lambda: fedify.actor in cli(env, "followers", "list"), timeout=30), \
        log.read_text()[-3000:]
    cli(env, "followers", "approve", fedify.actor)
    step(fedify, "accept_received")

    # The node attests; Fedify verifies the delivered attestation's proof.
    cli(env, "review", "mark", "--sha256", SHA, "--label", "csam_suspect")
    step(fedify, "attestation_proof")

    # The published test vector verifies in Fedify too.
    result = fedify.call("vector", fep_vector())
    print(f"Fedify, {result['step']}: {result['said']}")
    assert result["ok"], f"Fedify: {result['said']}\n{fedify.said()}"

    # Fedify pages the outbox with signed GETs; an unsigned GET is refused.
    fedify.call("outbox", {"outbox": f"{base}/outbox"})
    step(fedify, "outbox_unsigned")
    step(fedify, "outbox_signed")
    step(fedify, "outbox_proof")

    # The reverse: the node follows the Fedify actor, which accepts (a signed delivery the
    # node verifies against the key Fedify publishes) and then attests.
    cli(env, "peers", "add", fedify.actor, "--trust", "full")
    step(fedify, "follow_received")

    def accepted() -> bool:
        rows = [json.loads(x) for x in cli(env, "peers", "list", "--json").splitlines() if x]
        return any(r["actor"] == fedify.actor and r["state"] == "accepted" for r in rows)

    assert wait_for(accepted, timeout=30), log.read_text()[-3000:]
    other = "a7" * 32
    result = fedify.call("attest", {"sha256": other, "inbox": f"{base}/inbox",
                                    "label": "csam_suspect"})
    print(f"Fedify, {result['step']}: {result['said']}")
    assert result["ok"], f"{result['said']}\n{fedify.said()}\n{log.read_text()[-3000:]}"
    # Fedify signs RFC 9421 first (its POSTs and signed GETs); the node verified those, so
    # Fedify never had to fall back to draft-cavage.
    knocks = [line for line in fedify.log.read_text().splitlines() if "double-knocking" in line]
    assert not knocks, knocks
    # The node stored the Fedify actor's word as a peer attestation.
    rows = [json.loads(x) for x in cli(env, "peers", "list", "--json").splitlines() if x]
    assert [r["attestations"] for r in rows if r["actor"] == fedify.actor] == [1], rows
