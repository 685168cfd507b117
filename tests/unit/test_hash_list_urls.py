"""When a URL hash list is due for a refresh, and how its URL is shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attestd.hash_list_urls import UrlSource, due, shown

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def _src(name: str, hours: float | None, tried_ago: float | None,
         error: str | None = None) -> UrlSource:
    tried = NOW - timedelta(hours=tried_ago) if tried_ago is not None else None
    return UrlSource(f"list:{name}", "https://x.example/l.csv", None, hours, tried,
                     None, error)


def test_due_after_its_interval_or_within_an_hour_of_a_failure() -> None:
    sources = [_src("never", 24, None), _src("fresh", 24, 2), _src("stale", 24, 25),
               _src("failed", 24, 1.5, "answered 503"), _src("by-hand", None, None),
               _src("short", 0.5, 0.6)]
    assert [s.source for s in due(sources, NOW)] == [
        "list:never", "list:stale", "list:failed", "list:short"]


def test_urls_are_shown_without_credentials_or_query() -> None:
    assert shown("https://u:pw@lists.example.org:8443/a.csv?token=s3cret#x") == \
        "https://lists.example.org:8443/a.csv"
    assert shown("https://[2001:db8::1]/l?k=v") == "https://[2001:db8::1]/l"
