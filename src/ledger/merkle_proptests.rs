//! Property tests for `merkle`: roots, stored nodes and proofs against the
//! naive RFC 6962 reference, every hash fetched through a simulated store that
//! enforces the read bound and refuses nodes that do not exist yet (and,
//! after a purge, leaves below the boundary), and mutated proofs that must
//! fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use proptest::prelude::*;

use super::merkle_reference as reference;
use super::*;

/// Leaves of the small tree: enough for four level-8 nodes.
const SMALL: u64 = 1100;
/// Leaves of the large tree: past the first level-16 node (2^16 leaves).
const LARGE: u64 = 70_000;

fn leaf(seq: u64) -> TreeHash {
    TreeHash::from(leaf_hash(&seq.to_be_bytes()))
}

/// What the server keeps for one tenant: leaf hashes by seq and the stratum
/// nodes that [`CompactRange::append`] handed out.
struct Store {
    leaves: Vec<TreeHash>,
    nodes: HashMap<NodeId, TreeHash>,
}

impl Store {
    fn with_leaves(count: u64) -> Store {
        let mut range = CompactRange::new();
        let mut store = Store {
            leaves: Vec::new(),
            nodes: HashMap::new(),
        };
        for seq in 0..count {
            let hash = leaf(seq);
            store.leaves.push(hash);
            store.nodes.extend(range.append(hash).unwrap());
        }
        store
    }

