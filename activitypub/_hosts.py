"""One spelling of a host for every check (pure, no I/O).

A URL library normalises what it is given (IDNA / UTS 46: fullwidth and circled digits,
ideographic full stops), so a guard that looks at the raw text sees a name where the
connection will see an IP literal. Every check (the address guard, block lists) uses the
form this module returns: what the connection will actually use.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import idna

from activitypub._errors import FetchError


def normalize_host(host: str) -> str:
    """``host`` as it will be connected to: an IP literal in canonical form, or a lower-case
    ASCII (A-label) name without a trailing dot. Raises FetchError (400) if it is no host."""
    raw = host.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    try:
        mapped = idna.uts46_remap(raw, std3_rules=False, transitional=False).rstrip(".")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise FetchError(f"{host!r} is not a valid host name", status_hint=400) from None
    try:
        return str(ipaddress.ip_address(mapped))
    except ValueError:
        pass
    if not mapped:
        raise FetchError(f"{host!r} is not a valid host name", status_hint=400)
    if mapped.isascii():
        # Plain ASCII names pass as they are (some real hosts carry an underscore, which
        # IDNA 2008 refuses); the resolver still checks every address they resolve to.
        return mapped.lower()
    try:
        return idna.encode(mapped, uts46=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise FetchError(f"{host!r} is not a valid host name", status_hint=400) from None


def canonical_host(url: str) -> str:
    """The normalised host of ``url`` ("" when it has none). Raises FetchError (400) when
    the URL or its host is malformed."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        raise FetchError(f"{url[:200]!r} is not a valid URL", status_hint=400) from None
    return normalize_host(host) if host else ""


def same_origin(a: str, b: str) -> bool:
    """True when both URLs have one scheme, normalised host and port (RFC 6454)."""
    try:
        return _origin(a) == _origin(b)
    except (FetchError, ValueError):
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, canonical_host(url), port
