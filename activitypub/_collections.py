"""Cursor paging for OrderedCollections (outbox, followers), pure.

Items carry time-ordered ids (UUIDv7 strings sort by creation time), so a page is
addressed by a cursor rather than an offset: ``max_id`` walks back in time (``next``),
``min_id`` walks forward (``prev``), and a follower resumes from the last id it saw with
``min_id=<that id>``, however many items arrived meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from activitypub._documents import ordered_collection_page, page_url
from activitypub._errors import RemoteProtocolError

_CURSOR = re.compile(r"^[0-9A-Za-z._~-]{1,100}$")
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    max_id: str | None = None  # items strictly older than this
    min_id: str | None = None  # items strictly newer than this
    limit: int = 20


def parse_page_request(query: Mapping[str, str], default_limit: int = 20) -> PageRequest:
    """Read ``max_id``/``min_id``/``limit`` from a query; raises RemoteProtocolError (400)."""
    max_id, min_id = query.get("max_id"), query.get("min_id")
    for name, value in (("max_id", max_id), ("min_id", min_id)):
        if value is not None and not _CURSOR.match(value):
            raise RemoteProtocolError(f"{name} is not a valid cursor")
    if max_id and min_id:
        raise RemoteProtocolError("give max_id or min_id, not both")
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError:
        raise RemoteProtocolError("limit must be a number") from None
    return PageRequest(max_id=max_id, min_id=min_id, limit=max(1, min(limit, MAX_PAGE)))


@dataclass(frozen=True, slots=True)
class PageItems:
    """Items for one page, newest first, as the data source found them."""

    items: Sequence[tuple[str, Any]]  # (cursor id, object)
    more_older: bool
    more_newer: bool


def build_page(collection_id: str, request: PageRequest, found: PageItems) -> dict[str, Any]:
    """The OrderedCollectionPage for ``request``, with cursor links to older/newer pages."""
    cursor = {k: v for k, v in (("max_id", request.max_id), ("min_id", request.min_id)) if v}
    page_id = page_url(collection_id, **cursor)
    items = list(found.items)
    next_url = prev_url = None
    if items and found.more_older:
        next_url = page_url(collection_id, max_id=items[-1][0])
    # Reading forward (min_id), a page always links to what may come next, so a reader
    # walking to the present ends holding a cursor to resume from.
    if items and (found.more_newer or request.min_id):
        prev_url = page_url(collection_id, min_id=items[0][0])
    elif not items and request.max_id:
        prev_url = page_url(collection_id, min_id=request.max_id)
    return ordered_collection_page(collection_id, page_id, [obj for _, obj in items],
                                   next_url=next_url, prev_url=prev_url)
