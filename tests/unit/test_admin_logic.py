"""Pure pieces of the admin side: passwords, login throttling, chart bars, CSV cells,
which verdicts need a human."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from attestd.admin_queries import spreadsheet_safe
from attestd.admin_users import hash_password, verify_password
from attestd.http.admin_auth import LoginThrottle
from attestd.http.admin_pages import _safe_next, hour_bars
from attestd.review import kind_for_verdict


def test_password_hashes_are_salted_and_verify_only_the_password() -> None:
    a, b = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("correct horse battery", a) and verify_password("correct horse battery", b)
    assert not verify_password("correct horse batterY", a)
    assert not verify_password("", a)
    for broken in ("", "scrypt$1$2", "md5$x$y$z$a$b", a.replace("scrypt", "bcrypt"), "scrypt$x$8$1$$"):
        assert not verify_password("correct horse battery", broken)


def test_login_throttle_delays_grow_by_address_and_by_name_and_stay_short() -> None:
    now = [0.0]
    throttle = LoginThrottle(free=3, base_s=1.0, cap_s=30.0, forget_s=600,
                             clock=lambda: now[0])
    for _ in range(3):
        assert throttle.delay_s("10.0.0.1", "mod") == 0
        throttle.failed("10.0.0.1", "mod")
    assert throttle.delay_s("10.0.0.1", "mod") == 1.0
    # The name is throttled from every address; the address for every name.
    assert throttle.delay_s("10.0.0.2", "mod") == 1.0
    assert throttle.delay_s("10.0.0.1", "other") == 1.0
    assert throttle.delay_s("10.0.0.2", "other") == 0
    for _ in range(20):
        throttle.failed("10.0.0.1", "mod")
    assert throttle.delay_s("10.0.0.1", "mod") == 30.0  # capped
    now[0] += 10
    assert throttle.delay_s("10.0.0.1", "mod") == 20.0  # counted from the last failure
    throttle.succeeded("10.0.0.1", "mod")
    assert throttle.delay_s("10.0.0.1", "mod") == 0
    throttle.failed("a", "b"), throttle.failed("a", "b"), throttle.failed("a", "b")
    now[0] += 601
    assert throttle.delay_s("a", "b") == 0  # forgotten after a quiet while


async def test_login_throttle_lets_one_attempt_per_address_wait_at_a_time() -> None:
    import asyncio

    from attestd.http.admin_auth import LoginBusy

    release = asyncio.Event()

    async def sleep(_: float) -> None:
        await release.wait()

    throttle = LoginThrottle(free=0, sleep=sleep)
    throttle.failed("10.0.0.1", "mod")

    async def attempt() -> None:
        async with throttle.attempt("10.0.0.1", "mod"):
            pass

    first = asyncio.create_task(attempt())
    await asyncio.sleep(0)
    with pytest.raises(LoginBusy):
        await attempt()
    release.set()
    await first


def test_hour_bars_stack_accepted_rejected_and_other_within_the_chart() -> None:
    start = datetime(2026, 11, 22, 0, tzinfo=UTC)
    per_hour = [(start + timedelta(hours=i), c) for i, c in enumerate(
        [{}, {"accept": 10}, {"accept": 5, "reject": 5}, {"reject": 2, "none": 2}])]
    bars = hour_bars(per_hour, height=80)
    assert [b["x"] for b in bars] == [0, 12, 24, 36]
    assert bars[0]["h_acc"] == bars[0]["h_rej"] == 0
    assert bars[1]["h_acc"] == 80 and bars[1]["y_acc"] == 0
    assert bars[2]["h_acc"] == bars[2]["h_rej"] == 40 and bars[2]["y_rej"] == 0
    assert bars[3]["other"] == 2 and bars[3]["y_other"] == 80 - 16 - 16
    assert hour_bars([]) == []


@pytest.mark.parametrize("value,safe", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-1", "'-1"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("plain", "plain"), (7, 7), (None, None)])
def test_csv_cells_never_start_a_formula(value: object, safe: object) -> None:
    assert spreadsheet_safe(value) == safe


def test_login_redirects_only_to_admin_pages() -> None:
    assert _safe_next("/admin/review?kind=flagged") == "/admin/review?kind=flagged"
    for bad in ("https://evil.example/", "//evil.example/admin/", "/admin//evil", "/metrics",
                "/admin/\\evil", None, ""):
        assert _safe_next(bad) == "/admin/"


def test_which_own_verdicts_go_to_review() -> None:
    assert kind_for_verdict("csam_suspect", "reject", "unknown") == "flagged"
    assert kind_for_verdict("csam_suspect", "reject", "accept_and_rescan") == "rescan"
    assert kind_for_verdict("nsfw", "reject", "accept_and_rescan") == "rescan"
    assert kind_for_verdict("nsfw", "accept", "accept_and_rescan") is None
    assert kind_for_verdict("ok", "accept", "unknown") is None
    assert kind_for_verdict("nsfw", "reject", None) is None
