"""Errors split by whose fault they are, each carrying the HTTP status to answer with."""

from __future__ import annotations


class ActivityPubError(Exception):
    """Base class for this package's errors."""

    status_hint: int = 500

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint


class LocalProtocolError(ActivityPubError):
    """We were asked to build something illegal (a bug or a configuration mistake)."""

    status_hint = 500


class RemoteProtocolError(ActivityPubError):
    """The peer sent something illegal. The default answer is 400."""

    status_hint = 400


class SignatureError(RemoteProtocolError):
    """A missing, malformed, stale or wrong signature (answer 401)."""

    status_hint = 401


class FetchError(ActivityPubError):
    """A remote document could not be fetched or was not acceptable."""

    status_hint = 502


class BlockedAddressError(FetchError):
    """The URL resolves to a private, loopback or link-local address (SSRF guard)."""

    status_hint = 403
