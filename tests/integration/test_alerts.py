"""Alerts delivered for real: e-mail through apprise to an SMTP server on loopback
(aiosmtpd), a webhook receiver (aiohttp), and a fediverse direct message through the
node's signed delivery queue. No image data in any of them; no secret in the logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from attestd.alerts.channels import AppriseChannel, WebhookChannel
from attestd.alerts.notifier import Notifier
from attestd.alerts.plan import HOUR_S, PlanSettings
from attestd.hits import Hit, Hits
from scanner import DecodeLimits, hash_image_bytes
from tests.conftest import free_port, make_config_env, migrate, run_cli, wait_for
from tests.images import jpeg, reencoded

PASSWORD = "s3cret-Smtp-Pa55"
BASE = "http://127.0.0.1:8470"


@dataclass
class Mailbox:
    """What the SMTP server received: each message's raw bytes and parsed form."""

    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.raw.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raws = list(self.raw)
        return [email.message_from_bytes(r, policy=email.policy.default)  # type: ignore[misc]
                for r in raws]


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain", "html"))
    assert part is not None
    return str(part.get_content())


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"attestd"
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, str]]:
    """An SMTP server on loopback that wants a login; (mailbox, apprise URL for it)."""
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=_authenticate,
                     auth_require_tls=False)
    ctl.start()
    try:
        yield box, (f"mailto://attestd:{PASSWORD}@127.0.0.1:{port}"
                    "?from=attestd@node.example.org&to=admins@node.example.org")
    finally:
        ctl.stop()


def hit(n: int, data: bytes = b"") -> Hit:
    return Hit(sha256=f"{n:064x}", origin="sweep", label="csam_suspect",
               source="list:ncmec", action="flag", key=f"store/{n}.jpg",
               actor="sweep run 1", data=data or jpeg(n))


def assert_no_image_data(text: bytes | str, data: bytes) -> None:
    raw = text.encode() if isinstance(text, str) else text
    frames = hash_image_bytes(data, DecodeLimits()).frames
    for form in (data[:64], base64.b64encode(data)[:64], data.hex()[:64].encode(),
                 *(f.pdq.encode() for f in frames), *(f.phash.encode() for f in frames)):
        assert form not in raw


