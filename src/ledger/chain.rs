//! The running head of a tenant's hash chain.
//!
//! Owns the rule "the next record gets the next seq and links to the current
//! head"; must never be shared between two writers of one tenant's log (the
//! store fences that).

use super::hash::{ChainHash, LeafHash, chain_hash};
use super::ids::{Seq, TenantId};

/// Where a tenant's chain stands: the seq the next record gets and the chain
/// hash it links to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    next_seq: Seq,
    head: ChainHash,
}

impl Chain {
    /// An empty log: the next record is seq 0 and links to the tenant's
    /// genesis value.
    pub fn genesis(tenant: TenantId) -> Chain {
        Chain {
            next_seq: Seq::ZERO,
            head: ChainHash::genesis(tenant),
        }
    }

    /// A log whose last stored record is `last_seq` with chain hash
    /// `last_chain_hash`.
    pub fn resume(last_seq: Seq, last_chain_hash: ChainHash) -> Chain {
        Chain {
            next_seq: last_seq.next(),
            head: last_chain_hash,
        }
    }

    /// The seq the next appended leaf gets.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// The chain hash of the last record, or the genesis value for an empty log.
    pub fn head(&self) -> ChainHash {
        self.head
    }

    /// Links `leaf` as record [`Chain::next_seq`] and returns its seq and chain
    /// hash.
    pub fn append(&mut self, leaf: &LeafHash) -> (Seq, ChainHash) {
        let seq = self.next_seq;
        self.head = chain_hash(&self.head, leaf);
        self.next_seq = seq.next();
        (seq, self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_links_each_leaf_to_the_previous_head() {
        let tenant = TenantId::from_uuid(uuid::Uuid::from_bytes([9; 16]));
        let leaves = [LeafHash::from_bytes([1; 32]), LeafHash::from_bytes([2; 32])];
        let mut chain = Chain::genesis(tenant);
        let (s0, c0) = chain.append(&leaves[0]);
        let (s1, c1) = chain.append(&leaves[1]);
        assert_eq!((s0, s1), (Seq::new(0), Seq::new(1)));
        assert_eq!(c0, chain_hash(&ChainHash::genesis(tenant), &leaves[0]));
        assert_eq!(c1, chain_hash(&c0, &leaves[1]));
        assert_eq!(Chain::resume(s0, c0).append(&leaves[1]), (s1, c1));
    }
}
