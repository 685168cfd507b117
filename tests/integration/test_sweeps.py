"""`attestd sweep` against real stores: moto's S3 server, a folder, and a stand-in
pict-rs reproducing its internal API. Planted bad images (exact and re-encoded) go,
everything else stays byte-identical, unreadable files are never deleted, a second run
downloads nothing it knows, and a killed run resumes checking each object once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import create_engine, select, text

from attestd.db import schema as t
from attestd.sweep.model import key_for_time
from tests.conftest import (
    free_port,
    make_config_env,
    migrate,
    new_bucket,
    run_cli,
    s3_settings,
    wait_for,
)
from tests.images import jpeg, reencoded
from tests.listing_counter import ListingCounter
from tests.pictrs_standin import PictrsStandIn

BAD_SEED = 900
ATTESTD = str(Path(sys.executable).with_name("attestd"))


def pictrs_key(age_s: float = 0.0, prefix: str = "") -> str:
    """An object key laid out as pict-rs >= 0.5.7 makes them (UUIDv7 folders)."""
    return key_for_time(datetime.now(UTC) - timedelta(seconds=age_s), prefix) + f"{uuid.uuid4()}.jpg"


def sqlite_env(tmp_path: Path, **sweep: Any) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)
    return make_config_env(tmp_path, url, sweep=sweep)[1]


def block_bad(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad-original.jpg"
    bad.write_bytes(jpeg(BAD_SEED))
    code, out = run_cli(env, "override", "block", str(bad), "--note", "planted")
    assert code == 0, out


def sweep(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run_cli(env, "sweep", *args, "--json")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, out
    return code, json.loads(lines[-1])


def db(env: dict[str, str]) -> Any:
    """A synchronous engine on the node's SQLite database, to look at what it recorded."""
    url = Path(env["ATTESTD_CONFIG"]).read_text().split('url = "', 1)[1].split('"', 1)[0]
    return create_engine(url)


def plant_s3(client: Any, bucket: str, n_good: int = 8) -> dict[str, bytes]:
    objects = {pictrs_key(age_s=3600 - i): jpeg(i + 1, size=(320, 240)) for i in range(n_good)}
    objects[pictrs_key(1000)] = jpeg(BAD_SEED)
    objects[pictrs_key(900)] = reencoded(jpeg(BAD_SEED))
    objects[pictrs_key(800)] = b"\xff\xd8\xff\xe0 not really a jpeg"
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def bucket_contents(client: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def test_s3_all_removes_bad_keeps_the_rest_and_second_run_downloads_nothing(
        s3_server: str, tmp_path: Path, db_url: str) -> None:
    client, bucket = new_bucket(s3_server)
    objects = plant_s3(client, bucket)
    _, env = make_config_env(tmp_path, db_url, sweep=s3_settings(s3_server, bucket))
    block_bad(env, tmp_path)
    bad_keys = {k for k, v in objects.items() if v == jpeg(BAD_SEED) or v == reencoded(jpeg(BAD_SEED))}
    code, summary = sweep(env, "--all", "--action", "delete")
    assert code == 0 and summary["status"] == "done", summary
    assert summary["checked"] == len(objects) and summary["acted"] == {"delete": 2}
    assert summary["unreadable"] == 1 and summary["rejected"] == 2
    left = bucket_contents(client, bucket)
    assert set(left) == set(objects) - bad_keys
    assert all(left[k] == objects[k] for k in left), "a kept object changed"

    code, again = sweep(env, "--all", "--action", "delete")
    assert code == 0 and again["downloaded"] == 0 and again["checked"] == len(left)
    assert bucket_contents(client, bucket) == left

    code, out = run_cli(env, "sweep", "report", "--run", str(summary["run_id"]))
    assert code == 0 and out.count("sweep_delete") == 2 and "override:1" in out


def test_dry_run_changes_nothing_and_flags(s3_server: str, tmp_path: Path) -> None:
    client, bucket = new_bucket(s3_server)
    objects = plant_s3(client, bucket, n_good=3)
    env = sqlite_env(tmp_path, **s3_settings(s3_server, bucket))
    block_bad(env, tmp_path)
    code, summary = sweep(env, "--all", "--action", "delete", "--dry-run")
    assert code == 0 and summary["acted"] == {"flag": 2}
    assert bucket_contents(client, bucket) == objects
    code, out = run_cli(env, "review", "list")
    assert out.count("flagged") >= 2, out


def test_quarantine_keeps_object_and_evidence_in_folder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "x").mkdir(parents=True)
    bad = jpeg(BAD_SEED)
    (store / "x" / "bad.jpg").write_bytes(bad)
    (store / "x" / "good.jpg").write_bytes(jpeg(5))
    (store / "x" / "broken.jpg").write_bytes(bad[:200])
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg(BAD_SEED))
    os.symlink(outside, store / "x" / "link.jpg")  # never followed out of the folder
    quarantine = tmp_path / "quarantine"
    env = sqlite_env(tmp_path, source="fs", **{"fs.path": str(store)})
    block_bad(env, tmp_path)
    code, summary = sweep(env, "--all", "--action", "quarantine", "--quarantine", str(quarantine))
    assert code == 0 and summary["acted"] == {"quarantine": 1}, summary
    assert not (store / "x" / "bad.jpg").exists()
    assert (store / "x" / "good.jpg").read_bytes() == jpeg(5)
    assert (store / "x" / "broken.jpg").exists(), "an unreadable file was removed"
    assert outside.exists()
    kept = quarantine / "x" / "bad.jpg"
    assert kept.read_bytes() == bad and oct(kept.stat().st_mode & 0o777) == "0o600"
    evidence = json.loads((quarantine / "x" / "bad.jpg.evidence.json").read_text())
    assert evidence["original_key"] == "x/bad.jpg" and evidence["verdict"]["label"] == "blocked"
    assert evidence["verdict"]["decided_by"] == "override:1" and evidence["frames"][0]["pdq"]
    assert evidence["sha256"] == __import__("hashlib").sha256(bad).hexdigest()


