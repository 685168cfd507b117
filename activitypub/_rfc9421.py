"""Incoming HTTP Message Signatures (RFC 9421) with ``Content-Digest`` (RFC 9530).

Newer servers sign this way (Fedify tries it first; FASP providers use only it). We verify
it beside draft-cavage (``_signatures.py``); outgoing requests stay draft-cavage, which
every fediverse server verifies. Algorithms: ``ed25519`` and ``rsa-v1_5-sha256``.
Structured fields are parsed with ``http_sfv``. Pure functions; section numbers are RFC
9421's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item

from activitypub._errors import SignatureError
from activitypub._keys import PublicKey, signature_valid

ALGORITHMS = ("ed25519", "rsa-v1_5-sha256")
_DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@request-target",
                      "@path", "@query"})
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class MessageSignature:
    """One signature from ``Signature-Input`` and ``Signature`` (§4)."""

    label: str
    key_id: str
    components: tuple[str, ...]  # serialized component identifiers, as signed
    names: frozenset[str]  # the component names covered
    signature_params: str  # the serialized @signature-params value (§2.3)
    signature: bytes
    alg: str | None
    created: int | None
    expires: int | None


def is_message_signature(headers: Mapping[str, str]) -> bool:
    """Whether the request carries an RFC 9421 signature (a ``Signature-Input`` field)."""
    return any(k.lower() == "signature-input" for k in headers)


def parse_message_signature(headers: Mapping[str, str]) -> MessageSignature:
    """The first signature that names its key. Raises SignatureError if malformed."""
    lower = {k.lower(): v for k, v in headers.items()}
    inputs = _dictionary(lower.get("signature-input", ""), "Signature-Input")
    values = _dictionary(lower.get("signature", ""), "Signature")
    for label, sig_input in inputs.items():
        if not isinstance(sig_input, InnerList) or "keyid" not in sig_input.params:
            continue
        value = values.get(label)
        if not isinstance(value, Item) or not isinstance(value.value, bytes):
            raise SignatureError(f"the Signature field has no byte sequence for {label!r}")
        components, names = [], set()
        for item in sig_input:
            if not isinstance(item.value, str) or item.params:
                # sf, key, bs, req, name: nobody signs activities with them.
                raise SignatureError(f"the signed component {item} is not supported")
            name = item.value
            if name.startswith("@") and name not in _DERIVED:
                raise SignatureError(f"the derived component {name} is not supported")
            components.append(str(item))
            names.add(name)
        params = sig_input.params
        key_id, alg = params.get("keyid"), params.get("alg")
        created, expires = params.get("created"), params.get("expires")
        if not isinstance(key_id, str) or (alg is not None and not isinstance(alg, str)):
            raise SignatureError("keyid and alg must be strings")
        for name, when in (("created", created), ("expires", expires)):
            if when is not None and (not isinstance(when, int) or isinstance(when, bool)):
                raise SignatureError(f"{name} must be an integer Unix time")
        return MessageSignature(
            label=label, key_id=key_id, components=tuple(components), names=frozenset(names),
            signature_params=str(sig_input), signature=value.value, alg=alg,
            created=created, expires=expires)
    raise SignatureError("the Signature-Input field has no signature with a keyid")


def signature_base(sig: MessageSignature, *, method: str, target_uri: str, authority: str,
                   path: str, query: str, headers: Mapping[str, str]) -> bytes:
    """The signature base (§2.5). ``headers`` must have lower-case names."""
    scheme = target_uri.split(":", 1)[0]
    derived = {"@method": method.upper(), "@target-uri": target_uri,
               "@authority": authority.lower(), "@scheme": scheme,
               "@request-target": path + (f"?{query}" if query else ""), "@path": path,
               "@query": f"?{query}"}
    lines = []
    for serialized in sig.components:
        name = serialized[1:-1]
        if name in derived:
            value = derived[name]
        elif name in headers:
            value = headers[name].strip()
        else:
            raise SignatureError(f"the signed header {name} is missing")
        lines.append(f"{serialized}: {value}")
    lines.append(f'"@signature-params": {sig.signature_params}')
    return "\n".join(lines).encode("utf-8")


def verify_message_signature(sig: MessageSignature, *, method: str, path: str, query: str,
                             headers: Mapping[str, str], body: bytes | None,
                             public_key: PublicKey, now: datetime | None = None,
                             max_skew_s: int = 3600) -> None:
    """Check an RFC 9421 request signature. Raises SignatureError saying what was wrong.

    Requires the method and target (``@target-uri``, or ``@authority`` with ``@path`` or
    ``@request-target``) to be signed; ``created`` within ``max_skew_s`` and ``expires``
    not past; on a request with a body, ``content-digest`` signed and matching.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    _check_algorithm(sig.alg, public_key)
    names = sig.names
    if "@method" not in names:
        raise SignatureError("the signature does not cover @method")
    if "@target-uri" not in names and not (
            ("@authority" in names or "host" in names)
            and ("@path" in names or "@request-target" in names)):
        raise SignatureError("the signature does not cover the target (@target-uri, or "
                             "@authority and @path)")
    if body is not None and method.upper() not in ("GET", "HEAD"):
        if "content-digest" not in names:
            raise SignatureError("a request with a body must sign its Content-Digest")
        check_content_digest(lower.get("content-digest"), body)
    now_ts = (now or datetime.now(UTC)).timestamp()
    if sig.expires is not None and sig.expires < now_ts - 60:
        raise SignatureError("the signature has expired")
    if sig.created is None or sig.created > now_ts + max_skew_s \
            or now_ts - sig.created > max_skew_s:
        raise SignatureError(f"the signature's created time is missing or more than "
                             f"{max_skew_s} s from our clock")
    authority = lower.get("host", "")
    if not authority:
        raise SignatureError("the request has no Host header")
    target = path + (f"?{query}" if query else "")
    # Behind a TLS-terminating proxy we cannot tell the scheme the sender used; the
    # signature still binds the host, path and body, so either is as good.
    for scheme in ("https", "http"):
        base = signature_base(sig, method=method, target_uri=f"{scheme}://{authority}{target}",
                              authority=authority, path=path, query=query, headers=lower)
        if signature_valid(public_key, sig.signature, base):
            return
        if "@target-uri" not in names and "@scheme" not in names:
            break  # the scheme is not signed: the base does not change
    raise SignatureError("the signature does not verify with the signer's key")


