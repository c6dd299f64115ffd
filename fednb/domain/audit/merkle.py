"""Merkle tree hashing, inclusion and consistency proofs exactly as Certificate Transparency defines
them (RFC 9162, "Certificate Transparency Version 2.0", §2.1).

A leaf is hashed as ``SHA-256(0x00 || data)`` and an inner node as ``SHA-256(0x01 || left || right)``,
so a leaf can never pass for a node (second-preimage resistance of the tree). An inclusion proof
shows that one leaf is in a tree of a given size and root; a consistency proof shows that the tree
of size ``m`` is a prefix of the tree of size ``n``: nothing in the first ``m`` leaves was changed,
removed or reordered. Both are ``O(log n)`` hashes. Pure functions over bytes: the verifier needs
nothing of a domain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """All levels of the tree over ``leaves`` (leaf hashes), for proofs in ``O(log n)`` each.

    Level ``h`` node ``j`` covers leaves ``[j * 2**h, min((j + 1) * 2**h, n))``; an unpaired last node
    moves up unchanged, which gives exactly RFC 9162's tree for any ``n``.
    """

    def __init__(self, leaves: Sequence[bytes]):
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            up = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                up.append(below[-1])
            self.levels.append(up)

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for the ranges RFC 9162's recursion visits (aligned, or the tree's tail)."""
        height = (hi - lo - 1).bit_length()
        if lo % (1 << height) == 0 and (hi - lo == 1 << height or hi == self.size):
            return self.levels[height][lo >> height]
        k = _split(hi - lo)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = _split(hi - lo)
        if m < k:
            return self._path(m, lo, lo + k) + [self._subtree(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self._subtree(lo, lo + k)]

    def root_at(self, size: int) -> bytes:
        """The root the tree had when it held ``size`` leaves."""
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of size {size}")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:size]) of RFC 9162 §2.1.4.1."""
        size = self.size if size is None else size
        if not 0 <= old_size <= size <= self.size:
            raise ValueError(f"no consistency proof from size {old_size} to {size}")
        if old_size in (0, size):
            return []
        return self._subproof(old_size, 0, size, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [self._subtree(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, whole) + [self._subtree(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self._subtree(lo, lo + k)]


def root(leaves: Sequence[bytes]) -> bytes:
    return Tree(leaves).root()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2: is the leaf hash ``leaf`` number ``index`` of the tree (size, root_hash)?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old_size: int, size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of (size, new_root)?"""
    if old_size > size:
        return False
    if old_size == size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is itself a node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def frontier_push(frontier: list[tuple[int, bytes]], leaf: bytes) -> list[tuple[int, bytes]]:
    """Append one leaf hash to a compact range: the roots ``(size, hash)`` of the perfect subtrees
    that make up the tree, largest first (at most log2 n of them). ``O(log n)`` per leaf."""
    out = [*frontier, (1, leaf)]
    while len(out) > 1 and out[-1][0] == out[-2][0]:
        (size, left), (_, right) = out[-2], out[-1]
        out[-2:] = [(2 * size, node_hash(left, right))]
    return out


def frontier_root(frontier: Sequence[tuple[int, bytes]]) -> bytes:
    """The tree's root from its compact range: fold the perfect subtrees right to left."""
    if not frontier:
        return EMPTY_ROOT
    r = frontier[-1][1]
    for _, h in reversed(frontier[:-1]):
        r = node_hash(h, r)
    return r
