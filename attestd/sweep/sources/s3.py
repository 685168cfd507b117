"""An S3-compatible bucket as a sweep source (boto3, in threads: it has no asyncio API).

botocore's "adaptive" retry mode retries transient errors with backoff and slows down
when the store throttles (503 SlowDown), so no retry loop is written here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from attestd.config import SweepS3Config
from attestd.s3 import s3_client
from attestd.sweep.model import ObjectGone, Order, Page, StoredObject, SweepError

PAGE_SIZE = 1000
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Source:
    order: Order = "key"

    def __init__(self, cfg: SweepS3Config, client: Any | None = None) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.key_prefix = cfg.prefix
        self.client = client or s3_client(cfg)
        endpoint = cfg.endpoint_url or "aws"
        self.name = f"s3:{endpoint}/{cfg.bucket}/{cfg.prefix}"

    async def page(self, cursor: str | None) -> Page:
        args: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": PAGE_SIZE}
        if self.key_prefix:
            args["Prefix"] = self.key_prefix
        if cursor:
            # StartAfter, not a continuation token: a key stays valid across restarts.
            args["StartAfter"] = cursor
        res = await self._call("list_objects_v2", **args)
        objects = [StoredObject(key=o["Key"], size=int(o.get("Size", 0)),
                                etag=str(o.get("ETag", "")).strip('"') or None,
                                modified=o.get("LastModified"))
                   for o in res.get("Contents", [])]
        more = bool(res.get("IsTruncated")) and bool(objects)
        return Page(objects, objects[-1].key if more else None)

    async def fetch(self, obj: StoredObject) -> bytes:
        try:
            res = await self._call("get_object", Bucket=self.bucket, Key=obj.key)
        except ObjectGone:
            raise ObjectGone(f"s3://{self.bucket}/{obj.key} was removed before it could be "
                             "read") from None
        body = res["Body"]
        return await asyncio.to_thread(_read_close, body)

    async def delete(self, obj: StoredObject) -> str:
        # S3 deletes succeed for missing keys, so this is safe to repeat after a crash.
        await self._call("delete_object", Bucket=self.bucket, Key=obj.key)
        return f"deleted s3://{self.bucket}/{obj.key}"

    async def count(self) -> int | None:
        n, cursor = 0, None
        while True:
            page = await self.page(cursor)
            n += len(page.objects)
            if page.next_cursor is None:
                return n
            cursor = page.next_cursor

    async def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, op), **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectGone(str(exc)) from None
            if code in ("NoSuchBucket",):
                raise SweepError(f"bucket {self.bucket!r} does not exist at "
                                 f"{self.cfg.endpoint_url or 'AWS'}: check sweep.s3.bucket") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise SweepError(f"the S3 store refused {op} ({code}): check "
                                 "sweep.s3.access_key_id and secret_access_key") from None
            raise SweepError(f"S3 {op} failed after retries: {code or exc}") from None
        except BotoCoreError as exc:
            raise SweepError(f"S3 {op} failed after retries: {exc}") from None

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


def _read_close(body: Any) -> bytes:
    try:
        return bytes(body.read())
    finally:
        body.close()


class S3Quarantine:
    """Quarantine into s3://bucket/prefix (objects and their evidence records)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.where = f"s3://{bucket}/{prefix}"

    async def put(self, key: str, data: bytes, evidence: bytes) -> str:
        dest = self.prefix + key
        try:
            # Evidence first: an object in quarantine is never without its record.
            await asyncio.to_thread(self.client.put_object, Bucket=self.bucket,
                                    Key=dest + ".evidence.json", Body=evidence,
                                    ContentType="application/json")
            await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=dest,
                                    Body=data)
        except (ClientError, BotoCoreError) as exc:
            # Reported as a failed act; the object stays where it was.
            raise SweepError(f"could not write to quarantine {self.where}: {exc}") from None
        return f"s3://{self.bucket}/{dest}"