def test_a_sweep_sends_one_email_per_hit_without_the_image(
        smtp: tuple[Mailbox, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box, url = smtp
    store = tmp_path / "store"
    store.mkdir()
    bad, edited = jpeg(900), reencoded(jpeg(900))
    (store / "bad.jpg").write_bytes(bad)
    (store / "edited.jpg").write_bytes(edited)
    (store / "fine.jpg").write_bytes(jpeg(1))
    db_url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(db_url)
    _, env = make_config_env(tmp_path, db_url,
                             sweep={"source": "fs", "fs.path": str(store), "action": "flag"},
                             alerts={"urls": [url], "retry_base_s": 0})
    (tmp_path / "planted.jpg").write_bytes(bad)
    code, out = run_cli(env, "override", "block", str(tmp_path / "planted.jpg"))
    assert code == 0, out
    caplog.set_level(logging.DEBUG)
    code, out = run_cli(env, "sweep", "--all", "--json")
    assert code == 0, out

    assert wait_for(lambda: len(box.raw) >= 2, timeout=20), (box.raw, out)
    mails = box.messages()
    assert len(mails) == 2
    keys = set()
    for mail, raw in zip(mails, box.raw, strict=True):
        body = _body(mail)
        assert "What was found: blocked" in body and "Action taken: flag" in body
        assert "What decided: override:" in body
        assert f"Review: {BASE}/admin/review#item-" in body
        keys |= {k for k in ("bad.jpg", "edited.jpg") if f"Storage key: {k}" in body}
        for data in (bad, edited):
            assert_no_image_data(raw, data)
            assert_no_image_data(body, data)
    assert keys == {"bad.jpg", "edited.jpg"}
    assert PASSWORD not in caplog.text and PASSWORD not in out
    assert "E-Mail (alerts.urls[1])" in caplog.text


async def _notifier(channels: list[Any], clock: list[float] | None = None,
                    **settings: Any) -> Notifier:
    n = Notifier(PlanSettings(**settings), BASE, channels, retries=2, retry_base_s=0,
                 clock=(lambda: clock[0]) if clock is not None else __import__("time").monotonic)
    n.start()
    return n


async def _until(pred: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout * 20)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_digest_after_n_hits(smtp: tuple[Mailbox, str]) -> None:
    box, url = smtp
    hits = Hits()
    notifier = await _notifier([AppriseChannel(url, "alerts.urls[1]")], mode="digest",
                               digest_events=3, digest_interval_s=3600)
    hits.subscribe("alerts", notifier.on_hit)
    for n in (1, 2):
        await hits.publish(hit(n))
    await asyncio.sleep(0.3)
    assert box.raw == []  # two hits wait for the third
    await hits.publish(hit(3))
    await _until(lambda: len(box.raw) == 1)
    await notifier.close()
    (mail,) = box.messages()
    body = _body(mail)
    assert "3 hits" in str(mail["Subject"])
    assert all(f"{n:064x}" in body for n in (1, 2, 3))
    for n in (1, 2, 3):
        assert_no_image_data(box.raw[0], jpeg(n))


async def test_the_rate_limit_holds_mail_and_folds_it_into_the_next_digest(
        smtp: tuple[Mailbox, str]) -> None:
    box, url = smtp
    clock = [1000.0]
    notifier = await _notifier([AppriseChannel(url, "alerts.urls[1]")], clock,
                               mode="each", max_per_hour=2)
    for n in range(1, 6):
        await notifier.on_hit(hit(n))
    await _until(lambda: notifier.planner.held == 3)
    assert len(box.raw) == 2  # the limit: two messages this hour, three hits held
    clock[0] += HOUR_S
    notifier.poke()
    await _until(lambda: len(box.raw) == 3)
    await notifier.close()
    singles, digest = box.messages()[:2], box.messages()[2]
    assert [f"{n:064x}" in _body(m) for n, m in zip((1, 2), singles, strict=True)] == [True] * 2
    body = _body(digest)
    assert "3 of them were held back and folded into this digest" in body
    assert all(f"{n:064x}" in body for n in (3, 4, 5))


async def test_a_dead_mail_server_is_retried_and_logged_without_its_password(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = (f"mailto://attestd:{PASSWORD}@127.0.0.1:{free_port()}"
           "?from=attestd@node.example.org&to=admins@node.example.org")
    hits = Hits()
    notifier = await _notifier([AppriseChannel(url, "alerts.urls[1]")], max_per_hour=1)
    hits.subscribe("alerts", notifier.on_hit)
    await hits.publish(hit(1))  # returns at once: sending is the notifier's task
    await _until(lambda: "giving up" in caplog.text)
    assert caplog.text.count("E-Mail (alerts.urls[1]) failed (attempt") == 3
    # Nobody was told: the hit waits for the next message the hour allows.
    await _until(lambda: notifier.planner.held == 1)
    await notifier.close(timeout_s=0.5)
    assert "of 1 hits waiting at shutdown, some were not told" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.fixture
async def webhook(aiohttp_server: Any) -> AsyncIterator[tuple[list[Any], list[int], str]]:
    """A webhook receiver: (payloads received, statuses to answer first, its URL)."""
    got: list[Any] = []
    fail_first: list[int] = []

    async def receive(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        got.append(json.loads(await request.read()))
        return web.Response(status=fail_first.pop(0) if fail_first else 204)

    app = web.Application()
    app.router.add_post("/hooks/attestd-T0ken", receive)
    server = await aiohttp_server(app)
    yield got, fail_first, str(server.make_url("/hooks/attestd-T0ken"))


async def test_the_webhook_gets_the_documented_payload_after_a_503(
        webhook: tuple[list[Any], list[int], str], caplog: pytest.LogCaptureFixture) -> None:
    import aiohttp

    caplog.set_level(logging.DEBUG)
    got, fail_first, url = webhook
    fail_first.append(503)
    async with aiohttp.ClientSession() as session:
        notifier = await _notifier([WebhookChannel(url, "alerts.webhooks[1]", session, BASE)])
        data = jpeg(5)
        await notifier.on_hit(Hit(sha256=f"{5:064x}", origin="review", label="csam_suspect",
                                  source="verdict:12", action="confirm", method="human_review",
                                  actor="admin alice", key=None, data=data))
        await _until(lambda: len(got) == 2)
        await notifier.close()
    assert got[0] == got[1] | {"sent_at": got[0]["sent_at"]}  # the retry carries the same
    payload = got[1]
    assert {k: payload[k] for k in ("type", "version", "node", "kind", "total", "listed",
                                    "more", "folded", "counts")} == {
        "type": "attestd.alert", "version": 1, "node": BASE, "kind": "event", "total": 1,
        "listed": 1, "more": 0, "folded": 0, "counts": {"csam_suspect": 1}}
    (ev,) = payload["events"]
    assert ev == {"sha256": f"{5:064x}", "origin": "review", "label": "csam_suspect",
                  "source": "verdict:12", "method": "human_review", "action": "confirm",
                  "actor": "admin alice", "detail": "", "key": None, "aliases": [],
                  "at": ev["at"], "review_url": f"{BASE}/admin/review#item-{5:064x}"}
    assert_no_image_data(json.dumps(got), data)
    assert "webhook (alerts.webhooks[1]) failed (attempt 1 of 3): " in caplog.text
    assert "T0ken" not in caplog.text


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)  # before the test's event loop: Alembic's env runs its own
    return url


async def test_a_fediverse_message_reaches_the_named_admins_only(tmp_path: Path,
                                                                  sqlite_url: str) -> None:
    """A Note addressed to the admin accounts, delivered signed (the stand-in verifies
    the signature); a follower of the node gets nothing, and the outbox shows nothing."""
    from attestd.http.appkeys import FEDERATION, SERVICES
    from tests.integration.test_federation_endpoints import start_node
    from tests.peers import Peer

    admins = [await Peer(name="alice").start(), await Peer(name="bob").start()]
    follower = await Peer(name="carol").start()
    node = await start_node(tmp_path, sqlite_url,
                            alerts={"admin_actors": [p.actor_id for p in admins]})
    try:
        fed = node.app[FEDERATION]
        await fed.store.add_follower(follower.actor_id, follower.inbox, None, state="accepted")
        data = jpeg(11)
        await node.app[SERVICES].hits.publish(Hit(
            sha256=f"{11:064x}", origin="sweep", label="csam_suspect", source="list:ncmec",
            action="quarantine", key="store/11.jpg", actor="sweep run 2", data=data))
        await _until(lambda: all(p.received for p in admins))
        await asyncio.sleep(1.5)  # the deliverer's next poll: nothing more goes anywhere
        ids = [p.actor_id for p in admins]
        for p in admins:
            (act,) = p.received
            note = act["object"]
            assert act["type"] == "Create" and note["type"] == "Note"
            assert act["actor"] == f"{node.base}/actor" == note["attributedTo"]
            assert act["to"] == note["to"] == ids and act["cc"] == note["cc"] == []
            assert "Public" not in json.dumps(act) and "/followers" not in json.dumps(act)
            assert "What decided: list:ncmec" in note["content"]
            assert f"{node.base}/admin/review#item-{11:064x}" in note["content"]
            assert_no_image_data(json.dumps(act), data)
        assert follower.received == []
        assert await fed.store.outbox_total() == 0
    finally:
        await node.runner.cleanup()
        for p in (*admins, follower):
            await p.stop()


class Recorder:
    """A channel that keeps what it is sent, or fails while ``failing``."""

    name = "recorder (test)"

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.messages: list[Any] = []

    async def send(self, msg: Any, title: str, body: str) -> None:
        if self.failing:
            raise RuntimeError("down")
        self.messages.append(msg)


def test_hits_left_untold_by_a_killed_process_are_told_by_the_next(db_url: str) -> None:
    """The first notifier records hits, then dies without telling them (its channel is
    down and it is never closed); the next process adopts them once the lease runs out,
    tells them, and the queue is empty after."""
    from sqlalchemy import func, select

    from attestd.alerts.queue import AlertQueue
    from attestd.db import schema as t
    from attestd.db.engine import create_engine
    from attestd.db.store import Store

    async def rows(store: Store) -> int:
        async with store.engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(t.alert_queue))).scalar_one())

    async def first_process() -> None:
        store = Store(create_engine(db_url))
        down = Recorder(failing=True)
        n = Notifier(PlanSettings(mode="digest", digest_events=100), BASE, [down],
                     retries=0, queue=AlertQueue(store, lease_s=0.3))
        n.start()
        for i in (1, 2, 3):
            await n.on_hit(hit(i))
        assert await rows(store) == 3
        assert n._task is not None
        n._task.cancel()  # killed: no close, nothing flushed
        with contextlib.suppress(asyncio.CancelledError):
            await n._task
        await store.engine.dispose()

    async def next_process() -> list[Any]:
        store = Store(create_engine(db_url))
        up = Recorder()
        n = Notifier(PlanSettings(mode="digest", digest_events=3), BASE, [up], retries=0,
                     queue=AlertQueue(store, lease_s=0.3))
        n.start()
        n.adopt_orphans()  # as `attestd serve` does
        await _until(lambda: up.messages)
        await n.close()
        left = await rows(store)
        await store.engine.dispose()
        return [up.messages, left]

    asyncio.run(first_process())
    messages, left = asyncio.run(next_process())
    (digest,) = messages
    assert sorted(e.sha256 for e in digest.events) == [f"{i:064x}" for i in (1, 2, 3)]
    assert digest.events[0].review_url == f"{BASE}/admin/review#item-{1:064x}"
    assert left == 0