def check_content_digest(header: str | None, body: bytes) -> None:
    """Raise SignatureError unless ``Content-Digest`` has a SHA-256 or SHA-512 digest and
    every such digest matches ``body``."""
    if not header:
        raise SignatureError("the request has a body but no Content-Digest field")
    digests = _dictionary(header, "Content-Digest")
    known = [(name, v) for name, v in digests.items() if name in _DIGESTS]
    if not known:
        raise SignatureError("the Content-Digest field has no sha-256 or sha-512 digest")
    for name, value in known:
        if not isinstance(value, Item) or not isinstance(value.value, bytes):
            raise SignatureError(f"the Content-Digest {name} value is not a byte sequence")
        if not hmac.compare_digest(value.value, _DIGESTS[name](body).digest()):
            raise SignatureError("the Content-Digest field does not match the body")


def content_digest(body: bytes) -> str:
    """A ``Content-Digest`` value for ``body`` (for tests and clients)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def _dictionary(value: str, field: str) -> Dictionary:
    parsed = Dictionary()
    try:
        parsed.parse(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SignatureError(f"the {field} field is not a valid structured field") from None
    return parsed


def _check_algorithm(alg: str | None, key: PublicKey) -> None:
    if alg is not None and alg not in ALGORITHMS:
        raise SignatureError(f"signature algorithm {alg!r} is not accepted; use one of "
                             f"{', '.join(ALGORITHMS)}")
    if alg == "ed25519" and not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"alg is ed25519 but the key is {_kind(key)}")
    if alg == "rsa-v1_5-sha256" and not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(f"alg is rsa-v1_5-sha256 but the key is {_kind(key)}")


def _kind(key: PublicKey) -> str:
    return "an RSA key" if isinstance(key, rsa.RSAPublicKey) else "an Ed25519 key"


