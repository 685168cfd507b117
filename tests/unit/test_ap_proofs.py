"""FEP-8b32 eddsa-jcs-2022 proofs: the W3C form we sign (Fedify's vector), the early FEP
form we still accept, an independent implementation, and tampering."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from activitypub import (
    SignatureError,
    create_proof,
    ed25519_multibase,
    load_ed25519_multibase,
    load_ed25519_private_multibase,
    proof_method,
    verify_proof,
)

# FEP-8b32's published test vector (public test data).
FEP_KEY = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"
FEP_DOC = {
    "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v1"],
    "type": "Create",
    "actor": "https://server.example/users/alice",
    "object": {"type": "Note", "content": "Hello world"},
}
FEP_PROOF_VALUE = ("z3sXaxjKs4M3BRicwWA9peyNPJvJqxtGsDmpt1jjoHCjgeUf71TRFz56osPSfDErszyLp5Ks1EhYSg"
                   "pDaNM977Rg2")
FEP_CREATED = datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)
FEP_METHOD = "https://server.example/users/alice#ed25519-key"


# The same key signing in the W3C form (vc-di-eddsa: the document's @context in the
# proof configuration): Fedify's test vector (npm @fedify/fedify 2.3.6, sig/proof.test).
W3C_DOC = {
    "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v1"],
    "id": "https://server.example/activities/1",
    "type": "Create",
    "actor": "https://server.example/users/alice",
    "object": {
        "id": "https://server.example/objects/1",
        "type": "Note",
        "attributedTo": "https://server.example/users/alice",
        "content": "Hello world",
        "location": {"type": "Place", "longitude": -71.184902, "latitude": 25.273962},
    },
}
W3C_PROOF_VALUE = ("zLaewdp4H9kqtwyrLatK4cjY5oRHwVcw4gibPSUDYDMhi4M49v8pcYk3ZB6D69dNpAPbUmY8ocuJ3m9"
                   "KhKJEEg7z")


def test_we_sign_in_the_w3c_form_as_fedify_does() -> None:
    key = load_ed25519_private_multibase(FEP_KEY)
    signed = create_proof(W3C_DOC, key, FEP_METHOD, created=FEP_CREATED)
    assert signed["proof"] == {
        "type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": FEP_METHOD, "proofPurpose": "assertionMethod",
        "created": "2023-02-24T23:36:38Z", "proofValue": W3C_PROOF_VALUE,
    }
    assert verify_proof(signed, key.public_key()).verification_method == FEP_METHOD
    assert proof_method(signed) == FEP_METHOD
    # A proof that states the @context itself verifies too.
    stated = {**signed, "proof": {**signed["proof"], "@context": W3C_DOC["@context"]}}
    verify_proof(stated, key.public_key())


def test_the_early_fep_8b32_form_still_verifies() -> None:
    key = load_ed25519_private_multibase(FEP_KEY)
    legacy = {**FEP_DOC, "proof": {
        "type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": FEP_METHOD, "proofPurpose": "assertionMethod",
        "created": "2023-02-24T23:36:38Z", "proofValue": FEP_PROOF_VALUE}}
    assert verify_proof(legacy, key.public_key()).created == "2023-02-24T23:36:38Z"
    # ... and is no longer what we emit for that document.
    assert create_proof(FEP_DOC, key, FEP_METHOD, created=FEP_CREATED)["proof"]["proofValue"] \
        != FEP_PROOF_VALUE
    legacy["proof"]["created"] = "2023-02-24T23:36:39Z"
    with pytest.raises(SignatureError):
        verify_proof(legacy, key.public_key())


def test_multikey_round_trip() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    mb = ed25519_multibase(key)
    assert mb.startswith("z6Mk")  # every Ed25519 Multikey starts so
    assert load_ed25519_multibase(mb).public_bytes_raw() == key.public_key().public_bytes_raw()


DOC = {
    "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v2",
                 {"attestd": "https://example.org/ns#", "label": "attestd:label"}],
    "id": "https://a.example/attestations/1",
    "type": ["Object", "Attestation"],
    "attributedTo": "https://a.example/actor",
    "label": "csam_suspect",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "published": "2026-11-21T10:00:00Z",
}


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_created_is_whole_seconds_with_z(key: ed25519.Ed25519PrivateKey) -> None:
    signed = create_proof(DOC, key, "https://a.example/actor#ed25519-key",
                          created=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    assert signed["proof"]["created"] == "2026-01-02T03:04:05Z"
    assert signed["@context"] == DOC["@context"]  # the object's own context, inline


def _mutations() -> list[tuple[str, object]]:
    def label(d: dict) -> None:
        d["label"] = "ok"

    def nested(d: dict) -> None:
        d["@context"][2]["label"] = "attestd:other"

    def drop(d: dict) -> None:
        del d["sha256"]

    def add(d: dict) -> None:
        d["expires"] = "2030-01-01T00:00:00Z"

    def method(d: dict) -> None:
        d["proof"]["verificationMethod"] = "https://evil.example/actor#key"

    def created(d: dict) -> None:
        d["proof"]["created"] = "2020-01-01T00:00:00Z"

    def purpose(d: dict) -> None:
        d["proof"]["proofPurpose"] = "authentication"

    def suite(d: dict) -> None:
        d["proof"]["cryptosuite"] = "eddsa-rdfc-2022"

    def value(d: dict) -> None:
        d["proof"]["proofValue"] = "z" + "1" * 80

    def notbase58(d: dict) -> None:
        d["proof"]["proofValue"] = "z0OIl"

    def noproof(d: dict) -> None:
        del d["proof"]

    return [(f.__name__, f) for f in (label, nested, drop, add, method, created, purpose, suite,
                                       value, notbase58, noproof)]


@pytest.mark.parametrize("name,mutate", _mutations())
def test_any_change_breaks_the_proof(key: ed25519.Ed25519PrivateKey, name: str,
                                     mutate: object) -> None:
    signed = create_proof(DOC, key, "https://a.example/actor#ed25519-key")
    tampered = copy.deepcopy(signed)
    mutate(tampered)  # type: ignore[operator]
    with pytest.raises(SignatureError):
        verify_proof(tampered, key.public_key())


def test_wrong_key_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    signed = create_proof(DOC, key, "https://a.example/actor#ed25519-key")
    with pytest.raises(SignatureError, match="another key"):
        verify_proof(signed, ed25519.Ed25519PrivateKey.generate().public_key())


def test_key_order_and_whitespace_do_not_matter(key: ed25519.Ed25519PrivateKey) -> None:
    import json

    signed = create_proof(DOC, key, "https://a.example/actor#ed25519-key")
    reordered = json.loads(json.dumps(dict(reversed(list(signed.items()))), indent=3))
    verify_proof(reordered, key.public_key())


def test_we_verify_an_independent_implementations_proofs(key: ed25519.Ed25519PrivateKey) -> None:
    """apsig signs in the early FEP-8b32 form; we accept it. (apsig does not verify the
    W3C form we emit; real Fedify does: tests/interop/test_fedify.py.)"""
    from apsig import ProofSigner

    theirs = ProofSigner(key).sign(DOC, {
        "type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": "https://a.example/actor#ed25519-key",
        "proofPurpose": "assertionMethod", "created": "2026-11-21T10:00:00Z"})
    assert verify_proof(theirs, key.public_key()).created == "2026-11-21T10:00:00Z"
