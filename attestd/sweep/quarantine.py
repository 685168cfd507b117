"""Where quarantined images go, each with an evidence record beside it.

Some jurisdictions require keeping such material for the authorities rather than
destroying it; the record says what was found, why it was judged, and where it was.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from attestd.config import SweepConfig
from attestd.files import write_private
from attestd.model import CheckOutcome
from attestd.sweep.model import StoredObject, SweepError
from scanner import ImageHashes


class Quarantine(Protocol):
    where: str

    async def put(self, key: str, data: bytes, evidence: bytes) -> str:
        """Keep ``data`` and its evidence under ``key``; says where it is now."""


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_key(key: str) -> str:
    """``key`` as a relative path that cannot climb out of the quarantine."""
    parts = [_UNSAFE.sub("_", p) for p in key.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "object"


class FolderQuarantine:
    def __init__(self, path: str | Path) -> None:
        self.root = Path(path).resolve()
        self.where = str(self.root)

    async def put(self, key: str, data: bytes, evidence: bytes) -> str:
        return await asyncio.to_thread(self._put, safe_key(key), data, evidence)

    def _put(self, key: str, data: bytes, evidence: bytes) -> str:
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Evidence first, and each file complete or absent (written aside, then renamed).
        write_private(dest.with_name(dest.name + ".evidence.json"), evidence)
        write_private(dest, data)
        return str(dest)


class EncryptedQuarantine:
    """A quarantine whose images are written encrypted to the admin's age key (``KEY.age``),
    when ``[evidence]`` is enabled: no plaintext copy of abuse material at rest."""

    def __init__(self, inner: Quarantine, recipient: str) -> None:
        self.inner, self.recipient = inner, recipient
        self.where = inner.where

    async def put(self, key: str, data: bytes, evidence: bytes) -> str:
        from attestd.evidence.crypto import encrypt

        sealed = await asyncio.to_thread(encrypt, data, self.recipient)
        return await self.inner.put(key + ".age", sealed, evidence)


def open_quarantine(cfg: SweepConfig, s3_client: Any | None = None, *,
                    encrypt_to: str = "") -> Quarantine | None:
    """The quarantine ``sweep.quarantine`` names, or None when it is empty; its images
    encrypted to ``encrypt_to`` (an age public key) when given."""
    plain = _open_plain(cfg, s3_client)
    return EncryptedQuarantine(plain, encrypt_to) if plain and encrypt_to else plain


def _open_plain(cfg: SweepConfig, s3_client: Any | None) -> Quarantine | None:
    target = cfg.quarantine.strip()
    if not target:
        return None
    if target.startswith("s3://"):
        from attestd.s3 import s3_client as make_client
        from attestd.sweep.sources.s3 import S3Quarantine
        bucket, _, prefix = target[len("s3://"):].partition("/")
        if not bucket:
            raise SweepError(f"sweep.quarantine {target!r} names no bucket (s3://BUCKET/prefix)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Quarantine(s3_client or make_client(cfg.s3), bucket, prefix)
    if "://" in target:
        raise SweepError(f"sweep.quarantine {target!r}: use a folder path or s3://bucket/prefix")
    return FolderQuarantine(target)


def evidence_record(*, obj: StoredObject, store_name: str, outcome: CheckOutcome,
                    hashes: ImageHashes | None, run_id: int, node: str,
                    at: datetime) -> bytes:
    """The JSON evidence kept beside a quarantined object."""
    record: dict[str, Any] = {
        "type": "attestd-quarantine-evidence",
        "version": 1,
        "quarantined_at": at.isoformat(),
        "node": node,
        "sweep_run": run_id,
        "store": store_name,
        "original_key": obj.key,
        "aliases": list(obj.aliases),
        "size": obj.size,
        "last_modified": obj.modified.isoformat() if obj.modified else None,
        "sha256": outcome.sha256,
        "verdict": {"decision": outcome.decision, "label": outcome.label,
                    "decided_by": outcome.source, "reason": outcome.reason,
                    "detail": outcome.detail or None},
    }
    if hashes is not None:
        record["media_type"] = hashes.media_type
        record["frames"] = [{"pdq": f.pdq, "pdq_quality": f.pdq_quality, "phash": f.phash}
                            for f in hashes.frames]
    return json.dumps(record, indent=2, default=str).encode()
