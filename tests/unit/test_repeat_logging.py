"""Conditions that repeat under attack are logged once per interval, with a count
(issue 16, item 9), and the connection cap fits the open-file limit."""

from __future__ import annotations

import logging

from attestd.http.serving import BACKLOG, FD_RESERVE, MAX_CLOSING, connection_limit
from attestd.logs import REPEAT_KEY, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, name: str = "attestd.x", key: str | None = "cap",
            level: int = logging.WARNING) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    if key is not None:
        setattr(rec, REPEAT_KEY, key)
    return rec


def test_a_repeating_condition_passes_once_per_interval_with_a_count() -> None:
    clock = Clock()
    f = RepeatFilter(60, clock)
    passed = []
    for i in range(10_000):
        clock.now = i * 0.01  # 100 a second for 100 s
        rec = _record("refusing connections")
        if f.filter(rec):
            passed.append(rec.getMessage())
    assert len(passed) == 2
    assert passed[0] == "refusing connections"
    assert passed[1].startswith("refusing connections (5999 more like this in the last 60 s")


def test_other_records_are_untouched_and_asyncio_errors_are_thinned() -> None:
    f = RepeatFilter(60, Clock())
    assert all(f.filter(_record(f"GET /x {i}", key=None)) for i in range(100))
    accept = [_record("socket.accept() out of system resource\nsocket: <...>", name="asyncio",
                      key=None, level=logging.ERROR) for _ in range(1000)]
    assert sum(f.filter(r) for r in accept) == 1


def test_the_connection_cap_leaves_descriptors_for_the_node() -> None:
    assert connection_limit(1000, None) == 1000
    assert connection_limit(1000, 1_048_576) == 1000
    assert connection_limit(1000, 1024) == 1024 - BACKLOG - MAX_CLOSING - 128
    assert connection_limit(50, 400) == 50
    assert connection_limit(1000, 400) == 400 - BACKLOG - MAX_CLOSING - FD_RESERVE
