"""The trust rules (docs/architecture.md): who may make an image bad, who may make it ok."""

from __future__ import annotations

from attestd.trust import PeerClaim, weigh_claims


def claim(label: str, trust: str = "full", issuer: str = "https://a.example/actor",
          method: str = "classifier", match: str = "sha256", distance: int = 0) -> PeerClaim:
    return PeerClaim(attestation=f"{issuer}/attestations/{label}-{method}-{match}",
                     issuer=issuer, trust=trust, label=label, method=method,  # type: ignore[arg-type]
                     match=match, distance=distance)


def test_nothing_from_an_untrusted_peer_counts() -> None:
    assert weigh_claims([claim("csam_suspect", trust="none")]) is None
    assert weigh_claims([claim("ok", trust="none")]) is None


def test_bad_from_any_trusted_peer_rejects_exact_or_perceptual() -> None:
    for trust in ("bad_only", "full"):
        for match in ("sha256", "pdq", "phash"):
            v = weigh_claims([claim("nsfw", trust=trust, match=match, distance=5)])
            assert v is not None and v.bad and v.label == "nsfw" and not v.disputed


def test_ok_counts_only_from_full_peers_on_exact_sha256() -> None:
    assert weigh_claims([claim("ok", trust="bad_only")]) is None
    assert weigh_claims([claim("ok", match="pdq", distance=3)]) is None
    v = weigh_claims([claim("ok")])
    assert v is not None and v.label == "ok"
    # The admin's opt-in: a near-copy within the tight thresholds.
    near = weigh_claims([claim("ok", match="near", distance=2)])
    assert near is not None and near.label == "ok" and "near-copy" in near.reason


def test_ok_never_beats_bad_evidence() -> None:
    v = weigh_claims([claim("ok"), claim("nsfw", trust="bad_only", issuer="https://b.example/actor")])
    assert v is not None and v.bad and v.disputed and "disputed" in v.reason
    # Our own index or a hash list matched it as bad: a peer's ok decides nothing.
    assert weigh_claims([claim("ok")], other_bad_evidence=True) is None


def test_quorum_counts_distinct_peers() -> None:
    one = [claim("nsfw", issuer="https://a.example/actor")]
    assert weigh_claims(one, quorum=2) is None
    assert weigh_claims(one + [claim("nsfw", issuer="https://a.example/actor", method="human_review")],
                        quorum=2) is None
    two = one + [claim("nsfw", issuer="https://b.example/actor")]
    assert weigh_claims(two, quorum=2) is not None
    # Below quorum, a bad still disputes an ok: treated as bad until a human looks.
    disputed = weigh_claims(one + [claim("ok", issuer="https://c.example/actor")], quorum=2)
    assert disputed is not None and disputed.bad and disputed.disputed


def test_strongest_label_and_human_review_decide_provenance() -> None:
    v = weigh_claims([claim("nsfw", method="human_review"),
                      claim("csam_suspect", issuer="https://b.example/actor"),
                      claim("csam_suspect", issuer="https://c.example/actor", method="human_review")])
    assert v is not None and v.label == "csam_suspect"
    assert v.claim.issuer == "https://c.example/actor" and v.claim.method == "human_review"
