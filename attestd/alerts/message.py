"""What an alert says: the event taken from a hit (never its bytes), and the text and
JSON payload of a message about one event or a digest of several."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from attestd.hits import Hit

# The admin review page (attestd/http/admin_pages.py: ROOT + "/review"); each item's card
# is the anchor item-<sha256>.
REVIEW_PATH = "/admin/review"
WEBHOOK_TYPE = "attestd.alert"
WEBHOOK_VERSION = 1

_ORIGINS = {"sweep": "a storage sweep", "rescan": "a rescan after accept_and_rescan",
            "review": "a reviewer"}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A hit as an alert tells it: what, where, what decided, what was done, when."""

    sha256: str
    origin: str
    label: str
    source: str
    action: str
    at: datetime
    review_url: str
    key: str | None = None
    aliases: tuple[str, ...] = ()
    method: str | None = None
    actor: str | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "origin": self.origin, "label": self.label,
                "source": self.source, "method": self.method, "action": self.action,
                "actor": self.actor, "detail": self.detail, "key": self.key,
                "aliases": list(self.aliases), "at": _iso(self.at),
                "review_url": self.review_url}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AlertEvent:
        """Back from :meth:`as_json` (the alert queue's rows)."""
        return cls(sha256=str(doc["sha256"]), origin=str(doc["origin"]),
                   label=str(doc["label"]), source=str(doc["source"]),
                   action=str(doc["action"]), at=datetime.fromisoformat(str(doc["at"])),
                   review_url=str(doc["review_url"]), key=doc.get("key"),
                   aliases=tuple(str(a) for a in doc.get("aliases") or ()),
                   method=doc.get("method"), actor=doc.get("actor"),
                   detail=str(doc.get("detail") or ""))


def review_url(base_url: str, sha256: str) -> str:
    return f"{base_url.rstrip('/')}{REVIEW_PATH}#item-{sha256}"


def event_from_hit(hit: Hit, base_url: str) -> AlertEvent:
    """The alert's view of ``hit``: every field but the bytes, copied one by one so that
    a field added to Hit later reaches no message unless added here."""
    return AlertEvent(sha256=hit.sha256, origin=hit.origin, label=hit.label,
                      source=hit.source, action=hit.action, at=hit.at,
                      review_url=review_url(base_url, hit.sha256), key=hit.key,
                      aliases=tuple(hit.aliases), method=hit.method, actor=hit.actor,
                      detail=hit.detail)


@dataclass(frozen=True, slots=True)
class Message:
    """One message to every channel: a single event, or a digest.

    ``events`` are those listed; ``more`` were in the digest but not listed (beyond
    ``digest_max_items``; ``counts`` covers them too); ``folded`` of the digest's events
    were held back by the rate limit.
    """

    kind: Literal["event", "digest"]
    events: tuple[AlertEvent, ...]
    more: int = 0
    folded: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    refs: tuple[int, ...] = ()  # the alert queue's rows of every hit in it

    @property
    def total(self) -> int:
        return len(self.events) + self.more


def node_name(base_url: str) -> str:
    return urlsplit(base_url).netloc or base_url


def render(msg: Message, base_url: str, limit_per_hour: int) -> tuple[str, str]:
    """(title, plain-text body) of ``msg``."""
    node = node_name(base_url)
    if msg.kind == "event":
        ev = msg.events[0]
        return (f"attestd on {node}: {ev.label} in stored media ({ev.origin}: {ev.action})",
                _event_text(ev))
    labels = ", ".join(f"{n} {label}" for label, n in sorted(msg.counts.items()))
    title = f"attestd on {node}: {msg.total} hits ({labels})"
    lines = [f"{msg.total} hits on stored media since the last message ({labels})."]
    if msg.folded:
        lines.append(f"{msg.folded} of them were held back and folded into this digest: "
                     f"at most {limit_per_hour} messages an hour (alerts.max_per_hour), "
                     "or an earlier message reached no channel.")
    lines.append(f"Review queue: {base_url.rstrip('/')}{REVIEW_PATH}")
    for i, ev in enumerate(msg.events, 1):
        lines += ["", f"{i}. {ev.label}, {ev.action} ({ev.origin})", _event_text(ev, "   ")]
    if msg.more:
        lines += ["", f"… and {msg.more} more, not listed (see the review queue and the "
                      "audit log)."]
    return title, "\n".join(lines)


def _event_text(ev: AlertEvent, indent: str = "") -> str:
    found_by = _ORIGINS.get(ev.origin, ev.origin) + (f" ({ev.actor})" if ev.actor else "")
    decided = ev.source + (f", {ev.method}" if ev.method else "")
    rows = [("What was found", ev.label), ("Found by", found_by), ("What decided", decided),
            ("Action taken", ev.action + (f": {ev.detail}" if ev.detail else "")),
            ("When", _iso(ev.at)), ("Storage key", ev.key or "unknown")]
    if ev.aliases:
        rows.append(("Aliases", ", ".join(ev.aliases)))
    rows += [("SHA-256", ev.sha256), ("Review", ev.review_url)]
    return "\n".join(f"{indent}{name}: {value}" for name, value in rows)


def webhook_payload(msg: Message, base_url: str, sent_at: datetime) -> dict[str, Any]:
    """The JSON a webhook receives (docs/alerts.md documents every field)."""
    return {"type": WEBHOOK_TYPE, "version": WEBHOOK_VERSION, "node": base_url,
            "kind": msg.kind, "sent_at": _iso(sent_at), "total": msg.total,
            "listed": len(msg.events), "more": msg.more, "folded": msg.folded,
            "counts": dict(sorted(msg.counts.items())),
            "events": [ev.as_json() for ev in msg.events]}


def count_labels(events: tuple[AlertEvent, ...] | list[AlertEvent]) -> dict[str, int]:
    return dict(Counter(ev.label for ev in events))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
