"""HTTP signatures against draft-cavage-12 Appendix C, Mastodon's and Lemmy's shapes,
an independent implementation, and tampered requests."""

from __future__ import annotations

import base64
import email.utils
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from activitypub import (
    SignatureError,
    make_digest,
    parse_signature_header,
    sign_request,
    signing_string,
    verify_request,
)

# draft-cavage-http-signatures Appendix C: the test key and request (public test data).
C_PRIVATE = b"""-----BEGIN RSA PRIVATE KEY-----
MIICXgIBAAKBgQDCFENGw33yGihy92pDjZQhl0C36rPJj+CvfSC8+q28hxA161QF
NUd13wuCTUcq0Qd2qsBe/2hFyc2DCJJg0h1L78+6Z4UMR7EOcpfdUE9Hf3m/hs+F
UR45uBJeDK1HSFHD8bHKD6kv8FPGfJTotc+2xjJwoYi+1hqp1fIekaxsyQIDAQAB
AoGBAJR8ZkCUvx5kzv+utdl7T5MnordT1TvoXXJGXK7ZZ+UuvMNUCdN2QPc4sBiA
QWvLw1cSKt5DsKZ8UETpYPy8pPYnnDEz2dDYiaew9+xEpubyeW2oH4Zx71wqBtOK
kqwrXa/pzdpiucRRjk6vE6YY7EBBs/g7uanVpGibOVAEsqH1AkEA7DkjVH28WDUg
f1nqvfn2Kj6CT7nIcE3jGJsZZ7zlZmBmHFDONMLUrXR/Zm3pR5m0tCmBqa5RK95u
412jt1dPIwJBANJT3v8pnkth48bQo/fKel6uEYyboRtA5/uHuHkZ6FQF7OUkGogc
mSJluOdc5t6hI1VsLn0QZEjQZMEOWr+wKSMCQQCC4kXJEsHAve77oP6HtG/IiEn7
kpyUXRNvFsDE0czpJJBvL/aRFUJxuRK91jhjC68sA7NsKMGg5OXb5I5Jj36xAkEA
gIT7aFOYBFwGgQAQkWNKLvySgKbAZRTeLBacpHMuQdl1DfdntvAyqpAZ0lY0RKmW
G6aFKaqQfOXKCyWoUiVknQJAXrlgySFci/2ueKlIE1QqIiLSZ8V8OlpFLRnb1pzI
7U1yQXnTAEFYM560yJlzUpOb1V4cScGd365tiSMvxLOvTA==
-----END RSA PRIVATE KEY-----"""
C_HEADERS = {
    "Host": "example.com",
    "Date": "Sun, 05 Jan 2014 21:31:40 GMT",
    "Content-Type": "application/json",
    "Digest": "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
    "Content-Length": "18",
}
C_BODY = b'{"hello": "world"}'
C_NOW = datetime(2014, 1, 5, 21, 31, 40, tzinfo=UTC)
C2_SIG = ("qdx+H7PHHDZgy4y/Ahn9Tny9V3GP6YgBPyUXMmoxWtLbHpUnXS2mg2+SbrQDMCJypxBLSPQR2aAjn"
          "7ndmw2iicw3HMbe8VfEdKFYRqzic+efkb3nndiv/x1xSHDJWeSWkx3ButlYSuBskLu6kd9Fswtemr3lgdDEmn04swr2Os0=")
C3_SIG = ("vSdrb+dS3EceC9bcwHSo4MlyKS59iFIrhgYkz8+oVLEEzmYZZvRs8rgOp+63LEM3v+MFHB32NfpB2bEKBIvB1q52"
          "LaEUHFv120V01IL+TAD48XaERZFukWgHoBTLMhYS2Gb51gWxpeIq8knRmPnYePbF5MOkR0Zkly4zKH7s1dE=")


