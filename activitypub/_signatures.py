"""HTTP signatures, draft-cavage-http-signatures-12, as the fediverse speaks them.

Pure functions: the caller supplies keys, headers, body and the current time.
Section numbers refer to draft-cavage-http-signatures-12.
"""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from activitypub._digest import check_digest, make_digest
from activitypub._errors import LocalProtocolError, SignatureError
from activitypub._keys import PublicKey, signature_valid

# What we sign on every request (Mastodon's and Lemmy's shape).
SIGNED_GET = ("(request-target)", "host", "date")
SIGNED_POST = ("(request-target)", "host", "date", "digest", "content-type")

# §2.1: auth-param = token "=" quoted-string, comma separated.
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)')
# §2.1.4: "hs2019" lets the key decide; rsa-sha256 is what Mastodon sends.
ACCEPTED_ALGORITHMS = frozenset({"rsa-sha256", "hs2019", "ed25519"})


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """A parsed ``Signature`` header (§2.1)."""

    key_id: str
    signature: bytes
    headers: tuple[str, ...]
    algorithm: str | None = None
    created: int | None = None
    expires: int | None = None


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a successful verification established."""

    key_id: str
    signed_headers: tuple[str, ...]
    query_was_signed: bool


def parse_signature_header(value: str) -> SignatureParams:
    """Parse a ``Signature`` header value (or an ``Authorization: Signature …`` value).

    Raises SignatureError if it is malformed.
    """
    if value[:10].lower() == "signature ":
        value = value[10:]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        m = _PARAM.match(value, pos)
        if not m or m.end() == pos:
            raise SignatureError("the Signature header is malformed")
        name = m.group(1).lower()
        raw = m.group(2) if m.group(2) is not None else m.group(3)
        params[name] = re.sub(r"\\(.)", r"\1", raw)
        pos = m.end()
    if "keyid" not in params or "signature" not in params:
        raise SignatureError("the Signature header needs keyId and signature")
    try:
        sig = base64.b64decode(params["signature"], validate=True)
    except ValueError:
        raise SignatureError("the signature is not base64") from None
    # §2.1.6: without a headers parameter only (created) is signed — useless to us, but parse.
    names = tuple(params.get("headers", "(created)").lower().split())
    try:
        created = int(float(params["created"])) if "created" in params else None
        expires = int(float(params["expires"])) if "expires" in params else None
    except ValueError:
        raise SignatureError("created/expires must be Unix timestamps") from None
    return SignatureParams(key_id=params["keyid"], signature=sig, headers=names,
                           algorithm=params.get("algorithm", "").lower() or None,
                           created=created, expires=expires)


def signing_string(method: str, target: str, headers: Mapping[str, str],
                   names: Sequence[str], created: int | None = None,
                   expires: int | None = None) -> str:
    """The string to sign (§2.3). ``headers`` must have lower-case names.

    Raises KeyError naming a header that is listed but absent.
    """
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name == "(created)":
            if created is None:
                raise KeyError("(created)")
            lines.append(f"(created): {created}")
        elif name == "(expires)":
            if expires is None:
                raise KeyError("(expires)")
            lines.append(f"(expires): {expires}")
        else:
            lines.append(f"{name}: {headers[name].strip()}")
    return "\n".join(lines)


def sign_request(*, method: str, url: str, key_id: str,
                 private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
                 body: bytes | None = None, headers: Mapping[str, str] | None = None,
                 now: datetime | None = None) -> dict[str, str]:
    """Headers to send with a signed request: Host, Date, Digest (with a body), Signature.

    ``headers`` are extra request headers (Content-Type for a POST is signed when given).
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise LocalProtocolError(f"cannot sign a request to {url!r}: no host")
    host = parts.netloc.rsplit("@", 1)[-1]
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    out = {k: v for k, v in (headers or {}).items()}
    out["Host"] = host
    out["Date"] = email.utils.format_datetime(now or datetime.now(UTC), usegmt=True)
    lower = {k.lower(): v for k, v in out.items()}
    if body is not None:
        out["Digest"] = lower["digest"] = make_digest(body)
        names = [n for n in SIGNED_POST if n != "content-type" or "content-type" in lower]
    else:
        names = list(SIGNED_GET)
    text = signing_string(method, target, lower, names).encode("utf-8")
    if isinstance(private_key, rsa.RSAPrivateKey):
        sig, algorithm = private_key.sign(text, padding.PKCS1v15(), hashes.SHA256()), "rsa-sha256"
    else:
        sig, algorithm = private_key.sign(text), "hs2019"
    out["Signature"] = (f'keyId="{key_id}",algorithm="{algorithm}",headers="{" ".join(names)}",'
                        f'signature="{base64.b64encode(sig).decode("ascii")}"')
    return out


def verify_request(*, method: str, path: str, query: str, headers: Mapping[str, str],
                   body: bytes | None, params: SignatureParams, public_key: PublicKey,
                   now: datetime | None = None, max_skew_s: int = 3600) -> VerifiedSignature:
    """Check a signed request. Raises SignatureError saying what was wrong.

    Requires (request-target), ``host`` and ``date`` signed (a signature without Host could
    be replayed to another node, one without Date whenever); date and (created), where
    signed, within ``max_skew_s``; ``digest`` signed and matching on requests with a body.
    The request target is
    tried with and then without the query string (some servers sign paged GETs without).
    """
    now_ts = (now or datetime.now(UTC)).timestamp()
    lower = {k.lower(): v for k, v in headers.items()}
    names = params.headers
    if params.algorithm and params.algorithm not in ACCEPTED_ALGORITHMS:
        raise SignatureError(f"signature algorithm {params.algorithm!r} is not accepted")
    if "(request-target)" not in names:
        raise SignatureError("the signature does not cover (request-target)")
    if "host" not in names:
        raise SignatureError("the signature does not cover the host header (add host to its "
                             "headers parameter)")
    if "date" not in names:
        raise SignatureError("the signature does not cover the date header (add date to its "
                             "headers parameter)")
    if body is not None and method.upper() != "GET":
        if "digest" not in names:
            raise SignatureError("a request with a body must sign its Digest header")
        check_digest(lower.get("digest"), body)
    _check_time(params, names, lower, now_ts, max_skew_s)
    targets = [(path + "?" + query, True), (path, False)] if query else [(path, False)]
    for target, with_query in targets:
        try:
            text = signing_string(method, target, lower, names, params.created, params.expires)
        except KeyError as exc:
            raise SignatureError(f"the signed header {exc.args[0]} is missing") from None
        if signature_valid(public_key, params.signature, text.encode("utf-8")):
            return VerifiedSignature(params.key_id, names, with_query)
    raise SignatureError("the signature does not verify with the signer's key")


def _check_time(params: SignatureParams, names: Sequence[str], lower: Mapping[str, str],
                now_ts: float, skew: int) -> None:
    if "(expires)" in names or params.expires is not None:
        if params.expires is None or params.expires < now_ts - 60:
            raise SignatureError("the signature has expired")
    checked = False
    if "date" in names:
        try:
            when = email.utils.parsedate_to_datetime(lower["date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            raise SignatureError("the signed Date header is missing or malformed") from None
        if abs(now_ts - when) > skew:
            raise SignatureError(f"the Date header is more than {skew} s from our clock")
        checked = True
    if "(created)" in names:
        if params.created is None or params.created > now_ts + skew or now_ts - params.created > skew:
            raise SignatureError("the signature's (created) time is missing or out of range")
        checked = True
    if not checked:
        raise SignatureError("the signature covers neither date nor (created)")

