"""Attestations on the wire: what we build verifies; anything malformed is refused."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from activitypub import SignatureError, verify_proof
from attestd.federation.attestations import (
    MAX_FRAMES,
    NAMESPACE,
    AttestationError,
    build_attestation,
    parse_attestation,
    sign_attestation,
)
from scanner import FrameHashes

ISSUER = "https://a.example/actor"
FRAME = FrameHashes(pdq="ab" * 32, pdq_quality=90, phash="cd" * 8)


def signed(key: ed25519.Ed25519PrivateKey, **over: Any) -> dict[str, Any]:
    doc = build_attestation(object_id="https://a.example/attestations/1", issuer=ISSUER,
                            audience="https://a.example/followers", sha256="ef" * 32,
                            frames=[FRAME, FRAME], label="csam_suspect", method="classifier",
                            model="ViT-L-14/openai", published=datetime(2026, 11, 21, tzinfo=UTC),
                            expires=datetime(2027, 11, 21, tzinfo=UTC))
    doc.update(over)
    return sign_attestation(doc, key, f"{ISSUER}#ed25519-key")


def test_round_trip_and_proof() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    doc = signed(key)
    assert any(isinstance(c, dict) and c.get("attestd") == NAMESPACE for c in doc["@context"])
    verify_proof(doc, key.public_key())
    att = parse_attestation(doc)
    assert att.issuer == ISSUER and att.label == "csam_suspect" and att.method == "classifier"
    assert att.frames == (FRAME, FRAME) and att.expires is not None
    assert att.expires - att.published == timedelta(days=365)  # type: ignore[operator]


def test_a_changed_label_breaks_the_proof() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    doc = signed(key)
    doc["label"] = "ok"
    with pytest.raises(SignatureError):
        verify_proof(doc, key.public_key())
    with pytest.raises(SignatureError):
        verify_proof(signed(key), ed25519.Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize(("change", "message"), [
    ({"@context": ["https://www.w3.org/ns/activitystreams",
                   {"attestd": "https://attestd.org/ns/v9#"}]}, "format version"),
    ({"type": "Note"}, "not an Attestation"),
    ({"sha256": "EF" * 32}, "sha256"),
    ({"sha256": "ef" * 31}, "sha256"),
    ({"sha256": None}, "sha256"),
    ({"label": "fine"}, "label"),
    ({"method": "rumour"}, "method"),
    ({"model": "x" * 201}, "model"),
    ({"attributedTo": "ftp://a.example/actor"}, "attributedTo"),
    ({"id": 7}, "id"),
    ({"frames": [{"pdq": "ab" * 32, "phash": "cd" * 8}] * (MAX_FRAMES + 1)}, "frames"),
    ({"frames": [{"pdq": "zz" * 32, "phash": "cd" * 8}]}, "pdq"),
    ({"frames": [{"pdq": "ab" * 32, "phash": "cd"}]}, "phash"),
    ({"frames": [{"pdq": "ab" * 32, "phash": "cd" * 8, "pdqQuality": True}]}, "pdqQuality"),
    ({"frames": ["not an object"]}, "frame"),
    ({"frames": {"pdq": "ab" * 32}}, "frames"),
    ({"published": "yesterday"}, "published"),
    ({"expires": "2027-01-01T00:00:00"}, "time zone"),
    ({"expires": 12}, "expires"),
])
def test_malformed_attestations_are_refused_saying_why(change: dict[str, Any], message: str) -> None:
    doc = copy.deepcopy(signed(ed25519.Ed25519PrivateKey.generate()))
    doc.update(change)
    with pytest.raises(AttestationError, match=message):
        parse_attestation(doc)


def test_unattestable_labels_and_methods_are_not_built() -> None:
    for label, method in (("blocked", "classifier"), ("ok", "peer")):
        with pytest.raises(AttestationError):
            build_attestation(object_id="https://a.example/attestations/2", issuer=ISSUER,
                              audience="https://a.example/followers", sha256="ef" * 32,
                              frames=(), label=label, method=method, model=None,
                              published=datetime.now(UTC))


def test_only_own_trained_or_reviewed_verdicts_are_attested() -> None:
    from attestd.federation.publisher import publishable
    from attestd.model import Verdict

    def v(label: str, method: str) -> Verdict:
        return Verdict(1, "ef" * 32, label, method, "x", None, datetime.now(UTC))

    assert publishable(v("nsfw", "classifier"), {"publishable": True}) is None
    assert publishable(v("ok", "human_review"), None) is None
    assert "random" in str(publishable(v("nsfw", "classifier"), {"publishable": False}))
    assert publishable(v("blocked", "human_review"), None) is not None
    assert publishable(v("nsfw", "hash_list"), None) is not None
    assert publishable(v("nsfw", "peer"), None) is not None
