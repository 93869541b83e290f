"""The append-only log of a tenant: RFC 6962 / RFC 9162 trees over a growing list of leaf
hashes, with inclusion and consistency proofs. Pure; no Django.

Leaves are the stream heads `{stream, seq, hash}` each checkpoint sealed, appended in the
order sealed (`audit.merkle.leaf_hash`: sha256(0x00 || JCS(head))); the tree at size n is
MTH(D[0:n]) over the first n leaves, so every earlier tree is a prefix of every later one
and a consistency proof shows it.

Range checks (the same in the API and in the verifiers): an inclusion proof needs
0 <= index < size; a consistency proof needs 1 <= first <= second; both sizes at most the
log's size. Anything else is refused (`ProofRangeError`), never answered with a guess.
"""

import hashlib

from .merkle import node_hash, root_from_path


class ProofRangeError(ValueError):
    """Sizes or an index outside what a proof can be given for."""


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_root(leaves: list[bytes], start: int = 0, end: int | None = None) -> bytes:
    """MTH(D[start:end]) of the leaf hashes (sha256 of nothing for an empty tree)."""
    end = len(leaves) if end is None else end
    n = end - start
    if n <= 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[start]
    k = _split(n)
    return node_hash(tree_root(leaves, start, start + k), tree_root(leaves, start + k, end))


def inclusion_proof(leaves: list[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), bottom up."""
    if not 0 <= index < size <= len(leaves):
        raise ProofRangeError(f"an inclusion proof needs 0 <= index < size <= {len(leaves)}")

    def path(m: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = _split(end - start)
        if m < k:
            return path(m, start, start + k) + [tree_root(leaves, start + k, end)]
        return path(m - k, start + k, end) + [tree_root(leaves, start, start + k)]

    return path(index, 0, size)


def consistency_proof(leaves: list[bytes], first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1); empty when the sizes are equal."""
    if not 1 <= first <= second <= len(leaves):
        raise ProofRangeError(f"a consistency proof needs 1 <= from <= to <= {len(leaves)}")

    def subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [tree_root(leaves, start, end)]
        k = _split(n)
        if m <= k:
            return subproof(m, start, start + k, whole) + [tree_root(leaves, start + k, end)]
        return subproof(m - k, start + k, end, False) + [tree_root(leaves, start, start + k)]

    return subproof(first, 0, second, True)


def inclusion_valid(leaf: bytes, index: int, size: int, proof: list[bytes],
                    root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: the proof leads from the leaf at `index` to `root`."""
    if not 0 <= index < size:
        return False
    return root_from_path(leaf, index, size, proof) == root


def consistency_valid(first: int, second: int, first_root: bytes, second_root: bytes,
                      proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: the tree of `second` leaves extends the tree of `first`."""
    if not 1 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    if first & (first - 1) == 0:  # an exact power of two: the old root is a node
        proof = [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for node in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def frontier_append(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The frontier after appending `leaf` to a tree of `size` leaves. The frontier is the
    roots of the perfect subtrees a tree of that size splits into, largest (leftmost)
    first, one per set bit of the size: enough to append and to compute the root."""
    frontier = [*frontier, leaf]
    while size & 1:  # each trailing full subtree merges with the new one
        right = frontier.pop()
        frontier[-1] = node_hash(frontier[-1], right)
        size >>= 1
    return frontier


def frontier_root(frontier: list[bytes]) -> bytes:
    """MTH of the tree a frontier describes."""
    if not frontier:
        return hashlib.sha256(b"").digest()
    root = frontier[-1]
    for node in reversed(frontier[:-1]):
        root = node_hash(node, root)
    return root
