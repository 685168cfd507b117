"""Connection exhaustion (issue 16, item 9): 500 slow clients against a node whose
open-file limit is 400 and whose cap is 50 connections. The node keeps answering
(/healthz makes room by closing the oldest idle connection) and logs the condition once
rather than per connection."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import free_port, make_config_env, migrate, stop_server, wait_for

ATTESTD = str(Path(sys.executable).with_name("attestd"))
FD_LIMIT = 400
SLOW_CLIENTS = 500


def _low_fd_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _healthz(base: str, timeout: float = 5) -> int:
    """The status /healthz answers with, 0 if the connection was refused or reset, and
    TimeoutError if nothing came back in time (a node that stopped accepting)."""
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (ConnectionError, urllib.error.URLError) as e:
        if isinstance(getattr(e, "reason", None), TimeoutError):
            raise TimeoutError("no answer from /healthz") from None
        return 0


def _slow_client(port: int) -> socket.socket | None:
    """A client that sends half a request line and then nothing (slowloris)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        return s
    except OSError:
        return None


def test_slow_connections_beyond_the_cap_get_503_and_the_node_stays_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)
    port = free_port()
    # One repeat interval longer than the test: the eviction is logged exactly once.
    _, env = make_config_env(tmp_path, url, server={"port": port, "max_connections": 50,
                                                    "keepalive_timeout_s": 30},
                             logging={"repeat_interval_s": 3600})
    log_path = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([ATTESTD, "serve"], env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_low_fd_limit)
    clients: list[socket.socket] = []
    try:
        assert wait_for(lambda: _healthz(base) == 200, timeout=60), log_path.read_text()
        for _ in range(SLOW_CLIENTS):
            if (c := _slow_client(port)) is not None:
                clients.append(c)
        # Full of slow clients: answered at once (a 503, or closed, while every connection
        # is brand new), never left hanging ...
        assert _healthz(base) in (0, 200, 503), log_path.read_text()
        # ... and healthy while they stay, long before keepalive_timeout_s would cut them
        # off: the oldest idle connections make room.
        assert wait_for(lambda: _healthz(base) == 200, timeout=10), log_path.read_text()
        assert _closed_by_the_node(clients) >= SLOW_CLIENTS - 100
        assert proc.poll() is None, "the node died"
    finally:
        for c in clients:
            c.close()
        code = stop_server(proc)
    text = log_path.read_text()
    assert code == 0, text
    evictions = text.count("closed the oldest idle connection to make room")
    assert evictions == 1, text  # the condition once, not once per connection
    assert "out of system resource" not in text and "Traceback" not in text, text


def _closed_by_the_node(clients: list[socket.socket]) -> int:
    def closed(c: socket.socket) -> bool:
        c.settimeout(0.1)
        with contextlib.suppress(TimeoutError):
            try:
                while c.recv(4096):
                    pass
                return True
            except ConnectionError:
                return True
        return False

    return sum(closed(c) for c in clients)