def test_quarantine_to_s3_prefix(s3_server: str, tmp_path: Path) -> None:
    client, bucket = new_bucket(s3_server)
    key = pictrs_key()
    client.put_object(Bucket=bucket, Key=key, Body=jpeg(BAD_SEED))
    env = sqlite_env(tmp_path, **s3_settings(s3_server, bucket, prefix=""))
    block_bad(env, tmp_path)
    code, summary = sweep(env, "--all", "--action", "quarantine", "--quarantine",
                          f"s3://{bucket}/held")
    assert code == 0 and summary["acted"] == {"quarantine": 1}
    left = bucket_contents(client, bucket)
    assert left[f"held/{key}"] == jpeg(BAD_SEED) and key not in left
    assert json.loads(left[f"held/{key}.evidence.json"])["original_key"] == key


# -- pict-rs ---------------------------------------------------------------------------------

@pytest.fixture
def pictrs() -> Iterator[tuple[PictrsStandIn, str]]:
    standin = PictrsStandIn(api_key="pictrs-api-key-" + uuid.uuid4().hex)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(standin.app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield standin, f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_pictrs_all_purges_bad_and_never_downloads_known(
        pictrs: tuple[PictrsStandIn, str], tmp_path: Path) -> None:
    standin, url = pictrs
    for i in range(25):
        standin.add(jpeg(i + 1, size=(200, 150)), age=timedelta(minutes=10 + i))
    bad = standin.add(jpeg(BAD_SEED), age=timedelta(minutes=40), aliases=2)
    bad2 = standin.add(reencoded(jpeg(BAD_SEED)), age=timedelta(minutes=41))
    env = sqlite_env(tmp_path, source="pictrs", **{
        "pictrs.url": url, "pictrs.api_token": standin.api_key, "pictrs.page_size": 10})
    block_bad(env, tmp_path)
    standin.fail_next = 3  # pict-rs is briefly unavailable: retried, not fatal
    code, summary = sweep(env, "--all", "--action", "delete")
    assert code == 0 and summary["acted"] == {"delete": 2} and summary["checked"] == 27, summary
    assert bad not in standin.entries and bad2 not in standin.entries
    assert len(standin.entries) == 25
    fetched = standin.originals_fetched()
    # The exact bad image was hashed when it was blocked: known, so never downloaded.
    assert fetched == 26
    code, again = sweep(env, "--all", "--action", "delete")
    assert code == 0 and again["checked"] == 25 and again["downloaded"] == 0
    assert standin.originals_fetched() == fetched, "a known image was downloaded again"
    # --since reads pict-rs's newest-first listing only as far back as it was asked.
    standin.add(jpeg(BAD_SEED + 1))
    code, out = run_cli(env, "sweep", "--since", "5m", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["checked"] == 1


def test_pictrs_refuses_wrong_token_and_garbage(pictrs: tuple[PictrsStandIn, str],
                                                 tmp_path: Path) -> None:
    standin, url = pictrs
    standin.add(jpeg(1))
    env = sqlite_env(tmp_path, source="pictrs", **{"pictrs.url": url,
                                                   "pictrs.api_token": "wrong"})
    code, out = run_cli(env, "sweep", "--all")
    assert code == 1 and "refused the API token (401)" in out and "wrong" not in out
    env = sqlite_env(tmp_path / "2", source="pictrs", **{"pictrs.url": url})
    code, out = run_cli(env, "sweep", "--all")
    assert code != 0 and "api_token is empty" in out
    code, out = run_cli(env, "sweep")
    assert code == 2 and "--all, or --since" in out
    code, out = run_cli(env, "sweep", "--since", "soon")
    assert code == 2 and "20m" in out


# -- crash and resume ------------------------------------------------------------------------

def test_kill_9_mid_run_then_resume_checks_every_object_exactly_once(
        s3_server: str, tmp_path: Path) -> None:
    client, bucket = new_bucket(s3_server)
    objects = {pictrs_key(age_s=5000 - i): jpeg(i + 1, size=(160, 120)) for i in range(160)}
    bad_keys = set()
    for i in range(0, 160, 20):
        key = pictrs_key(age_s=4000 - i)
        objects[key] = reencoded(jpeg(BAD_SEED), scale=0.5 + i / 400)
        bad_keys.add(key)
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    env = sqlite_env(tmp_path, **s3_settings(s3_server, bucket), concurrency=2)
    block_bad(env, tmp_path)
    engine = db(env)

    def checked() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("select count(*) from sweep_objects")).scalar_one())

    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen([ATTESTD, "sweep", "--all", "--quiet", "--action", "delete"],
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: checked() >= 40, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert checked() < len(objects), "the run finished before it could be killed"
    code, summary = sweep(env, "--all", "--action", "delete")
    assert code == 0 and summary["status"] == "done"
    with engine.connect() as conn:
        rows = conn.execute(select(t.audit_log.c.action, t.audit_log.c.detail).where(
            t.audit_log.c.actor == f"sweep:{summary['run_id']}")).all()
    checks = Counter(r.detail["key"] for r in rows if r.action == "sweep_check")
    deletes = Counter(r.detail["key"] for r in rows if r.action == "sweep_delete")
    assert set(checks) == set(objects) and set(checks.values()) == {1}
    assert set(deletes) == bad_keys and set(deletes.values()) == {1}
    assert set(bucket_contents(client, bucket)) == set(objects) - bad_keys
    # The summary of the resumed run counts the whole run, not only what came after.
    assert (summary["listed"], summary["checked"]) == (len(objects), len(objects)), summary
    assert summary["rejected"] == len(bad_keys), summary
    assert summary["acted"] == {"delete": len(bad_keys)}, summary


# -- incremental -----------------------------------------------------------------------------

def test_incremental_loop_lists_only_what_is_new(s3_server: str, tmp_path: Path) -> None:
    from attestd.config import load_config
    from attestd.services import open_services
    from attestd.sweep.runtime import open_sweeper

    client, bucket = new_bucket(s3_server)
    for i in range(2500):  # three listing pages
        client.put_object(Bucket=bucket, Key=pictrs_key(age_s=86400 - i), Body=b"x%d" % i)
    env = sqlite_env(tmp_path, **s3_settings(s3_server, bucket), overlap_s=60)
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)

    async def go() -> list[tuple[int, int]]:
        out = []
        async with open_services(cfg, follow_index=False) as services, \
                open_sweeper(cfg, cfg.sweep, services) as sweeper:
            await sweeper.sweep_all()
            listing = ListingCounter(sweeper.source)
            for n_new in (0, 7):
                for _ in range(n_new):
                    client.put_object(Bucket=bucket, Key=pictrs_key(), Body=jpeg(n_new + _))
                listing.reset()
                summary = await sweeper.sweep_new()
                out.append((summary.checked, listing.calls))
        return out

    (idle_checked, idle_calls), (new_checked, new_calls) = asyncio.run(go())
    assert idle_checked == 0 and idle_calls == 1
    assert new_checked == 7 and new_calls == 1


