"""The trust rules (docs/architecture.md): who may make an image bad, who may make it ok."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import attestd
from attestd.trust import (
    COUNTED,
    TRUST_LEVELS,
    UNTRUSTED,
    PeerClaim,
    claim_live,
    counts,
    decides_nothing,
    indexed_from_peer,
    job_is_moot,
    may_allow,
    may_allow_perceptually,
    weigh_claims,
)


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


@pytest.mark.parametrize(("trust", "label", "perceptual_ok", "indexed"), [
    ("none", "csam_suspect", False, False),
    ("none", "ok", True, False),
    ("bad_only", "nsfw", False, True),
    ("bad_only", "ok", False, False),
    ("bad_only", "ok", True, False),  # opted in, but the level does not allow ok at all
    ("full", "blocked", False, True),
    ("full", "ok", False, False),  # a perceptual ok needs the admin's opt-in
    ("full", "ok", True, True),
    ("weird", "csam_suspect", False, False),  # an unknown level counts for nothing
])
def test_what_a_peer_puts_in_the_index(trust: str, label: str, perceptual_ok: bool,
                                       indexed: bool) -> None:
    assert indexed_from_peer(trust, label, perceptual_ok) is indexed


@pytest.mark.parametrize(("trust", "label", "why"), [
    ("none", "nsfw", "peer trusted none: it decides nothing"),
    ("none", "ok", "peer trusted none: it decides nothing"),
    ("bad_only", "ok", "peer trusted bad_only: its ok decides nothing"),
    ("bad_only", "csam_suspect", None),
    ("full", "ok", None),
    ("full", "blocked", None),
])
def test_what_a_peers_claim_decides(trust: str, label: str, why: str | None) -> None:
    assert decides_nothing(trust, label) == why
    # The index and the weighing agree: a claim that decides nothing never decides.
    if why is not None:
        assert weigh_claims([claim(label, trust=trust)]) is None


@pytest.mark.parametrize(("trust", "counted", "allows", "perceptually"), [
    ("none", False, False, False),
    ("bad_only", True, False, False),
    ("full", True, True, True),
    ("", False, False, False),
    (UNTRUSTED, False, False, False),  # a source that is not a peer
])
def test_who_counts_and_who_may_allow(trust: str, counted: bool, allows: bool,
                                      perceptually: bool) -> None:
    assert counts(trust) is counted and (trust in COUNTED) is counted
    assert may_allow(trust) is allows
    assert may_allow_perceptually(trust) is perceptually


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("expires", "live"), [
    (None, True),
    (NOW + timedelta(seconds=1), True),
    (NOW, False),  # expiring now is expired
    (NOW - timedelta(days=1), False),
])
def test_an_expired_attestation_no_longer_counts(expires: datetime | None, live: bool) -> None:
    assert claim_live(expires, NOW) is live


@pytest.mark.parametrize(("judged_here", "claims", "moot"), [
    (False, [], False),
    (True, [], True),  # our own verdict or an override
    (False, [claim("nsfw", trust="bad_only")], True),
    (False, [claim("ok")], True),
    (False, [claim("ok", trust="bad_only")], False),  # that ok decides nothing
    (False, [claim("csam_suspect", trust="none")], False),
    # A dispute still wants our classifier's view.
    (False, [claim("ok"), claim("nsfw", issuer="https://b.example/actor")], False),
    (True, [claim("ok"), claim("nsfw", issuer="https://b.example/actor")], True),
])
def test_when_a_queued_job_is_moot(judged_here: bool, claims: list[PeerClaim],
                                   moot: bool) -> None:
    assert job_is_moot(judged_here, weigh_claims(claims)) is moot


def _trust_comparisons(tree: ast.AST) -> list[tuple[int, str]]:
    """Comparisons of something named trust/level with a trust level's literal name, and
    SQL ``in_``/``not_in`` filters over such literals."""
    levels = set(TRUST_LEVELS)

    def literals(node: ast.expr) -> set[str]:
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(operands):
                others = " ".join(ast.unparse(o) for j, o in enumerate(operands) if j != i)
                if literals(op) & levels and ("trust" in others or "level" in others):
                    found.append((node.lineno, ast.unparse(node)))
                    break
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("in_", "not_in")
              and any(literals(a) & levels for a in node.args)):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_trust_levels_are_compared_only_in_the_trust_module() -> None:
    """Every trust rule has one home (issue 17 item 3): elsewhere a trust level is passed
    to trust.py's functions, never compared by name, so no second copy of a rule drifts."""
    root = Path(attestd.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "trust.py" or "migrations" in path.parts:
            continue
        for line, text in _trust_comparisons(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(root.parent)}:{line}: {text}")
    assert not offenders, ("trust decided outside attestd/trust.py; call its rules instead:\n"
                           + "\n".join(offenders))
