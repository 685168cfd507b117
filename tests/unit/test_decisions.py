"""The order in which earlier judgements decide (docs/architecture.md, precedence 1 to 4)."""

from __future__ import annotations

from datetime import UTC, datetime

from attestd.bad_hashes import BadHashIndex, IndexMatch
from attestd.config import ActionsConfig, MatchingConfig, PolicyConfig
from attestd.decisions import decide_known, decide_unknown
from attestd.model import HashEntry, Lookup, Override, Verdict
from scanner import FrameHashes

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "ab" * 32
ACTIONS = ActionsConfig()


def _override(action: str) -> Override:
    return Override(1, SHA, action, "", "admin", NOW)  # type: ignore[arg-type]


def _verdict(label: str) -> Verdict:
    return Verdict(7, SHA, label, "classifier", "classifier:m", "m", NOW)


def _match(source: str, label: str = "csam_suspect") -> IndexMatch:
    return IndexMatch(HashEntry(3, label, source, pdq="0" * 64), "pdq", 4, 0)


def test_allow_override_beats_everything() -> None:
    lookup = Lookup(None, _override("allow"), _verdict("csam_suspect"))
    out = decide_known(SHA, lookup, [_match("override:9", "blocked")], ACTIONS)
    assert out is not None and out.decision == "accept" and out.source == "override:1"


def test_exact_block_then_perceptual_block_beat_own_verdicts() -> None:
    out = decide_known(SHA, Lookup(None, _override("block"), _verdict("ok")), [], ACTIONS)
    assert out is not None and (out.decision, out.label) == ("reject", "blocked")
    out = decide_known(SHA, Lookup(None, None, _verdict("ok")), [_match("override:9", "blocked")],
                       ACTIONS)
    assert out is not None and out.source == "override:9" and out.decision == "reject"


def test_own_verdict_beats_index_and_follows_policy_actions() -> None:
    # A near-match on another image this node judged does not overrule its exact verdict.
    out = decide_known(SHA, Lookup(None, None, _verdict("ok")), [_match("verdict:9")], ACTIONS)
    assert out is not None and out.decision == "accept" and out.source == "verdict:7"
    strict = ActionsConfig(nsfw="reject")
    out = decide_known(SHA, Lookup(None, None, _verdict("nsfw")), [], strict)
    assert out is not None and out.decision == "reject"


def _list_hit(label: str = "csam_suspect") -> HashEntry:
    return HashEntry(5, label, "list:ncmec", sha256=SHA)


def test_a_hash_list_outranks_the_own_classifiers_ok() -> None:
    # Issue 16 item 4: the classifier said ok first, then a list naming the image came in.
    for lookup, matches in ((Lookup(None, None, _verdict("ok"), list_hit=_list_hit()), []),
                            (Lookup(None, None, _verdict("ok")), [_match("list:ncmec")]),
                            (Lookup(None, None, _verdict("nsfw")), [_match("list:ncmec")])):
        out = decide_known(SHA, lookup, matches, ACTIONS)
        assert out is not None, lookup
        assert (out.decision, out.label, out.source) == ("reject", "csam_suspect", "list:ncmec")
    # The classifier's own bad verdict still decides (it names this exact image) ...
    out = decide_known(SHA, Lookup(None, None, _verdict("csam_suspect"), list_hit=_list_hit()),
                       [], ACTIONS)
    assert out is not None and out.source == "verdict:7"
    # ... and a human's ok outranks a list (docs/architecture.md, precedence 2 before 3).
    human = Verdict(8, SHA, "ok", "human_review", "reviewer:alice", None, NOW)
    out = decide_known(SHA, Lookup(None, None, human, list_hit=_list_hit()), [], ACTIONS)
    assert out is not None and out.decision == "accept" and out.source == "verdict:8"


def test_index_match_decides_when_nothing_else_did() -> None:
    out = decide_known(SHA, Lookup(None, None, None), [_match("list:ncmec")], ACTIONS)
    assert out is not None and out.label == "csam_suspect" and out.source == "list:ncmec"
    assert decide_known(SHA, Lookup(None, None, None), [], ACTIONS) is None


def test_unknown_follows_on_unknown() -> None:
    assert decide_unknown(SHA, PolicyConfig(on_unknown="reject"), "x").decision == "reject"
    assert decide_unknown(SHA, PolicyConfig(on_unknown="accept"), "x").decision == "accept"
    out = decide_unknown(SHA, PolicyConfig(on_unknown="accept_and_rescan"), "x")
    assert out.decision == "accept" and "accept_and_rescan" in out.reason


def test_labels_peers_may_invent_are_rejected() -> None:
    assert ACTIONS.for_label("something_new") == "reject"


def _frame(pdq: str, phash: str, quality: int = 100) -> FrameHashes:
    return FrameHashes(pdq=pdq, pdq_quality=quality, phash=phash)


def test_index_thresholds_and_quality_floor() -> None:
    idx = BadHashIndex(MatchingConfig(pdq_threshold=31, phash_threshold=8, pdq_min_quality=50))
    base = "f" * 64
    idx.add(HashEntry(1, "csam_suspect", "list:x", pdq=base, pdq_quality=90, phash="0" * 16))
    near = "0000000" + "f" * 57  # 28 bits away
    far = "00000000" + "f" * 56  # 32 bits away
    assert [m.distance for m in idx.match([_frame(near, "ffffffffffffffff")])] == [28]
    assert idx.match([_frame(far, "ffffffffffffffff")]) == []
    # pHash alone within its threshold matches too.
    assert idx.match([_frame("0" * 64, "00000000000000ff")])[0].kind == "phash"
    # A featureless frame (flat colour) matches nothing, however close.
    assert idx.match([_frame(base, "0" * 16, quality=0)]) == []
    # Under the quality floor a frame matches only where PDQ and pHash both agree.
    assert idx.match([_frame(base, "ffffffffffffffff", quality=10)]) == []
    assert idx.match([_frame("0" * 64, "0" * 16, quality=10)]) == []
    assert [m.kind for m in idx.match([_frame(near, "0" * 16, quality=10)])] == ["pdq+phash"]
    # So does a low-quality entry, even for a textured frame.
    idx.add(HashEntry(2, "blocked", "override:1", pdq="0" * 64, pdq_quality=20,
                      phash="00000000ffffffff"))
    assert idx.match([_frame("0" * 64, "ffffffff00000000")]) == []
    assert idx.match([_frame("0f" * 32, "00000000ffffffff")]) == []
    assert [m.entry.id for m in idx.match([_frame("0" * 64, "00000000fffffffe")])] == [2]
    idx.remove(2)
    idx.remove(1)
    assert idx.match([_frame(near, "0" * 16)]) == []


def test_plain_pdq_lookup_finds_entries_whatever_their_quality() -> None:
    idx = BadHashIndex(MatchingConfig())
    idx.add(HashEntry(1, "csam_suspect", "list:a", pdq="f" * 64, pdq_quality=90))
    idx.add(HashEntry(2, "csam_suspect", "list:b", pdq="0" * 64, pdq_quality=20))  # no pHash
    near_zero = "0000000f" + "0" * 56
    assert [(e.id, d) for e, d in idx.lookup_pdq(near_zero, 31)] == [(2, 4)]
    # The frame matcher never uses a low-quality entry without a pHash.
    assert idx.match([_frame(near_zero, "0" * 16)]) == []
    assert [e.id for e, _ in idx.lookup_pdq("f" * 64, 31)] == [1]
