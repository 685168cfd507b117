"""Every trust rule (docs/architecture.md, "The trust rules"): pure, no I/O.

Elsewhere a trust level is only passed to these functions, never compared by name
(tests/unit/test_trust.py checks it), so each rule has one home.

- Nothing from a peer trusted ``none`` counts, whatever it says.
- A ``bad`` (any label but ``ok``) from trusted peers rejects once ``quorum`` distinct peers
  say so; exact sha256 and perceptual matches both count.
- An ``ok`` counts only from ``full`` peers, only on the exact sha256 (or, for a peer the
  admin opted into it, a near-copy within tight thresholds on both hashes), and only when
  no trusted peer and no other evidence says bad.
- A trusted ``bad`` against a trusted ``ok`` is a dispute: treated as bad, sent to review.
- The index holds what a peer's attestations may decide (``indexed_from_peer``); a queued
  job is moot once the image is judged (``job_is_moot``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Trust = Literal["none", "bad_only", "full"]
TRUST_LEVELS: tuple[Trust, ...] = ("none", "bad_only", "full")
# The levels whose attestations count at all; the store's SQL filter is built from it.
COUNTED: frozenset[Trust] = frozenset({"bad_only", "full"})
# How far a source that is not (or no longer) a peer is trusted: not at all.
UNTRUSTED: Trust = "none"

# Stronger labels decide provenance when several peers say bad.
_SEVERITY = {"csam_suspect": 3, "blocked": 2, "nsfw": 1}
# Human review outranks a classifier or a hash list (docs/architecture.md, precedence 4).
_METHOD_RANK = {"human_review": 0, "hash_list": 1, "classifier": 2}


@dataclass(frozen=True, slots=True)
class PeerClaim:
    """One peer attestation that bears on an image."""

    attestation: str  # the attestation's id (URL)
    issuer: str
    trust: Trust
    label: str
    method: str
    match: str = "sha256"  # sha256 | pdq | phash | near (perceptual ok opt-in)
    distance: int = 0


@dataclass(frozen=True, slots=True)
class PeerVerdict:
    label: str
    claim: PeerClaim  # the attestation that decided
    disputed: bool
    reason: str

    @property
    def bad(self) -> bool:
        return self.label != "ok"


def counts(trust: str) -> bool:
    """Whether anything a peer trusted ``trust`` says can change a decision."""
    return trust in COUNTED


def may_allow(trust: str) -> bool:
    """Whether a peer's ``ok`` can count at all (on the exact sha256)."""
    return trust == "full"


def may_allow_perceptually(trust: str) -> bool:
    """Whether an admin may opt a peer trusted ``trust`` into ok for near-copies."""
    return may_allow(trust)


def claim_live(expires: datetime | None, now: datetime) -> bool:
    """Whether an attestation with ``expires`` still counts at ``now`` (a retracted one
    never does)."""
    return expires is None or expires > now


def indexed_from_peer(trust: str, label: str, perceptual_ok: bool) -> bool:
    """Whether a peer's attestation labelled ``label`` goes into the hash index: bad labels
    from any trusted peer; ok only from a peer that may allow perceptually and was opted
    into it. (Which bad labels the index holds at all is the index's business.)"""
    if not counts(trust):
        return False
    if label == "ok":
        return perceptual_ok and may_allow_perceptually(trust)
    return True


def decides_nothing(trust: str, label: str) -> str | None:
    """Why a peer's attestation labelled ``label`` decides nothing at ``trust``, or None
    when it can count."""
    if not counts(trust):
        return f"peer trusted {trust}: it decides nothing"
    if label == "ok" and not may_allow(trust):
        return f"peer trusted {trust}: its ok decides nothing"
    return None


def job_is_moot(judged_here: bool, peers: PeerVerdict | None) -> bool:
    """Whether a queued classification is no longer needed: this node judged the image
    (a verdict or an override) or trusted peers decide it undisputed (a dispute still
    wants our own classifier's view)."""
    return judged_here or (peers is not None and not peers.disputed)


def _ok_counts(c: PeerClaim) -> bool:
    return c.label == "ok" and may_allow(c.trust) and c.match in ("sha256", "near")


def weigh_claims(claims: Sequence[PeerClaim], *, quorum: int = 1,
                 other_bad_evidence: bool = False) -> PeerVerdict | None:
    """The peers' verdict on one image, or None when peers do not decide it.

    ``other_bad_evidence``: our own index or an imported list matched the image as bad; a
    peer's ``ok`` then decides nothing.
    """
    trusted = [c for c in claims if counts(c.trust)]
    bad = [c for c in trusted if c.label != "ok"]
    ok = [c for c in trusted if _ok_counts(c)]
    bad_issuers = {c.issuer for c in bad}
    if bad and (len(bad_issuers) >= quorum or ok):
        best = min(bad, key=lambda c: (-_SEVERITY.get(c.label, 0),
                                       _METHOD_RANK.get(c.method, 9), c.distance))
        disputed = bool(ok)
        how = "exactly" if best.match == "sha256" else f"by {best.match} distance {best.distance}"
        reason = (f"{best.issuer} attested {best.label} ({best.method}), matching {how}")
        if disputed:
            reason += (f"; disputed by {len(ok)} trusted ok attestation(s), treated as bad "
                       "until reviewed")
        return PeerVerdict(best.label, best, disputed, reason)
    if ok and not bad and not other_bad_evidence:
        best = min(ok, key=lambda c: (c.match != "sha256", _METHOD_RANK.get(c.method, 9)))
        how = "exactly" if best.match == "sha256" else f"as a near-copy (distance {best.distance})"
        return PeerVerdict("ok", best, False,
                           f"{best.issuer} attested ok ({best.method}), matching {how}")
    return None
