"""RFC 9421 HTTP Message Signatures, as signed by an independent implementation (PyPI
``http-message-signatures``), verified by ours; tampering, expiry and wrong keys refused
saying why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from activitypub import SignatureError
from activitypub._rfc9421 import (
    is_message_signature,
    parse_message_signature,
    verify_message_signature,
)

URL = "https://node.example/inbox"
BODY = json.dumps({"type": "Follow", "actor": "https://peer.example/actor"}).encode()
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
RSA_KEY = rsa.generate_private_key(65537, 2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: Any) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key.public_key()


def signed(key: Any, *, method: str = "POST", url: str = URL, body: bytes | None = BODY,
           components: tuple[str, ...] = ("@method", "@target-uri", "@authority", "content-type"),
           created: datetime = NOW, expires: datetime | None = None,
           algorithm: Any = None) -> dict[str, str]:
    """Headers of a request signed by http-message-signatures."""
    alg = algorithm or (algorithms.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey)
                        else algorithms.RSA_V1_5_SHA256)
    headers = {"Host": "node.example", "Content-Type": "application/activity+json"}
    msg = SimpleNamespace(method=method, url=url, headers=headers)
    HTTPMessageSigner(signature_algorithm=alg, key_resolver=Keys(key)).sign(
        msg, key_id="https://peer.example/actor#main-key", label="sig1",
        covered_component_ids=components, body=body, created=created, expires=expires)
    return headers


def verify(headers: dict[str, str], key: Any, *, body: bytes | None = BODY,
           method: str = "POST", path: str = "/inbox", query: str = "",
           now: datetime = NOW) -> None:
    sig = parse_message_signature(headers)
    verify_message_signature(sig, method=method, path=path, query=query, headers=headers,
                             body=body, public_key=key.public_key(), now=now, max_skew_s=3600)


@pytest.mark.parametrize("key", [ED_KEY, RSA_KEY], ids=["ed25519", "rsa-v1_5-sha256"])
def test_an_independent_signer_is_accepted(key: Any) -> None:
    headers = signed(key)
    assert is_message_signature(headers)
    sig = parse_message_signature(headers)
    assert sig.key_id == "https://peer.example/actor#main-key"
    assert "content-digest" in sig.names  # the signer covers the body's digest
    verify(headers, key)


def test_a_signed_get_with_a_query_is_accepted() -> None:
    headers = signed(RSA_KEY, method="GET", url="https://node.example/outbox?page=true",
                     body=None, components=("@method", "@target-uri", "@authority"))
    verify(headers, RSA_KEY, body=None, method="GET", path="/outbox", query="page=true")
    with pytest.raises(SignatureError, match="does not verify"):
        verify(headers, RSA_KEY, body=None, method="GET", path="/outbox", query="page=false")


def test_plain_http_targets_verify_too() -> None:
    headers = signed(ED_KEY, url="http://node.example/inbox")
    verify(headers, ED_KEY)


@pytest.mark.parametrize(("tamper", "reason"), [
    ("body", "Content-Digest field does not match"),
    ("content-type", "does not verify"),
    ("method", "does not verify"),
    ("path", "does not verify"),
    ("host", "does not verify"),
    ("signature", "does not verify"),
])
def test_tampered_requests_are_refused(tamper: str, reason: str) -> None:
    headers = signed(ED_KEY)
    kwargs: dict[str, Any] = {}
    if tamper == "body":
        kwargs["body"] = BODY.replace(b"Follow", b"Delete")
    elif tamper == "content-type":
        headers["Content-Type"] = "text/plain"
    elif tamper == "method":
        kwargs["method"] = "PUT"
    elif tamper == "path":
        kwargs["path"] = "/users/admin/inbox"
    elif tamper == "host":
        headers["Host"] = "other.example"
    else:
        headers["Signature"] = "sig1=:" + "A" * 86 + "==:"
    with pytest.raises(SignatureError, match=reason):
        verify(headers, ED_KEY, **kwargs)


def test_expired_and_stale_signatures_are_refused() -> None:
    expired = signed(ED_KEY, created=NOW - timedelta(minutes=10),
                     expires=NOW - timedelta(minutes=5))
    with pytest.raises(SignatureError, match="expired"):
        verify(expired, ED_KEY)
    stale = signed(ED_KEY, created=NOW - timedelta(hours=2))
    with pytest.raises(SignatureError, match="created time"):
        verify(stale, ED_KEY)
    future = signed(ED_KEY, created=NOW + timedelta(hours=2))
    with pytest.raises(SignatureError, match="created time"):
        verify(future, ED_KEY)


def test_wrong_keys_and_algorithms_are_refused() -> None:
    headers = signed(ED_KEY)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(headers, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(SignatureError, match="alg is ed25519 but the key is an RSA key"):
        verify(headers, RSA_KEY)
    pss = signed(RSA_KEY, algorithm=algorithms.RSA_PSS_SHA512)
    with pytest.raises(SignatureError, match="not accepted"):
        verify(pss, RSA_KEY)


def test_a_body_must_be_covered_by_its_digest_and_the_target_by_the_signature() -> None:
    headers = signed(ED_KEY, body=None)  # signer left the body out
    with pytest.raises(SignatureError, match="must sign its Content-Digest"):
        verify(headers, ED_KEY)
    headers = signed(ED_KEY, components=("@method", "content-type"))
    with pytest.raises(SignatureError, match="does not cover the target"):
        verify(headers, ED_KEY)


@pytest.mark.parametrize("headers", [
    {"Signature-Input": "sig1=(\"@method\"", "Signature": "sig1=:AA==:"},
    {"Signature-Input": "sig1=(\"@method\");created=1", "Signature": "sig1=:AA==:"},
    {"Signature-Input": "sig1=(\"@method\");keyid=\"k\"", "Signature": "sig1=\"text\""},
    {"Signature-Input": "sig1=(\"@status\");keyid=\"k\"", "Signature": "sig1=:AA==:"},
    {"Signature-Input": "sig1=(\"date\";sf);keyid=\"k\"", "Signature": "sig1=:AA==:"},
])
def test_malformed_fields_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        parse_message_signature(headers)
