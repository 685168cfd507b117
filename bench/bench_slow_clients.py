"""/healthz and uploads under a slow-loris flood (issue 16, item 9).

Starts `attestd serve` (SQLite, no classifier) with `server.max_connections` = 50 and an
open-file limit of 400, then measures, in the same run:

1. /healthz and a small JPEG upload with nobody else connected;
2. the same while SLOW clients (default 500) hold connections that send half a request
   line and nothing more, reconnecting as soon as the node closes one.

Prints the median and p99 answer times and how many answers were 200, 503 or failed.
Loopback only; bounded by --requests and --seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402

FD_LIMIT = 400


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _timed(url: str, data: bytes | None = None) -> tuple[float, int]:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "image/jpeg"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return time.perf_counter() - start, status


def _measure(base: str, caller: str, n: int, image: bytes) -> dict[str, object]:
    times: list[float] = []
    statuses: dict[int, int] = {}
    for i in range(n):
        url, data = ((f"{base}/healthz", None) if i % 2 == 0
                     else (f"{base}/api/v1/scan/{caller}", image))
        took, status = _timed(url, data)
        times.append(took)
        statuses[status] = statuses.get(status, 0) + 1
    times.sort()
    return {"median_ms": round(statistics.median(times) * 1000, 1),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 1),
            "statuses": dict(sorted(statuses.items()))}


class Slowloris:
    """Keeps ``n`` half-sent requests open against ``port``, reopening closed ones."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            return None

    def _run(self) -> None:
        socks: list[socket.socket] = []
        while not self.stop.is_set():
            alive = []
            for s in socks:
                try:
                    if s.recv(1) == b"":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                alive.append(s)
            socks = alive
            while len(socks) < self.n and not self.stop.is_set():
                if (fresh := self._open()) is None:
                    break
                socks.append(fresh)
            time.sleep(0.05)
        for s in socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow", type=int, default=500, help="slow clients")
    ap.add_argument("--requests", type=int, default=200, help="timed requests per phase")
    args = ap.parse_args()
    from tests.conftest import CALLER, free_port, make_config_env, migrate
    from tests.images import jpeg

    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        url = f"sqlite:///{tmp_path / 'attestd.db'}"
        migrate(url)
        port = free_port()
        _, env = make_config_env(tmp_path, url, server={"port": port, "max_connections": 50,
                                                        "keepalive_timeout_s": 15})
        log = (tmp_path / "serve.log").open("wb")
        proc = subprocess.Popen([str(Path(sys.executable).with_name("attestd")), "serve"],
                                env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_low_fd_limit)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while _timed(f"{base}/healthz")[1] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("the node did not start: " + (tmp_path / "serve.log")
                                     .read_text())
                time.sleep(0.2)
            image = jpeg(1, size=(160, 120))
            quiet = _measure(base, CALLER, args.requests, image)
            flood = Slowloris(port, args.slow)
            flood.thread.start()
            time.sleep(2)
            loud = _measure(base, CALLER, args.requests, image)
            flood.stop.set()
            flood.thread.join()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
        text = (tmp_path / "serve.log").read_text()
    print(f"max_connections 50, open-file limit {FD_LIMIT}, {args.slow} slow clients "
          f"({flood.opened} connections opened in all)")
    print(f"  quiet:      {quiet}")
    print(f"  slow flood: {loud}")
    print(f"  log lines about the cap: "
          f"{text.count('closed the oldest idle') + text.count('refusing new connections')}, "
          f"tracebacks: {text.count('Traceback')}")


if __name__ == "__main__":
    main()
