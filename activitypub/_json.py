"""One JSON reader for everything a stranger sends: bounded nesting, bounded numbers,
valid Unicode only.

The standard parser accepts what later breaks the node: arrays nested a thousand deep
(a RecursionError wherever the document is walked or serialised again), integers of
hundreds of digits (an OverflowError once they meet a float), lone surrogates such as
``\\ud800`` (no UTF-8 encoder, hence no database driver, takes them) and NUL (PostgreSQL
refuses it in text). This reader refuses all of them up front with a reason a sender
can act on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # ActivityPub documents nest well under 10 levels; 64 leaves room
MAX_INT_DIGITS = 40  # a 128-bit integer has 39 digits; nothing we read needs more

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


class JSONInputError(ValueError):
    """The input is not JSON this node accepts; the message says why."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONInputError(f"a number has {digits} digits, over the limit of "
                             f"{MAX_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"the number {text[:40]} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise JSONInputError(f"{name} is not a JSON number")


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (UTF-8 bytes or text); raises JSONInputError saying what is wrong."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    try:
        doc = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                         parse_constant=_parse_constant)
    except JSONInputError:
        raise
    except RecursionError:
        # The C parser gives up at the interpreter's recursion limit: far deeper than
        # max_depth, so this is the same refusal, reached sooner.
        raise JSONInputError(f"the JSON is nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise JSONInputError(f"the body is not valid JSON ({exc})") from None
    check_json(doc, max_depth=max_depth)
    return doc


def check_json(doc: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a parsed document nested deeper than ``max_depth`` or holding a string
    (key or value) with NUL or a lone surrogate. Iterative: any depth is safe to walk."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, (dict, list)):
            if depth >= max_depth:
                raise JSONInputError(f"the JSON is nested deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    bad = _BAD_CHAR.search(text)
    if bad is None:
        return
    if bad.group() == "\x00":
        raise JSONInputError("a string holds a NUL character (\\u0000); strings must not "
                             "contain NUL")
    raise JSONInputError(f"a string holds a lone surrogate (\\u{ord(bad.group()):04x}); "
                         "send valid Unicode (a surrogate pair, or the character itself)")
