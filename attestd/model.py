"""Plain values the node passes between its layers (no I/O, no ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from attestd.trust import PeerClaim
from scanner import ImageHashes

LABELS = ("ok", "nsfw", "csam_suspect", "unreadable", "blocked")
# Labels whose perceptual hashes make near-matching images inherit the label.
INDEXED_LABELS = frozenset({"nsfw", "csam_suspect", "blocked"})

Decision = Literal["accept", "reject"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite keeps no time zone; all ours are UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class Override:
    id: int
    sha256: str
    action: Literal["allow", "block"]
    note: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    id: int
    sha256: str
    label: str
    method: str  # classifier | human_review | hash_list
    source: str
    model: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HashEntry:
    """A perceptual (and optionally exact) hash that marks matching images with ``label``."""

    id: int
    label: str
    source: str
    pdq: str | None = None
    pdq_quality: int | None = None
    phash: str | None = None
    sha256: str | None = None
    md5: str | None = None  # of the whole file's bytes, matched exactly


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the database says about one sha256."""

    hashes: ImageHashes | None
    override: Override | None
    verdict: Verdict | None
    # Live attestations of this exact sha256 from peers trusted bad_only or full.
    claims: tuple[PeerClaim, ...] = ()
    # An imported hash list names this exact sha256.
    list_hit: HashEntry | None = None
    # An imported hash list names this exact file's md5 (set by the check, from the index).
    md5_hit: HashEntry | None = None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The answer to one check, with enough provenance to say why."""

    sha256: str
    decision: Decision
    label: str | None  # None when nobody has judged the image
    source: str  # what decided, e.g. "override:3", "verdict:12", "list:ncmec", "policy:on_unknown"
    reason: str
    hashes: ImageHashes | None = None
    unreadable_kind: str | None = None
    # Why the image was not hashed (deadline, busy, timeout, crashed, budget), if it was not.
    unhashable_kind: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision,
            "label": self.label,
            "source": self.source,
            "reason": self.reason,
            "sha256": self.sha256,
        }
        if self.hashes is not None:
            out["pdq"] = self.hashes.first.pdq
            out["pdq_quality"] = self.hashes.first.pdq_quality
            out["phash"] = self.hashes.first.phash
            out["media_type"] = self.hashes.media_type
            out["frames"] = len(self.hashes.frames)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    at: datetime = field(default_factory=utcnow)
    sha256: str | None = None
    decision: str | None = None
    label: str | None = None
    source: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None
