"""Encryption of evidence bytes to the admin's age public key (age, via pyrage).

age (https://age-encryption.org/v1) rather than a hand-made sealed box: its format is
specified and stable, X25519 + ChaCha20-Poly1305 underneath, and an admin decrypts with
the standard ``age``/``rage`` tools or ``attestd evidence decrypt`` on any machine,
years later, without this node. The node holds the public key only.
"""

from __future__ import annotations

from pathlib import Path

import pyrage
from pyrage import x25519

from attestd.age_keys import parse_recipient as parse_recipient

ENCRYPTION = "age-encryption.org/v1 (X25519)"


class DecryptionFailed(Exception):
    """The identity given does not open this file, or the file is not age-encrypted."""


def encrypt(data: bytes, recipient: str) -> bytes:
    return bytes(pyrage.encrypt(data, [parse_recipient(recipient)]))


def read_identities(path: Path) -> list[x25519.Identity]:
    """The age private keys in an identity file (``age-keygen``'s output: comments and
    one ``AGE-SECRET-KEY-1...`` per line); ValueError when it holds none."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read the identity file {path}: {why}") from None
    found: list[x25519.Identity] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # The line is a private key gone wrong: never quoted back.
            raise ValueError(f"{path} holds a line that is not an age private key "
                             "(AGE-SECRET-KEY-1...)") from None
    if not found:
        raise ValueError(f"{path} holds no age private key (AGE-SECRET-KEY-1...)")
    return found


def decrypt(data: bytes, identities: list[x25519.Identity]) -> bytes:
    try:
        return bytes(pyrage.decrypt(data, list(identities)))
    except pyrage.DecryptError as exc:
        raise DecryptionFailed(f"cannot decrypt: {exc} (is this the key whose public half "
                               "is evidence.recipient?)") from None