    fn small() -> &'static Store {
        static STORE: OnceLock<Store> = OnceLock::new();
        STORE.get_or_init(|| Store::with_leaves(SMALL))
    }

    fn large() -> &'static Store {
        static STORE: OnceLock<Store> = OnceLock::new();
        STORE.get_or_init(|| Store::with_leaves(LARGE))
    }

    fn prefix(&self, size: u64) -> &[TreeHash] {
        &self.leaves[..size as usize]
    }

    /// Answers `reads` as the store holds them at tree `size` with leaves
    /// `[0, purged)` deleted, checking that each is within the documented
    /// bound, that a stratum gets at most `max_per_stratum` reads (one when
    /// its hull fits the bound), and that no read reaches a node the tree of
    /// `size` leaves has not completed, nor a purged leaf.
    fn fetch(
        &self,
        reads: &[StratumRead],
        size: u64,
        purged: u64,
        max_per_stratum: usize,
    ) -> Vec<Vec<TreeHash>> {
        let mut per_stratum: BTreeMap<u8, Vec<StratumRead>> = BTreeMap::new();
        for read in reads {
            per_stratum.entry(read.level).or_default().push(*read);
        }
        for (level, reads) in &per_stratum {
            assert!(reads.len() <= max_per_stratum, "{reads:?} at size {size}");
            let hull = reads.last().unwrap().end - reads.first().unwrap().start;
            assert!(
                hull > MAX_READ_LEN || reads.len() == 1,
                "stratum {level}: {reads:?} could be one read"
            );
        }
        reads
            .iter()
            .map(|read| {
                assert_eq!(read.level % STRATUM_HEIGHT, 0, "{read:?}");
                assert!(!read.is_empty() && read.len() <= MAX_READ_LEN, "{read:?}");
                assert!(
                    u128::from(read.end) << read.level <= u128::from(size),
                    "{read:?} reaches past size {size}"
                );
                assert!(
                    read.level > 0 || read.start >= purged,
                    "{read:?} reads leaves purged below {purged}"
                );
                (read.start..read.end)
                    .map(|index| {
                        if read.level == 0 {
                            self.leaves[index as usize]
                        } else {
                            let id = NodeId {
                                level: read.level,
                                index,
                            };
                            *self
                                .nodes
                                .get(&id)
                                .unwrap_or_else(|| panic!("{id:?} not stored"))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The hashes of `ids` in the tree of `size` leaves, through the store.
    fn hashes(&self, ids: &[NodeId], size: u64, max_per_stratum: usize) -> Vec<TreeHash> {
        let reads = plan_reads(ids);
        let fetched = self.fetch(&reads, size, 0, max_per_stratum);
        resolve(ids, &reads, &fetched).unwrap()
    }

    /// [`Store::hashes`] once the leaves below `boundary.size()` are purged,
    /// `boundary` being the compact range kept for them.
    fn hashes_after_purge(
        &self,
        ids: &[NodeId],
        size: u64,
        boundary: &CompactRange,
        max_per_stratum: usize,
    ) -> Result<Vec<TreeHash>, MerkleError> {
        if boundary.size() == 0 {
            return Ok(self.hashes(ids, size, max_per_stratum));
        }
        let reads = plan_reads_after_purge(ids, boundary.size())?;
        let fetched = self.fetch(&reads, size, boundary.size(), max_per_stratum);
        resolve_after_purge(ids, boundary, &reads, &fetched)
    }

    fn compact_range(&self, size: u64) -> CompactRange {
        let hashes = self.hashes(&compact_range_ids(size), size, 1);
        CompactRange::from_hashes(size, hashes).unwrap()
    }

    fn compact_range_after_purge(
        &self,
        size: u64,
        boundary: &CompactRange,
    ) -> Result<CompactRange, MerkleError> {
        let hashes = self.hashes_after_purge(&compact_range_ids(size), size, boundary, 1)?;
        CompactRange::from_hashes(size, hashes)
    }

    /// A proof and the roots of the given sizes, planned as one batch of
    /// reads, as a server answers a proof request together with its roots.
    fn proof(&self, plan: &ProofPlan, sizes: &[u64]) -> (Vec<TreeHash>, Vec<TreeHash>) {
        self.proof_after_purge(plan, sizes, &CompactRange::new())
            .unwrap()
    }

    /// [`Store::proof`] once the leaves below `boundary.size()` are purged.
    fn proof_after_purge(
        &self,
        plan: &ProofPlan,
        sizes: &[u64],
        boundary: &CompactRange,
    ) -> Result<(Vec<TreeHash>, Vec<TreeHash>), MerkleError> {
        let size = *sizes.iter().max().unwrap();
        let mut ids = plan.nodes().to_vec();
        for &size in sizes {
            ids.extend(compact_range_ids(size));
        }
        let hashes = self.hashes_after_purge(&ids, size, boundary, 2)?;
        let (proof_hashes, mut border) = hashes.split_at(plan.nodes().len());
        let roots = sizes
            .iter()
            .map(|&size| {
                let count = size.count_ones() as usize;
                let range = CompactRange::from_hashes(size, border[..count].to_vec()).unwrap();
                border = &border[count..];
                range.root()
            })
            .collect();
        Ok((plan.assemble(proof_hashes)?, roots))
    }

    fn inclusion(&self, index: u64, size: u64) -> (Vec<TreeHash>, TreeHash) {
        let (proof, roots) = self.proof(&inclusion_plan(index, size).unwrap(), &[size]);
        (proof, roots[0])
    }

    fn consistency(&self, size1: u64, size2: u64) -> (Vec<TreeHash>, TreeHash, TreeHash) {
        let plan = consistency_plan(size1, size2).unwrap();
        let (proof, roots) = self.proof(&plan, &[size1, size2]);
        (proof, roots[0], roots[1])
    }
}

fn size_and_index(max: u64) -> impl Strategy<Value = (u64, u64)> {
    (1..=max).prop_flat_map(|size| (Just(size), 0..size))
}

fn two_sizes(max: u64) -> impl Strategy<Value = (u64, u64)> {
    (1..=max).prop_flat_map(|size2| (1..=size2, Just(size2)))
}

/// A purge boundary and two sizes at or after it:
/// `purged <= size1 <= size2 <= max` and `0 < size2`.
fn purge_and_sizes(max: u64) -> impl Strategy<Value = (u64, u64, u64)> {
    (1..=max)
        .prop_flat_map(|size2| (0..=size2, Just(size2)))
        .prop_flat_map(|(size1, size2)| (0..=size1, Just(size1), Just(size2)))
}

/// Whether `got` is what a purged store may answer: `expected` when the
/// request is about retained leaves, and otherwise `expected` or a refusal
/// for needing purged leaves, never a wrong hash.
fn agrees<T: PartialEq>(got: &Result<T, MerkleError>, expected: &T, retained: bool) -> bool {
    match got {
        Ok(value) => value == expected,
        Err(MerkleError::Purged { .. }) => !retained,
        Err(_) => false,
    }
}

fn flip_bit(proof: &mut [TreeHash], entry: usize, bit: usize) {
    let entry = entry % proof.len();
    let mut bytes = *proof[entry].as_bytes();
    bytes[bit / 8 % 32] ^= 1 << (bit % 8);
    proof[entry] = TreeHash::from_bytes(bytes);
}

#[test]
fn root_after_every_append_is_the_reference_root() {
    let store = Store::small();
    let mut range = CompactRange::new();
    assert_eq!(range.root(), reference::mth(&[]));
    for seq in 0..SMALL {
        range.append(leaf(seq)).unwrap();
        assert_eq!(range.root(), reference::mth(store.prefix(seq + 1)), "{seq}");
    }
}

#[test]
fn append_stores_exactly_the_complete_stratum_nodes_with_reference_hashes() {
    for (store, size) in [(Store::small(), SMALL), (Store::large(), LARGE)] {
        let mut expected: Vec<NodeId> = [8u8, 16]
            .into_iter()
            .flat_map(|level| (0..size >> level).map(move |index| NodeId { level, index }))
            .collect();
        let mut stored: Vec<NodeId> = store.nodes.keys().copied().collect();
        expected.sort();
        stored.sort();
        assert_eq!(stored, expected);
        for (id, hash) in &store.nodes {
            let leaves = id.leaves().unwrap();
            let subtree = &store.leaves[leaves.start as usize..leaves.end as usize];
            assert_eq!(*hash, reference::mth(subtree), "{id:?}");
        }
    }
    assert!(Store::large().nodes.contains_key(&NodeId {
        level: 16,
        index: 0
    }));
}

#[test]
fn a_tree_past_two_strata_gives_reference_roots() {
    let store = Store::large();
    for size in [256, 65_535, 65_536, 65_537, LARGE] {
        assert_eq!(
            store.compact_range(size).root(),
            reference::mth(store.prefix(size)),
            "{size}"
        );
    }
}

#[test]
fn a_tree_past_two_strata_gives_reference_proofs() {
    let store = Store::large();
    for (index, size) in [(0, LARGE), (65_535, 65_537), (300, 66_000)] {
        let (proof, root) = store.inclusion(index, size);
        assert_eq!(proof, reference::path(index as usize, store.prefix(size)));
        verify_inclusion(index, size, &leaf(index), &proof, &root).unwrap();
    }
    for (size1, size2) in [(256, 65_537), (65_536, LARGE), (4_000, 69_999)] {
        let (proof, root1, root2) = store.consistency(size1, size2);
        assert_eq!(proof, reference::proof(size1 as usize, store.prefix(size2)));
        verify_consistency(size1, size2, &proof, &root1, &root2).unwrap();
    }
}

/// Trees up to this size are checked after every purge: every root, every
/// inclusion proof and every consistency proof.
const EXHAUSTIVE: u64 = 40;

#[test]
fn after_every_purge_of_a_small_tree_the_retained_part_proves_as_the_reference() {
    let store = Store::small();
    let roots: Vec<TreeHash> = (0..=EXHAUSTIVE)
        .map(|size| reference::mth(store.prefix(size)))
        .collect();
    for size2 in 1..=EXHAUSTIVE {
        let leaves = store.prefix(size2);
        let root2 = roots[size2 as usize];
        let paths: Vec<_> = (0..size2)
            .map(|index| reference::path(index as usize, leaves))
            .collect();
        let proofs: Vec<_> = (0..=size2)
            .map(|size1| match size1 {
                0 => Vec::new(),
                _ => reference::proof(size1 as usize, leaves),
            })
            .collect();
        for purged in 0..=EXHAUSTIVE {
            let boundary = store.compact_range(purged);
            let range = store.compact_range_after_purge(size2, &boundary);
            let expected = store.compact_range(size2);
            assert!(
                agrees(&range, &expected, purged <= size2),
                "size {size2} purged {purged}: {range:?}"
            );
            for index in 0..size2 {
                let plan = inclusion_plan(index, size2).unwrap();
                let got = store.proof_after_purge(&plan, &[size2], &boundary);
                let expected = (paths[index as usize].clone(), vec![root2]);
                assert!(
                    agrees(&got, &expected, purged <= index),
                    "leaf {index} of {size2} purged {purged}: {got:?}"
                );
            }
            for size1 in 1..=size2 {
                let plan = consistency_plan(size1, size2).unwrap();
                let got = store.proof_after_purge(&plan, &[size1, size2], &boundary);
                let expected = (
                    proofs[size1 as usize].clone(),
                    vec![roots[size1 as usize], root2],
                );
                assert!(
                    agrees(&got, &expected, purged <= size1),
                    "{size1} -> {size2} purged {purged}: {got:?}"
                );
            }
        }
    }
}

#[test]
fn purges_at_block_edges_keep_the_reference_roots_and_proofs() {
    let store = Store::small();
    let edges = [
        1,
        255,
        256,
        257,
        511,
        512,
        513,
        700,
        1023,
        1024,
        1025,
        SMALL - 1,
    ];
    for purged in edges {
        let boundary = store.compact_range(purged);
        let after = |sizes: &[u64]| -> Vec<u64> {
            let mut sizes: Vec<u64> = sizes
                .iter()
                .copied()
                .filter(|&size| purged <= size && size <= SMALL)
                .collect();
            sizes.dedup();
            sizes
        };
        for size2 in after(&[purged, purged + 1, 1024, SMALL]) {
            let leaves = store.prefix(size2);
            let root2 = reference::mth(leaves);
            let range = store.compact_range_after_purge(size2, &boundary).unwrap();
            assert_eq!(range.root(), root2, "size {size2} purged {purged}");
            for index in after(&[purged, purged + 1, 256, 511, 512, 1024, size2 - 1]) {
                if index >= size2 {
                    continue;
                }
                let plan = inclusion_plan(index, size2).unwrap();
                let got = store.proof_after_purge(&plan, &[size2], &boundary);
                let expected = (reference::path(index as usize, leaves), vec![root2]);
                assert_eq!(got, Ok(expected), "leaf {index} of {size2} purged {purged}");
            }
            for size1 in after(&[purged, purged + 1, 512, 1024, size2]) {
                if size1 > size2 {
                    continue;
                }
                let plan = consistency_plan(size1, size2).unwrap();
                let got = store.proof_after_purge(&plan, &[size1, size2], &boundary);
                let roots = vec![reference::mth(store.prefix(size1)), root2];
                let expected = (reference::proof(size1 as usize, leaves), roots);
                assert_eq!(got, Ok(expected), "{size1} -> {size2} purged {purged}");
            }
        }
    }
}

#[test]
fn purges_past_two_strata_keep_the_reference_roots_and_proofs() {
    let store = Store::large();
    for (purged, index, size1, size) in [
        (65_535, 65_535, 65_536, 65_537),
        (65_536, 65_600, 65_536, LARGE),
        (65_537, 65_700, 65_800, 66_000),
        (69_999, 69_999, 69_999, LARGE),
    ] {
        let boundary = store.compact_range(purged);
        let leaves = store.prefix(size);
        let root = reference::mth(leaves);
        let plan = inclusion_plan(index, size).unwrap();
        let got = store.proof_after_purge(&plan, &[size], &boundary);
        let expected = (reference::path(index as usize, leaves), vec![root]);
        assert_eq!(got, Ok(expected), "leaf {index} of {size} purged {purged}");
        let plan = consistency_plan(size1, size).unwrap();
        let got = store.proof_after_purge(&plan, &[size1, size], &boundary);
        let roots = vec![reference::mth(store.prefix(size1)), root];
        let expected = (reference::proof(size1 as usize, leaves), roots);
        assert_eq!(got, Ok(expected), "{size1} -> {size} purged {purged}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn after_a_purge_the_retained_part_proves_as_the_reference(
        (purged, size1, size2) in purge_and_sizes(SMALL),
        pick in any::<u64>(),
    ) {
        let store = Store::small();
        let boundary = store.compact_range(purged);
        let leaves = store.prefix(size2);
        let (root1, root2) = (reference::mth(store.prefix(size1)), reference::mth(leaves));
        let range = store.compact_range_after_purge(size1, &boundary).map(|range| range.root());
        prop_assert_eq!(range, Ok(root1));
        let range = store.compact_range_after_purge(size2, &boundary).map(|range| range.root());
        prop_assert_eq!(range, Ok(root2));
        if purged < size2 {
            let index = purged + pick % (size2 - purged);
            let plan = inclusion_plan(index, size2).unwrap();
            let got = store.proof_after_purge(&plan, &[size2], &boundary);
            let expected = (reference::path(index as usize, leaves), vec![root2]);
            prop_assert_eq!(got, Ok(expected), "leaf {}", index);
        }
        if size1 > 0 {
            let plan = consistency_plan(size1, size2).unwrap();
            let got = store.proof_after_purge(&plan, &[size1, size2], &boundary);
            let expected = (reference::proof(size1 as usize, leaves), vec![root1, root2]);
            prop_assert_eq!(got, Ok(expected));
        }
        // A leaf before the boundary: refused, or right, never wrong.
        if purged > 0 {
            let index = pick % purged;
            let plan = inclusion_plan(index, size2).unwrap();
            let got = store.proof_after_purge(&plan, &[size2], &boundary);
            let expected = (reference::path(index as usize, leaves), vec![root2]);
            prop_assert!(agrees(&got, &expected, false), "leaf {}: {:?}", index, got);
        }
    }

    #[test]
    fn after_a_purge_past_two_strata_proofs_are_unchanged_within_the_read_bound(
        (purged, size1, size2) in purge_and_sizes(LARGE),
        pick in any::<u64>(),
    ) {
        let store = Store::large();
        let boundary = store.compact_range(purged);
        let range = store.compact_range_after_purge(size2, &boundary);
        prop_assert_eq!(range, Ok(store.compact_range(size2)));
        if purged < size2 {
            let index = purged + pick % (size2 - purged);
            let plan = inclusion_plan(index, size2).unwrap();
            let got = store.proof_after_purge(&plan, &[size2], &boundary);
            let (proof, root) = store.inclusion(index, size2);
            prop_assert_eq!(got, Ok((proof, vec![root])), "leaf {}", index);
        }
        if size1 > 0 {
            let plan = consistency_plan(size1, size2).unwrap();
            let got = store.proof_after_purge(&plan, &[size1, size2], &boundary);
            let (proof, root1, root2) = store.consistency(size1, size2);
            prop_assert_eq!(got, Ok((proof, vec![root1, root2])));
        }
    }

    #[test]
    fn compact_ranges_read_from_the_store_match_appending_and_the_reference(
        size in 0..=SMALL,
    ) {
        let store = Store::small();
        let read = store.compact_range(size);
        let mut appended = CompactRange::new();
        for &hash in store.prefix(size) {
            appended.append(hash).unwrap();
        }
        prop_assert_eq!(&read, &appended);
        prop_assert_eq!(read.root(), reference::mth(store.prefix(size)));
    }

    #[test]
    fn inclusion_proofs_from_the_store_are_the_reference_paths_and_verify(
        (size, index) in size_and_index(SMALL),
    ) {
        let store = Store::small();
        let (proof, root) = store.inclusion(index, size);
        prop_assert_eq!(root, reference::mth(store.prefix(size)));
        prop_assert_eq!(&proof, &reference::path(index as usize, store.prefix(size)));
        prop_assert_eq!(root_from_inclusion_proof(index, size, &leaf(index), &proof), Ok(root));
        prop_assert_eq!(verify_inclusion(index, size, &leaf(index), &proof, &root), Ok(()));
    }

    #[test]
    fn consistency_proofs_from_the_store_are_the_reference_proofs_and_verify(
        (size1, size2) in two_sizes(SMALL),
    ) {
        let store = Store::small();
        let (proof, root1, root2) = store.consistency(size1, size2);
        prop_assert_eq!(root1, reference::mth(store.prefix(size1)));
        prop_assert_eq!(root2, reference::mth(store.prefix(size2)));
        prop_assert_eq!(&proof, &reference::proof(size1 as usize, store.prefix(size2)));
        prop_assert_eq!(verify_consistency(size1, size2, &proof, &root1, &root2), Ok(()));
    }

    #[test]
    fn proofs_in_a_tree_past_two_strata_verify_within_the_read_bound(
        (size, index) in size_and_index(LARGE),
        size1 in 1..=LARGE,
    ) {
        let store = Store::large();
        let (proof, root) = store.inclusion(index, size);
        prop_assert_eq!(verify_inclusion(index, size, &leaf(index), &proof, &root), Ok(()));
        let size1 = size1.min(size);
        let (proof, root1, root2) = store.consistency(size1, size);
        prop_assert_eq!(root2, root);
        prop_assert_eq!(verify_consistency(size1, size, &proof, &root1, &root2), Ok(()));
    }

    #[test]
    fn mutated_inclusion_proofs_are_rejected(
        (size, index) in size_and_index(SMALL),
        entry in any::<usize>(),
        bit in 0..256usize,
        other_index in 0..SMALL,
        other_size in 1..=SMALL,
        junk in any::<[u8; 32]>(),
    ) {
        let store = Store::small();
        let (proof, root) = store.inclusion(index, size);
        let leaf = leaf(index);
        let junk = TreeHash::from_bytes(junk);
        if !proof.is_empty() {
            let mut flipped = proof.clone();
            flip_bit(&mut flipped, entry, bit);
            prop_assert!(verify_inclusion(index, size, &leaf, &flipped, &root).is_err());
            let mut dropped = proof.clone();
            dropped.remove(entry % proof.len());
            prop_assert!(verify_inclusion(index, size, &leaf, &dropped, &root).is_err());
        }
        let mut added = proof.clone();
        added.insert(entry % (proof.len() + 1), junk);
        prop_assert!(verify_inclusion(index, size, &leaf, &added, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &junk, &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &junk).is_err());
        if other_index != index {
            prop_assert!(verify_inclusion(other_index, size, &leaf, &proof, &root).is_err());
        }
        // A size whose path has a different length can never pass; one with a
        // path of the same shape can (see `verify_inclusion`).
        if index >= other_size
            || reference::path(index as usize, store.prefix(other_size)).len() != proof.len()
        {
            prop_assert!(verify_inclusion(index, other_size, &leaf, &proof, &root).is_err());
        }
    }

    #[test]
    fn mutated_consistency_proofs_are_rejected(
        (size1, size2) in two_sizes(SMALL),
        entry in any::<usize>(),
        bit in 0..256usize,
        other_size1 in 0..=SMALL,
        other_size2 in 0..=SMALL,
        junk in any::<[u8; 32]>(),
    ) {
        let store = Store::small();
        let (proof, root1, root2) = store.consistency(size1, size2);
        let junk = TreeHash::from_bytes(junk);
        if !proof.is_empty() {
            let mut flipped = proof.clone();
            flip_bit(&mut flipped, entry, bit);
            prop_assert!(verify_consistency(size1, size2, &flipped, &root1, &root2).is_err());
            let mut dropped = proof.clone();
            dropped.remove(entry % proof.len());
            prop_assert!(verify_consistency(size1, size2, &dropped, &root1, &root2).is_err());
            prop_assert!(verify_consistency(size1, size2, &proof, &root2, &root1).is_err());
        }
        let mut added = proof.clone();
        added.insert(entry % (proof.len() + 1), junk);
        prop_assert!(verify_consistency(size1, size2, &added, &root1, &root2).is_err());
        prop_assert!(verify_consistency(size1, size2, &proof, &junk, &root2).is_err());
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &junk).is_err());
        if other_size1 != size1 {
            prop_assert!(verify_consistency(other_size1, size2, &proof, &root1, &root2).is_err());
        }
        // As with inclusion, the new size is bound through its root: only a
        // size that changes the proof's length is sure to fail.
        if other_size2 < size1
            || other_size2 == 0
            || reference::proof(size1 as usize, store.prefix(other_size2)).len() != proof.len()
        {
            prop_assert!(verify_consistency(size1, other_size2, &proof, &root1, &root2).is_err());
        }
    }
}
