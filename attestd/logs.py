"""Logging setup, and an access log that never writes secrets."""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# Caller names in /api/v1/scan/{caller} are shared secrets.
_SCAN_CALLER = re.compile(r"^(/api/v1/scan/)([^/?]+)")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Third-party chatter at info level adds nothing an admin needs.
    for noisy in ("aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def redact_path(path: str) -> str:
    m = _SCAN_CALLER.match(path)
    if m and m.group(2) != "IPADDR":
        return m.group(1) + "<caller>" + path[m.end():]
    return path


class RedactingAccessLogger(AbstractAccessLogger):
    """Method, path with secrets removed, status and time; no query strings, no headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method,
                         redact_path(request.path), response.status, time * 1000)
