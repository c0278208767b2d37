//! A naive Merkle tree written straight from the recursive definitions of
//! RFC 6962 §2.1 (MTH, PATH, PROOF and SUBPROOF), over leaf hashes: the
//! oracle the storage-aware code in `merkle` is checked against.
//!
//! Test-only. It shares nothing with `merkle`, not even the node hash, and is
//! as slow as the definitions are (linear per root, quadratic when asked for
//! every prefix).

use sha2::{Digest, Sha256};

use super::TreeHash;

/// `SHA-256(0x01 || left || right)`, restated from the RFC.
fn node(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(left.as_bytes());
    bytes.extend_from_slice(right.as_bytes());
    TreeHash::from_bytes(Sha256::digest(&bytes).into())
}

/// The largest power of two smaller than `n`; requires `n > 1`.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]), where `leaves` are the leaf hashes `SHA-256(0x00 || d(i))`.
pub fn mth(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => TreeHash::from_bytes(Sha256::digest(b"").into()),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the inclusion proof of leaf `m`.
pub fn path(m: usize, leaves: &[TreeHash]) -> Vec<TreeHash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut proof = path(m, &leaves[..k]);
        proof.push(mth(&leaves[k..]));
        proof
    } else {
        let mut proof = path(m - k, &leaves[k..]);
        proof.push(mth(&leaves[..k]));
        proof
    }
}

/// PROOF(m, D[n]): the consistency proof from the first `m` leaves to all of
/// them; requires `0 < m <= n`.
pub fn proof(m: usize, leaves: &[TreeHash]) -> Vec<TreeHash> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[TreeHash], whole: bool) -> Vec<TreeHash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], whole);
        proof.push(mth(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(mth(&leaves[..k]));
        proof
    }
}

#[test]
fn reference_reproduces_the_example_tree_of_rfc_6962() {
    // §2.1.3: seven leaves whose hashes are a, b, c, d, e, f, j.
    let leaves: Vec<TreeHash> = (0..7u8).map(|i| TreeHash::from_bytes([i; 32])).collect();
    let [a, b, c, d, e, f, j] = leaves[..] else {
        unreachable!()
    };
    let (g, h, i) = (node(&a, &b), node(&c, &d), node(&e, &f));
    let (k, l) = (node(&g, &h), node(&i, &j));
    assert_eq!(mth(&leaves), node(&k, &l));
    assert_eq!(path(0, &leaves), vec![b, h, l]);
    assert_eq!(path(3, &leaves), vec![c, g, l]);
    assert_eq!(path(4, &leaves), vec![f, j, k]);
    assert_eq!(proof(3, &leaves), vec![c, d, g, l]);
    assert_eq!(proof(4, &leaves), vec![l]);
    assert_eq!(proof(6, &leaves), vec![i, j, k]);
}
