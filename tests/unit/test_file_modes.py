"""Files the node keeps are readable only by its user."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from attestd.blobs import BlobStore
from attestd.db.engine import private_sqlite_file


def test_blob_folders_and_files_are_owner_only(tmp_path: Path) -> None:
    data = b"review copy"
    sha = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data" / "review")
    asyncio.run(store.put(sha, data))
    path = store.path(sha)
    assert path.stat().st_mode & 0o777 == 0o600
    folder = path.parent
    while folder != tmp_path:
        assert folder.stat().st_mode & 0o777 == 0o700, folder
        folder = folder.parent


def test_sqlite_file_is_created_and_tightened_to_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "data" / "attestd.db"
    private_sqlite_file(db)
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700
    db.chmod(0o644)  # as older versions left it
    private_sqlite_file(db)
    assert db.stat().st_mode & 0o777 == 0o600
