"""`attestd workers add` and `attestd worker` as an admin runs them on a GPU machine
(here: CPU, random ViT-B-32 weights)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attestd.http.jobs import JOBS
from tests.conftest import async_wait_for
from tests.integration.test_federation_endpoints import start_node
from tests.integration.test_jobs import _queue_images

ATTESTD = str(Path(sys.executable).with_name("attestd"))


@pytest.mark.timeout(400)
async def test_worker_command_classifies_and_refuses_bad_tokens(tmp_path: Path,
                                                                 db_url: str) -> None:
    node = await start_node(tmp_path / "node", db_url, workers={"enabled": True})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env.update(ATTESTD_CONFIG=str(tmp_path / "node" / "config.toml"),
               ATTESTD_DATABASE__URL=db_url)
    try:
        add = await asyncio.to_thread(subprocess.run, [ATTESTD, "workers", "add", "desktop-gpu"],
                                      env=env, capture_output=True, text=True, timeout=60)
        assert add.returncode == 0, add.stderr
        token = add.stdout.strip().splitlines()[-1]
        assert len(token) >= 40 and " " not in token
        listing = await asyncio.to_thread(subprocess.run, [ATTESTD, "workers", "list"], env=env,
                                          capture_output=True, text=True, timeout=60)
        assert "desktop-gpu" in listing.stdout and token not in listing.stdout

        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
        (tmp_path / "worker.toml").write_text("")  # a named config must exist
        worker_env.update(ATTESTD_CONFIG=str(tmp_path / "worker.toml"),
                          ATTESTD_CLASSIFIER__MODEL="ViT-B-32",
                          ATTESTD_CLASSIFIER__PRETRAINED="none",
                          ATTESTD_CLASSIFIER__ALLOW_RANDOM_WEIGHTS="true")
        bad = await asyncio.to_thread(
            subprocess.run, [ATTESTD, "worker", "--node", node.base, "--token", "wrong",
                             "--device", "cpu"],
            env=worker_env, capture_output=True, text=True, timeout=180)
        assert bad.returncode == 3 and "refused the token" in bad.stderr

        await _queue_images(node, 3, start=900)
        log = tmp_path / "worker.log"
        # Output to a file: an unread pipe would fill up and block the worker.
        proc = subprocess.Popen([ATTESTD, "worker", "--node", node.base, "--device", "cpu",
                                 "--batch", "2"], env={**worker_env, "ATTESTD_WORKER_TOKEN": token},
                                stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
        jobs = node.app[JOBS].jobs

        async def all_done() -> bool:
            return (await jobs.counts()) == {"done": 3}

        assert await async_wait_for(all_done, timeout=240, interval=0.5)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        out = log.read_text()
        assert code == 0 and "worker stopped after 3 jobs" in out, out[-2000:]
        assert token not in out  # the secret is never printed back
    finally:
        await node.runner.cleanup()


@pytest.mark.timeout(400)
async def test_one_worker_process_classifies_for_two_nodes_with_one_model(
        tmp_path: Path, db_url: str, db_backend: str, request: pytest.FixtureRequest) -> None:
    from tests.conftest import migrate
    from tests.integration.test_jobs import _token

    if db_backend == "sqlite":
        other_db = f"sqlite:///{tmp_path / 'b.db'}"
    else:
        other_db = request.getfixturevalue("postgres").create_database()
    await asyncio.to_thread(migrate, other_db)  # it runs its own event loop
    a = await start_node(tmp_path / "a", db_url, workers={"enabled": True})
    b = await start_node(tmp_path / "b", other_db, workers={"enabled": True})
    try:
        tokens = [await _token(a, "shared-gpu"), await _token(b, "shared-gpu")]
        (tmp_path / "b.token").write_text(tokens[1] + "\n")
        await _queue_images(a, 3, start=700)
        await _queue_images(b, 2, start=800)
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
        (tmp_path / "worker.toml").write_text("")
        worker_env.update(ATTESTD_CONFIG=str(tmp_path / "worker.toml"),
                          ATTESTD_CLASSIFIER__ALLOW_RANDOM_WEIGHTS="true")
        (tmp_path / "a.token").write_text(tokens[0])
        log = tmp_path / "worker.log"
        proc = subprocess.Popen(
            [ATTESTD, "worker", "--node", a.base, "--node", b.base,
             "--token-file", str(tmp_path / "a.token"), "--token-file", str(tmp_path / "b.token"),
             "--model", "ViT-B-32", "--pretrained", "none", "--device", "cpu", "--batch", "2"],
            env=worker_env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)

        async def all_done() -> bool:
            return ((await a.app[JOBS].jobs.counts()) == {"done": 3}
                    and (await b.app[JOBS].jobs.counts()) == {"done": 2})

        try:
            assert await async_wait_for(all_done, timeout=240, interval=0.5), \
                log.read_text()[-2000:]
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
        out = log.read_text()
        assert code == 0 and "worker stopped after 5 jobs" in out, out[-2000:]
        assert f"{a.base}: 3 jobs" in out and f"{b.base}: 2 jobs" in out
        # One model in memory for both nodes.
        assert out.count("(model load 1 in this process)") == 1, out[-2000:]
        assert "model load 2" not in out
        assert not any(t in out for t in tokens)
    finally:
        await a.runner.cleanup()
        await b.runner.cleanup()


def test_a_missing_relative_checkpoint_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "worker.toml"
    config.write_text('[classifier]\nmodel = "ViT-B-32"\npretrained = "models/tuned.pt"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    run = subprocess.run([ATTESTD, "worker", "--node", "http://127.0.0.1:9", "--token", "t",
                          "--device", "cpu"], env={**env, "ATTESTD_CONFIG": str(config)},
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 3, run.stderr[-2000:]
    assert "classifier.pretrained: no checkpoint file at" in run.stderr
    assert str(tmp_path / "conf" / "models" / "tuned.pt") in run.stderr
    assert "Traceback" not in run.stderr
