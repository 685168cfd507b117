"""A real `attestd serve` for benchmarks: its own folder, SQLite, loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.machine import wait_http
from tests.conftest import free_port

ATTESTD = str(Path(sys.executable).with_name("attestd"))


@dataclass
class BenchNode:
    base: str
    db_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str) -> str:
        """Run an `attestd` command against this node's config; returns its output."""
        return subprocess.run([ATTESTD, *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout


@contextlib.contextmanager
def running_node(**settings: str) -> Iterator[BenchNode]:
    """Init, migrate and serve a node with ATTESTD_<KEY>=value ``settings``; stop it after,
    saying how long it took to stop."""
    with tempfile.TemporaryDirectory(prefix="attestd-bench-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        db_url = f"sqlite:///{tmp}/attestd.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
        env.update(ATTESTD_CONFIG=f"{tmp}/config.toml", ATTESTD_SERVER__PORT=str(port),
                   ATTESTD_NODE__BASE_URL=base, ATTESTD_DATABASE__URL=db_url,
                   ATTESTD_LOGGING__LEVEL="warning")
        env.update({f"ATTESTD_{k.upper()}": v for k, v in settings.items()})
        for cmd in (["init"], ["db", "upgrade"]):
            subprocess.run([ATTESTD, *cmd], env=env, check=True, capture_output=True)
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([ATTESTD, "serve"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
            try:
                asyncio.run(wait_http(f"{base}/healthz"))
                yield BenchNode(base, db_url, env, proc, log)
            finally:
                t0 = time.perf_counter()
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                    print(f"node stopped {time.perf_counter() - t0:.1f} s after SIGTERM")
                except subprocess.TimeoutExpired:
                    print("node did not stop within 60 s of SIGTERM; killed")
                    proc.kill()