@pytest.fixture(scope="module")
def c_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(C_PRIVATE, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _lower(h: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in h.items()}


@pytest.mark.parametrize("names,expected", [
    ("(request-target) host date", C2_SIG),
    ("(request-target) host date content-type digest content-length", C3_SIG),
])
def test_appendix_c_signatures(c_key: rsa.RSAPrivateKey, names: str, expected: str) -> None:
    text = signing_string("POST", "/foo?param=value&pet=dog", _lower(C_HEADERS), names.split())
    ours = base64.b64encode(c_key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256()))
    assert ours.decode() == expected
    params = parse_signature_header(
        f'keyId="Test",algorithm="rsa-sha256",headers="{names}",signature="{expected}"')
    if "digest" in names:
        verify_request(method="POST", path="/foo", query="param=value&pet=dog", headers=C_HEADERS,
                       body=C_BODY, params=params, public_key=c_key.public_key(), now=C_NOW)
    else:
        # C.2 does not sign the digest, which we require of any request with a body.
        with pytest.raises(SignatureError, match="Digest"):
            verify_request(method="POST", path="/foo", query="param=value&pet=dog",
                           headers=C_HEADERS, body=C_BODY, params=params,
                           public_key=c_key.public_key(), now=C_NOW)


def test_appendix_c_digest() -> None:
    assert make_digest(C_BODY) == C_HEADERS["Digest"]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
URL = "https://b.example/inbox"
BODY = b'{"type":"Follow","id":"https://a.example/follows/1","actor":"https://a.example/actor"}'


def _signed_post(key: rsa.RSAPrivateKey, body: bytes = BODY, now: datetime = NOW) -> dict[str, str]:
    return sign_request(method="POST", url=URL, key_id="https://a.example/actor#main-key",
                        private_key=key, body=body,
                        headers={"Content-Type": "application/activity+json"}, now=now)


def _verify(headers: dict[str, str], key: rsa.RSAPrivateKey, *, body: bytes | None = BODY,
            method: str = "POST", path: str = "/inbox", query: str = "",
            now: datetime = NOW) -> object:
    return verify_request(method=method, path=path, query=query, headers=headers, body=body,
                          params=parse_signature_header(headers["Signature"]),
                          public_key=key.public_key(), now=now)


def test_our_post_is_mastodon_shaped_and_verifies(key: rsa.RSAPrivateKey) -> None:
    headers = _signed_post(key)
    sig = headers["Signature"]
    assert 'algorithm="rsa-sha256"' in sig
    assert 'headers="(request-target) host date digest content-type"' in sig
    assert headers["Host"] == "b.example" and headers["Digest"].startswith("SHA-256=")
    _verify(headers, key)


def test_signed_get_with_and_without_query(key: rsa.RSAPrivateKey) -> None:
    h = sign_request(method="GET", url="https://b.example/outbox?page=abc", key_id="k",
                     private_key=key, now=NOW)
    assert _verify(h, key, body=None, method="GET", path="/outbox", query="page=abc")
    # A signer that left the query out of (request-target), as Fedify does on paged GETs.
    h2 = sign_request(method="GET", url="https://b.example/outbox", key_id="k",
                      private_key=key, now=NOW)
    res = _verify(h2, key, body=None, method="GET", path="/outbox", query="page=abc")
    assert res.query_was_signed is False  # type: ignore[attr-defined]


def test_lemmy_style_hs2019_with_created_and_expires(key: rsa.RSAPrivateKey) -> None:
    created = int(NOW.timestamp()) - 5
    expires = created + 300
    headers = {"Host": "b.example", "Content-Type": "application/activity+json",
               "Digest": make_digest(BODY), "Date": email.utils.format_datetime(NOW, usegmt=True)}
    names = ["(request-target)", "content-type", "date", "digest", "host", "(created)", "(expires)"]
    text = signing_string("POST", "/inbox", _lower(headers), names, created, expires)
    sig = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    headers["Signature"] = (f'keyId="https://lemmy.example/u/bot#main-key",algorithm="hs2019",'
                            f'created={created},expires={expires},headers="{" ".join(names)}",'
                            f'signature="{sig}"')
    _verify(headers, key)
    with pytest.raises(SignatureError, match="expired"):
        _verify(headers, key, now=NOW + timedelta(hours=1))


