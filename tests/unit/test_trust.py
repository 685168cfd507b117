"""The trust rules (docs/architecture.md): who may make an image bad, who may make it ok."""

from __future__ import annotations

import ast
from pathlib import Path

import attestd
from attestd.trust import TRUST_LEVELS, PeerClaim, weigh_claims


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
