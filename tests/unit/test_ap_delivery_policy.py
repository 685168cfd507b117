from __future__ import annotations

import random

import pytest

from activitypub import BlockedAddressError, FetchError
from activitypub.delivery import MAX_DELAY_S, outcome_for_status, retry_delay
from activitypub.fetch import address_is_public, check_url


@pytest.mark.parametrize("status,outcome", [
    (200, "delivered"), (202, "delivered"), (204, "delivered"),
    (400, "stop"), (403, "stop"), (404, "stop"), (410, "stop"), (422, "stop"),
    (401, "retry"), (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"),
    (503, "retry"), (301, "retry"),
])
def test_outcomes(status: int, outcome: str) -> None:
    assert outcome_for_status(status) == outcome


def test_backoff_doubles_with_jitter_and_caps_at_a_day() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        base = min(MAX_DELAY_S, 30 * 2 ** (attempt - 1))
        d = retry_delay(attempt, rng)
        assert 0.5 * base <= d <= 1.5 * base
    assert max(retry_delay(40, rng) for _ in range(100)) <= 1.5 * MAX_DELAY_S
    delays = {round(retry_delay(3, rng), 3) for _ in range(20)}
    assert len(delays) > 10  # jittered, not in lock-step


@pytest.mark.parametrize("addr,public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("0.0.0.0", False), ("::ffff:127.0.0.1", False),
    ("224.0.0.1", False), ("100.64.0.1", False),
])
def test_address_classification(addr: str, public: bool) -> None:
    assert address_is_public(addr) is public


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/actor", "http://[::1]/actor", "http://localhost/actor",
    "http://169.254.169.254/latest/meta-data", "https://10.0.0.5/inbox", "http://foo.localhost/x",
])
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "ftp://a.example/x", "http:///x"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(FetchError):
        check_url(url, allow_private=True)


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    from activitypub.fetch import GuardedResolver

    resolver = GuardedResolver(allow_private=False)
    with pytest.raises(BlockedAddressError, match="non-public"):
        await resolver.resolve("localhost", 80)
    await resolver.close()
