"""Which earlier judgement decides a check: pure functions, no I/O (docs/architecture.md, precedence 1–4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from attestd.bad_hashes import IndexMatch
from attestd.config import ActionsConfig, PolicyConfig
from attestd.model import CheckOutcome, Decision, Lookup, Verdict
from attestd.trust import PeerClaim, weigh_claims
from scanner import ImageHashes


def decide_known(sha256: str, lookup: Lookup, matches: Sequence[IndexMatch],
                 actions: ActionsConfig, *, peer_claims: Sequence[PeerClaim] = (),
                 quorum: int = 1) -> CheckOutcome | None:
    """The outcome from overrides, own verdicts, trusted peers' attestations and the
    bad-hash index, strongest first.

    ``peer_claims`` are perceptual matches on peers' attestations (exact ones come in
    ``lookup.claims``). Returns None when nothing judged the image (it needs classifying).
    """
    ov = lookup.override
    if ov is not None and ov.action == "allow":
        return CheckOutcome(sha256, actions.for_label("ok"), "ok", f"override:{ov.id}",
                            "an admin allowed this exact image", hashes=lookup.hashes)
    if ov is not None and ov.action == "block":
        return CheckOutcome(sha256, actions.blocked, "blocked", f"override:{ov.id}",
                            "an admin blocked this exact image", hashes=lookup.hashes)
    override_hits = [m for m in matches if m.entry.source.startswith("override:")]
    if override_hits:
        m = override_hits[0]
        return CheckOutcome(
            sha256, actions.blocked, "blocked", m.entry.source,
            f"perceptually matches an image an admin blocked ({_how(m)})",
            hashes=lookup.hashes, detail=_match_detail(m))
    own_matches = [m for m in matches if not m.entry.source.startswith(ATTESTATION_SOURCE)]
    if lookup.md5_hit is not None:
        own_matches.insert(0, IndexMatch(lookup.md5_hit, "md5", 0, 0))
    if lookup.list_hit is not None:
        own_matches.insert(0, IndexMatch(lookup.list_hit, "sha256", 0, 0))
    v = lookup.verdict
    if v is not None:
        overruling = _list_overruling(v, own_matches, actions)
        if overruling is None:
            return CheckOutcome(sha256, actions.for_label(v.label), v.label, f"verdict:{v.id}",
                                f"judged {v.label} earlier by {v.method} ({v.source})",
                                hashes=lookup.hashes)
        out = _own_match_outcome(sha256, overruling, lookup, actions)
        out.detail["overrules"] = f"verdict:{v.id}"
        return dataclasses.replace(
            out, reason=f"{out.reason}; a list outranks this node's {v.method} verdict "
                        f"{v.label} (verdict:{v.id})")
    peers = weigh_claims([*lookup.claims, *peer_claims], quorum=quorum,
                         other_bad_evidence=bool(own_matches))
    if peers is not None:
        c = peers.claim
        return CheckOutcome(
            sha256, actions.for_label(peers.label), peers.label, f"attestation:{c.attestation}",
            peers.reason, hashes=lookup.hashes,
            detail={"issuer": c.issuer, "method": c.method, "match": c.match,
                    "distance": c.distance, "disputed": peers.disputed})
    if own_matches:
        return _own_match_outcome(sha256, own_matches[0], lookup, actions)
    return None


def _own_match_outcome(sha256: str, m: IndexMatch, lookup: Lookup,
                       actions: ActionsConfig) -> CheckOutcome:
    return CheckOutcome(
        sha256, actions.for_label(m.entry.label), m.entry.label, m.entry.source,
        (f"its exact {m.kind} is on {m.entry.source} as {m.entry.label}"
         if m.kind in ("sha256", "md5")
         else f"perceptually matches a known {m.entry.label} image from {m.entry.source} "
              f"({_how(m)})"),
        hashes=lookup.hashes, detail=_match_detail(m))


def _list_overruling(verdict: Verdict, own_matches: Sequence[IndexMatch],
                     actions: ActionsConfig) -> IndexMatch | None:
    """The imported-list match that outranks this node's own ``verdict``, if any.

    A list's bad beats our classifier's accepting verdict (docs/architecture.md, precedence 3): the
    classifier may have judged first and the list come later, and a list names known
    abuse. Only a human's review outranks a list; a rejecting verdict of our own already
    rejects, and names this exact image.
    """
    if verdict.method == "human_review" or actions.for_label(verdict.label) == "reject":
        return None
    return next((m for m in own_matches if m.entry.source.startswith(LIST_SOURCE)
                 and actions.for_label(m.entry.label) == "reject"), None)


# Hash entries taken from peers' attestations carry this source prefix and the
# attestation's row id; step 3 weighs them with the peer's trust, not step 4.
ATTESTATION_SOURCE = "attestation-row:"
# Hash entries imported from hash lists (`attestd hashes import`).
LIST_SOURCE = "list:"


def decide_unknown(sha256: str, policy: PolicyConfig, why: str,
                   hashes: ImageHashes | None = None) -> CheckOutcome:
    """The outcome when nobody has judged the image: ``policy.on_unknown``."""
    decision: Decision = "reject" if policy.on_unknown == "reject" else "accept"
    return CheckOutcome(sha256, decision, None, "policy:on_unknown",
                        f"{why}; policy.on_unknown = {policy.on_unknown}", hashes=hashes)


def decide_unhashable(sha256: str, policy: PolicyConfig, kind: str, why: str) -> CheckOutcome:
    """The outcome when the image could not be hashed (``kind``: deadline, busy, timeout,
    crashed, budget): ``policy.on_unhashable``, never ``on_unknown``."""
    decision: Decision = "reject" if policy.on_unhashable == "reject" else "accept"
    return CheckOutcome(sha256, decision, None, "policy:on_unhashable",
                        f"the image could not be hashed: {why}; "
                        f"policy.on_unhashable = {policy.on_unhashable}",
                        unhashable_kind=kind, detail={"unhashable": kind})


def _match_detail(m: IndexMatch) -> dict[str, object]:
    return {"match": m.kind, "distance": m.distance, "frame": m.frame, "entry": m.entry.id,
            "variant": m.variant}


_VARIANTS = {"rotate90": "rotated 90 degrees", "rotate180": "rotated 180 degrees",
             "rotate270": "rotated 270 degrees", "flip_x": "flipped upside down",
             "flip_y": "mirrored", "flip_plus1": "transposed", "flip_minus1": "transposed",
             "uncropped": "cropped"}


def _how(m: IndexMatch) -> str:
    variant = _VARIANTS.get(m.variant)
    return f"{m.kind} distance {m.distance}" + (f", as a {variant} copy" if variant else "")
