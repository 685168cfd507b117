"""Plain values a sweep passes between its source, its store and its runner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from attestd.errors import AttestdError
from attestd.model import CheckOutcome

ACTIONS = ("delete", "quarantine", "flag")

# How a source lists: "key" (key order, so a cursor is the last key) or "newest_first".
Order = Literal["key", "newest_first"]


class SweepError(AttestdError):
    """A sweep cannot go on: a source refused us, or the configuration is incomplete."""


class ObjectGone(SweepError):
    """The object was removed from the store between listing and fetching or acting."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as a listing shows it."""

    key: str
    size: int | None = None
    # What changes when the bytes change (S3 ETag, file mtime and size); None for pict-rs,
    # whose keys are content hashes.
    etag: str | None = None
    modified: datetime | None = None
    # Known without downloading (pict-rs's hash starts with the sha256 of the original).
    sha256: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[StoredObject]
    # Where the next page starts; None when this was the last page.
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PriorCheck:
    """What an earlier sweep recorded about a key."""

    size: int | None
    etag: str | None
    sha256: str | None
    label: str | None
    run_id: int
    action_state: str
    # What the record says happened, so a resumed run counts what it checked before.
    decision: str | None = None
    decided_by: str | None = None
    downloaded: bool = False
    action: str = "none"


@dataclass
class RunSummary:
    run_id: int
    source: str
    mode: str
    status: str = "running"
    listed: int = 0
    checked: int = 0
    downloaded: int = 0
    already_checked: int = 0
    rejected: int = 0
    unreadable: int = 0
    undecided: int = 0
    acted: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def tally(self, label: str | None, decision: str | None) -> None:
        """Count one object checked with this outcome."""
        self.checked += 1
        if label == "unreadable":
            self.unreadable += 1
        elif label is None:
            self.undecided += 1
        elif decision == "reject":
            self.rejected += 1

    def add_recorded(self, prior: PriorCheck, *, count_act: bool = True) -> None:
        """Count an object this run checked before it was interrupted, from its record
        (``count_act=False`` when its act was finished, and counted, since the resume)."""
        if prior.decided_by == "error":
            self.errors += 1
            return
        self.tally(prior.label, prior.decision)
        self.downloaded += int(prior.downloaded)
        if prior.action_state == "failed":
            self.errors += 1
        elif count_act and prior.action != "none" and prior.action_state == "done":
            self.acted[prior.action] = self.acted.get(prior.action, 0) + 1

    def as_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in (
            "run_id", "source", "mode", "status", "listed", "checked", "downloaded",
            "already_checked", "rejected", "unreadable", "undecided", "acted", "errors")}


def should_act(outcome: CheckOutcome) -> bool:
    """Whether a sweep acts on ``outcome``: only on evidence that an image is unwanted.

    Unjudged images are rejected at upload only by policy.on_unknown, and unreadable ones
    may be fine images our decoders cannot read: neither is ever deleted by a sweep.
    """
    return (outcome.decision == "reject" and outcome.label is not None
            and outcome.label != "unreadable" and not outcome.source.startswith("policy:"))


# pict-rs >= 0.5.7 stores originals under six two-hex-digit folders taken from a UUIDv7,
# whose first 48 bits are the Unix time in milliseconds.
_TIME_PATH = re.compile(r"^((?:[0-9a-f]{2}/){6})")
_EARLIEST_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)


def time_of_key(key: str, prefix: str = "") -> datetime | None:
    """The upload time a pict-rs UUIDv7 object path encodes, or None for other layouts."""
    rest = key[len(prefix):] if key.startswith(prefix) else key
    m = _TIME_PATH.match(rest)
    if m is None:
        return None
    ms = int(m.group(1).replace("/", ""), 16)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    if not _EARLIEST_MS <= ms <= now_ms + 86_400_000:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def key_for_time(at: datetime, prefix: str = "") -> str:
    """The pict-rs UUIDv7 folder path of ``at``: every key sorting after it is newer."""
    ms = max(0, int(at.timestamp() * 1000))
    digits = f"{ms:012x}"[-12:]
    return prefix + "/".join(digits[i:i + 2] for i in range(0, 12, 2)) + "/"


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def age_of(text: str) -> timedelta:
    """``90s``, ``20m``, ``6h``, ``3d``, ``2w`` as a timedelta; ValueError otherwise."""
    m = _AGE.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not an age: use a number and a unit, e.g. 90s, 20m, "
                         "6h, 3d, 2w")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
