"""What a reviewer can do about an image, with its audit entries: one path for the CLI
(``attestd review``) and the admin API and pages.

- confirm: a human-review verdict, published as an attestation (peers weigh it above a
  classifier's);
- mark ok: an allow override, and every verdict and attestation of ours on it withdrawn
  (for bytes no decoder could read, a dismissal: an allow override would let them pass);
- dismiss: an unreadable upload (junk: HTML, corrupt bytes) leaves the queue, nothing else
  changes (the bytes are still refused);
- quarantine: a block override, and the reviewed copy kept with an evidence record
  where ``sweep.quarantine`` says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from attestd import overrides
from attestd.db.store import Store
from attestd.errors import AttestdError
from attestd.federation.publisher import Publisher
from attestd.hits import Hit, Hits
from attestd.model import INDEXED_LABELS, AuditEntry, Override, Verdict, utcnow
from attestd.review import ReviewQueue
from attestd.sweep.quarantine import Quarantine
from scanner import ImageHashes


class ReviewActionError(AttestdError):
    """A review action cannot be taken as asked."""


@dataclass(frozen=True, slots=True)
class Reviewer:
    """What review actions need from a node."""

    store: Store
    publisher: Publisher
    review: ReviewQueue
    hits: Hits | None = None


async def confirm(rv: Reviewer, sha256: str, hashes: ImageHashes | None, label: str, *,
                  actor: str, note: str = "", given: str | None = None
                  ) -> tuple[Verdict, str | None]:
    """Record a human-review verdict of ``label`` and publish it; returns the verdict and
    the attestation's id. Replaces every earlier verdict of ours on the image. One
    transaction: verdicts, index entries, attestation, deliveries, item and audit."""
    # Read before the item is resolved (resolving drops the kept copy).
    data = await rv.review.copy(sha256) if rv.hits is not None else None
    signed = await rv.publisher.sign(sha256, label, "human_review", None, hashes)
    source = f"review:{actor}"
    async with rv.store.writing() as conn:
        await rv.store.supersede_in(conn, sha256)
        verdict = await rv.store.insert_verdict(conn, sha256, label, "human_review", source,
                                                hashes=hashes)
        attestation = await rv.publisher.publish_verdict_in(conn, verdict, hashes,
                                                            signed=signed)
        await rv.review.resolve_in(conn, sha256)
        await rv.store.audit_in(conn, [AuditEntry(
            actor=actor, action="review_mark", sha256=sha256, label=label,
            source=f"verdict:{verdict.id}", reason=note or None,
            detail={"given": given or sha256, "attestation": attestation})])
    rv.store.forget(sha256)
    rv.publisher.queued()
    await rv.review.drop_copy(sha256)
    if label in INDEXED_LABELS and rv.hits is not None:
        await rv.hits.publish(Hit(sha256=sha256, origin="review", label=label,
                                  source=f"verdict:{verdict.id}", action="confirm",
                                  method="human_review", actor=actor,
                                  detail=f"confirmed {label} in review", data=data))
    return verdict, attestation


async def withdraw(rv: Reviewer, sha256: str, *, actor: str, note: str = "",
                   given: str | None = None) -> tuple[int, list[str]]:
    """Retract this node's verdicts on the image and the attestations it published;
    returns how many verdicts and which attestations. One transaction."""
    async with rv.store.writing() as conn:
        n, retracted = await _withdraw_in(conn, rv, sha256, actor=actor, note=note,
                                          given=given)
    await _withdrawn(rv, sha256)
    return n, retracted


async def _withdraw_in(conn: AsyncConnection, rv: Reviewer, sha256: str, *, actor: str,
                       note: str, given: str | None) -> tuple[int, list[str]]:
    n = await rv.store.supersede_in(conn, sha256)
    retracted = await rv.publisher.retract_in(conn, sha256)
    await rv.review.resolve_in(conn, sha256)
    await rv.store.audit_in(conn, [AuditEntry(
        actor=actor, action="review_clear", sha256=sha256, reason=note or None,
        detail={"given": given or sha256, "verdicts": n, "attestations": retracted})])
    return n, retracted


async def dismiss(rv: Reviewer, sha256: str, *, actor: str, note: str = "") -> None:
    """Take an unreadable upload off the queue, changing nothing else. Refused for other
    kinds: an image judged bad is confirmed, marked ok or quarantined, never dropped."""
    item = await rv.review.get(sha256)
    if item is None or item.resolved_at is not None:
        raise ReviewActionError("no open review item for this image")
    if item.kind != "unreadable":
        raise ReviewActionError(f"only unreadable items can be dismissed; this one is "
                                f"{item.kind}: confirm it bad, mark it ok or quarantine it")
    async with rv.store.writing() as conn:
        await rv.review.resolve_in(conn, sha256)
        await rv.store.audit_in(conn, [AuditEntry(
            actor=actor, action="review_dismiss", sha256=sha256, label="unreadable",
            reason=note or None, detail={"reason": item.reason})])
    await rv.review.drop_copy(sha256)


async def _withdrawn(rv: Reviewer, sha256: str) -> None:
    """After a withdrawal committed."""
    rv.store.forget(sha256)
    rv.publisher.queued()
    await rv.review.drop_copy(sha256)


async def mark_ok(rv: Reviewer, sha256: str, *, actor: str, note: str = ""
                  ) -> tuple[Override | None, int, list[str]]:
    """A false positive: allow it (exact sha256 only) and withdraw what we said of it, in
    one transaction. An unreadable item is dismissed instead (no override: None): the
    decoder cannot read those bytes, and an allow override would accept them unread."""
    item = await rv.review.get(sha256)
    if item is not None and item.resolved_at is None and item.kind == "unreadable":
        await dismiss(rv, sha256, actor=actor, note=note or "marked ok in review")
        return None, 0, []
    async with rv.store.writing() as conn:
        n, retracted = await _withdraw_in(conn, rv, sha256, actor=actor, note=note, given=None)
        ov, _ = await overrides.set_override_in(conn, rv.store, "allow", sha256, None,
                                                note or "marked ok in review", actor, "review")
    await _withdrawn(rv, sha256)
    return ov, n, retracted


async def quarantine(rv: Reviewer, sha256: str, hashes: ImageHashes | None,
                     target: Quarantine | None, *, actor: str, node: str,
                     note: str = "") -> str:
    """Block the image and move the reviewed copy to quarantine with an evidence record;
    returns where it went. Refused, changing nothing, without a quarantine or a copy."""
    if target is None:
        raise ReviewActionError("no quarantine is configured: set sweep.quarantine to a folder "
                                "or s3://bucket/prefix, or confirm the image bad instead")
    data = await rv.review.copy(sha256)
    if data is None:
        raise ReviewActionError("this node kept no copy of the image to quarantine; confirm it "
                                "bad instead (it is then blocked and attested)")
    item = await rv.review.get(sha256)
    evidence: dict[str, Any] = {
        "sha256": sha256, "node": node, "quarantined_at": utcnow().isoformat(),
        "quarantined_by": actor, "note": note or None,
        "review": None if item is None else {"kind": item.kind, "label": item.label,
                                             "reason": item.reason,
                                             "queued_at": item.created_at.isoformat()},
        "hashes": None if hashes is None else [
            {"pdq": f.pdq, "pdq_quality": f.pdq_quality, "phash": f.phash} for f in hashes.frames],
    }
    where = await target.put(f"review/{sha256}", data,
                             json.dumps(evidence, indent=2).encode("utf-8"))
    # The evidence is in place first; the block, the item and the audit are one commit.
    async with rv.store.writing() as conn:
        ov, _ = await overrides.set_override_in(conn, rv.store, "block", sha256, hashes,
                                                note or "quarantined in review", actor, "review")
        await rv.review.resolve_in(conn, sha256)
        await rv.store.audit_in(conn, [AuditEntry(
            actor=actor, action="review_quarantine", sha256=sha256, label="blocked",
            source=f"override:{ov.id}", reason=note or None,
            detail={"quarantined_to": where})])
    rv.store.forget(sha256)
    await rv.review.drop_copy(sha256)
    if rv.hits is not None:
        await rv.hits.publish(Hit(sha256=sha256, origin="review", label="blocked",
                                  source=f"override:{ov.id}", action="quarantine",
                                  method="human_review", actor=actor,
                                  detail=f"quarantined to {where}", data=data))
    return where
