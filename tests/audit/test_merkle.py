"""RFC 6962 Merkle trees: roots and inclusion proofs against a direct transcription."""

import hashlib

import pytest
import rfc8785

from audit.merkle import audit_path, leaf_hash, merkle_root, root_from_path


def reference_root(heads):
    """RFC 6962 §2.1, written from the text."""
    def mth(d):
        if len(d) == 1:
            return hashlib.sha256(b"\x00" + rfc8785.dumps(d[0])).digest()
        k = 1
        while k * 2 < len(d):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()
    return mth(heads).hex()


def heads(n):
    return [{"stream": f"run/{i:04d}", "seq": i + 1, "hash": f"{i:064x}"} for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_root_and_every_inclusion_proof(n):
    tree = heads(n)
    root = merkle_root(tree)
    assert root == reference_root(tree)
    for i in range(n):
        path = [bytes.fromhex(p) for p in audit_path(tree, i)]
        assert root_from_path(leaf_hash(tree[i]), i, n, path).hex() == root


def test_a_wrong_leaf_index_or_path_does_not_lead_to_the_root():
    tree = heads(11)
    root = merkle_root(tree)
    path = [bytes.fromhex(p) for p in audit_path(tree, 6)]
    leaf = leaf_hash(tree[6])
    for index in (5, 7, 10):
        got = root_from_path(leaf, index, 11, path)
        assert got is None or got.hex() != root
    assert root_from_path(leaf, 6, 11, path[:-1]) is None
    assert root_from_path(leaf, 6, 11, path + [path[0]]) is None
    assert root_from_path(leaf_hash({**tree[6], "seq": 8}), 6, 11, path).hex() != root
    assert root_from_path(leaf, 11, 11, path) is None


def test_leaves_and_nodes_are_domain_separated():
    tree = heads(2)
    node = hashlib.sha256(b"\x01" + leaf_hash(tree[0]) + leaf_hash(tree[1])).hexdigest()
    assert merkle_root(tree) == node != hashlib.sha256(leaf_hash(tree[0])).hexdigest()
