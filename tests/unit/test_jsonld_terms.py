"""Our documents as a JSON-LD processor reads them (pyld, standard contexts from
tests/contexts/, no network): every term we rely on expands to the IRI we mean.

The ActivityStreams context maps unknown terms to blank-node IRIs (``"@vocab": "_:"``), so
an undefined term does not vanish: it turns into ``_:term``, which no peer understands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pyld import jsonld

from activitypub import ed25519_multibase, public_key_pem
from activitypub._activities import follow, respond
from activitypub._documents import ActorSpec, actor_document, ordered_collection_page
from attestd.federation.attestations import activity, build_attestation, sign_attestation
from scanner import FrameHashes

CONTEXTS = Path(__file__).parents[1] / "contexts"
FILES = {
    "https://www.w3.org/ns/activitystreams": "activitystreams.jsonld",
    "https://w3id.org/security/v1": "security-v1.jsonld",
    "https://w3id.org/security/data-integrity/v2": "data-integrity-v2.jsonld",
    "https://www.w3.org/ns/did/v1": "did-v1.jsonld",
    "https://www.w3.org/ns/cid/v1": "cid-v1.jsonld",
    "https://w3id.org/security/multikey/v1": "multikey-v1.jsonld",
}
AS = "https://www.w3.org/ns/activitystreams#"
SEC = "https://w3id.org/security#"
ATT = "https://attestd.org/ns/v1#"
BASE = "https://a.example"


def load_context(url: str, options: Any = None) -> dict[str, Any]:
    """Standard contexts from files; anything else is an error (no network, and nobody
    should ever have to fetch a context from us)."""
    name = FILES.get(url)
    if name is None:
        raise jsonld.JsonLdError(f"context {url} is not shipped in tests/contexts",
                                 "loading document failed")
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": json.loads((CONTEXTS / name).read_text())}


def expand(doc: dict[str, Any]) -> dict[str, Any]:
    out = jsonld.expand(doc, {"documentLoader": load_context})
    assert len(out) == 1
    node: dict[str, Any] = out[0]
    return node


def iris(node: Any) -> Iterator[str]:
    """Every property IRI and type IRI in an expanded document."""
    if isinstance(node, list):
        for x in node:
            yield from iris(x)
    elif isinstance(node, dict):
        for k, v in node.items():
            if not k.startswith("@"):
                yield k
            if k == "@type" and "@value" not in node:
                yield from (v if isinstance(v, list) else [v])
            yield from iris(v)


def one(node: dict[str, Any], iri: str) -> Any:
    values = node.get(iri)
    assert values, f"{iri} is missing after expansion; the node has {sorted(node)}"
    assert len(values) == 1
    return values[0]


def no_blank_terms(node: dict[str, Any]) -> None:
    blank = sorted({i for i in iris(node) if i.startswith("_:")})
    assert not blank, f"terms no context defines (expanded to blank nodes): {blank}"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]:
    return rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()


def test_actor_keys_survive_expansion(keys: tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]
                                      ) -> None:
    spec = ActorSpec(id=f"{BASE}/actor", preferred_username="attestd", name="n", summary="s",
                     public_key_pem=public_key_pem(keys[0]),
                     ed25519_multibase=ed25519_multibase(keys[1]))
    node = expand(actor_document(spec, inbox=f"{BASE}/inbox", outbox=f"{BASE}/outbox",
                                 followers=f"{BASE}/followers", shared_inbox=f"{BASE}/inbox"))
    no_blank_terms(node)
    method = one(node, SEC + "assertionMethod")
    assert method["@id"] == spec.ed25519_key_id
    assert method["@type"] == [SEC + "Multikey"]
    assert one(method, SEC + "controller") == {"@id": spec.id}
    assert one(method, SEC + "publicKeyMultibase") == {
        "@value": spec.ed25519_multibase, "@type": SEC + "multibase"}
    pk = one(node, SEC + "publicKey")
    assert pk["@id"] == spec.main_key_id
    assert one(pk, SEC + "owner") == {"@id": spec.id}
    assert one(pk, SEC + "publicKeyPem")["@value"] == spec.public_key_pem
    assert one(node, "http://www.w3.org/ns/ldp#inbox") == {"@id": f"{BASE}/inbox"}
    assert one(node, AS + "manuallyApprovesFollowers")["@value"] is True
    assert one(one(node, AS + "endpoints"), AS + "sharedInbox") == {"@id": f"{BASE}/inbox"}


def _attestation(key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    frame = FrameHashes(pdq="ab" * 32, pdq_quality=90, phash="cd" * 8)
    return sign_attestation(build_attestation(
        object_id=f"{BASE}/attestations/1", issuer=f"{BASE}/actor",
        audience=f"{BASE}/followers", sha256="ef" * 32, frames=[frame, frame],
        label="csam_suspect", method="classifier", model="ViT-L-14/openai",
        published=datetime(2026, 11, 21, tzinfo=UTC), expires=datetime(2027, 11, 21, tzinfo=UTC)),
        key, f"{BASE}/actor#ed25519-key")


def check_attestation(node: dict[str, Any]) -> None:
    assert node["@type"] == [AS + "Object", ATT + "Attestation"]
    assert one(node, AS + "attributedTo") == {"@id": f"{BASE}/actor"}
    assert one(node, ATT + "sha256") == {"@value": "ef" * 32}
    assert one(node, ATT + "label") == {"@value": "csam_suspect"}
    assert one(node, ATT + "method") == {"@value": "classifier"}
    assert one(node, ATT + "model") == {"@value": "ViT-L-14/openai"}
    assert one(node, ATT + "pdq") == {"@value": "ab" * 32}
    assert one(node, ATT + "pdqQuality") == {"@value": 90}
    assert one(node, ATT + "phash") == {"@value": "cd" * 8}
    assert one(node, ATT + "expires") == {
        "@value": "2027-11-21T00:00:00Z", "@type": "http://www.w3.org/2001/XMLSchema#dateTime"}
    frames = one(node, ATT + "frames")["@list"]
    assert len(frames) == 2 and one(frames[0], ATT + "pdq") == {"@value": "ab" * 32}
    # The proof is a named graph holding the DataIntegrityProof.
    proof = one(node, SEC + "proof")["@graph"][0]
    assert proof["@type"] == [SEC + "DataIntegrityProof"]
    assert one(proof, SEC + "cryptosuite")["@value"] == "eddsa-jcs-2022"
    assert one(proof, SEC + "verificationMethod") == {"@id": f"{BASE}/actor#ed25519-key"}
    assert one(proof, SEC + "proofPurpose") == {"@id": SEC + "assertionMethod"}
    assert one(proof, SEC + "proofValue")["@type"] == SEC + "multibase"
    assert one(proof, "http://purl.org/dc/terms/created")["@type"] == \
        "http://www.w3.org/2001/XMLSchema#dateTime"


def test_attestation_terms_survive_expansion(
        keys: tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]) -> None:
    node = expand(_attestation(keys[1]))
    no_blank_terms(node)
    check_attestation(node)


@pytest.mark.parametrize("kind", ["Create", "Update"])
def test_activities_carrying_attestations_survive_expansion(
        kind: str, keys: tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]) -> None:
    act = activity(kind, activity_id=f"{BASE}/activities/1", actor=f"{BASE}/actor",
                   obj=_attestation(keys[1]), audience=f"{BASE}/followers",
                   published=datetime(2026, 11, 21, tzinfo=UTC))
    node = expand(act)
    no_blank_terms(node)
    assert node["@type"] == [AS + kind]
    assert one(node, AS + "actor") == {"@id": f"{BASE}/actor"}
    assert one(node, AS + "to") == {"@id": f"{BASE}/followers"}
    check_attestation(one(node, AS + "object"))


def test_delete_follow_accept_and_outbox_pages_survive_expansion(
        keys: tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]) -> None:
    delete = activity("Delete", activity_id=f"{BASE}/activities/2", actor=f"{BASE}/actor",
                      obj={"id": f"{BASE}/attestations/1", "type": "Tombstone"},
                      audience=f"{BASE}/followers", published=datetime(2026, 11, 21, tzinfo=UTC))
    node = expand(delete)
    no_blank_terms(node)
    assert one(node, AS + "object")["@type"] == [AS + "Tombstone"]

    f = follow(f"{BASE}/follows/1", "https://b.example/actor", f"{BASE}/actor")
    node = expand(respond("Accept", f"{BASE}/activities/3", f"{BASE}/actor", f))
    no_blank_terms(node)
    assert one(node, AS + "object")["@type"] == [AS + "Follow"]

    create = activity("Create", activity_id=f"{BASE}/activities/1", actor=f"{BASE}/actor",
                      obj=_attestation(keys[1]), audience=f"{BASE}/followers",
                      published=datetime(2026, 11, 21, tzinfo=UTC))
    page = ordered_collection_page(f"{BASE}/outbox", f"{BASE}/outbox?page=true", [create],
                                   next_url=None, prev_url=None)
    node = expand(page)
    no_blank_terms(node)
    item = one(node, AS + "items")["@list"][0]  # orderedItems is as:items, a list
    check_attestation(one(item, AS + "object"))