@pytest.fixture
def swept_folder(tmp_path: Path) -> tuple[Any, Path]:
    """A node config whose continuous sweep deletes what is blocked in a folder."""
    from tests.conftest import make_config

    store = tmp_path / "store"
    store.mkdir()
    (store / "old.jpg").write_bytes(jpeg(1))
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)  # before any event loop runs: Alembic's env starts its own
    cfg = make_config(tmp_path, url, sweep={"enabled": True, "source": "fs", "fs.path": str(store),
                                            "action": "delete", "interval_s": 1,
                                            "layout": "unordered"})
    block_bad(make_config_env(tmp_path, url)[1], tmp_path)
    return cfg, store


async def test_serve_keeps_sweeping_what_is_new(aiohttp_client: Any,
                                                swept_folder: tuple[Any, Path]) -> None:
    from attestd.http import create_app
    from tests.conftest import async_wait_for

    cfg, store = swept_folder
    await aiohttp_client(create_app(cfg))
    (store / "new-bad.jpg").write_bytes(reencoded(jpeg(BAD_SEED)))
    assert await async_wait_for(lambda: not (store / "new-bad.jpg").exists(), timeout=30)
    assert (store / "old.jpg").read_bytes() == jpeg(1)


def test_an_interrupted_all_run_resumed_sums_up_the_whole_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped part-way through a listing page, then resumed: the final summary counts
    every object of the run once (listed, checked, rejected, acted), as a run that was
    never interrupted would."""
    from attestd.config import load_config
    from attestd.services import open_services
    from attestd.sweep import runner
    from attestd.sweep.runtime import open_sweeper
    from attestd.sweep.sources import fs

    monkeypatch.setattr(fs, "PAGE_SIZE", 40)
    monkeypatch.setattr(runner, "RECORD_BATCH", 8)
    store = tmp_path / "store"
    store.mkdir()
    bad = set()
    for i in range(120):
        name = f"{i:03d}.jpg"
        if i % 10 == 5:
            (store / name).write_bytes(reencoded(jpeg(BAD_SEED), scale=0.5 + i / 400))
            bad.add(name)
        else:
            (store / name).write_bytes(jpeg(i + 1, size=(64, 48)))
    env = sqlite_env(tmp_path, source="fs", concurrency=2, **{"fs.path": str(store)})
    block_bad(env, tmp_path)
    engine = db(env)
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)

    def checked() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("select count(*) from sweep_objects")).scalar_one())

    async def go() -> dict[str, Any]:
        async with open_services(cfg, follow_index=False) as services, \
                open_sweeper(cfg, cfg.sweep, services) as sweeper:
            first = asyncio.create_task(sweeper.sweep_all())
            while checked() < 60 and not first.done():  # half-way through the second page
                await asyncio.sleep(0.01)
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
            assert 40 < checked() < 120, "the run was not stopped inside the second page"
            return (await sweeper.sweep_all()).as_json()

    summary = asyncio.run(go())
    assert summary["status"] == "done"
    assert (summary["listed"], summary["checked"]) == (120, 120), summary
    assert summary["rejected"] == len(bad) and summary["acted"] == {"flag": len(bad)}, summary
    assert summary["errors"] == 0 and summary["already_checked"] == 0, summary
