"""Attestations on the wire: building, signing and parsing them (pure, no I/O).

The format is defined here once and documented in the README ("Attestations on the
wire"). Its version is carried in the namespace IRI, so a receiver can tell which one a
peer speaks from the inline context alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from activitypub import create_proof, same_origin
from attestd.errors import AttestdError
from scanner import FrameHashes
from scanner.classifier import model_id_problem

NAMESPACE = "https://attestd.org/ns/v1#"
FORMAT_VERSION = 1
# Standard contexts by URL (every implementation preloads them); our terms inline, so
# nobody ever has to fetch a context document from us.
CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/data-integrity/v2",
    {
        "attestd": NAMESPACE,
        "Attestation": "attestd:Attestation",
        "sha256": "attestd:sha256",
        "pdq": "attestd:pdq",
        "pdqQuality": "attestd:pdqQuality",
        "phash": "attestd:phash",
        "frames": {"@id": "attestd:frames", "@container": "@list"},
        "label": "attestd:label",
        "method": "attestd:method",
        "model": "attestd:model",
        "expires": {"@id": "attestd:expires", "@type": "xsd:dateTime"},
        "xsd": "http://www.w3.org/2001/XMLSchema#",
    },
]
TYPE = ["Object", "Attestation"]
ATTESTED_LABELS = ("ok", "nsfw", "csam_suspect")
METHODS = ("classifier", "human_review", "hash_list")
MAX_FRAMES = 64

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


class AttestationError(AttestdError):
    """An attestation (or the activity carrying it) is malformed."""


@dataclass(frozen=True, slots=True)
class Attestation:
    """A parsed attestation: what a peer says about one image."""

    id: str
    issuer: str
    sha256: str
    label: str
    method: str
    model: str | None
    frames: tuple[FrameHashes, ...]
    published: datetime | None
    expires: datetime | None


def wire_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_attestation(*, object_id: str, issuer: str, audience: str, sha256: str,
                      frames: Sequence[FrameHashes], label: str, method: str,
                      model: str | None, published: datetime,
                      expires: datetime | None = None) -> dict[str, Any]:
    """The unsigned attestation document (sign it with :func:`sign_attestation`)."""
    if label not in ATTESTED_LABELS:
        raise AttestationError(f"label {label!r} is not attestable; use one of {ATTESTED_LABELS}")
    if method not in METHODS:
        raise AttestationError(f"method {method!r} is not one of {METHODS}")
    doc: dict[str, Any] = {
        "@context": CONTEXT, "id": object_id, "type": TYPE, "attributedTo": issuer,
        "published": wire_time(published), "sha256": sha256, "label": label, "method": method,
        "to": [audience],
    }
    if model:
        doc["model"] = model
    if frames:
        first = frames[0]
        doc.update(pdq=first.pdq, pdqQuality=first.pdq_quality, phash=first.phash)
        if len(frames) > 1:
            # Animations and videos: one hash set per sampled frame.
            doc["frames"] = [{"pdq": f.pdq, "pdqQuality": f.pdq_quality, "phash": f.phash}
                             for f in frames[:MAX_FRAMES]]
    if expires is not None:
        doc["expires"] = wire_time(expires)
    return doc


def sign_attestation(doc: Mapping[str, Any], key: ed25519.Ed25519PrivateKey,
                     verification_method: str) -> dict[str, Any]:
    return create_proof(doc, key, verification_method)


def activity(kind: str, *, activity_id: str, actor: str, obj: Any, audience: str,
             published: datetime) -> dict[str, Any]:
    """A Create / Update / Delete of an attestation, addressed to followers only."""
    return {"@context": CONTEXT, "id": activity_id, "type": kind, "actor": actor,
            "object": obj, "to": [audience], "published": wire_time(published)}


def is_attestation(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    types = obj.get("type")
    names = types if isinstance(types, list) else [types]
    return "Attestation" in names or f"{NAMESPACE}Attestation" in names


def speaks_our_version(obj: Mapping[str, Any]) -> bool:
    """True when the document's context names this format version's namespace."""
    ctx = obj.get("@context")
    entries = ctx if isinstance(ctx, list) else [ctx]
    return any(isinstance(e, Mapping) and e.get("attestd") == NAMESPACE for e in entries)


def parse_attestation(obj: Mapping[str, Any]) -> Attestation:
    """Check an attestation's shape and values; raises AttestationError saying what is wrong.

    The proof is checked separately (it needs the issuer's key).
    """
    if not is_attestation(obj):
        raise AttestationError("the object is not an Attestation")
    if not speaks_our_version(obj):
        raise AttestationError(f"the attestation does not use format version {FORMAT_VERSION} "
                               f"(its @context must map 'attestd' to {NAMESPACE})")
    oid, issuer = obj.get("id"), obj.get("attributedTo")
    if not isinstance(oid, str) or not oid.startswith(("https://", "http://")):
        raise AttestationError("the attestation has no http(s) id")
    if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
        raise AttestationError("the attestation has no attributedTo actor URL")
    if not same_origin(oid, issuer):
        # An id names its issuer's object: one issued under another's host could take
        # that id (and its retraction) before the real object arrives.
        raise AttestationError(f"the attestation's id {oid[:200]} is not on its issuer's "
                               f"host ({issuer[:200]})")
    sha = obj.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise AttestationError("sha256 must be 64 lower-case hex digits")
    label, method = obj.get("label"), obj.get("method")
    if label not in ATTESTED_LABELS:
        raise AttestationError(f"label must be one of {ATTESTED_LABELS}")
    if method not in METHODS:
        raise AttestationError(f"method must be one of {METHODS}")
    model = obj.get("model")
    if model is not None and (problem := model_id_problem(model, "model")) is not None:
        raise AttestationError(problem)
    raw_frames = obj.get("frames")
    if raw_frames is None:
        raw_frames = [obj] if "pdq" in obj or "phash" in obj else []
    if not isinstance(raw_frames, list) or len(raw_frames) > MAX_FRAMES:
        raise AttestationError(f"frames must be a list of at most {MAX_FRAMES} hash sets")
    frames = tuple(_frame(f) for f in raw_frames)
    return Attestation(id=oid, issuer=issuer, sha256=sha, label=str(label), method=str(method),
                       model=model, frames=frames, published=_time(obj, "published"),
                       expires=_time(obj, "expires"))


def _frame(f: Any) -> FrameHashes:
    if not isinstance(f, Mapping):
        raise AttestationError("each frame must be an object with pdq and phash")
    pdq, phash, quality = f.get("pdq"), f.get("phash"), f.get("pdqQuality", 100)
    if not isinstance(pdq, str) or not _HEX64.match(pdq):
        raise AttestationError("pdq must be 64 lower-case hex digits")
    if not isinstance(phash, str) or not _HEX16.match(phash):
        raise AttestationError("phash must be 16 lower-case hex digits")
    if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
        raise AttestationError("pdqQuality must be an integer from 0 to 100")
    return FrameHashes(pdq=pdq, pdq_quality=quality, phash=phash)


def _time(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AttestationError(f"{key} must be an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AttestationError(f"{key} is not an ISO 8601 time: {value[:40]!r}") from None
    if when.tzinfo is None:
        raise AttestationError(f"{key} must carry a time zone")
    return when.astimezone(UTC)
