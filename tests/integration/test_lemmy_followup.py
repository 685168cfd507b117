"""Following hits up in Lemmy, against a stand-in reproducing Lemmy 0.19.20's API
(tests/lemmy_standin.py): a real sweep of a stand-in pict-rs finds an image a hash list
names, and the node's follow-up finds its uploader and the post and comment using it,
then acts as the policy for hash-list evidence says: purges and bans under an automatic
policy, only reports by default, changes nothing in dry run; a classifier verdict alone
never acts by default; a 503 is retried; the audit log shows every step."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from attestd.config import Config
from attestd.hits import Hit
from attestd.services import NodeServices, open_services
from attestd.sweep.runtime import open_pictrs_aliases, open_sweeper
from tests.conftest import async_wait_for, free_port, make_config_env, migrate, run_cli
from tests.images import jpeg
from tests.lemmy_standin import LemmyStandIn
from tests.pictrs_standin import PictrsStandIn

BAD = jpeg(4242)
BOT_PASSWORD = "bot-password-" + uuid.uuid4().hex
AUTOMATIC: dict[str, Any] = {"policy.hash_list": ["purge", "ban_remove_data"]}


@dataclass
class Instance:
    """A Lemmy with an uploader whose image is in a post and named in someone's comment,
    and an unrelated post; the pict-rs behind it holds that image and a good one."""

    lemmy: LemmyStandIn
    pictrs: PictrsStandIn
    lemmy_url: str
    pictrs_url: str
    alias: str
    uploader: int
    commenter: int
    post: int
    comment: int
    unrelated: int


@pytest.fixture
async def instance() -> AsyncIterator[Instance]:
    lemmy = LemmyStandIn()
    pictrs = PictrsStandIn(api_key="pictrs-key-" + uuid.uuid4().hex)
    pictrs.add(jpeg(1, size=(200, 150)))
    alias = pictrs.add(BAD).aliases[0]
    lemmy.person("attestd-bot", password=BOT_PASSWORD, admin=True)
    uploader = lemmy.person("uploader", password="x")
    commenter = lemmy.person("commenter", password="y")
    lemmy.upload(commenter, f"{uuid.uuid4()}.jpg")
    lemmy.upload(uploader, alias)
    post = lemmy.post(uploader, url=lemmy.image_url(alias), name="look")
    comment = lemmy.comment(commenter, post, f"again: ![]({lemmy.image_url(alias)})")
    unrelated = lemmy.post(commenter, url="https://example.org/cat.jpg", name="a cat")
    runners = []
    urls = []
    for app in (lemmy.app(), pictrs.app()):
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    yield Instance(lemmy, pictrs, urls[0], urls[1], alias, uploader, commenter, post, comment,
                   unrelated)
    for runner in runners:
        await runner.cleanup()


def node_config(tmp_path: Path, inst: Instance, *, url: str | None = None,
                **lemmy: Any) -> Config:
    """A node whose sweep reads the stand-in pict-rs and whose hash list names BAD (on
    ``url``, a migrated database, or a new SQLite one)."""
    return node_config_env(tmp_path, inst, url=url, **lemmy)[0]


def node_config_env(tmp_path: Path, inst: Instance, *, url: str | None = None,
                    **lemmy: Any) -> tuple[Config, dict[str, str]]:
    """node_config, and the environment that gives the CLI the same configuration."""
    if url is None:
        url = f"sqlite:///{tmp_path / 'attestd.db'}"
        migrate(url)
    sections = {
        "sweep": {"source": "pictrs", "pictrs.url": inst.pictrs_url,
                  "pictrs.api_token": inst.pictrs.api_key, "action": "flag"},
        "lemmy": {"url": inst.lemmy_url, "public_url": inst.lemmy.base,
                  "username": "attestd-bot", "password": BOT_PASSWORD, "retry_base_s": 0.05,
                  **lemmy}}
    cfg, env = make_config_env(tmp_path, url, **sections)
    listed = tmp_path / "list.csv"
    listed.write_text(f"sha256\n{hashlib.sha256(BAD).hexdigest()}\n")
    code, out = run_cli(env, "hashes", "import", str(listed), "--label", "csam_suspect",
                        "--source", "ncmec")
    assert code == 0, out
    return cfg, env


@contextlib.asynccontextmanager
async def node(cfg: Config) -> AsyncIterator[NodeServices]:
    async with open_services(cfg, follow_index=False) as services, \
            open_pictrs_aliases(cfg) as aliases_of:
        assert services.lemmy is not None
        services.lemmy.aliases_of = aliases_of  # as `serve` does
        yield services


async def sweep_and_follow_up(cfg: Config) -> list[Any]:
    """One sweep of the whole store, then every follow-up step it caused; the audit."""
    async with node(cfg) as services:
        async with open_sweeper(cfg, cfg.sweep, services) as sweeper:
            summary = await sweeper.sweep_all()
        assert summary.acted == {"flag": 1}, summary
        assert services.lemmy is not None
        await services.lemmy.run_due()
        return await lemmy_audit(services)


async def lemmy_audit(services: NodeServices) -> list[Any]:
    return [a for a in reversed(await services.store.recent_audit(500))
            if a.actor == "lemmy-follow-up"]


async def test_automatic_policy_purges_the_post_and_bans_the_uploader(
        tmp_path: Path, instance: Instance, db_url: str) -> None:
    lemmy = instance.lemmy
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, url=db_url, **AUTOMATIC)
    audit = await sweep_and_follow_up(cfg)
    assert instance.post not in lemmy.posts and instance.comment not in lemmy.comments
    assert lemmy.persons[instance.uploader]["banned"]
    assert not lemmy.persons[instance.commenter]["banned"]  # named it; did not upload it
    assert instance.unrelated in lemmy.posts
    assert lemmy.reports == []
    ban = next(b for m, p, b in lemmy.requests if p == "/api/v3/user/ban")
    assert ban == {"person_id": instance.uploader, "ban": True, "remove_data": True,
                   "reason": "attestd: this image was judged csam_suspect (hash_list)"}
    # The audit shows every step: what was found, then each act.
    assert [(a.action, a.detail["target"]) for a in audit] == [
        ("lemmy_found", "evidence:hash_list"),
        ("lemmy_purge", f"post:{instance.post}"),
        # Purging the post took its comments with it: Lemmy's "not found" counts as done.
        ("lemmy_purge", f"comment:{instance.comment}"),
        ("lemmy_ban_remove_data", f"person:{instance.uploader}")]
    found = audit[0].detail
    assert found["uploader"]["name"] == "uploader"
    assert {c["id"] for c in found["content"]} == {instance.post, instance.comment}
    assert "already done (couldnt_find_comment)" in (audit[2].reason or "")
    # Idempotent: the same hit again, and another run, change nothing more in Lemmy.
    before = len(lemmy.mutations())
    async with node(cfg) as services:
        assert services.lemmy is not None
        await services.hits.publish(Hit(
            sha256=hashlib.sha256(BAD).hexdigest(), origin="sweep", label="csam_suspect",
            source="list:ncmec", action="flag", aliases=(instance.alias,)))
        assert await services.lemmy.run_due() == 0
    assert len(lemmy.mutations()) == before


async def test_default_policy_only_reports(tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    cfg = await asyncio.to_thread(node_config, tmp_path, instance)
    audit = await sweep_and_follow_up(cfg)
    assert instance.post in lemmy.posts and instance.comment in lemmy.comments
    assert not lemmy.posts[instance.post]["removed"]
    assert not any(p["banned"] for p in lemmy.persons.values())
    assert {(r.get("post_id"), r.get("comment_id")) for r in lemmy.reports} == {
        (instance.post, None), (None, instance.comment)}
    assert {p for _, p, _ in lemmy.mutations()} == {"/api/v3/post/report",
                                                      "/api/v3/comment/report"}
    assert [a.action for a in audit] == ["lemmy_found", "lemmy_report", "lemmy_report"]


async def test_dry_run_changes_nothing_in_lemmy_and_audits_what_it_would_do(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, dry_run=True, **AUTOMATIC)
    audit = await sweep_and_follow_up(cfg)
    assert lemmy.mutations() == []
    assert instance.post in lemmy.posts and not lemmy.persons[instance.uploader]["banned"]
    would = [a.reason for a in audit if a.action == "lemmy_would"]
    assert would == [f"dry run: would purge post:{instance.post}",
                     f"dry run: would purge comment:{instance.comment}",
                     f"dry run: would ban_remove_data person:{instance.uploader}"]
    assert audit[0].action == "lemmy_found" and audit[0].detail["dry_run"] is True
    # Dry run turned off: the image's next hit does what the dry run said it would.
    live = cfg.model_copy(update={"lemmy": cfg.lemmy.model_copy(update={"dry_run": False})})
    async with node(live) as services:
        assert services.lemmy is not None
        await services.hits.publish(Hit(
            sha256=hashlib.sha256(BAD).hexdigest(), origin="sweep", label="csam_suspect",
            source="list:ncmec", action="flag", aliases=(instance.alias,)))
        await services.lemmy.run_due()
    assert instance.post not in lemmy.posts and lemmy.persons[instance.uploader]["banned"]


async def test_a_classifier_verdict_alone_never_acts_by_default(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    # Even with every other kind automatic, the classifier's default is a report.
    others: dict[str, Any] = {
        "policy.hash_list": ["purge_person"], "policy.override": ["purge_person"],
        "policy.human_review": ["purge_person"], "policy.peer": ["purge_person"]}
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, **others)
    sha = hashlib.sha256(BAD).hexdigest()
    async with node(cfg) as services:
        assert services.lemmy is not None
        verdict = await services.store.add_verdict(sha, "csam_suspect", "classifier", "clip")
        # As the rescan path publishes it: a verdict whose method the hit does not carry
        # is looked up in the store.
        await services.hits.publish(Hit(
            sha256=sha, origin="rescan", label="csam_suspect", source=f"verdict:{verdict.id}",
            action="review", aliases=(instance.alias,)))
        await services.lemmy.run_due()
        audit = await lemmy_audit(services)
    assert {p for _, p, _ in lemmy.mutations()} == {"/api/v3/post/report",
                                                      "/api/v3/comment/report"}
    assert not any(p["banned"] for p in lemmy.persons.values())
    assert audit[0].detail["evidence"] == "classifier" and audit[0].detail["steps"] == ["report"]


async def test_a_503_is_retried_until_done_and_the_password_never_logged(
        tmp_path: Path, instance: Instance, db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lemmy = instance.lemmy
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, url=db_url, **AUTOMATIC)
    lemmy.users["attestd-bot"]["password"] = "changed"  # the admin fixes it below
    lemmy.fail_next = 1  # the first call (the login) meets a Lemmy that is restarting
    lemmy.fail_on["/api/v3/admin/purge/post"] = 2
    async with node(cfg) as services:
        assert services.lemmy is not None
        runner = asyncio.create_task(services.lemmy.run())
        async with open_sweeper(cfg, cfg.sweep, services) as sweeper:
            await sweeper.sweep_all()

        async def refused() -> bool:
            return any("refused the login" in (a.reason or "")
                       for a in await lemmy_audit(services))

        assert await async_wait_for(refused, timeout=30)
        lemmy.users["attestd-bot"]["password"] = BOT_PASSWORD
        try:
            async def all_done() -> bool:
                assert services.lemmy is not None
                rows = await services.lemmy.steps.steps(hashlib.sha256(BAD).hexdigest())
                return len(rows) == 4 and all(r.state == "done" for r in rows)

            assert await async_wait_for(all_done, timeout=30)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        audit = await lemmy_audit(services)
        steps = {(s.step, s.target): s for s in await services.lemmy.steps.steps(
            hashlib.sha256(BAD).hexdigest())}
    assert instance.post not in lemmy.posts
    retries = [a.detail["target"] for a in audit if a.action == "lemmy_retry"]
    assert retries[:2] == ["evidence:hash_list"] * 2  # 503, then the refused login
    assert retries[-2:] == [f"post:{instance.post}"] * 2
    assert "503" in (audit[0].reason or "") and "lemmy.password" in (audit[1].reason or "")
    purge = steps[("purge", f"post:{instance.post}")]
    assert purge.state == "done" and purge.attempts == 3
    assert all(s.state == "done" for s in steps.values())
    assert BOT_PASSWORD not in caplog.text
    assert not any(tok in caplog.text for tok in lemmy.tokens)


async def test_a_refusal_is_audited_as_failed_and_retried_from_the_cli(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    lemmy.users["attestd-bot"]["admin"] = False  # a bot that is no admin: not_an_admin
    cfg, env = await asyncio.to_thread(node_config_env, tmp_path, instance, **AUTOMATIC)
    audit = await sweep_and_follow_up(cfg)
    assert audit[-1].action == "lemmy_failed" and "not_an_admin" in (audit[-1].reason or "")
    assert "do it in Lemmy by hand" in (audit[-1].reason or "")
    assert lemmy.mutations() == []
    # The admin makes the bot an admin and retries from the command line.
    code, out = await asyncio.to_thread(run_cli, env, "lemmy", "steps", "--state", "failed")
    assert code == 0 and "find" in out and "not_an_admin" in out, out
    lemmy.users["attestd-bot"]["admin"] = True
    code, out = await asyncio.to_thread(run_cli, env, "lemmy", "retry", "--failed")
    assert code == 0 and "due again" in out, out
    code, out = await asyncio.to_thread(run_cli, env, "lemmy", "run")
    assert code == 0 and "ran 4 step(s)" in out, out
    assert instance.post not in lemmy.posts and lemmy.persons[instance.uploader]["banned"]
    code, out = await asyncio.to_thread(run_cli, env, "lemmy", "retry", "--failed")
    assert code == 1 and "no failed step" in out, out


async def test_a_review_confirming_a_swept_image_acts_with_the_sweeps_aliases(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    # The sweep's hash-list hit only reports; a reviewer's confirmation purges. The
    # review's hit carries no alias: the sweep's is used.
    reviewed: dict[str, Any] = {"policy.human_review": ["purge", "ban"]}
    cfg, env = await asyncio.to_thread(node_config_env, tmp_path, instance, **reviewed)
    await sweep_and_follow_up(cfg)
    assert instance.post in lemmy.posts and len(lemmy.reports) == 2
    sha = hashlib.sha256(BAD).hexdigest()
    code, out = await asyncio.to_thread(run_cli, env, "review", "mark", "--sha256", sha,
                                        "--label", "csam_suspect")
    assert code == 0, out
    code, out = await asyncio.to_thread(run_cli, env, "lemmy", "run")
    assert code == 0 and "ran 4 step(s)" in out, out
    assert instance.post not in lemmy.posts and lemmy.persons[instance.uploader]["banned"]
    assert len(lemmy.reports) == 2  # the posts were reported once, not again
    async with node(cfg) as services:
        audit = await lemmy_audit(services)
    acts = [(a.action, a.detail["evidence"]) for a in audit if a.action != "lemmy_report"]
    assert acts == [("lemmy_found", "hash_list"), ("lemmy_found", "human_review"),
                    ("lemmy_purge", "human_review"), ("lemmy_purge", "human_review"),
                    ("lemmy_ban", "human_review")]


async def test_a_rescan_hit_without_aliases_asks_pictrs_for_them(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    cfg = await asyncio.to_thread(node_config, tmp_path, instance)
    sha = hashlib.sha256(BAD).hexdigest()
    async with node(cfg) as services:
        assert services.lemmy is not None
        verdict = await services.store.add_verdict(sha, "csam_suspect", "classifier", "clip")
        await services.hits.publish(Hit(
            sha256=sha, origin="rescan", label="csam_suspect", source=f"verdict:{verdict.id}",
            action="review", method="classifier"))
        await services.lemmy.run_due()
        audit = await lemmy_audit(services)
    assert audit[0].action == "lemmy_found" and audit[0].detail["uploader"]["name"] == "uploader"
    assert len(lemmy.reports) == 2
    assert any(p.startswith("/internal/hashes") for _, p in instance.pictrs.requests)


async def test_serve_runs_the_follow_up(aiohttp_client: Any, tmp_path: Path,
                                        instance: Instance) -> None:
    from attestd.http import create_app
    from attestd.http.appkeys import SERVICES

    cfg = await asyncio.to_thread(node_config, tmp_path, instance)
    client = await aiohttp_client(create_app(cfg))
    services = client.app[SERVICES]
    await services.hits.publish(Hit(
        sha256=hashlib.sha256(BAD).hexdigest(), origin="sweep", label="csam_suspect",
        source="list:ncmec", action="flag", aliases=(instance.alias,)))
    assert await async_wait_for(lambda: len(instance.lemmy.reports) == 2, timeout=30)


async def test_a_redirect_is_not_followed_so_the_password_stays_on_lemmys_host() -> None:
    from attestd.lemmy.api import LemmyClient, LemmyError, LemmySettings

    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.json_response({"jwt": "stolen"})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", record)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    other_port = free_port()
    await web.TCPSite(other_runner, "127.0.0.1", other_port).start()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{other_port}{request.path}")

    lemmy = web.Application()
    lemmy.router.add_route("*", "/{tail:.*}", moved)
    runner = web.AppRunner(lemmy)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = LemmyClient(LemmySettings(url=f"http://127.0.0.1:{port}", public_url="",
                                       username="bot", password=BOT_PASSWORD))
    try:
        with pytest.raises(LemmyError, match="redirect; not followed") as exc:
            await client.login()
        assert exc.value.status == 307 and BOT_PASSWORD not in str(exc.value)
        assert elsewhere == []
    finally:
        await client.close()
        await runner.cleanup()
        await other_runner.cleanup()


async def test_the_uploader_is_found_pages_deep_in_lemmys_media_list(
        tmp_path: Path, instance: Instance) -> None:
    lemmy = instance.lemmy
    for _ in range(120):  # newer uploads: the image is on the third page of 50
        lemmy.upload(instance.commenter, f"{uuid.uuid4()}.png")
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, **AUTOMATIC)
    audit = await sweep_and_follow_up(cfg)
    assert audit[0].detail["uploader"]["id"] == instance.uploader
    pages = [p for m, p, _ in lemmy.requests if p == "/api/v3/admin/list_all_media"]
    assert len(pages) == 3
    assert lemmy.persons[instance.uploader]["banned"]


async def test_a_hit_with_a_label_not_followed_up_does_nothing(
        tmp_path: Path, instance: Instance) -> None:
    cfg = await asyncio.to_thread(node_config, tmp_path, instance, **AUTOMATIC)
    async with node(cfg) as services:
        assert services.lemmy is not None
        await services.hits.publish(Hit(
            sha256=hashlib.sha256(BAD).hexdigest(), origin="sweep", label="nsfw",
            source="list:adult", action="delete", aliases=(instance.alias,)))
        assert await services.lemmy.run_due() == 0
    assert instance.lemmy.requests == []


async def test_what_lemmy_knows_is_written_into_the_evidence_record(
        tmp_path: Path, instance: Instance) -> None:
    from pyrage import x25519

    from attestd.evidence.record import ANNOTATION_FIELDS

    def configure() -> Config:
        url = f"sqlite:///{tmp_path / 'attestd.db'}"
        migrate(url)
        cfg, env = make_config_env(tmp_path, url, **{
            "sweep": {"source": "pictrs", "pictrs.url": instance.pictrs_url,
                      "pictrs.api_token": instance.pictrs.api_key, "action": "delete"},
            "lemmy": {"url": instance.lemmy_url, "public_url": instance.lemmy.base,
                      "username": "attestd-bot", "password": BOT_PASSWORD, "retry_base_s": 0.05},
            "evidence": {"enabled": True, "recipient": str(x25519.Identity.generate().to_public()),
                         "path": str(tmp_path / "evidence")}})
        listed = tmp_path / "list.csv"
        listed.write_text(f"sha256\n{hashlib.sha256(BAD).hexdigest()}\n")
        code, out = run_cli(env, "hashes", "import", str(listed), "--label", "csam_suspect",
                            "--source", "ncmec")
        assert code == 0, out
        return cfg

    cfg = await asyncio.to_thread(configure)
    async with node(cfg) as services:
        async with open_sweeper(cfg, cfg.sweep, services) as sweeper:
            summary = await sweeper.sweep_all()
        assert summary.acted == {"delete": 1}, summary
        assert services.lemmy is not None and services.evidence is not None
        await services.lemmy.run_due()
        rec = await services.evidence.records.by_sha256(hashlib.sha256(BAD).hexdigest())
    assert rec is not None
    lemmy = rec.record["lemmy"]
    assert set(lemmy) <= ANNOTATION_FIELDS
    assert lemmy["uploader_id"] == instance.uploader
    assert lemmy["post_id"] == instance.post and lemmy["comment_id"] == instance.comment
