"""``attestd backup`` / ``restore``: the node's identity (its keys) and, on SQLite, a
consistent snapshot of its database, in one tar.gz readable only by its owner.

Losing the keys is a new identity for every peer, so they are in every backup. Pending
job images and review copies (blobs, review) are not: they are transient, and review
copies are the very images the node exists to keep away from people.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from attestd.errors import AttestdError
from attestd.files import write_private

FORMAT = "attestd-backup-1"
MANIFEST, DATABASE, KEYS = "manifest.json", "attestd.db", "keys/"


class BackupError(AttestdError):
    """A backup or restore that cannot go ahead; the message says what to do."""


@dataclass(frozen=True, slots=True)
class BackupSummary:
    path: Path
    database: str  # "sqlite" or "postgresql"
    keys: tuple[str, ...]


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def create_backup(dest: Path, database_url: str, keys_dir: Path) -> BackupSummary:
    """Write ``dest`` (created 0600, never overwritten) with the keys and, on SQLite, the
    database as sqlite3's online backup API copies it: consistent while the node writes."""
    keys = sorted(p for p in keys_dir.glob("*.pem") if p.is_file()) if keys_dir.is_dir() else []
    if not keys:
        raise BackupError(f"no keys in {keys_dir}: is this the node's configuration "
                          "(--config / $ATTESTD_CONFIG)?")
    db = sqlite_path(database_url)
    if db is not None and not db.is_file():
        raise BackupError(f"no database at {db}: is this the node's configuration?")
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{dest} exists; choose a new file name (a backup never "
                          "overwrites one)") from None
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
            manifest = {"format": FORMAT, "created": int(time.time()),
                        "database": "sqlite" if db is not None else "postgresql",
                        "keys": [k.name for k in keys]}
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            for key in keys:
                _add_bytes(tar, KEYS + key.name, key.read_bytes())
            if db is not None:
                with tempfile.TemporaryDirectory(prefix="attestd-backup-") as tmp:
                    snapshot = Path(tmp) / DATABASE
                    _snapshot(db, snapshot)
                    tar.add(snapshot, arcname=DATABASE, filter=_owner_only)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return BackupSummary(dest, str(manifest["database"]), tuple(k.name for k in keys))


def _snapshot(db: Path, out: Path) -> None:
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)
            # The copy is a single file: no WAL to carry along.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _owner_only(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _owner_only(tarfile.TarInfo(name))
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


def restore_backup(src: Path, database_url: str, data_dir: Path, keys_dir: Path, *,
                   force: bool = False) -> BackupSummary:
    """Put ``src``'s keys (and SQLite database) where this configuration keeps them.
    Refuses a data folder that holds anything unless ``force``: restoring over a live
    node's files would mix two nodes."""
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty; restore into an empty data folder, or "
                          "stop the node and pass --force to replace its keys and database")
    db = sqlite_path(database_url)
    try:
        tar = tarfile.open(src, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{src} is not an attestd backup: {exc}") from None
    with tar:
        manifest = _manifest(tar, src)
        # Members are read by the names the manifest lists, never extracted by the
        # archive's own paths (no ../ can escape the data folder).
        names = manifest["keys"]
        assert isinstance(names, list)  # checked by _manifest
        keys = {name: _member(tar, KEYS + name, src) for name in names
                if isinstance(name, str) and "/" not in name and name.endswith(".pem")}
        if manifest["database"] == "sqlite":
            if db is None:
                raise BackupError("the backup holds a SQLite database but database.url is "
                                  "PostgreSQL; point database.url at a sqlite:/// file")
            data = _member(tar, DATABASE, src)
        else:
            data = None
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)
    for name, blob in keys.items():
        write_private(keys_dir / name, blob)
    if data is not None and db is not None:
        db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A WAL left from the database this replaces would be applied to the restored one.
        for stale in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            stale.unlink(missing_ok=True)
        write_private(db, data)
    return BackupSummary(src, str(manifest["database"]), tuple(sorted(keys)))


def _manifest(tar: tarfile.TarFile, src: Path) -> dict[str, object]:
    try:
        manifest = json.loads(_member(tar, MANIFEST, src))
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("database") not in ("sqlite", "postgresql") \
            or not isinstance(manifest.get("keys"), list):
        raise BackupError(f"{src} is not an attestd backup this version can read")
    return manifest


def _member(tar: tarfile.TarFile, name: str, src: Path) -> bytes:
    try:
        member = tar.getmember(name)
        fh = tar.extractfile(member) if member.isfile() else None
    except KeyError:
        fh = None
    if fh is None:
        raise BackupError(f"{src} lacks {name}: it is incomplete or not an attestd backup")
    return fh.read()

