"""The follow handshake's activities (pure builders)."""

from __future__ import annotations

from typing import Any

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"


def follow(activity_id: str, actor: str, target: str) -> dict[str, Any]:
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Follow", "actor": actor,
            "object": target}


def respond(kind: str, activity_id: str, actor: str, follow_activity: dict[str, Any] | str
            ) -> dict[str, Any]:
    """An Accept or Reject of a Follow (the Follow embedded, as Mastodon expects)."""
    if kind not in ("Accept", "Reject"):
        raise ValueError("kind must be Accept or Reject")
    return {"@context": AS_CONTEXT, "id": activity_id, "type": kind, "actor": actor,
            "object": follow_activity}


def undo(activity_id: str, actor: str, obj: dict[str, Any] | str) -> dict[str, Any]:
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Undo", "actor": actor,
            "object": obj}
