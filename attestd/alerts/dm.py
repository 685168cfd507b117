"""The fediverse direct message: an ActivityPub Note addressed to named admin accounts
only (pure). No ``as:Public``, no followers collection, no cc: a server shows it to
those accounts and nobody else, and it never enters the node's public outbox."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from attestd.federation.attestations import wire_time

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"


def direct_message(*, text: str, actor: str, recipients: Sequence[str], note_id: str,
                   activity_id: str, published: datetime) -> dict[str, Any]:
    """A Create of a Note with ``text`` (plain, escaped into HTML paragraphs) to
    ``recipients`` (actor URLs) only, each mentioned, which Mastodon and its kin show
    as a direct message (Lemmy's own private messages are the Lemmy follow-up's)."""
    to = list(dict.fromkeys(recipients))
    paragraphs = "".join(f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>"
                         for block in text.split("\n\n") if block.strip())
    when = wire_time(published)
    note = {"id": note_id, "type": "Note", "attributedTo": actor, "to": to, "cc": [],
            "content": paragraphs, "mediaType": "text/html", "published": when,
            "tag": [{"type": "Mention", "href": r} for r in to]}
    return {"@context": AS_CONTEXT, "id": activity_id, "type": "Create", "actor": actor,
            "to": to, "cc": [], "object": note, "published": when}
