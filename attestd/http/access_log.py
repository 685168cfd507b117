"""aiohttp's access log, with the secrets of a path removed."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from attestd.http.proxies import client_of
from attestd.logs import redact_path


class RedactingAccessLogger(AbstractAccessLogger):
    """Method, path with secrets removed, status and time; no query strings, no headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # The real client, as far as server.trusted_proxies vouch for it, not the proxy in front.
        self.logger.info("%s %s %s %d %.1fms", client_of(request).address, request.method,
                         redact_path(request.path), response.status, time * 1000)
