"""attestd's exception hierarchy. Each error says what was wrong and what to do."""

from __future__ import annotations


class AttestdError(Exception):
    """Base class for errors raised by the node."""


class ConfigError(AttestdError):
    """The configuration file or environment is invalid; the message names the key."""


class DatabaseNotReady(AttestdError):
    """The database schema is missing or behind the code's migrations."""


class KeyFileError(AttestdError):
    """The node's key files are missing, unreadable or too widely readable."""


class NotDurable(AttestdError):
    """A record an answer depends on (a check's audit entry) could not be written; the
    answer must not go out. Answered 503: pict-rs refuses the upload, nothing passes unaudited."""


class RequestError(AttestdError):
    """A client sent something we will not process. Carries the HTTP status to answer."""

    def __init__(self, status: int, message: str, **detail: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
