"""Public keys in the forms ActivityPub uses: PEM (``publicKeyPem``) and Multikey (FEP-521a)."""

from __future__ import annotations

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from activitypub._errors import RemoteProtocolError

# multicodec varint prefixes (https://github.com/multiformats/multicodec/blob/master/table.csv)
_ED25519_PUB = b"\xed\x01"
_ED25519_PRIV = b"\x80\x26"  # 0x1300 as an unsigned varint

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def signature_valid(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``key`` (RSA: PKCS#1 v1.5, SHA-256)."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
        return True
    except InvalidSignature:
        return False


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM, as Mastodon publishes ``publicKeyPem``."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_key_pem(pem: str) -> PublicKey:
    """Parse a ``publicKeyPem``; raises RemoteProtocolError if it is not an RSA/Ed25519 key."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise RemoteProtocolError(f"publicKeyPem is not a valid PEM public key: {exc}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise RemoteProtocolError("publicKeyPem holds a key type other than RSA or Ed25519")
    return key


def ed25519_multibase(key: ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) -> str:
    """``publicKeyMultibase`` of an Ed25519 key: base58btc ('z') of 0xed01 || key."""
    pub = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "z" + base58.b58encode(_ED25519_PUB + raw).decode("ascii")


def load_ed25519_multibase(value: str) -> ed25519.Ed25519PublicKey:
    """Parse a ``publicKeyMultibase``; raises RemoteProtocolError unless it is Ed25519."""
    raw = _multibase_decode(value)
    if not raw.startswith(_ED25519_PUB) or len(raw) != 34:
        raise RemoteProtocolError("publicKeyMultibase is not an Ed25519 public key")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw[2:])


def load_ed25519_private_multibase(value: str) -> ed25519.Ed25519PrivateKey:
    """Parse a multibase Ed25519 private key (multicodec ed25519-priv), as test vectors use."""
    raw = _multibase_decode(value)
    if not raw.startswith(_ED25519_PRIV) or len(raw) != 34:
        raise RemoteProtocolError("not a multibase Ed25519 private key")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[2:])


def _multibase_decode(value: str) -> bytes:
    if not value.startswith("z"):
        raise RemoteProtocolError("only base58btc multibase ('z…') is supported")
    try:
        return base58.b58decode(value[1:])
    except ValueError:
        raise RemoteProtocolError("multibase value is not valid base58btc") from None
