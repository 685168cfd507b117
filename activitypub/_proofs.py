"""Object integrity proofs: FEP-8b32 ``DataIntegrityProof`` with cryptosuite eddsa-jcs-2022.

The proof travels inside the object, so anyone holding the signer's Ed25519 key can verify
an object received second-hand. Canonicalisation is RFC 8785 (JCS) via ``rfc8785``.

We sign in the W3C form (vc-di-eddsa, "Proof Configuration (eddsa-jcs-2022)"): the
document's ``@context`` is part of the hashed proof configuration, though not written into
the emitted proof. Fedify signs and verifies only that form. Early FEP-8b32 test vectors
hashed the configuration without it; we still accept proofs made that way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import base58
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from activitypub._errors import LocalProtocolError, SignatureError

CRYPTOSUITE = "eddsa-jcs-2022"
_CREATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    verification_method: str
    created: str
    proof_purpose: str


def create_proof(document: Mapping[str, Any], private_key: ed25519.Ed25519PrivateKey,
                 verification_method: str, *, created: datetime | None = None,
                 proof_purpose: str = "assertionMethod") -> dict[str, Any]:
    """Return a copy of ``document`` with an eddsa-jcs-2022 ``proof`` added.

    ``created`` is written as YYYY-MM-DDTHH:MM:SSZ: some verifiers rebuild the timestamp
    and fail on fractions or "+00:00".
    """
    if "proof" in document:
        raise LocalProtocolError("the document already carries a proof")
    when = (created or datetime.now(UTC)).astimezone(UTC)
    options = {
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "verificationMethod": verification_method,
        "proofPurpose": proof_purpose,
        "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    signature = private_key.sign(_hash_data(document, proof_configuration(document, options)))
    return {**document, "proof": {**options, "proofValue": "z" + base58.b58encode(signature).decode()}}


def proof_configuration(document: Mapping[str, Any], options: Mapping[str, Any]
                        ) -> dict[str, Any]:
    """The proof configuration that is hashed: the options plus, in the W3C form, the
    unsecured document's ``@context`` (when it has one)."""
    if "@context" in document:
        return {**options, "@context": document["@context"]}
    return dict(options)


def proof_method(document: Mapping[str, Any]) -> str:
    """The ``verificationMethod`` of the document's proof (to look its key up).

    Raises SignatureError if there is no usable proof.
    """
    proof = document.get("proof")
    if not isinstance(proof, Mapping):
        raise SignatureError("the object carries no proof")
    method = proof.get("verificationMethod")
    if not isinstance(method, str) or not method:
        raise SignatureError("the proof has no verificationMethod")
    return method


def verify_proof(document: Mapping[str, Any], public_key: ed25519.Ed25519PublicKey, *,
                 proof_purpose: str = "assertionMethod") -> VerifiedProof:
    """Verify the document's eddsa-jcs-2022 proof. Raises SignatureError saying why not."""
    proof = document.get("proof")
    if not isinstance(proof, Mapping):
        raise SignatureError("the object carries no proof")
    if proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != CRYPTOSUITE:
        raise SignatureError(f"unsupported proof type; expected DataIntegrityProof/{CRYPTOSUITE}")
    if proof.get("proofPurpose") != proof_purpose:
        raise SignatureError(f"the proof's purpose is not {proof_purpose}")
    created = proof.get("created")
    if created is not None and (not isinstance(created, str) or not _CREATED.match(created)):
        raise SignatureError("the proof's created time is malformed")
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        raise SignatureError("the proofValue is not base58btc multibase")
    try:
        signature = base58.b58decode(value[1:])
    except ValueError:
        raise SignatureError("the proofValue is not valid base58btc") from None
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    # A proof that states an @context must state the document's own.
    if "@context" in options and options["@context"] != unsecured.get("@context"):
        raise SignatureError("the proof's @context differs from the document's")
    # Implementations differ on whether the proof configuration carries the document's
    # @context (the W3C suite, Fedify and we add it; FEP-8b32's early test vector did not).
    # Either way the whole document and every proof option are signed, so accepting both
    # is safe. The W3C form is tried first: it is what almost every signer sends.
    configs = [proof_configuration(unsecured, options)]
    if "@context" not in options and "@context" in unsecured:
        configs.append(options)
    for config in configs:
        try:
            public_key.verify(signature, _hash_data(unsecured, config))
            break
        except InvalidSignature:
            continue
    else:
        raise SignatureError("the proof does not verify: the object was changed or "
                             "signed with another key")
    return VerifiedProof(str(proof["verificationMethod"]), str(created or ""), proof_purpose)


def _hash_data(document: Mapping[str, Any], config: Mapping[str, Any]) -> bytes:
    try:
        return (hashlib.sha256(rfc8785.dumps(config)).digest()
                + hashlib.sha256(rfc8785.dumps(dict(document))).digest())
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise SignatureError(f"the object cannot be canonicalised (RFC 8785): {exc}") from None
