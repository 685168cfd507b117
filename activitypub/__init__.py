"""A small, generic ActivityPub library: HTTP signatures, object proofs, documents,
signed fetch, inbox verification, persistent delivery. Knows nothing about attestd.

The protocol logic is pure (no I/O); ``activitypub.fetch`` and ``activitypub.delivery``
are the edges that talk to the network.
"""

from activitypub._activities import follow, respond, undo
from activitypub._collections import PageItems, PageRequest, build_page, parse_page_request
from activitypub._digest import check_digest, make_digest
from activitypub._documents import (
    ACTIVITY_JSON,
    JRD_JSON,
    ActorSpec,
    actor_document,
    key_owner,
    nodeinfo_document,
    nodeinfo_links,
    ordered_collection,
    page_url,
    parse_acct,
    types_of,
    webfinger_document,
)
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
    "ACTIVITY_JSON",
    "JRD_JSON",
    "MAX_JSON_DEPTH",
    "ActivityPubError",
    "ActorSpec",
    "BlockedAddressError",
    "FetchError",
    "JSONInputError",
    "LocalProtocolError",
    "PageItems",
    "PageRequest",
    "RemoteProtocolError",
    "SignatureError",
    "SignatureParams",
    "VerifiedProof",
    "VerifiedSignature",
    "actor_document",
    "build_page",
    "canonical_host",
    "check_digest",
    "create_proof",
    "ed25519_multibase",
    "follow",
    "key_owner",
    "load_ed25519_multibase",
    "load_ed25519_private_multibase",
    "load_json",
    "load_public_key_pem",
    "make_digest",
    "nodeinfo_document",
    "nodeinfo_links",
    "normalize_host",
    "ordered_collection",
    "page_url",
    "parse_acct",
    "parse_page_request",
    "parse_signature_header",
    "proof_method",
    "public_key_pem",
    "respond",
    "same_origin",
    "sign_request",
    "signing_string",
    "types_of",
    "undo",
    "verify_proof",
    "verify_request",
    "webfinger_document",
]
