"""The ``Digest`` header (RFC 3230, as ActivityPub servers send it: ``SHA-256=<base64>``)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from activitypub._errors import SignatureError


def make_digest(body: bytes) -> str:
    """The Digest header value for ``body``."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def check_digest(header: str | None, body: bytes) -> None:
    """Raise SignatureError unless ``header`` carries a SHA-256 digest equal to ``body``'s.

    Several comma-separated digests may be present (RFC 3230 §4.3.2); SHA-256 must be one.
    """
    if not header:
        raise SignatureError("the request has a body but no Digest header")
    expected = hashlib.sha256(body).digest()
    for item in header.split(","):
        algo, _, value = item.strip().partition("=")
        if algo.strip().lower() != "sha-256":
            continue
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            raise SignatureError("the Digest header's SHA-256 value is not base64") from None
        if hmac.compare_digest(given, expected):
            return
        raise SignatureError("the Digest header does not match the body")
    raise SignatureError("the Digest header has no SHA-256 value")
