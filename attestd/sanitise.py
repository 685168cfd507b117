"""Making any value storable: what the database is handed is valid UTF-8 without NUL,
within its column's length, and JSON nested no deeper than the reader allows.

Incoming JSON is refused at the door when it breaks these rules (``activitypub.load_json``);
this is the second line, for what reaches a record by other roads (an error message that
quotes a remote value, a field built from several). Repair rather than refuse: an audit
record with a replaced character is worth more than no record.
"""

from __future__ import annotations

import math
import re
from typing import Any

from activitypub import MAX_JSON_DEPTH as MAX_DEPTH

REPLACEMENT = "\ufffd"
MAX_TEXT = 10_000  # unbounded Text columns: enough for any reason or URL a person reads
DROPPED = f"[nested deeper than {MAX_DEPTH} levels: dropped]"

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: str, max_len: int = MAX_TEXT) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD, cut to ``max_len``."""
    if len(value) > max_len:
        value = value[:max_len]
    return _BAD_CHAR.sub(REPLACEMENT, value)


def clean_optional(value: str | None, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else clean_text(str(value), max_len)


def clean_json(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` that any JSON column takes: strings (keys too) cleaned, floats
    finite, anything that is not JSON made text, and containers below ``max_depth``
    replaced by a note saying they were dropped. Recursion is bounded by ``max_depth``."""
    return _clean(value, 0, max_depth)


def _clean(value: Any, depth: int, max_depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Past 64 bits a database's JSON may refuse it, and past 4 300 digits Python
        # will not even write it out.
        return value if -2**63 <= value < 2**63 else "[integer out of range]"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict | list | tuple):
        if depth >= max_depth:
            return DROPPED
        if isinstance(value, dict):
            return {clean_text(str(k), 1000): _clean(v, depth + 1, max_depth)
                    for k, v in value.items()}
        return [_clean(v, depth + 1, max_depth) for v in value]
    return clean_text(str(value))
