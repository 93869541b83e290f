"""RFC 6962 / RFC 9162 Merkle trees over stream heads. Pure; no Django.

    leaf_hash(head) = sha256(0x00 || JCS({stream, seq, hash}))
    node_hash(l, r) = sha256(0x01 || l || r)
    MTH(D[0:1])     = leaf_hash(D[0])
    MTH(D[0:n])     = node_hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Leaves are the heads sorted by stream name. The distinct prefixes keep a leaf from being
passed off as an inner node (second-preimage). The empty tree is never signed (a checkpoint
is sealed only when some stream changed); its root would be sha256 of nothing.
"""

import hashlib

import orjson

from .jcs import MAX_SAFE_INTEGER, canonical


def leaf_hash(head: dict) -> bytes:
    """The leaf hash of one head `{stream, seq, hash}` (other keys are ignored)."""
    stream, seq, digest = head["stream"], head["seq"], head["hash"]
    if (type(seq) is int and 0 <= seq <= MAX_SAFE_INTEGER and type(digest) is str
            and digest.isascii() and digest.isalnum() and type(stream) is str):
        try:  # JCS with the keys in their fixed order; orjson writes a string as JCS does
            body = b'{"hash":"%s","seq":%d,"stream":%s}' % (digest.encode(), seq,
                                                             orjson.dumps(stream))
            return hashlib.sha256(b"\x00" + body).digest()
        except orjson.JSONEncodeError:  # a lone surrogate: let rfc8785 refuse it
            pass
    body = {"stream": stream, "seq": seq, "hash": digest}
    return hashlib.sha256(b"\x00" + canonical(body)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(heads: list[dict]) -> str:
    """Hex root of the tree over `heads`, in the order given."""
    if not heads:
        return hashlib.sha256(b"").hexdigest()
    return _root([leaf_hash(h) for h in heads]).hex()


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return _path(index, leaves[:k]) + [_root(leaves[k:])]
    return _path(index - k, leaves[k:]) + [_root(leaves[:k])]


def audit_path(heads: list[dict], index: int) -> list[str]:
    """The inclusion proof (RFC 6962 audit path) of `heads[index]`, bottom up, hex."""
    if not 0 <= index < len(heads):
        raise IndexError("leaf index outside the tree")
    return [h.hex() for h in _path(index, [leaf_hash(h) for h in heads])]


def root_from_path(leaf: bytes, index: int, tree_size: int, path: list[bytes]) -> bytes | None:
    """The root implied by a leaf and its audit path (RFC 9162 §2.1.3.2); None if the
    path has the wrong length for `index` and `tree_size`."""
    if not 0 <= index < tree_size:
        return None
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
