"""Append-only Merkle tree of RFC 9162 §2.1 (the hashing of RFC 6962 §2.1, SHA-256).

Everything here works on *leaf hashes* (``leaf_hash(data)``), so a caller may keep only the
32-byte hashes of its entries:

* ``root_hash`` — the Merkle Tree Hash MTH(D[n]) of §2.1.1;
* ``inclusion_proof`` / ``verify_inclusion`` — PATH(m, D[n]) of §2.1.3.1 and the verification
  algorithm of §2.1.3.2;
* ``consistency_proof`` / ``verify_consistency`` — PROOF(m, D[n]) of §2.1.4.1 and the
  verification algorithm of §2.1.4.2.

Proof generation follows the recursive definitions of the RFC over index ranges: every node
below a requested path is hashed once, so a proof costs O(n) hashes for a tree of n leaves
(the root likewise). A later step can store interior nodes to make this O(log n); the
definitions here stay the reference.

Verification never raises anything but ``ProofError`` for a proof that does not hold, and
``MerkleError`` (its base class) for arguments that cannot describe a tree (negative sizes,
hashes of the wrong length).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleError",
    "MerkleTree",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(ValueError):
    """Arguments that describe no tree, leaf or proof (wrong sizes, indexes, hash lengths)."""


class ProofError(MerkleError):
    """A proof that does not verify against the given root(s)."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = HASH(0x00 || d) — §2.1.1."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right) — §2.1.1."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


#: MTH({}) = HASH() — the root of the empty tree (§2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1) — the k of §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hashes(leaves: Sequence[bytes]) -> None:
    for h in leaves:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise MerkleError("a leaf hash is 32 bytes")


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over leaf hashes, hi > lo."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def root_hash(leaves: Sequence[bytes], size: int | None = None) -> bytes:
    """MTH(D[size]) of the first ``size`` leaf hashes (all of them by default)."""
    _check_hashes(leaves)
    n = len(leaves) if size is None else size
    if not 0 <= n <= len(leaves):
        raise MerkleError(f"tree size {n} is outside 0..{len(leaves)}")
    if n == 0:
        return EMPTY_ROOT
    return _mth(leaves, 0, n)


def _path(leaves: Sequence[bytes], m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of §2.1.3.1, m relative to lo; siblings listed leaf to root."""
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(leaves, m, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(leaves, m - k, lo + k, hi), _mth(leaves, lo, lo + k)]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves."""
    _check_hashes(leaves)
    n = len(leaves) if size is None else size
    if not 0 <= n <= len(leaves):
        raise MerkleError(f"tree size {n} is outside 0..{len(leaves)}")
    if not 0 <= index < n:
        raise MerkleError(f"leaf index {index} is outside 0..{n - 1}")
    return _path(leaves, index, 0, n)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of §2.1.4.1, m relative to lo."""
    n = hi - lo
    if m == n:
        return [] if complete else [_mth(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, m, lo, lo + k, complete), _mth(leaves, lo + k, hi)]
    return [*_subproof(leaves, m - k, lo + k, hi, False), _mth(leaves, lo, lo + k)]


def consistency_proof(
    leaves: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """PROOF(old_size, D[new_size]) — that the tree of ``old_size`` leaves is a prefix of the
    tree of ``new_size`` leaves (all of them by default). ``0 < old_size <= new_size``: the
    empty tree is a prefix of every tree and needs no proof; equal sizes give ``[]``."""
    _check_hashes(leaves)
    n = len(leaves) if new_size is None else new_size
    if not 0 <= n <= len(leaves):
        raise MerkleError(f"tree size {n} is outside 0..{len(leaves)}")
    if not 0 < old_size <= n:
        raise MerkleError(f"old tree size {old_size} is outside 1..{n}")
    if old_size == n:
        return []
    return _subproof(leaves, old_size, 0, n, True)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MerkleError(f"{what} is not a 32-byte hash")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """§2.1.3.2: prove that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size``
    leaves whose root is ``root``. Returns on success, raises ``ProofError`` otherwise.

    The algorithm checks the proof's shape against (index, size) and recomputes the root; a
    size whose audit path for ``index`` takes the same turns yields the same computation, which
    is why a root hash is only meaningful together with its signed tree size (a checkpoint)."""
    _check_hash(leaf, "the leaf hash")
    _check_hash(root, "the root hash")
    for p in proof:
        _check_hash(p, "a proof element")
    if index < 0 or size < 0:
        raise MerkleError("negative index or tree size")
    # 1. leaf_index must be below tree_size.
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    # 2.–3.
    fn, sn, r = index, size - 1, leaf
    # 4.
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """§2.1.4.2: prove that the tree of ``old_size`` leaves with root ``old_root`` is a prefix of
    the tree of ``new_size`` leaves with root ``new_root``. Returns on success, raises
    ``ProofError`` otherwise.

    Outside the RFC's 0 < first < second: equal sizes need an empty proof and equal roots; a
    proof from the empty tree is refused (it proves nothing, every tree extends it)."""
    _check_hash(old_root, "the old root hash")
    _check_hash(new_root, "the new root hash")
    for p in proof:
        _check_hash(p, "a proof element")
    if old_size < 0 or new_size < 0:
        raise MerkleError("negative tree size")
    if old_size > new_size:
        raise ProofError(f"tree size {new_size} is smaller than {old_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise ProofError("equal tree sizes take an empty proof")
        if old_root != new_root:
            raise ProofError("equal tree sizes with different root hashes")
        return
    # 1.
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    # 2. first an exact power of two: its root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the old root hash")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new root hash")


class MerkleTree:
    """An append-only list of leaf hashes with the operations above.

    It holds hashes only; what a leaf's data is (an audit entry's canonical encoding) is the
    caller's business. Nothing can be removed or replaced."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        _check_hashes(leaf_hashes)
        self._leaves: list[bytes] = list(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._leaves)

    @property
    def leaf_hashes(self) -> tuple[bytes, ...]:
        return tuple(self._leaves)

    def append(self, data: bytes) -> int:
        """Append a leaf by its data; returns its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, hashed: bytes) -> int:
        """Append a leaf by its leaf hash; returns its index."""
        _check_hashes((hashed,))
        self._leaves.append(hashed)
        return len(self._leaves) - 1

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self._leaves, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(self._leaves, index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(self._leaves, old_size, new_size)
