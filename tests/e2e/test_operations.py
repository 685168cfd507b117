"""Operating a real `attestd serve`: stopping it, backing it up, restoring it."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.conftest import stop_server, wait_for
from tests.e2e.test_cli_and_serve import ATTESTD, _get, home, fresh_db_url, run  # noqa: F401


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
