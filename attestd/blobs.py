"""Image bytes kept for later classification and review, by sha256.

Three backends behind one async interface: a folder under the data folder (one host),
an S3 bucket or the database (several node processes on several hosts, so a worker's
image fetch works through whichever process it reaches).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select

from attestd.db import schema as t
from attestd.model import utcnow
from scanner import normalise_hex

if TYPE_CHECKING:
    from attestd.config import Config
    from attestd.db.store import Store


class Blobs(Protocol):
    """Content-addressed bytes; storing the same sha256 twice is harmless."""

    async def put(self, sha256: str, data: bytes) -> None: ...
    async def get(self, sha256: str) -> bytes | None: ...
    async def has(self, sha256: str) -> bool: ...
    async def delete(self, sha256: str) -> None: ...


class BlobStore:
    """Files under ``root``, readable only by the node's user (the single-host default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        sha = normalise_hex(sha256, 64, "sha256")
        return self.root / sha[:2] / sha[2:4] / sha

    def _put(self, sha256: str, data: bytes) -> None:
        path = self.path(sha256)
        if path.exists():
            return
        # Every folder 0700, not only the last (mkdir's mode applies to that one alone): the
        # names are sha256s, which say which images the node holds for review.
        for folder in (self.root.parent, self.root, path.parent.parent, path.parent):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def _get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    async def put(self, sha256: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, sha256, data)

    async def get(self, sha256: str) -> bytes | None:
        return await asyncio.to_thread(self._get, sha256)

    async def has(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).is_file)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.path(sha256).unlink, missing_ok=True)


class S3Blobs:
    """Objects ``<prefix><sha256>`` in a bucket (boto3 in threads: it has no asyncio API)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, sha256: str) -> str:
        return self.prefix + normalise_hex(sha256, 64, "sha256")

    async def put(self, sha256: str, data: bytes) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket,
                                Key=self._key(sha256), Body=data)

    def _get(self, sha256: str) -> bytes | None:
        from attestd.s3 import get_object_or_none  # boto3 only when S3 is used

        return get_object_or_none(self.client, self.bucket, self._key(sha256))

    async def get(self, sha256: str) -> bytes | None:
        return await asyncio.to_thread(self._get, sha256)

    def _has(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def has(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._has, sha256)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket,
                                Key=self._key(sha256))


class DatabaseBlobs:
    """Rows of the ``blobs`` table, one namespace (``jobs`` or ``review``) per store."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def _where(self, sha256: str) -> Any:
        return ((t.blobs.c.namespace == self.namespace)
                & (t.blobs.c.sha256 == normalise_hex(sha256, 64, "sha256")))

    async def put(self, sha256: str, data: bytes) -> None:
        from attestd.db.rows import insert_ignore

        async with self.store.writing() as conn:
            await conn.execute(insert_ignore(conn)(t.blobs).values(
                namespace=self.namespace, sha256=normalise_hex(sha256, 64, "sha256"),
                data=data, created_at=utcnow()).on_conflict_do_nothing())

    async def get(self, sha256: str) -> bytes | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(t.blobs.c.data).where(self._where(sha256)))).first()
        return None if row is None else bytes(row.data)

    async def has(self, sha256: str) -> bool:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(t.blobs.c.sha256).where(self._where(sha256)))).first()
        return row is not None

    async def delete(self, sha256: str) -> None:
        async with self.store.writing() as conn:
            await conn.execute(delete(t.blobs).where(self._where(sha256)))


def open_blobs(config: Config, store: Store, namespace: str) -> Blobs:
    """The store ``[blobs] backend`` names, for ``namespace`` (``jobs`` or ``review``)."""
    cfg = config.blobs
    if cfg.backend == "s3":
        from attestd.s3 import s3_client

        return S3Blobs(s3_client(cfg.s3), cfg.s3.bucket, f"{cfg.s3.prefix}{namespace}/")
    if cfg.backend == "database":
        return DatabaseBlobs(store, namespace)
    # The folder names predate the namespaces: data_dir/blobs holds the jobs' bytes.
    return BlobStore(config.node.data_dir / ("blobs" if namespace == "jobs" else namespace))
