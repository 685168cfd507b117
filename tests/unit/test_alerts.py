"""Alerts' pure parts: what a message says (never the image), when one is sent (per hit,
digest, rate limit, nothing dropped), the webhook payload's shape, the direct message's
addressing, and the [alerts] configuration (URLs are secrets)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from attestd.alerts.dm import direct_message
from attestd.alerts.message import AlertEvent, Message, event_from_hit, render, webhook_payload
from attestd.alerts.plan import HOUR_S, Planner, PlanSettings
from attestd.config import load_config
from attestd.errors import ConfigError
from attestd.hits import Hit

BASE = "https://attestd.example.org"
DATA = b"\xff\xd8\xff\xe0 the image's own bytes \x00\x01"
WHEN = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)


def hit(n: int = 1, label: str = "csam_suspect") -> Hit:
    return Hit(sha256=f"{n:064x}", origin="sweep", label=label, source="list:ncmec",
               action="quarantine", key=f"2026/12/02/{n}.jpg", aliases=(f"{n}.jpg",),
               actor="sweep run 3", detail="moved to the quarantine", data=DATA, at=WHEN)


def event(n: int = 1, label: str = "csam_suspect") -> AlertEvent:
    return event_from_hit(hit(n, label), BASE)


def test_a_message_says_what_where_who_decided_action_time_link_and_key() -> None:
    title, body = render(Message(kind="event", events=(event(7),)), BASE, 20)
    assert "csam_suspect" in title and "attestd.example.org" in title
    for expected in ("What was found: csam_suspect", "a storage sweep (sweep run 3)",
                     "What decided: list:ncmec", "Action taken: quarantine: moved to the",
                     "When: 2026-12-02T01:30:00Z", "Storage key: 2026/12/02/7.jpg",
                     f"Review: {BASE}/admin/review#item-{7:064x}"):
        assert expected in body, (expected, body)


def test_no_message_or_payload_carries_the_image_bytes() -> None:
    ev = event()
    assert not hasattr(ev, "data")
    msg = Message(kind="digest", events=(ev, event(2)), counts={"csam_suspect": 2})
    text = " ".join(render(msg, BASE, 20)) + str(webhook_payload(msg, BASE, WHEN))
    for form in (DATA.decode("latin-1"), base64.b64encode(DATA).decode(), DATA.hex()):
        assert form not in text


def test_one_message_per_hit_while_the_rate_allows() -> None:
    p = Planner(PlanSettings(mode="each", max_per_hour=5))
    p.add(event(1), 0.0)
    p.add(event(2), 0.0)
    first, second = p.take(1.0), p.take(1.0)
    assert first is not None and first.kind == "event" and first.events[0].sha256 == f"{1:064x}"
    assert second is not None and second.events[0].sha256 == f"{2:064x}"
    assert p.take(1.0) is None and p.next_at(1.0) is None


def test_the_rate_limit_holds_hits_and_folds_them_into_the_next_digest() -> None:
    p = Planner(PlanSettings(mode="each", max_per_hour=2))
    for n in range(1, 6):
        p.add(event(n), 0.0)
    assert [m.kind for m in (p.take(0.0), p.take(1.0))] == ["event", "event"]  # type: ignore[union-attr]
    assert p.take(2.0) is None  # the third message this hour is not sent
    assert p.held == 3 and p.next_at(2.0) == HOUR_S
    p.add(event(6), 10.0)  # arrives while held: waits with them
    assert p.take(HOUR_S - 1) is None and p.held == 4
    digest = p.take(HOUR_S)
    assert digest is not None and digest.kind == "digest"
    assert digest.folded == 4 and digest.total == 4
    assert [e.sha256 for e in digest.events] == [f"{n:064x}" for n in (3, 4, 5, 6)]
    assert p.waiting == 0 and p.held == 0
    _, body = render(digest, BASE, 2)
    assert "4 of them were held back and folded into this digest" in body
    assert "at most 2 messages an hour" in body


def test_a_digest_goes_after_n_hits_or_after_its_interval() -> None:
    p = Planner(PlanSettings(mode="digest", digest_events=3, digest_interval_s=600))
    p.add(event(1), 0.0)
    p.add(event(2), 1.0)
    assert p.take(2.0) is None and p.next_at(2.0) == 600.0
    p.add(event(3), 3.0)
    digest = p.take(3.0)
    assert digest is not None and digest.kind == "digest" and digest.total == 3
    assert digest.folded == 0
    p.add(event(4, "blocked"), 100.0)
    p.add(event(5), 101.0)
    assert p.take(699.0) is None
    late = p.take(700.0)
    assert late is not None and late.total == 2 and late.counts == {"blocked": 1,
                                                                  "csam_suspect": 1}


def test_a_flood_is_listed_up_to_the_cap_and_counted_beyond() -> None:
    p = Planner(PlanSettings(mode="digest", digest_events=1000, digest_max_items=10))
    for n in range(1, 251):
        p.add(event(n, "blocked" if n % 2 else "csam_suspect"), 0.0)
    msg = p.flush()
    assert msg is not None and len(msg.events) == 10 and msg.more == 240
    assert msg.counts == {"blocked": 125, "csam_suspect": 125}
    _, body = render(msg, BASE, 20)
    assert "250 hits" in body and "and 240 more" in body


def test_a_message_that_reached_nobody_waits_again_with_its_rows() -> None:
    p = Planner(PlanSettings(mode="each", max_per_hour=10, digest_max_items=1))
    p.add(event(1), 0.0, ref=11)
    p.add(event(2, "blocked"), 0.0, ref=12)  # beyond the listing cap: counted
    p.add(event(3), 0.0, ref=13)
    first = p.take(0.0)
    assert first is not None and first.refs == (11,)
    p.requeue(first, 1.0)  # every channel failed
    again = p.take(2.0)
    assert again is not None and again.kind == "digest" and again.folded == 3
    assert sorted(again.refs) == [11, 12, 13] and again.total == 3
    assert again.counts == {"csam_suspect": 2, "blocked": 1}
    p.requeue(again, 3.0)
    last = p.flush()
    assert last is not None and sorted(last.refs) == [11, 12, 13] and last.total == 3


def test_flush_at_shutdown_sends_what_the_limit_held() -> None:
    p = Planner(PlanSettings(mode="each", max_per_hour=1))
    p.add(event(1), 0.0)
    p.add(event(2), 0.0)
    assert p.take(0.0) is not None and p.take(0.0) is None
    last = p.flush()
    assert last is not None and last.folded == 1 and last.events[0].sha256 == f"{2:064x}"
    assert p.flush() is None


def test_the_webhook_payload_has_the_documented_fields() -> None:
    msg = Message(kind="event", events=(event(9),), counts={"csam_suspect": 1})
    payload = webhook_payload(msg, BASE, WHEN)
    assert set(payload) == {"type", "version", "node", "kind", "sent_at", "total", "listed",
                            "more", "folded", "counts", "events"}
    assert payload["type"] == "attestd.alert" and payload["version"] == 1
    assert payload["sent_at"] == "2026-12-02T01:30:00Z"
    assert payload["events"] == [{
        "sha256": f"{9:064x}", "origin": "sweep", "label": "csam_suspect",
        "source": "list:ncmec", "method": None, "action": "quarantine",
        "actor": "sweep run 3", "detail": "moved to the quarantine",
        "key": "2026/12/02/9.jpg", "aliases": ["9.jpg"], "at": "2026-12-02T01:30:00Z",
        "review_url": f"{BASE}/admin/review#item-{9:064x}"}]


def test_the_direct_message_is_addressed_to_the_admins_only() -> None:
    admins = ["https://social.example/users/alice", "https://lemmy.example/u/bob"]
    act = direct_message(text="csam_suspect <found>\n\nReview: x", actor=f"{BASE}/actor",
                         recipients=admins + admins[:1], note_id=f"{BASE}/alerts/1",
                         activity_id=f"{BASE}/activities/1", published=WHEN)
    note = act["object"]
    for doc in (act, note):
        assert doc["to"] == admins and doc["cc"] == []
    text = str(act)
    assert "Public" not in text and "followers" not in text
    assert [t["href"] for t in note["tag"]] == admins
    assert note["content"] == "<p>csam_suspect &lt;found&gt;</p><p>Review: x</p>"


def test_alert_urls_from_a_file_one_per_line(tmp_path: Path) -> None:
    secret = "mailto://user:hunter2@smtp.example.org?to=a@example.org"
    (tmp_path / "alert-urls").write_text(f"# admins\n{secret}\n\nntfys://ntfy.sh/attestd\n")
    (tmp_path / "config.toml").write_text('[alerts]\nurls_file = "alert-urls"\n')
    cfg = load_config(tmp_path / "config.toml", {})
    assert [u.get_secret_value() for u in cfg.alerts.urls] == [secret, "ntfys://ntfy.sh/attestd"]
    assert cfg.alerts.enabled
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_a_bad_alert_setting_is_named_without_echoing_the_urls(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[alerts]\nurls = "mailto://user:hunter2@x"\nadmin_actors = ["lemmy.example/u/a"]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "config.toml", {})
    assert "alerts.urls" in str(exc.value) and "hunter2" not in str(exc.value)
    assert "alerts.admin_actors" in str(exc.value)


def test_the_review_link_is_the_admin_review_page_at_the_item() -> None:
    from attestd.alerts.message import REVIEW_PATH
    from attestd.http import admin_pages

    assert REVIEW_PATH == f"{admin_pages.ROOT}/review"
    template = (Path(admin_pages.__file__).parent / "templates" / "review.html").read_text()
    assert 'id="item-{{ it.sha256 }}"' in template  # the anchor the link points at


@pytest.mark.parametrize("url", ["nosuchservice://user:hunter2@example.org",
                                 "discord://hunter2", "user:hunter2@example.org"])
def test_a_url_apprise_cannot_read_is_named_by_position_not_echoed(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from attestd.alerts.channels import AppriseChannel

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as exc:
        AppriseChannel(url, "alerts.urls[2]")
    assert "alerts.urls[2]" in str(exc.value) and "hunter2" not in str(exc.value)
    assert "hunter2" not in caplog.text  # apprise's own log would echo it


def test_a_direct_message_retry_goes_only_to_the_admins_not_reached() -> None:
    import asyncio
    from typing import Any

    from attestd.alerts.channels import AlertSendError, DirectMessageChannel

    alice, bob = "https://a.example/users/alice", "https://b.example/users/bob"
    down = {bob}
    queued: list[list[str]] = []

    async def lookup(actor: str) -> dict[str, Any]:
        if actor in down:
            raise RuntimeError("connection refused")
        return {"id": actor, "inbox": f"{actor}/inbox"}

    async def enqueue(inboxes: Any, act: dict[str, Any]) -> None:
        assert act["to"] == [alice, bob]
        queued.append(list(inboxes))

    async def go() -> None:
        ch = DirectMessageChannel(actor=f"{BASE}/actor", base=BASE, recipients=[alice, bob],
                                  lookup=lookup, enqueue=enqueue)
        msg = Message(kind="event", events=(event(1),))
        with pytest.raises(AlertSendError, match="b.example/users/bob"):
            await ch.send(msg, "t", "b")
        down.clear()
        await ch.send(msg, "t", "b")  # the retry: bob only
        down.add(alice)  # alice's server is down now, but her inbox is known
        await ch.send(Message(kind="event", events=(event(2),)), "t", "b")

    asyncio.run(go())
    assert queued == [[f"{alice}/inbox"], [f"{bob}/inbox"], [f"{alice}/inbox", f"{bob}/inbox"]]
