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


def test_login_throttle_blocks_after_repeated_failures_per_address_and_name() -> None:
    throttle = LoginThrottle(failures=3, window_s=60)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1", "mod")
        throttle.failed("10.0.0.1", "mod")
    assert throttle.blocked("10.0.0.1", "mod")
    assert not throttle.blocked("10.0.0.2", "mod") and not throttle.blocked("10.0.0.1", "other")
    throttle.succeeded("10.0.0.1", "mod")
    assert not throttle.blocked("10.0.0.1", "mod")
    quick = LoginThrottle(failures=1, window_s=0)
    quick.failed("a", "b")
    assert not quick.blocked("a", "b")  # the window has passed


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
