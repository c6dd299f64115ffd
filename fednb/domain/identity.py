"""A domain's long-term identity: one Ed25519 key pair kept in the domain folder.

What the domain signs with it can be checked by anyone holding its public key: key-exchange
messages of secure aggregation (so an analyst relaying them cannot substitute its own keys;
Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
§6), and what the domain publishes about its releases. Ed25519 is RFC 8032, through ``cryptography``.

The private key never leaves ``DIR/identity.key`` (mode 0600, PKCS#8 PEM). Owners compare
fingerprints (SHA-256 of the raw 32-byte public key) out of band, as with SSH host keys.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded where a key is used: an owner listing requests never signs anything
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "identity.key"


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` and the base64 of the raw key's digest, the form ``ssh-keygen -l`` prints."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A loaded key pair; ``public_key`` is the raw 32 bytes others pin."""

    private: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def load_or_create(folder: str | os.PathLike) -> Identity:
    """The domain's identity, made on first use; written with ``O_EXCL`` so two processes agree."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(folder) / KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this domain made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return Identity(loaded)