async def test_a_reviewer_confirming_a_hit_alerts_the_webhook(
        aiohttp_client: Any, tmp_path: Path, sqlite_url: str,
        webhook: tuple[list[Any], list[int], str]) -> None:
    """Through the node as it serves: the admin API's confirm is a hit, and the alert
    says who confirmed it, with nothing of the kept copy."""
    from attestd.admin_tokens import AdminTokens
    from attestd.http import create_app
    from attestd.http.appkeys import SERVICES, STORE
    from tests.conftest import make_config

    got, _, url = webhook
    cfg = make_config(tmp_path, sqlite_url, alerts={"webhooks": [url]})
    node = await aiohttp_client(create_app(cfg))
    token = await AdminTokens(node.server.app[STORE].engine).create("ops")
    data = jpeg(402)
    sha = "e" * 64
    await node.server.app[SERVICES].review.add(sha, "flagged", "classified csam_suspect",
                                               label="csam_suspect", data=data)
    resp = await node.post(f"/api/v1/admin/review/{sha}", json={"action": "confirm"},
                           headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    await _until(lambda: got)
    (ev,) = got[0]["events"]
    assert (ev["sha256"], ev["origin"], ev["label"], ev["action"], ev["method"]) == (
        sha, "review", "csam_suspect", "confirm", "human_review")
    assert ev["source"].startswith("verdict:") and ev["actor"]
    assert ev["review_url"] == f"{cfg.node.base_url}/admin/review#item-{sha}"
    assert_no_image_data(json.dumps(got), data)
