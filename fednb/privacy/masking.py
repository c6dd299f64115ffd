"""Pairwise masks for secure aggregation (Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel,
Ramage, Segal & Seth, "Practical Secure Aggregation for Privacy-Preserving Machine Learning",
CCS 2017, §4).

Each pair of domains agrees on a secret by X25519 (RFC 7748) over public keys the analyst relays; the
secret is stretched by HKDF-SHA256 (RFC 5869) into a key for a ChaCha20 keystream (RFC 8439), read as
uint64 ring elements. Domain i adds the stream of pair (i, j) when i < j and subtracts it when i > j,
so the masks cancel in the sum and the analyst, who knows no pair's secret, sees each masked input as
uniformly random. Shares of secrets travel between domains sealed with AES-256-GCM under a key agreed
the same way, bound to (session, sender, recipient), so the relaying analyst cannot read them.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


class KeyPair:
    """An X25519 key pair; the private half never leaves the process that made it."""

    def __init__(self, private: X25519PrivateKey | None = None):
        self.private = private or X25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes(**_RAW)

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        return cls(X25519PrivateKey.from_private_bytes(secret))

    def secret(self) -> bytes:
        """The raw private key, for Shamir sharing among the domains (never sent in the clear)."""
        return self.private.private_bytes(encoding=serialization.Encoding.Raw,
                                          format=serialization.PrivateFormat.Raw,
                                          encryption_algorithm=serialization.NoEncryption())

    def agree(self, peer_public: bytes) -> bytes:
        return self.private.exchange(X25519PublicKey.from_public_bytes(peer_public))


def derive(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """A 32-byte key for one purpose (``info``) in one session (``salt``)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def stream(key: bytes, length: int) -> np.ndarray:
    """``length`` pseudo-random uint64 values: the ChaCha20 keystream of a fresh 32-byte key."""
    encryptor = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * length)), dtype="<u8").astype(np.uint64)


def pair_mask(shared: bytes, session: bytes, length: int) -> np.ndarray:
    return stream(derive(shared, session, b"fednb secagg pairwise mask"), length)


def self_mask(seed: bytes, session: bytes, length: int) -> np.ndarray:
    return stream(derive(seed, session, b"fednb secagg self mask"), length)


def signed_pair_mask(me: int, peer: int, shared: bytes, session: bytes, length: int) -> np.ndarray:
    """What domain ``me`` adds for the pair (me, peer): +mask if me < peer, −mask otherwise (mod 2⁶⁴)."""
    mask = pair_mask(shared, session, length)
    return mask if me < peer else (np.uint64(0) - mask)


def seal(shared: bytes, session: bytes, sender: int, recipient: int, plaintext: bytes) -> bytes:
    key = derive(shared, session, b"fednb secagg share encryption")
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(session, sender, recipient))


def unseal(shared: bytes, session: bytes, sender: int, recipient: int, sealed: bytes) -> bytes:
    """Raises ``cryptography.exceptions.InvalidTag`` if the box was altered or is not for us."""
    key = derive(shared, session, b"fednb secagg share encryption")
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], _aad(session, sender, recipient))


def _aad(session: bytes, sender: int, recipient: int) -> bytes:
    return b"fednb secagg|" + session + f"|{sender}|{recipient}".encode()
