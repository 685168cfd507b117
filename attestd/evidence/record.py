"""The evidence record: what was found, what decided, when, where; pure data, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from attestd.hits import Hit
from scanner import ImageHashes

RECORD_TYPE = "attestd-evidence"

# What the Lemmy follow-up (or an admin) may add to a record later, and nothing else:
# a record is evidence, not a place for arbitrary data.
ANNOTATION_FIELDS = frozenset({
    "uploader",          # the local user who uploaded it (name or actor URL)
    "uploader_id",       # Lemmy's person id
    "uploader_email",
    "uploader_ip",       # if Lemmy has it
    "uploaded_at",
    "post_url", "post_id", "comment_url", "comment_id", "private_message_id",
    "community", "community_url",
    "urls",              # where else it is used
    "lemmy_actions",     # what the follow-up did (removed, banned, purged)
    "note",
})
_MAX_ANNOTATION_CHARS = 20_000
# Events listed per record; beyond, they are only counted.
MAX_EVENTS = 200
_SAME = ("origin", "action", "decided_by", "key")


class AnnotationError(ValueError):
    """An annotation names a field a record does not keep, or a value it cannot hold."""


def should_preserve(hit: Hit, labels: frozenset[str]) -> bool:
    """Quarantines always (an admin chose to keep them); deletes and confirmed reviews
    when the label is one the admin preserves; flags and rescans wait for a reviewer."""
    if hit.action == "quarantine":
        return True
    if hit.action == "delete" and hit.origin == "sweep":
        return hit.label in labels
    if hit.action == "confirm" and hit.origin == "review":
        return hit.label in labels
    return False


def event_of(hit: Hit) -> dict[str, Any]:
    """What one hit says of the image: where it was found, what decided, what was done."""
    return {"origin": hit.origin, "action": hit.action, "label": hit.label,
            "decided_by": hit.source, "method": hit.method, "actor": hit.actor,
            "detail": hit.detail or None, "key": hit.key, "aliases": list(hit.aliases),
            "at": hit.at.isoformat()}


def hashes_of(hashes: ImageHashes | None) -> dict[str, Any] | None:
    if hashes is None:
        return None
    return {"media_type": hashes.media_type, "width": hashes.width, "height": hashes.height,
            "frame_count": hashes.frame_count,
            "frames": [{"pdq": f.pdq, "pdq_quality": f.pdq_quality, "phash": f.phash}
                       for f in hashes.frames]}


@dataclass(frozen=True)
class EvidenceRecord:
    """One preserved item; ``record`` is its JSON body as stored."""

    id: int
    sha256: str
    found_at: datetime
    preserved_at: datetime
    retain_until: datetime
    location: str | None  # the encrypted bytes' name in the evidence files; None: no copy
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def has_bytes(self) -> bool:
        return self.location is not None

    def expired(self, now: datetime) -> bool:
        return now >= self.retain_until


def new_record(hit: Hit, *, hashes: ImageHashes | None, store: str | None, node: str,
               now: datetime, retention: timedelta) -> dict[str, Any]:
    """The JSON body of a new record for ``hit``."""
    return {
        "type": RECORD_TYPE, "version": 1, "sha256": hit.sha256, "node": node,
        "found_at": hit.at.isoformat(), "preserved_at": now.isoformat(),
        "retain_until": (now + retention).isoformat(),
        "decided": {"label": hit.label, "decided_by": hit.source, "method": hit.method,
                    "origin": hit.origin, "action": hit.action},
        "source": {"store": store, "key": hit.key, "aliases": list(hit.aliases)},
        "hashes": {"sha256": hit.sha256, **(hashes_of(hashes) or {})},
        "bytes": None,
        "events": [event_of(hit)],
        "lemmy": {},
    }


def has_event(record: dict[str, Any], hit: Hit) -> bool:
    """Whether ``record`` already holds this hit (the same finding, where and by whom)."""
    event = event_of(hit)
    return any(all(e.get(k) == event[k] for k in _SAME)
               for e in record.get("events") or [])


def add_event(record: dict[str, Any], hit: Hit, store: str | None) -> dict[str, Any]:
    """``record`` with ``hit`` added to its events (once), and its source filled in if
    the first finder did not know it."""
    out = {**record, "events": list(record.get("events") or [])}
    event = event_of(hit)
    if not has_event(record, hit):
        if len(out["events"]) < MAX_EVENTS:
            out["events"].append(event)
        else:  # the same image uploaded again and again: counted, not listed
            out["events_not_listed"] = int(out.get("events_not_listed") or 0) + 1
    src = dict(out.get("source") or {})
    if not src.get("key") and hit.key:
        src.update(key=hit.key, aliases=list(hit.aliases))
    if not src.get("store") and store:
        src["store"] = store
    out["source"] = src
    return out


def annotate(record: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with ``fields`` merged into its ``lemmy`` part; AnnotationError for a
    field not in ANNOTATION_FIELDS or a value that is not text, a number or a list/object
    of those."""
    unknown = sorted(set(fields) - ANNOTATION_FIELDS)
    if unknown:
        raise AnnotationError(f"a record keeps no field {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(ANNOTATION_FIELDS))}")
    for name, value in fields.items():
        if not _plain(value, 0):
            raise AnnotationError(f"{name}: must be text, a number, or a list or object of "
                                  "those (at most 3 levels)")
    lemmy = {**(record.get("lemmy") or {}), **dict(fields)}
    if len(json.dumps(lemmy, default=str)) > _MAX_ANNOTATION_CHARS:
        raise AnnotationError(f"annotations of a record are limited to "
                              f"{_MAX_ANNOTATION_CHARS} characters of JSON")
    return {**record, "lemmy": lemmy}


def _plain(value: Any, depth: int) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if depth >= 3:
        return False
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False
