"""The one boto3 S3 client factory, shared by what keeps bytes in S3 (image copies kept
for classification and review, sweep sources, quarantine)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from attestd.config import SweepS3Config


def s3_client(cfg: SweepS3Config) -> Any:
    """A boto3 client for ``cfg``, with retries and timeouts suited to long sweeps."""
    return boto3.session.Session().client(
        "s3", endpoint_url=cfg.endpoint_url or None, region_name=cfg.region or None,
        aws_access_key_id=cfg.access_key_id or None,
        aws_secret_access_key=cfg.secret_access_key.get_secret_value() or None,
        config=BotoConfig(retries={"mode": "adaptive", "max_attempts": 10},
                          connect_timeout=10, read_timeout=60,
                          max_pool_connections=64))


def get_object_or_none(client: Any, bucket: str, key: str) -> bytes | None:
    """The bytes of ``key``, or None when there is no such object (blocking: run it in a
    thread)."""
    try:
        res = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    body: bytes = res["Body"].read()
    return body
