"""Whose address a request carries: forwarding headers believed only from trusted proxies."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from attestd.http.proxies import real_client, served_on

NGINX = ("127.0.0.1/32", "10.0.0.0/24")


def test_untrusted_peer_keeps_its_address_and_is_marked_as_relayed() -> None:
    c = real_client("198.51.100.7", CIMultiDict({"X-Forwarded-For": "127.0.0.1"}), NGINX)
    assert c.address == "198.51.100.7" and c.untrusted_hop
    plain = real_client("198.51.100.7", CIMultiDict(), NGINX)
    assert plain.address == "198.51.100.7" and not plain.untrusted_hop and not plain.forwarded


def test_no_proxy_is_trusted_by_default() -> None:
    c = real_client("127.0.0.1", CIMultiDict({"X-Forwarded-For": "203.0.113.5"}), ())
    assert c.address == "127.0.0.1" and c.untrusted_hop


def test_right_most_untrusted_hop_is_the_client() -> None:
    # The client forged 10.0.0.9 and 1.2.3.4; nginx appended the real 203.0.113.5, and a
    # second trusted proxy (10.0.0.2) appended nginx's hop.
    headers = CIMultiDict([("X-Forwarded-For", "1.2.3.4, 10.0.0.9"),
                           ("X-Forwarded-For", "203.0.113.5, 10.0.0.2")])
    c = real_client("127.0.0.1", headers, NGINX)
    assert c.address == "203.0.113.5" and not c.untrusted_hop


def test_forwarded_header_with_ports_and_ipv6() -> None:
    headers = CIMultiDict({"Forwarded": 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'})
    assert real_client("10.0.0.1", headers, NGINX, "Forwarded").address == "2001:db8::1"
    # Only the configured header is read: a Forwarded header is not the X-Forwarded-For.
    c = real_client("10.0.0.1", headers, NGINX, "X-Forwarded-For")
    assert c.address == "10.0.0.1" and c.untrusted_hop


def test_garbage_hop_believes_nobody() -> None:
    c = real_client("127.0.0.1", CIMultiDict({"X-Forwarded-For": "1.2.3.4, unknown"}), NGINX)
    assert c.address is None and c.untrusted_hop


@pytest.mark.parametrize(("surface", "path", "forwarded", "served"), [
    ("public", "/inbox", False, True), ("public", "/api/v1/scan/IPADDR", False, False),
    ("public", "/metrics", False, False), ("public", "/admin/", False, False),
    ("public", "/attestations/abc", False, True), ("private", "/actor", False, False),
    ("private", "/metrics", True, True), ("private", "/healthz", False, True),
    ("combined", "/metrics", False, True), ("combined", "/metrics", True, False),
    ("combined", "/.well-known/webfinger", True, True), ("public", "/new-route", False, False),
])
def test_routes_by_surface(surface: str, path: str, forwarded: bool, served: bool) -> None:
    assert served_on(surface, path, forwarded) is served  # type: ignore[arg-type]