def test_ed25519_signed_requests(key: rsa.RSAPrivateKey) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    h = sign_request(method="POST", url=URL, key_id="k", private_key=ed, body=BODY, now=NOW)
    verify_request(method="POST", path="/inbox", query="", headers=h, body=BODY,
                   params=parse_signature_header(h["Signature"]), public_key=ed.public_key(),
                   now=NOW)


@pytest.mark.parametrize("tamper,needle", [
    (lambda h, b: (h, b + b" "), "Digest header does not match"),
    (lambda h, b: ({**h, "Digest": make_digest(b"other")}, b), "does not match"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "Digest"}, b), "no Digest"),
    (lambda h, b: ({**h, "Host": "evil.example"}, b), "does not verify"),
    (lambda h, b: ({**h, "Date": "Sat, 21 Nov 2026 09:00:00 GMT"}, b), "from our clock"),
    (lambda h, b: ({**h, "Signature": h["Signature"].replace("rsa-sha256", "hmac-sha256")}, b),
     "not accepted"),
    (lambda h, b: ({**h, "Signature": h["Signature"].replace(
        "(request-target) host date digest content-type", "host date digest content-type")}, b),
     "(request-target)"),
    (lambda h, b: ({**h, "Signature": h["Signature"].replace(
        "(request-target) host date digest content-type", "(request-target) host date")}, b),
     "Digest"),
])
def test_tampered_requests_are_refused(key: rsa.RSAPrivateKey, tamper: object,
                                       needle: str) -> None:
    headers, body = tamper(_signed_post(key), BODY)  # type: ignore[operator]
    with pytest.raises(SignatureError) as err:
        _verify(headers, key, body=body)
    assert needle in str(err.value)


def test_stale_signature_and_wrong_key(key: rsa.RSAPrivateKey) -> None:
    old = _signed_post(key, now=NOW - timedelta(hours=2))
    with pytest.raises(SignatureError, match="clock"):
        _verify(old, key)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_signed_post(other), key)


def test_unsigned_host_on_get_is_refused(key: rsa.RSAPrivateKey) -> None:
    date = email.utils.format_datetime(NOW, usegmt=True)
    text = signing_string("GET", "/outbox", {"date": date}, ["(request-target)", "date"])
    sig = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    h = {"Date": date, "Signature": f'keyId="k",headers="(request-target) date",signature="{sig}"'}
    with pytest.raises(SignatureError, match="host"):
        _verify(h, key, body=None, method="GET", path="/outbox")


@pytest.mark.parametrize("header", [
    "", 'keyId="k"', 'signature="AAAA"', 'keyId="k",signature="***"', "garbage without equals",
    'keyId="k",signature="AAAA",created=soon,headers="(created)"',
])
def test_malformed_signature_headers(header: str) -> None:
    with pytest.raises(SignatureError):
        parse_signature_header(header)


def test_independent_implementation_verifies_ours_and_we_verify_its(
        key: rsa.RSAPrivateKey) -> None:
    """apsig (an independent Python implementation) against ours, both ways."""
    from apsig.draft.sign import Signer
    from apsig.draft.verify import Verifier

    now = datetime.now(UTC)
    ours = _signed_post(key, now=now)
    assert Verifier(public_pem=key.public_key(), method="POST", url=URL, headers=ours,
                    body=BODY).verify(raise_on_fail=True) == "https://a.example/actor#main-key"

    theirs = Signer(headers={"Content-Type": "application/activity+json"}, private_key=key,
                    method="POST", url=URL, key_id="https://x.example/actor#main-key",
                    body=BODY).sign()
    result = verify_request(method="POST", path="/inbox", query="", headers=theirs, body=BODY,
                            params=parse_signature_header(theirs["Signature"]),
                            public_key=key.public_key())
    assert result.key_id == "https://x.example/actor#main-key"
    # And a body they did not sign is refused.
    with pytest.raises(SignatureError):
        verify_request(method="POST", path="/inbox", query="", headers=theirs, body=BODY + b"x",
                       params=parse_signature_header(theirs["Signature"]),
                       public_key=key.public_key())
