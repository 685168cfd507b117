"""Pure parts of sweeps: when a sweep may act, pict-rs's key layout and hash form, and
quarantine paths that cannot climb out."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from attestd.model import CheckOutcome
from attestd.sweep.model import SweepError, age_of, key_for_time, should_act, time_of_key
from attestd.sweep.quarantine import safe_key
from attestd.sweep.sources.pictrs import _object


def outcome(decision: str, label: str | None, source: str) -> CheckOutcome:
    return CheckOutcome("0" * 64, decision, label, source, "why")  # type: ignore[arg-type]


@pytest.mark.parametrize(("decision", "label", "source", "acts"), [
    ("reject", "blocked", "override:1", True),
    ("reject", "csam_suspect", "verdict:4", True),
    ("reject", "csam_suspect", "attestation:https://peer/a/1", True),
    ("reject", None, "policy:on_unknown", False),  # nobody judged it: never deleted
    ("reject", "unreadable", "decoder", False),  # may be a fine image we cannot read
    ("accept", "nsfw", "verdict:2", False),
    ("accept", "ok", "verdict:3", False),
])
def test_a_sweep_acts_only_on_evidence(decision: str, label: str | None, source: str,
                                       acts: bool) -> None:
    assert should_act(outcome(decision, label, source)) is acts


def test_pictrs_uuidv7_paths_sort_in_time_order() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    older, newer = key_for_time(now - timedelta(seconds=1)), key_for_time(now)
    assert older < newer and newer.count("/") == 6
    key = newer + "0193a0b1-aaaa-7bbb-8ccc-123456789abc.webp"
    assert time_of_key(key) == now
    assert time_of_key("media/" + key, "media/") == now
    assert time_of_key("ab/cd/ef/01/23/45/x.jpg") is None  # not a plausible time
    assert time_of_key("3f2a9c-random-name.jpg") is None


def test_pictrs_hash_form_gives_sha256_and_size() -> None:
    data = b"an image"
    raw = hashlib.sha256(data).digest() + len(data).to_bytes(8, "big") + b"image:png"
    obj = _object({"hex": raw.hex(), "aliases": ["a.png"],
                   "details": {"created_at": "2024-05-01T10:00:00.123456789Z"}})
    assert obj.sha256 == hashlib.sha256(data).hexdigest() and obj.size == len(data)
    assert obj.modified == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert _object({"hex": raw.hex(), "aliases": [], "details": None}).modified is None


@pytest.mark.parametrize("entry", [
    None, "x", {"hex": "zz" * 45, "aliases": []}, {"hex": "ab" * 10, "aliases": []},
    {"hex": "ab" * 45, "aliases": "a.png"}, {"hex": "ab" * 45, "aliases": [1]},
    {"aliases": ["a"]},
])
def test_malformed_pictrs_listing_is_refused_clearly(entry: object) -> None:
    with pytest.raises(SweepError, match="pict-rs listed"):
        _object(entry)


@pytest.mark.parametrize(("key", "expected"), [
    ("01/93/a.jpg", "01/93/a.jpg"),
    ("../../etc/passwd", "etc/passwd"),
    ("/abs/./x", "abs/x"),
    ("we ird/na$me.jpg", "we_ird/na_me.jpg"),
    ("..", "object"),
])
def test_quarantine_paths_cannot_climb_out(key: str, expected: str) -> None:
    assert safe_key(key) == expected


def test_ages() -> None:
    assert age_of("20m") == timedelta(minutes=20)
    assert age_of("1.5h") == timedelta(minutes=90)
    for bad in ("", "20", "m", "-3d", "3y"):
        with pytest.raises(ValueError, match="e.g. 90s"):
            age_of(bad)
