"""docs/attestation-fep.md's test vectors are what our code produces and accepts, so a
second implementation can rely on them."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import base58
import pytest
import rfc8785

from activitypub import (
    SignatureError,
    create_proof,
    ed25519_multibase,
    load_ed25519_multibase,
    load_ed25519_private_multibase,
    verify_proof,
)
from activitypub._documents import ActorSpec, actor_document, actor_keys
from activitypub._proofs import proof_configuration
from attestd.federation.attestations import CONTEXT, build_attestation, parse_attestation
from scanner import FrameHashes

DOC = Path(__file__).parents[2] / "docs" / "attestation-fep.md"
_BLOCK = re.compile(r"<!-- vector: ([a-z-]+) -->\n```(?:json|text)\n(.*?)\n```", re.S)


@pytest.fixture(scope="module")
def vectors() -> dict[str, str]:
    found = dict(_BLOCK.findall(DOC.read_text()))
    assert set(found) >= {"context", "secret-key", "public-key", "assertion-method",
                          "attestation", "proof-options", "canonical-proof-configuration",
                          "canonical-document", "hash-data", "proof-value"}, sorted(found)
    return found


def _json(vectors: dict[str, str], name: str) -> Any:
    return json.loads(vectors[name])


def test_the_documented_context_is_the_one_we_emit(vectors: dict[str, str]) -> None:
    assert _json(vectors, "context") == CONTEXT


def test_the_documented_attestation_is_what_we_build(vectors: dict[str, str]) -> None:
    built = build_attestation(
        object_id="https://node.example/attestations/0193f6c2-5b1e-7a4c-9d2e-8f3a6b7c1d20",
        issuer="https://node.example/actor", audience="https://node.example/followers",
        sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        frames=[FrameHashes(pdq="e4c1" * 16, pdq_quality=100, phash="c3a1b2d4e5f60718")],
        label="csam_suspect", method="classifier", model="ViT-L-14/openai",
        published=datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC))
    assert built == _json(vectors, "attestation")


def test_key_canonical_bytes_hash_data_and_proof_value(vectors: dict[str, str]) -> None:
    key = load_ed25519_private_multibase(vectors["secret-key"])
    assert ed25519_multibase(key) == vectors["public-key"]
    doc = _json(vectors, "attestation")
    options = _json(vectors, "proof-options")
    config = proof_configuration(doc, options)
    assert rfc8785.dumps(config).decode() == vectors["canonical-proof-configuration"]
    assert rfc8785.dumps(doc).decode() == vectors["canonical-document"]
    hash_data = (hashlib.sha256(vectors["canonical-proof-configuration"].encode()).digest()
                 + hashlib.sha256(vectors["canonical-document"].encode()).digest())
    assert hash_data.hex() == vectors["hash-data"]
    # proofValue is the Ed25519 signature of the hash data (raises if not).
    key.public_key().verify(base58.b58decode(vectors["proof-value"][1:]), hash_data)

    signed = create_proof(doc, key, options["verificationMethod"],
                          created=datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC))
    assert signed["proof"] == {**options, "proofValue": vectors["proof-value"]}


def test_the_signed_vector_verifies_with_the_published_key(vectors: dict[str, str]) -> None:
    method = _json(vectors, "assertion-method")
    spec = ActorSpec(id=method["controller"], preferred_username="attestd", name="n",
                     summary="s", public_key_pem="", ed25519_multibase=method["publicKeyMultibase"])
    actor = actor_document(spec, inbox="https://node.example/inbox",
                           outbox="https://node.example/outbox",
                           followers="https://node.example/followers")
    assert actor["assertionMethod"] == [method]
    assert actor_keys(actor)[method["id"]] == ("multibase", method["publicKeyMultibase"])

    public = load_ed25519_multibase(method["publicKeyMultibase"])
    signed = {**_json(vectors, "attestation"),
              "proof": {**_json(vectors, "proof-options"), "proofValue": vectors["proof-value"]}}
    assert verify_proof(signed, public).verification_method == method["id"]
    assert parse_attestation(signed).label == "csam_suspect"
    tampered = copy.deepcopy(signed)
    tampered["label"] = "ok"
    with pytest.raises(SignatureError):
        verify_proof(tampered, public)
