from __future__ import annotations

import os
from pathlib import Path

import pytest

from attestd.errors import KeyFileError
from attestd.keys import ED25519_FILE, RSA_FILE, ensure_keys, load_keys
from attestd.logs import redact_path


def test_keys_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    created = ensure_keys(tmp_path / "keys")
    assert {p.name for p in created} == {RSA_FILE, ED25519_FILE}
    before = {p: p.read_bytes() for p in created}
    for p in created:
        assert p.stat().st_mode & 0o777 == 0o600
    assert ensure_keys(tmp_path / "keys") == []
    assert {p: p.read_bytes() for p in created} == before
    keys = load_keys(tmp_path / "keys")
    assert keys.rsa.key_size == 2048


def test_widely_readable_or_broken_keys_are_refused(tmp_path: Path) -> None:
    ensure_keys(tmp_path)
    os.chmod(tmp_path / RSA_FILE, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keys(tmp_path)
    os.chmod(tmp_path / RSA_FILE, 0o600)
    (tmp_path / ED25519_FILE).write_text("garbage")
    with pytest.raises(KeyFileError, match="not a valid PEM"):
        load_keys(tmp_path)
    (tmp_path / ED25519_FILE).unlink()
    with pytest.raises(KeyFileError, match="attestd init"):
        load_keys(tmp_path)


def test_caller_names_never_reach_the_access_log() -> None:
    assert redact_path("/api/v1/scan/s3cret-name") == "/api/v1/scan/<caller>"
    assert redact_path("/api/v1/scan/IPADDR") == "/api/v1/scan/IPADDR"
    assert redact_path("/healthz") == "/healthz"
