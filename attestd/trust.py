"""How peers' attestations weigh in a decision (docs/architecture.md, "The trust rules"): pure, no I/O.

- Nothing from a peer trusted ``none`` counts, whatever it says.
- A ``bad`` (any label but ``ok``) from trusted peers rejects once ``quorum`` distinct peers
  say so; exact sha256 and perceptual matches both count.
- An ``ok`` counts only from ``full`` peers, only on the exact sha256 (or, for a peer the
  admin opted into it, a near-copy within tight thresholds on both hashes), and only when
  no trusted peer and no other evidence says bad.
- A trusted ``bad`` against a trusted ``ok`` is a dispute: treated as bad, sent to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Trust = Literal["none", "bad_only", "full"]
TRUST_LEVELS: tuple[Trust, ...] = ("none", "bad_only", "full")

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


def weigh_claims(claims: Sequence[PeerClaim], *, quorum: int = 1,
                 other_bad_evidence: bool = False) -> PeerVerdict | None:
    """The peers' verdict on one image, or None when peers do not decide it.

    ``other_bad_evidence``: our own index or an imported list matched the image as bad; a
    peer's ``ok`` then decides nothing.
    """
    trusted = [c for c in claims if c.trust in ("bad_only", "full")]
    bad = [c for c in trusted if c.label != "ok"]
    ok = [c for c in trusted
          if c.label == "ok" and c.trust == "full" and c.match in ("sha256", "near")]
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
