"""A small, generic ActivityPub library: HTTP signatures, object proofs, documents,
signed fetch, inbox verification, persistent delivery. Knows nothing about attestd.

The protocol logic is pure (no I/O); ``activitypub.fetch`` and ``activitypub.delivery``
are the edges that talk to the network.
"""

from activitypub._digest import check_digest, make_digest
from activitypub._errors import (
    ActivityPubError,
    BlockedAddressError,
    FetchError,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
)
from activitypub._hosts import canonical_host, normalize_host, same_origin
from activitypub._json import MAX_DEPTH as MAX_JSON_DEPTH
from activitypub._json import JSONInputError, load_json
from activitypub._keys import (
    ed25519_multibase,
    load_ed25519_multibase,
    load_ed25519_private_multibase,
    load_public_key_pem,
    public_key_pem,
)
from activitypub._proofs import VerifiedProof, create_proof, proof_method, verify_proof
from activitypub._signatures import (
    SignatureParams,
    VerifiedSignature,
    parse_signature_header,
    sign_request,
    signing_string,
    verify_request,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "ActivityPubError",
    "BlockedAddressError",
    "FetchError",
    "JSONInputError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "SignatureParams",
    "VerifiedProof",
    "VerifiedSignature",
    "canonical_host",
    "check_digest",
    "create_proof",
    "ed25519_multibase",
    "load_ed25519_multibase",
    "load_ed25519_private_multibase",
    "load_json",
    "load_public_key_pem",
    "make_digest",
    "normalize_host",
    "parse_signature_header",
    "proof_method",
    "public_key_pem",
    "same_origin",
    "sign_request",
    "signing_string",
    "verify_proof",
    "verify_request",
]
