"""Logging setup, and the redaction of secrets from logged paths."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# Caller names in /api/v1/scan/{caller} are shared secrets.
_SCAN_CALLER = re.compile(r"^(/api/v1/scan/)([^/?]+)")
# Log records carrying this attribute (``extra={REPEAT_KEY: "what"}``) are conditions that
# can repeat thousands of times a second under attack: RepeatFilter thins them out.
REPEAT_KEY = "repeat_key"


def setup_logging(level: str, repeat_interval_s: float = 60.0, fmt: str = "text") -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                  rename_fields={"asctime": "time", "levelname": "level",
                                                 "name": "logger"})
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    if repeat_interval_s > 0:
        for handler in logging.getLogger().handlers:
            handler.addFilter(RepeatFilter(repeat_interval_s))
    # Third-party chatter at info level adds nothing an admin needs.
    for noisy in ("aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def redact_path(path: str) -> str:
    m = _SCAN_CALLER.match(path)
    if m and m.group(2) != "IPADDR":
        return m.group(1) + "<caller>" + path[m.end():]
    return path


class RepeatFilter(logging.Filter):
    """Passes the first record of each repeating condition, then at most one per
    ``interval_s``, which says how many were dropped since the last one.

    A condition is named by the record's ``repeat_key`` attribute; asyncio's own errors
    (e.g. "socket.accept() out of system resource", logged on every failed accept) are
    named by their first line. Every other record passes untouched.
    """

    MAX_KINDS = 1000  # asyncio's first lines can vary; the table stays bounded

    def __init__(self, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = _repeat_kind(record)
        if kind is None:
            return True
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return False
        if len(self._last) >= self.MAX_KINDS:
            self._last.clear()
            self._dropped.clear()
        self._last[kind] = now
        dropped = self._dropped.pop(kind, 0)
        if dropped:
            # Formatted here so a "%" in the note cannot meet the record's own arguments.
            record.msg = (f"{record.getMessage()} ({dropped} more like this in the last "
                          f"{now - last if last is not None else 0:.0f} s)")
            record.args = None
        return True


def _repeat_kind(record: logging.LogRecord) -> str | None:
    key = getattr(record, REPEAT_KEY, None)
    if isinstance(key, str):
        return f"{record.name}:{key}"
    if record.name == "asyncio" and record.levelno >= logging.WARNING:
        return "asyncio:" + str(record.msg).split("\n", 1)[0][:200]
    return None
