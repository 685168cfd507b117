"""The node's signing keys: RSA-2048 (HTTP signatures) and Ed25519 (object proofs)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from attestd.errors import KeyFileError

RSA_FILE = "rsa-2048.pem"
ED25519_FILE = "ed25519.pem"


@dataclass(frozen=True)
class NodeKeys:
    rsa: rsa.RSAPrivateKey
    ed25519: ed25519.Ed25519PrivateKey


def ensure_keys(keys_dir: Path) -> list[Path]:
    """Create whichever key files are missing (mode 0600); return the files created."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    created = []
    rsa_path, ed_path = keys_dir / RSA_FILE, keys_dir / ED25519_FILE
    if not rsa_path.exists():
        _write_private(rsa_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        created.append(rsa_path)
    if not ed_path.exists():
        _write_private(ed_path, ed25519.Ed25519PrivateKey.generate())
        created.append(ed_path)
    return created


def load_keys(keys_dir: Path) -> NodeKeys:
    """Load both keys. Raises KeyFileError if a file is missing, unreadable or world-readable."""
    rsa_key = _read_private(keys_dir / RSA_FILE)
    ed_key = _read_private(keys_dir / ED25519_FILE)
    if not isinstance(rsa_key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{keys_dir / RSA_FILE} does not hold an RSA private key")
    if not isinstance(ed_key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{keys_dir / ED25519_FILE} does not hold an Ed25519 private key")
    return NodeKeys(rsa=rsa_key, ed25519=ed_key)


def _write_private(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Created 0600 from the start, so the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _read_private(path: Path) -> object:
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path} is missing: run `attestd init` to create the node's keys") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users: run `chmod 600 {path}`")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a valid PEM private key: {exc}") from None
