"""Where the encrypted evidence bytes live: a folder (0700, files 0600) or an S3 prefix.

Names are random, never the sha256: a listing must not say which images are held.
Only ``EvidenceStore.purge`` deletes from here, and only what has expired.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Protocol

from attestd.files import write_private

_NAME = re.compile(r"^[0-9a-f]{32}\.age$")


class EvidenceFilesError(Exception):
    """The evidence files could not be written or read."""


class EvidenceFiles(Protocol):
    where: str

    async def put(self, name: str, data: bytes) -> None: ...
    async def get(self, name: str) -> bytes | None: ...
    async def delete(self, name: str) -> None: ...


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise EvidenceFilesError(f"{name!r} is not an evidence file name")
    return name


class FolderEvidence:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def _put(self, name: str, data: bytes) -> None:
        for folder in (self.root.parent, self.root):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.root / check_name(name), data)

    async def put(self, name: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._put, name, data)
        except OSError as exc:
            raise EvidenceFilesError(f"cannot write evidence to {self.root}: "
                                     f"{exc.strerror}") from None

    def _get(self, name: str) -> bytes | None:
        try:
            return (self.root / check_name(name)).read_bytes()
        except FileNotFoundError:
            return None

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._get, name)

    async def delete(self, name: str) -> None:
        path = self.root / check_name(name)
        await asyncio.to_thread(path.unlink, missing_ok=True)


class S3Evidence:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.where = f"s3://{bucket}/{prefix}"

    async def put(self, name: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(self.client.put_object, Bucket=self.bucket,
                                    Key=self.prefix + check_name(name), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise EvidenceFilesError(f"cannot write evidence to {self.where}: {exc}") from None

    def _get(self, name: str) -> bytes | None:
        from attestd.s3 import get_object_or_none  # boto3 only when S3 is used

        return get_object_or_none(self.client, self.bucket, self.prefix + check_name(name))

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._get, name)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket,
                                Key=self.prefix + check_name(name))


def open_files(path: str, *, data_dir: Path, base: Path, s3_cfg: Any = None) -> EvidenceFiles:
    """The store ``evidence.path`` names: ``""`` is data_dir/evidence, a relative folder
    is relative to ``base`` (the config file's folder), s3://bucket/prefix uses ``s3_cfg``."""
    target = path.strip()
    if not target:
        return FolderEvidence(data_dir / "evidence")
    if target.startswith("s3://"):
        from attestd.s3 import s3_client

        bucket, _, prefix = target[len("s3://"):].partition("/")
        if not bucket:
            raise EvidenceFilesError(f"evidence.path {target!r} names no bucket "
                                     "(s3://BUCKET/prefix)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Evidence(s3_client(s3_cfg), bucket, prefix)
    if "://" in target:
        raise EvidenceFilesError(f"evidence.path {target!r}: use a folder or s3://bucket/prefix")
    folder = Path(os.path.expanduser(target))
    return FolderEvidence(folder if folder.is_absolute() else (base / folder).resolve())
