"""The one JSON reader for strangers' bodies: what it refuses, and why it says so."""

from __future__ import annotations

import pytest

from activitypub import JSONInputError, load_json


@pytest.mark.parametrize(("raw", "needle"), [
    (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
    (b"[" * 200_000 + b"]" * 200_000, "nested deeper than 64"),
    (b'{"a": {"b": ' * 40 + b"1" + b"}" * 80, "nested deeper than 64"),
    (b"1" + b"0" * 400, "401 digits"),
    (b'{"score": -1' + b"0" * 60 + b"}", "61 digits"),
    (b"1e400", "out of range"),
    (b"[NaN]", "NaN is not a JSON number"),
    (b'["-Infinity", -Infinity]', "-Infinity is not a JSON number"),
    (b'{"id": "x\\ud800"}', "lone surrogate (\\ud800)"),
    (b'{"x\\udfff": 1}', "lone surrogate (\\udfff)"),
    (b'{"a": "b\\u0000c"}', "NUL"),
    (b'"\xff"', "not valid UTF-8"),
    (b"{nope", "not valid JSON"),
])
def test_refused_with_the_reason(raw: bytes, needle: str) -> None:
    with pytest.raises(JSONInputError) as err:
        load_json(raw)
    assert needle in str(err.value)


def test_ordinary_documents_and_pairs_pass() -> None:
    doc = load_json('{"name": "caf\\u00e9 \\ud83d\\ude00", "n": 12345678901234567890, '
                    '"f": 0.5, "deep": ' + "[" * 63 + "]" * 63 + "}")
    assert doc["name"] == "café 😀" and doc["n"] == 12345678901234567890
    assert load_json(b"[" * 64 + b"]" * 64) is not None
