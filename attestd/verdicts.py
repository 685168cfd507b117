"""A verdict of this node's classifier has arrived: the node flags it for review when a
human should see it, and attests it to its followers when it may be attested.

It runs inside the transaction that records the verdict, so a classifier result is one
commit: job done, verdict, index entries, review item, attestation, outbox entry and
deliveries (the delivery loop sends them once committed). What cannot be part of a
transaction runs around it: signing and the reviewer's copy of the bytes before, waking
the delivery loop and the hit fan-out after.

One ``VerdictArrival`` is made by ``open_services`` for every process (serve, the worker
API, the CLI); the federation side hands it the node's ``Publisher`` when it opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.blobs import Blobs
from attestd.config import ActionsConfig
from attestd.federation.publisher import Publisher, Signed
from attestd.hits import Hit, Hits
from attestd.model import Verdict
from attestd.review import ReviewQueue, kind_for_verdict
from scanner import ImageHashes


@dataclass(slots=True)
class Arriving:
    """What was made ready for a verdict before its transaction."""

    sha256: str
    copied: bool  # the reviewer's copy is kept already
    signed: Signed | None
    data: bytes | None
    # Set in the transaction: False when the review queue had no room for the copy kept
    # (the item says so), which then goes once the transaction committed.
    room: bool = True


class VerdictArrival:
    """Review routing and publishing of the node's own classifier verdicts."""

    def __init__(self, review: ReviewQueue | None, hits: Hits | None, actions: ActionsConfig,
                 publisher: Publisher | None = None) -> None:
        self.review = review
        self.hits = hits
        self.actions = actions
        # None until the federation side opens (tools, tests): verdicts are not attested.
        self.publisher = publisher

    def review_kind(self, label: str, job_reason: str | None) -> str | None:
        return kind_for_verdict(label, self.actions.for_label(label), job_reason)

    async def prepare(self, sha256: str, label: str, model: str | None,
                      hashes: ImageHashes | None, detail: dict[str, Any], blobs: Blobs
                      ) -> Arriving:
        """Before the transaction: keep the bytes a reviewer needs (from the job's
        ``blobs``) and sign the attestation."""
        data = None
        copied = False
        if self.review is not None and self.review_kind(label, detail.get("job_reason")):
            data = await blobs.get(sha256)
            if data is not None:
                await self.review.keep_copy(sha256, data)
                copied = True
        signed = None
        if self.publisher is not None:
            signed = await self.publisher.sign(sha256, label, "classifier", model, hashes, detail)
        return Arriving(sha256, copied, signed, data)

    async def record_in(self, conn: AsyncConnection, verdict: Verdict,
                        hashes: ImageHashes | None, detail: dict[str, Any],
                        arriving: Arriving | None) -> str | None:
        """Inside the verdict's transaction: its review item and its attestation, outbox
        entry and deliveries. Returns the review kind, or None."""
        kind = self.review_kind(verdict.label, detail.get("job_reason"))
        if kind is not None and self.review is not None:
            accepted = " after it was accepted (accept_and_rescan)" if kind == "rescan" else ""
            size = (len(arriving.data) if arriving is not None and arriving.copied
                    and arriving.data is not None else None)
            kept = await self.review.add_in(
                conn, verdict.sha256, kind,
                f"classified {verdict.label} by {verdict.source}{accepted}",
                label=verdict.label, size=size)
            if arriving is not None and size is not None:
                arriving.room = kept
        if self.publisher is not None:
            await self.publisher.publish_verdict_in(
                conn, verdict, hashes, detail, arriving.signed if arriving is not None else None)
        return kind

    async def arrived(self, verdict: Verdict, kind: str | None, arriving: Arriving | None,
                      blobs: Blobs) -> None:
        """After the commit, before the job's bytes go: the copy a reviewer needs if it was
        not kept before (the job's reason changed meanwhile), the delivery loop woken,
        a rescan's hit published."""
        data = arriving.data if arriving is not None else None
        if (arriving is not None and arriving.copied and not arriving.room
                and self.review is not None):
            await self.review.drop_copy(verdict.sha256)
        if kind is not None and self.review is not None and not (arriving and arriving.copied):
            data = await blobs.get(verdict.sha256)
            if data is not None:
                await self.review.keep_copy(verdict.sha256, data)
        if self.publisher is not None:
            self.publisher.queued()
        if kind == "rescan" and self.hits is not None:
            await self.hits.publish(Hit(
                sha256=verdict.sha256, origin="rescan", label=verdict.label,
                source=f"verdict:{verdict.id}", action="review", method=verdict.method,
                actor=verdict.source, detail="queued for review", data=data))

    async def abandoned(self, arriving: Arriving) -> None:
        """The result was not recorded (a repeat, an expired lease): a copy kept for an
        item that was never queued goes."""
        if not arriving.copied or self.review is None:
            return
        item = await self.review.get(arriving.sha256)
        if item is None or item.resolved_at is not None:
            await self.review.drop_copy(arriving.sha256)
