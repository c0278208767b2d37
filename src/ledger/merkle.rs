//! A tenant's RFC 6962 Merkle tree (RFC 9162 §2.1): roots, compact ranges,
//! inclusion and consistency proofs, their verification, and the plan of
//! storage reads that produces them.
//!
//! Owns the tree arithmetic and the `0x01` node hashing. It must never do I/O:
//! the storage layer asks which stored hashes a root or a proof needs
//! ([`compact_range_ids`], [`inclusion_plan`], [`consistency_plan`], then
//! [`plan_reads`]), fetches them, and hands them back ([`resolve`],
//! [`ProofPlan::assemble`], [`CompactRange::from_hashes`]).
//!
//! # Storage model
//! Node `(level l, index i)` is the perfect subtree over leaves
//! `[i << l, (i + 1) << l)`. The store keeps, per tenant, the leaf hashes
//! (level 0, index = seq) and the nodes at the *stratum* levels 8, 16, 24, …
//! (multiples of [`STRATUM_HEIGHT`]). A stratum node exists once the tree has
//! all its leaves, i.e. once the size reaches `(i + 1) << l`;
//! [`CompactRange::append`] hands out exactly those nodes as they complete.
//! Any other perfect node at level `l` is rehashed from its
//! `2^(l mod 8) <= 128` descendants at stratum level `l - l mod 8`, and a
//! non-perfect subtree on a tree's right edge from the perfect nodes of its
//! binary decomposition. So a root or a proof costs a bounded read per
//! stratum — see [`plan_reads`] for the exact bound.
//!
//! # After a purge
//! Retention deletes a prefix of the leaves, `[0, P)`, and keeps the stored
//! strata and the compact range of the tree of `P` leaves (the *boundary*).
//! Every node that trees of at least `P` leaves and proofs about leaves at or
//! after `P` need is still computable: a node read from a stratum above the
//! leaves is untouched; a node below level 8 that ends at or before `P` is a
//! node of the boundary's compact range; one that straddles `P` is the fold of
//! the boundary's nodes inside it (they tile its part below `P`) and the
//! retained leaves after `P`. Any other node below level 8 and before `P` is
//! gone. [`plan_reads_after_purge`] and [`resolve_after_purge`] do this, with
//! the same read bound, and never read a leaf below `P`.

use std::fmt;
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::hash::{HASH_LEN, NODE_PREFIX, TreeHash};

/// Levels between two stored strata: nodes are stored at levels 8, 16, 24, …
/// and leaves at level 0.
pub const STRATUM_HEIGHT: u8 = 8;

/// The most entries a single [`StratumRead`] from [`plan_reads`] asks for.
pub const MAX_READ_LEN: u64 = 512;

/// A perfect subtree: the node at `level` above the leaves and `index` from the
/// left, covering leaves `[index << level, (index + 1) << level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves; 0 is a leaf.
    pub level: u8,
    /// Position among the nodes of that level, from 0.
    pub index: u64,
}

impl NodeId {
    /// The leaves this node covers, or `None` when they would reach past leaf
    /// `u64::MAX - 1` (no tree of at most `u64::MAX` leaves holds such a node).
    pub fn leaves(self) -> Option<Range<u64>> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }

    /// The stored nodes this node is computed from: a single node if it sits
    /// on a stratum level, else its descendants at the stratum below.
    fn stratum_read(self) -> Option<StratumRead> {
        let leaves = self.leaves()?;
        let level = self.level - self.level % STRATUM_HEIGHT;
        Some(StratumRead {
            level,
            start: leaves.start >> level,
            end: leaves.end >> level,
        })
    }
}

/// A read of stored nodes `[start, end)` of stratum `level` (a multiple of
/// [`STRATUM_HEIGHT`]; level 0 means leaf hashes by seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StratumRead {
    /// The stratum level: 0, 8, 16, …
    pub level: u8,
    /// First node index read.
    pub start: u64,
    /// One past the last node index read.
    pub end: u64,
}

impl StratumRead {
    /// How many hashes answer this read.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the read asks for nothing (never true of a planned read).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hashes of `inner` out of `fetched`, the answer to `self`.
    fn slice<'a>(&self, inner: &StratumRead, fetched: &'a [TreeHash]) -> Option<&'a [TreeHash]> {
        if inner.level != self.level || inner.start < self.start || inner.end > self.end {
            return None;
        }
        let from = usize::try_from(inner.start - self.start).ok()?;
        let to = usize::try_from(inner.end - self.start).ok()?;
        fetched.get(from..to)
    }
}

/// Which of the hashes handed to a verification an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashRole {
    /// The leaf hash being proven.
    Leaf,
    /// The root of an inclusion proof.
    Root,
    /// The root of the smaller tree of a consistency proof.
    Root1,
    /// The root of the larger tree of a consistency proof.
    Root2,
    /// The proof entry at this position.
    ProofEntry(usize),
}

impl fmt::Display for HashRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashRole::Leaf => f.write_str("leaf hash"),
            HashRole::Root => f.write_str("root"),
            HashRole::Root1 => f.write_str("first root"),
            HashRole::Root2 => f.write_str("second root"),
            HashRole::ProofEntry(position) => write!(f, "proof entry {position}"),
        }
    }
}

/// Why a tree operation, a proof or a verification failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizeOrder {
        /// The first (older) size.
        size1: u64,
        /// The second (newer) size.
        size2: u64,
    },
    /// A consistency proof from the empty tree to a non-empty one: every tree
    /// extends the empty tree, so such a "proof" would check nothing.
    #[error("no consistency proof from the empty tree to size {size2}")]
    ConsistencyFromEmpty {
        /// The second (newer) size.
        size2: u64,
    },
    /// The proof has the wrong number of entries for its sizes.
    #[error("proof has {actual} entries, expected {expected}")]
    WrongProofLength {
        /// Entries the sizes call for.
        expected: usize,
        /// Entries given.
        actual: usize,
    },
    /// The root recomputed from a proof is not the one given.
    #[error("calculated root {calculated} does not match expected root {expected}")]
    RootMismatch {
        /// The root given by the caller.
        expected: TreeHash,
        /// The root the proof leads to.
        calculated: TreeHash,
    },
    /// Two roots of the same tree size differ.
    #[error("the two roots for tree size {size} differ")]
    RootsDiffer {
        /// The common tree size.
        size: u64,
    },
    /// A root given for the empty tree is not `SHA-256("")`.
    #[error("{role} of the empty tree is not SHA-256 of the empty string")]
    NotEmptyRoot {
        /// Which root.
        role: HashRole,
    },
    /// A hash given as bytes is not 32 bytes long.
    #[error("{role} is {actual} bytes long, expected {HASH_LEN}")]
    WrongHashLength {
        /// Which hash.
        role: HashRole,
        /// Its length in bytes.
        actual: usize,
    },
    /// The number of hashes does not match the nodes they should answer.
    #[error("got {actual} hashes, expected {expected}")]
    WrongHashCount {
        /// Hashes called for.
        expected: usize,
        /// Hashes given.
        actual: usize,
    },
    /// The reads and their answers differ in number.
    #[error("got {actual} answers to {expected} reads")]
    WrongAnswerCount {
        /// Reads planned.
        expected: usize,
        /// Answers given.
        actual: usize,
    },
    /// A read was answered with the wrong number of hashes.
    #[error("read {read} was answered with {actual} hashes, expected {expected}")]
    WrongFetchLength {
        /// Position of the read in the plan.
        read: usize,
        /// `end - start` of that read.
        expected: u64,
        /// Hashes given for it.
        actual: usize,
    },
    /// No read covers the stored nodes a node is computed from.
    #[error("no read covers node {node:?}")]
    MissingNode {
        /// The node that cannot be computed.
        node: NodeId,
    },
    /// The node cannot be part of any tree (its leaves pass `u64::MAX`).
    #[error("node {node:?} is outside every tree")]
    InvalidNode {
        /// The offending node.
        node: NodeId,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    TreeFull,
    /// The node needs leaves a purge deleted: it lies below the boundary,
    /// under the first stratum, and is not a node of the boundary's compact
    /// range.
    #[error("node {node:?} needs leaves purged below {boundary}")]
    Purged {
        /// The node that cannot be computed any more.
        node: NodeId,
        /// The purge boundary: leaves `[0, boundary)` are gone.
        boundary: u64,
    },
}

/// `SHA-256(0x01 || left || right)`: an interior node (RFC 6962 §2.1).
pub fn hash_children(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    TreeHash::from_bytes(hasher.finalize().into())
}

/// `SHA-256("")`: the root of the empty tree (RFC 6962 §2.1).
pub fn empty_root() -> TreeHash {
    TreeHash::from_bytes(Sha256::digest(b"").into())
}

/// Folds hashes of adjacent subtrees, largest (leftmost) first, into the hash
/// of the RFC 6962 subtree they decompose: each one is the left child of the
/// subtree made of all those to its right. `None` for no hashes.
fn fold_border(hashes: &[TreeHash]) -> Option<TreeHash> {
    let mut from_right = hashes.iter().rev();
    let last = *from_right.next()?;
    Some(from_right.fold(last, |right, left| hash_children(left, &right)))
}

/// The root of a perfect subtree from its `2^d` descendants at one level, left
/// to right; `None` unless their number is a power of two.
fn perfect_root(nodes: &[TreeHash]) -> Option<TreeHash> {
    if !nodes.len().is_power_of_two() {
        return None;
    }
    let mut layer = nodes.to_vec();
    while layer.len() > 1 {
        layer = layer
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [left, right] => Some(hash_children(left, right)),
                _ => None,
            })
            .collect();
    }
    layer.first().copied()
}

/// A node id from a level known to be below 64.
fn node(level: u32, index: u64) -> NodeId {
    // Every caller derives `level` from a position inside a u64 leaf range,
    // so it is at most 63.
    NodeId {
        level: level as u8,
        index,
    }
}

/// The perfect subtrees that make up the RFC 6962 subtree over leaves
/// `[start, end)`, left (largest) to right.
///
/// Requires `start` to be a multiple of a power of two at least `end - start`,
/// which holds for every subtree of an RFC 6962 tree and for `start == 0`.
fn decompose(leaves: Range<u64>) -> Vec<NodeId> {
    let Range { mut start, end } = leaves;
    let mut ids = Vec::new();
    while start < end {
        let fits = (end - start).ilog2();
        let aligned = start.trailing_zeros();
        let level = fits.min(aligned);
        ids.push(node(level, start >> level));
        // `start + 2^level <= end`, so this cannot overflow.
        start += 1 << level;
    }
    ids
}

/// The perfect subtrees of the binary decomposition of `size`: the right
/// border of the tree of `size` leaves, left (largest) to right.
pub fn compact_range_ids(size: u64) -> Vec<NodeId> {
    decompose(0..size)
}

/// Whether the node at `level` and index 0 covers a whole tree of `size`.
fn spans(level: u32, size: u64) -> bool {
    level >= 64 || (1u64 << level) >= size
}

/// The subtrees whose hashes lead from the perfect node `(level, index)` to
/// the root of the tree of `size` leaves, bottom-up, as leaf ranges: RFC 6962
/// PATH, from a node instead of a leaf.
///
/// Requires the node to lie inside the tree: `(index + 1) << level <= size`.
fn path_ranges(level: u32, index: u64, size: u64) -> Vec<Range<u64>> {
    let (mut level, mut index) = (level, index);
    let mut path = Vec::new();
    while !(index == 0 && spans(level, size)) {
        // Not the root, so the node is narrower than the tree: level < 64.
        let width = 1u64 << level;
        if index & 1 == 1 {
            let start = (index - 1) << level;
            path.push(start..start + width);
        } else {
            // The node starts below `size`, so its right sibling starts at
            // most at `2^64 - 2^level`: no overflow. A sibling starting at or
            // after `size` does not exist; the node is promoted unchanged.
            let start = (index + 1) << level;
            if start < size {
                path.push(start..start.saturating_add(width).min(size));
            }
        }
        index >>= 1;
        level += 1;
    }
    path
}

/// The right border of a tree of `size` leaves starting at leaf 0: the hashes
/// of the perfect subtrees of the binary decomposition of `size` (one per set
/// bit), left (largest) to right. Enough to compute the root and to keep
/// appending, so it is what survives a purge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<TreeHash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// The range of a tree of `size` leaves from the hashes of the nodes
    /// [`compact_range_ids`]`(size)`, in that order.
    pub fn from_hashes(size: u64, hashes: Vec<TreeHash>) -> Result<CompactRange, MerkleError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(MerkleError::WrongHashCount {
                expected,
                actual: hashes.len(),
            });
        }
        Ok(CompactRange { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The border hashes, in the order of [`compact_range_ids`]`(self.size())`.
    pub fn hashes(&self) -> &[TreeHash] {
        &self.hashes
    }

    /// The tree's root (RFC 6962 MTH); [`empty_root`] for size 0.
    pub fn root(&self) -> TreeHash {
        fold_border(&self.hashes).unwrap_or_else(empty_root)
    }

    /// Appends one leaf hash. Returns every node the leaf completes whose
    /// level is a stored stratum level (8, 16, …; not the leaf itself), lowest
    /// first, for the caller to persist.
    ///
    /// Fails only with [`MerkleError::TreeFull`] when the tree already holds
    /// `u64::MAX` leaves.
    pub fn append(&mut self, leaf: TreeHash) -> Result<Vec<(NodeId, TreeHash)>, MerkleError> {
        let size = self.size.checked_add(1).ok_or(MerkleError::TreeFull)?;
        // Each trailing one bit of the old size is a border node of that
        // level that now gets its right sibling.
        let merged = self.size.trailing_ones() as usize;
        let lefts = self
            .hashes
            .split_off(self.hashes.len().saturating_sub(merged));
        let mut stored = Vec::new();
        let mut hash = leaf;
        for (below, left) in (0u32..).zip(lefts.iter().rev()) {
            hash = hash_children(left, &hash);
            let level = below + 1;
            if level % u32::from(STRATUM_HEIGHT) == 0 {
                // The new node ends at leaf `size`, which is a nonzero
                // multiple of 2^level.
                stored.push((node(level, (size >> level) - 1), hash));
            }
        }
        self.hashes.push(hash);
        self.size = size;
        Ok(stored)
    }
}

/// The stored ranges that produce the given nodes, sorted by level then
/// start: [`resolve`] computes the nodes from their answers.
///
/// Each id must be a perfect subtree inside the stored tree
/// (`(index + 1) << level <= size`); then every read lies below the tree size
/// and asks only for stored nodes. Ids outside every tree are left out (and
/// [`resolve`] rejects them).
///
/// Bound: every read asks for at most [`MAX_READ_LEN`] = 512 entries, because
/// the ranges a stratum needs are merged, in order, only while the merged read
/// stays within that bound (a single node never needs more than 128). For the
/// nodes this module plans:
/// - [`compact_range_ids`]: at most one read per stratum, of at most 255
///   entries (the size's right edge);
/// - [`inclusion_plan`] and [`consistency_plan`]: at most two reads per
///   stratum. Everything a proof needs at a stratum lies in two aligned blocks
///   of 256 stratum nodes: the block around the proven leaf (or around the old
///   size's right edge) and the block at the new size's right edge. When the
///   needed entries of a stratum span at most 512, they are one read. This
///   still holds when the [`compact_range_ids`] of the proof's sizes are
///   planned together with the proof's nodes (a proof and the roots it
///   relates, in one round trip).
///
/// With at most 8 strata below 2^64 leaves, a proof costs at most 16 reads.
pub fn plan_reads(ids: &[NodeId]) -> Vec<StratumRead> {
    merge_reads(ids.iter().filter_map(|id| id.stratum_read()).collect())
}

/// Sorts the ranges needed and merges those of a stratum while the merged
/// read stays within [`MAX_READ_LEN`].
fn merge_reads(mut needed: Vec<StratumRead>) -> Vec<StratumRead> {
    needed.sort_unstable_by_key(|read| (read.level, read.start, read.end));
    let mut reads: Vec<StratumRead> = Vec::new();
    for next in needed {
        match reads.last_mut() {
            // Sorted, so `next.start >= current.start`.
            Some(current)
                if current.level == next.level
                    && current.end.max(next.end) - current.start <= MAX_READ_LEN =>
            {
                current.end = current.end.max(next.end);
            }
            _ => reads.push(next),
        }
    }
    reads
}

/// Computes the hashes of `ids` (same order) from the answers to `reads`
/// (normally [`plan_reads`]`(ids)`): `fetched[k]` answers `reads[k]` with
/// exactly `end - start` hashes, in index order.
pub fn resolve(
    ids: &[NodeId],
    reads: &[StratumRead],
    fetched: &[Vec<TreeHash>],
) -> Result<Vec<TreeHash>, MerkleError> {
    // Nothing purged: every node is read from the store.
    resolve_after_purge(ids, &CompactRange::new(), reads, fetched)
}

/// Where the hash of a node comes from once the leaves below a purge
/// boundary are gone.
enum Source {
    /// The stored nodes of this read, as without a purge.
    Stored(StratumRead),
    /// The boundary's compact-range node at this position.
    Border(usize),
    /// A node straddling the boundary: the boundary's compact-range nodes at
    /// `tiles`, which cover its leaves below the boundary (`below` of them),
    /// then the retained leaves `leaves`.
    Straddling {
        tiles: Range<usize>,
        below: u64,
        leaves: StratumRead,
    },
}

/// Where the hash of `id` comes from once leaves `[0, boundary)` are purged;
/// `border` is [`compact_range_ids`]`(boundary)`.
fn source(id: NodeId, boundary: u64, border: &[NodeId]) -> Result<Source, MerkleError> {
    let read = id
        .stratum_read()
        .ok_or(MerkleError::InvalidNode { node: id })?;
    // Stored strata above the leaves are never purged.
    if read.level > 0 || read.start >= boundary {
        return Ok(Source::Stored(read));
    }
    let purged = MerkleError::Purged { node: id, boundary };
    if read.end <= boundary {
        return border
            .iter()
            .position(|&node| node == id)
            .map(Source::Border)
            .ok_or(purged);
    }
    // `start < boundary < end`, and `start` is a multiple of the node's width
    // `end - start`: `[start, boundary)` is the low bits of `boundary`, which
    // the border's last nodes decompose.
    let first = border
        .iter()
        .position(|node| {
            node.leaves()
                .is_some_and(|leaves| leaves.start >= read.start)
        })
        .ok_or(purged)?;
    Ok(Source::Straddling {
        tiles: first..border.len(),
        below: boundary - read.start,
        leaves: StratumRead {
            level: 0,
            start: boundary,
            end: read.end,
        },
    })
}

/// The stored ranges that produce `ids` once leaves `[0, boundary)` are
/// purged: [`plan_reads`] with every leaf read starting at `boundary` or
/// later, and no read at all for the nodes the boundary's compact range
/// holds. [`resolve_after_purge`] computes the nodes from the answers.
///
/// Fails with [`MerkleError::Purged`] for a node that needs purged leaves
/// (see the module's *After a purge*), and with [`MerkleError::InvalidNode`]
/// for one outside every tree. The nodes of [`compact_range_ids`]`(m)` for
/// `m >= boundary`, of [`inclusion_plan`]`(i, m)` for `boundary <= i < m` and
/// of [`consistency_plan`]`(m1, m2)` for `boundary <= m1 <= m2` never fail,
/// and the bound of [`plan_reads`] holds: a node straddling the boundary adds
/// the leaves `[boundary, end)` it covers, which lie in the same aligned block
/// of 256 leaves as the node.
pub fn plan_reads_after_purge(
    ids: &[NodeId],
    boundary: u64,
) -> Result<Vec<StratumRead>, MerkleError> {
    let border = compact_range_ids(boundary);
    let mut needed = Vec::new();
    for &id in ids {
        match source(id, boundary, &border)? {
            Source::Stored(read) => needed.push(read),
            Source::Border(_) => {}
            Source::Straddling { leaves, .. } => needed.push(leaves),
        }
    }
    Ok(merge_reads(needed))
}

/// Computes the hashes of `ids` (same order) once the leaves below
/// `boundary.size()` are purged, from `boundary` (the compact range of the
/// tree of that many leaves) and the answers to `reads` (normally
/// [`plan_reads_after_purge`]`(ids, boundary.size())`), shaped as for
/// [`resolve`].
///
/// Fails as [`plan_reads_after_purge`] does for a node that needs purged
/// leaves, and as [`resolve`] does for answers of the wrong shape.
pub fn resolve_after_purge(
    ids: &[NodeId],
    boundary: &CompactRange,
    reads: &[StratumRead],
    fetched: &[Vec<TreeHash>],
) -> Result<Vec<TreeHash>, MerkleError> {
    if fetched.len() != reads.len() {
        return Err(MerkleError::WrongAnswerCount {
            expected: reads.len(),
            actual: fetched.len(),
        });
    }
    for (read, (plan, hashes)) in reads.iter().zip(fetched).enumerate() {
        if u64::try_from(hashes.len()).ok() != Some(plan.len()) {
            return Err(MerkleError::WrongFetchLength {
                read,
                expected: plan.len(),
                actual: hashes.len(),
            });
        }
    }
    let border = compact_range_ids(boundary.size());
    let stored = |id: NodeId, need: &StratumRead| {
        reads
            .iter()
            .zip(fetched)
            .find_map(|(read, hashes)| read.slice(need, hashes))
            .ok_or(MerkleError::MissingNode { node: id })
    };
    ids.iter()
        .map(|&id| match source(id, boundary.size(), &border)? {
            // `need` spans a power of two of nodes by construction.
            Source::Stored(need) => {
                perfect_root(stored(id, &need)?).ok_or(MerkleError::InvalidNode { node: id })
            }
            Source::Border(position) => boundary
                .hashes()
                .get(position)
                .copied()
                .ok_or(MerkleError::InvalidNode { node: id }),
            Source::Straddling {
                tiles,
                below,
                leaves,
            } => {
                let tiles = boundary
                    .hashes()
                    .get(tiles)
                    .ok_or(MerkleError::InvalidNode { node: id })?;
                // The node's leaves, counted from its first, form a tree of
                // their own whose compact range at `below` leaves is `tiles`.
                let mut range = CompactRange::from_hashes(below, tiles.to_vec())?;
                for leaf in stored(id, &leaves)? {
                    range.append(*leaf)?;
                }
                Ok(range.root())
            }
        })
        .collect()
}

/// The perfect-subtree nodes a proof needs and how to combine them: each proof
/// entry is one node, or, for a subtree on the tree's right edge that is not
/// perfect, the fold of the nodes of its binary decomposition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofPlan {
    nodes: Vec<NodeId>,
    /// For each proof entry, the positions in `nodes` it folds.
    entries: Vec<Range<usize>>,
}

impl ProofPlan {
    fn from_ranges(ranges: Vec<Range<u64>>) -> ProofPlan {
        let mut plan = ProofPlan::default();
        for leaves in ranges {
            let first = plan.nodes.len();
            plan.nodes.extend(decompose(leaves));
            plan.entries.push(first..plan.nodes.len());
        }
        plan
    }

    /// The nodes whose hashes [`ProofPlan::assemble`] needs, in that order;
    /// feed them to [`plan_reads`] and [`resolve`].
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The number of entries of the proof.
    pub fn proof_len(&self) -> usize {
        self.entries.len()
    }

    /// The proof, from the hashes of [`ProofPlan::nodes`] in the same order.
    pub fn assemble(&self, hashes: &[TreeHash]) -> Result<Vec<TreeHash>, MerkleError> {
        let wrong_count = MerkleError::WrongHashCount {
            expected: self.nodes.len(),
            actual: hashes.len(),
        };
        if hashes.len() != self.nodes.len() {
            return Err(wrong_count);
        }
        self.entries
            .iter()
            .map(|entry| {
                hashes
                    .get(entry.clone())
                    .and_then(fold_border)
                    .ok_or_else(|| wrong_count.clone())
            })
            .collect()
    }
}

/// The plan of the inclusion proof (RFC 6962 PATH, RFC 9162 §2.1.3.1) of leaf
/// `index` in the tree of `size` leaves. Requires `index < size`.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    Ok(ProofPlan::from_ranges(path_ranges(0, index, size)))
}

/// How two tree sizes of a consistency proof relate.
enum Sizes {
    Equal,
    Growing,
}

fn relate(size1: u64, size2: u64) -> Result<Sizes, MerkleError> {
    if size1 > size2 {
        Err(MerkleError::SizeOrder { size1, size2 })
    } else if size1 == size2 {
        Ok(Sizes::Equal)
    } else if size1 == 0 {
        Err(MerkleError::ConsistencyFromEmpty { size2 })
    } else {
        Ok(Sizes::Growing)
    }
}

/// The plan of the consistency proof (RFC 6962 PROOF, RFC 9162 §2.1.4.1)
/// between the trees of `size1` and `size2` leaves.
///
/// Requires `0 < size1 <= size2`, or `size1 == size2 == 0`; equal sizes have
/// the empty proof.
///
/// The proof is the last node of the old tree's border (left out when `size1`
/// is a power of two: it is then the old root itself) followed by that node's
/// path to the new root.
pub fn consistency_plan(size1: u64, size2: u64) -> Result<ProofPlan, MerkleError> {
    match relate(size1, size2)? {
        Sizes::Equal => Ok(ProofPlan::default()),
        Sizes::Growing => {
            let level = size1.trailing_zeros();
            let index = (size1 - 1) >> level;
            let mut ranges = Vec::new();
            if index != 0 {
                ranges.push(index << level..size1);
            }
            ranges.extend(path_ranges(level, index, size2));
            Ok(ProofPlan::from_ranges(ranges))
        }
    }
}

/// Where a proof entry goes relative to the hash climbing the tree.
#[derive(Clone, Copy)]
enum Side {
    /// The entry is the left child: `hash_children(entry, climbing)`.
    Left,
    /// The entry is the right child: `hash_children(climbing, entry)`.
    Right,
}

/// The sides of the proof entries that take node `node` (index at its level)
/// to the root, when `last` is the index of the tree's last node at that
/// level: the verification walk of RFC 9162 §2.1.3.2 step 4, whose length is
/// the number of entries a valid proof has.
fn sides(node: u64, last: u64) -> Vec<Side> {
    let (mut node, mut last) = (node, last);
    let mut sides = Vec::new();
    while last != 0 {
        if node & 1 == 1 || node == last {
            sides.push(Side::Left);
            // A node with no right sibling is promoted until it is a right
            // child (or the leftmost node).
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            sides.push(Side::Right);
        }
        node >>= 1;
        last >>= 1;
    }
    sides
}

fn check_proof_len(expected: usize, proof: &[TreeHash]) -> Result<(), MerkleError> {
    if proof.len() == expected {
        Ok(())
    } else {
        Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        })
    }
}

fn climb(start: TreeHash, sides: &[Side], proof: &[TreeHash]) -> TreeHash {
    sides
        .iter()
        .zip(proof)
        .fold(start, |climbing, (side, entry)| match side {
            Side::Left => hash_children(entry, &climbing),
            Side::Right => hash_children(&climbing, entry),
        })
}

fn check_root(expected: &TreeHash, calculated: TreeHash) -> Result<(), MerkleError> {
    if *expected == calculated {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch {
            expected: *expected,
            calculated,
        })
    }
}

/// The root that an inclusion proof leads to from leaf `index` with hash
/// `leaf` in a tree of `size` leaves (RFC 9162 §2.1.3.2).
///
/// Requires `index < size` and exactly as many proof entries as the path of
/// that leaf has.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &TreeHash,
    proof: &[TreeHash],
) -> Result<TreeHash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let sides = sides(index, size - 1);
    check_proof_len(sides.len(), proof)?;
    Ok(climb(*leaf, &sides, proof))
}

/// Checks that `proof` proves leaf `index` with hash `leaf` is in the tree of
/// `size` leaves with root `root` (RFC 9162 §2.1.3.2). Requires
/// `index < size`.
///
/// The root binds the leaves, not the size: a proof can also pass for a
/// different size whose path has the same shape, so trust a root only
/// together with its size (as a checkpoint signs them).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &TreeHash,
    proof: &[TreeHash],
    root: &TreeHash,
) -> Result<(), MerkleError> {
    check_root(root, root_from_inclusion_proof(index, size, leaf, proof)?)
}

fn parse_hash(bytes: &[u8], role: HashRole) -> Result<TreeHash, MerkleError> {
    TreeHash::try_from(bytes).map_err(|err| MerkleError::WrongHashLength {
        role,
        actual: err.actual,
    })
}

fn parse_proof<P: AsRef<[u8]>>(proof: &[P]) -> Result<Vec<TreeHash>, MerkleError> {
    proof
        .iter()
        .enumerate()
        .map(|(position, entry)| parse_hash(entry.as_ref(), HashRole::ProofEntry(position)))
        .collect()
}

/// [`verify_inclusion`] on hashes given as raw bytes, as a proof arrives from
/// outside: every hash must be exactly 32 bytes.
pub fn verify_inclusion_bytes<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), MerkleError> {
    let leaf = parse_hash(leaf, HashRole::Leaf)?;
    let root = parse_hash(root, HashRole::Root)?;
    let proof = parse_proof(proof)?;
    verify_inclusion(index, size, &leaf, &proof, &root)
}

/// Equal sizes: the same tree, so nothing is hashed. The proof must be empty
/// and the roots identical; the empty tree's root is known, so for size 0 both
/// must be `SHA-256("")`.
fn verify_equal_sizes(
    size: u64,
    proof_len: usize,
    root1: &[u8],
    root2: &[u8],
) -> Result<(), MerkleError> {
    if proof_len != 0 {
        return Err(MerkleError::WrongProofLength {
            expected: 0,
            actual: proof_len,
        });
    }
    if size == 0 {
        let empty = empty_root();
        for (root, role) in [(root1, HashRole::Root1), (root2, HashRole::Root2)] {
            if root != empty.as_bytes() {
                return Err(MerkleError::NotEmptyRoot { role });
            }
        }
    }
    if root1 != root2 {
        return Err(MerkleError::RootsDiffer { size });
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2 for `0 < size1 < size2`.
fn verify_growing(
    size1: u64,
    size2: u64,
    proof: &[TreeHash],
    root1: &TreeHash,
    root2: &TreeHash,
) -> Result<(), MerkleError> {
    // Climb from the last node of the old border: level = trailing zeros.
    let level = size1.trailing_zeros();
    let node = (size1 - 1) >> level;
    let sides = sides(node, (size2 - 1) >> level);
    // When size1 is a power of two that node is the old root itself, which
    // the proof leaves out; otherwise the proof starts with it.
    let expected = sides.len() + usize::from(node != 0);
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (seed, rest) = if node == 0 {
        (*root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(wrong_length),
        }
    };
    // The old root takes only the entries to the node's left; the new one
    // takes them all.
    let (mut old, mut new) = (seed, seed);
    for (side, entry) in sides.iter().zip(rest) {
        match side {
            Side::Left => {
                old = hash_children(entry, &old);
                new = hash_children(entry, &new);
            }
            Side::Right => new = hash_children(&new, entry),
        }
    }
    check_root(root1, old)?;
    check_root(root2, new)
}

/// Checks that `proof` proves the tree of `size2` leaves with root `root2`
/// extends the tree of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Edge cases, as the RFC 6962 test vectors pin them down:
/// - `size1 > size2` fails ([`MerkleError::SizeOrder`]);
/// - `size1 == size2` needs an empty proof and equal roots, and for size 0
///   both roots must be [`empty_root`];
/// - `size1 == 0 < size2` fails ([`MerkleError::ConsistencyFromEmpty`]), even
///   with an empty proof.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[TreeHash],
    root1: &TreeHash,
    root2: &TreeHash,
) -> Result<(), MerkleError> {
    match relate(size1, size2)? {
        Sizes::Equal => verify_equal_sizes(size1, proof.len(), root1.as_bytes(), root2.as_bytes()),
        Sizes::Growing => verify_growing(size1, size2, proof, root1, root2),
    }
}

/// [`verify_consistency`] on hashes given as raw bytes, as a proof arrives
/// from outside.
///
/// For distinct sizes every hash must be exactly 32 bytes. For equal sizes
/// nothing is hashed, so the two roots are compared as given, whatever their
/// length (the vector `sizes-are-equal-one-and-proof-is-empty` expects two
/// equal 12-byte roots to pass); for size 0 both must still be
/// `SHA-256("")`.
pub fn verify_consistency_bytes<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), MerkleError> {
    match relate(size1, size2)? {
        Sizes::Equal => verify_equal_sizes(size1, proof.len(), root1, root2),
        Sizes::Growing => {
            let root1 = parse_hash(root1, HashRole::Root1)?;
            let root2 = parse_hash(root2, HashRole::Root2)?;
            let proof = parse_proof(proof)?;
            verify_growing(size1, size2, &proof, &root1, &root2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(text: &str) -> TreeHash {
        TreeHash::from_hex(text).unwrap()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root(),
            hash("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(CompactRange::new().root(), empty_root());
    }

    #[test]
    fn compact_range_ids_follow_the_binary_decomposition_of_the_size() {
        assert_eq!(compact_range_ids(0), vec![]);
        assert_eq!(
            compact_range_ids(11),
            vec![
                NodeId { level: 3, index: 0 },
                NodeId { level: 1, index: 4 },
                NodeId {
                    level: 0,
                    index: 10
                },
            ]
        );
        assert_eq!(compact_range_ids(u64::MAX).len(), 64);
    }

    #[test]
    fn append_hands_out_each_stratum_node_once_it_is_complete() {
        let mut range = CompactRange::new();
        let mut stored = Vec::new();
        for seq in 0..(1u64 << 16) {
            let leaf = TreeHash::from_bytes([seq as u8; 32]);
            for (id, _) in range.append(leaf).unwrap() {
                stored.push((id, range.size()));
            }
        }
        assert_eq!(stored.len(), 257);
        assert_eq!(stored[0], (NodeId { level: 8, index: 0 }, 256));
        assert_eq!(
            stored[255],
            (
                NodeId {
                    level: 8,
                    index: 255
                },
                1 << 16
            )
        );
        assert_eq!(
            stored[256],
            (
                NodeId {
                    level: 16,
                    index: 0
                },
                1 << 16
            )
        );
    }

    #[test]
    fn a_full_tree_refuses_another_leaf() {
        let hashes = vec![empty_root(); 64];
        let mut range = CompactRange::from_hashes(u64::MAX, hashes).unwrap();
        assert_eq!(range.append(empty_root()), Err(MerkleError::TreeFull));
        assert_eq!(range.size(), u64::MAX);
    }

    #[test]
    fn from_hashes_requires_one_hash_per_set_bit_of_the_size() {
        assert_eq!(
            CompactRange::from_hashes(5, vec![empty_root()]),
            Err(MerkleError::WrongHashCount {
                expected: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn plans_work_at_the_largest_sizes_without_overflow() {
        let size = u64::MAX;
        let index = size - 1;
        let plan = inclusion_plan(index, size).unwrap();
        assert_eq!(plan.proof_len(), 63);
        let reads = plan_reads(plan.nodes());
        assert!(reads.iter().all(|read| read.len() <= MAX_READ_LEN));
        let plan = consistency_plan(size - 1, size).unwrap();
        assert!(plan.proof_len() > 0);
        assert_eq!(inclusion_plan(0, u64::MAX).unwrap().proof_len(), 64);
    }

    #[test]
    fn nodes_past_the_last_leaf_are_rejected() {
        let outside = NodeId {
            level: 64,
            index: 0,
        };
        assert_eq!(plan_reads(&[outside]), vec![]);
        assert_eq!(
            resolve(&[outside], &[], &[]),
            Err(MerkleError::InvalidNode { node: outside })
        );
        let last_leaf = NodeId {
            level: 0,
            index: u64::MAX,
        };
        assert_eq!(last_leaf.leaves(), None);
    }

    #[test]
    fn a_proof_reads_the_block_around_its_leaf_and_the_right_edge() {
        // Leaf 300 of 66_000 = 2^16 + 256 + 208 leaves: its level-7 siblings
        // fill leaves [256, 512); the right edge below level 8 is the last 208
        // leaves; at stratum 8 the siblings [0, 256) and the edge node 256 fit
        // one read; the root adds the level-16 node.
        let plan = inclusion_plan(300, 66_000).unwrap();
        let mut ids = plan.nodes().to_vec();
        ids.extend(compact_range_ids(66_000));
        let read = |level, start, end| StratumRead { level, start, end };
        assert_eq!(
            plan_reads(&ids),
            vec![
                read(0, 256, 512),
                read(0, 65_792, 66_000),
                read(8, 0, 257),
                read(16, 0, 1),
            ]
        );
    }

    #[test]
    fn resolve_rejects_answers_of_the_wrong_shape() {
        let ids = [NodeId { level: 1, index: 0 }];
        let reads = plan_reads(&ids);
        assert_eq!(
            reads,
            vec![StratumRead {
                level: 0,
                start: 0,
                end: 2
            }]
        );
        assert_eq!(
            resolve(&ids, &reads, &[]),
            Err(MerkleError::WrongAnswerCount {
                expected: 1,
                actual: 0
            })
        );
        assert_eq!(
            resolve(&ids, &reads, &[vec![empty_root()]]),
            Err(MerkleError::WrongFetchLength {
                read: 0,
                expected: 2,
                actual: 1
            })
        );
        let elsewhere = [StratumRead {
            level: 0,
            start: 2,
            end: 4,
        }];
        assert_eq!(
            resolve(&ids, &elsewhere, &[vec![empty_root(); 2]]),
            Err(MerkleError::MissingNode { node: ids[0] })
        );
    }

    /// The leaves and stored stratum nodes of a tree of `size` made-up
    /// leaves, and the answers to `reads` from them.
    fn answer(size: u64, reads: &[StratumRead]) -> Vec<Vec<TreeHash>> {
        let leaves: Vec<TreeHash> = (0..size)
            .map(|seq| TreeHash::from_bytes([seq as u8; 32]))
            .collect();
        let mut range = CompactRange::new();
        let mut stored = std::collections::HashMap::new();
        for leaf in &leaves {
            stored.extend(range.append(*leaf).unwrap());
        }
        reads
            .iter()
            .map(|read| {
                (read.start..read.end)
                    .map(|index| match read.level {
                        0 => leaves[index as usize],
                        level => stored[&NodeId { level, index }],
                    })
                    .collect()
            })
            .collect()
    }

    fn boundary(size: u64) -> CompactRange {
        let ids = compact_range_ids(size);
        let reads = plan_reads(&ids);
        let hashes = resolve(&ids, &reads, &answer(size, &reads)).unwrap();
        CompactRange::from_hashes(size, hashes).unwrap()
    }

    #[test]
    fn after_a_purge_nodes_come_from_the_boundary_and_the_retained_leaves() {
        // 310 = 256 + 32 + 16 + 4 + 2; the boundary 300 = 256 + 32 + 8 + 4.
        // Node [256, 288) is the boundary's; [288, 304) straddles it and is
        // the boundary's [288, 296) and [296, 300) with leaves 300..304.
        let ids = compact_range_ids(310);
        let read = |level, start, end| StratumRead { level, start, end };
        let reads = plan_reads_after_purge(&ids, 300).unwrap();
        assert_eq!(reads, vec![read(0, 300, 310), read(8, 0, 1)]);
        let purged = resolve_after_purge(&ids, &boundary(300), &reads, &answer(310, &reads));
        let whole = plan_reads(&ids);
        assert_eq!(purged, resolve(&ids, &whole, &answer(310, &whole)));
    }

    #[test]
    fn nothing_purged_plans_and_resolves_as_without_a_purge() {
        let plan = inclusion_plan(300, 1030).unwrap();
        let reads = plan_reads(plan.nodes());
        assert_eq!(plan_reads_after_purge(plan.nodes(), 0), Ok(reads.clone()));
        let fetched = answer(1030, &reads);
        assert_eq!(
            resolve_after_purge(plan.nodes(), &CompactRange::new(), &reads, &fetched),
            resolve(plan.nodes(), &reads, &fetched)
        );
    }

    #[test]
    fn nodes_that_need_purged_leaves_are_refused() {
        // Leaf 0's sibling, leaf 1, is inside the purged [0, 300) and not a
        // node of the boundary's compact range.
        let plan = inclusion_plan(0, 310).unwrap();
        let refused = MerkleError::Purged {
            node: NodeId { level: 0, index: 1 },
            boundary: 300,
        };
        assert_eq!(
            plan_reads_after_purge(plan.nodes(), 300),
            Err(refused.clone())
        );
        let reads = plan_reads(plan.nodes());
        assert_eq!(
            resolve_after_purge(plan.nodes(), &boundary(300), &reads, &answer(310, &reads)),
            Err(refused)
        );
        // A stored stratum node below the boundary is still there.
        let stratum = [NodeId { level: 8, index: 0 }];
        assert_eq!(
            plan_reads_after_purge(&stratum, 300),
            Ok(plan_reads(&stratum))
        );
    }

    #[test]
    fn assemble_requires_one_hash_per_planned_node() {
        let plan = inclusion_plan(0, 3).unwrap();
        assert_eq!(
            plan.assemble(&[empty_root()]),
            Err(MerkleError::WrongHashCount {
                expected: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn consistency_edge_cases_follow_the_vectors() {
        let empty = empty_root();
        let other = hash(&"11".repeat(32));
        assert_eq!(verify_consistency(0, 0, &[], &empty, &empty), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &[], &other, &other),
            Err(MerkleError::NotEmptyRoot {
                role: HashRole::Root1
            })
        );
        assert_eq!(verify_consistency(3, 3, &[], &other, &other), Ok(()));
        assert_eq!(
            verify_consistency(3, 3, &[], &other, &empty),
            Err(MerkleError::RootsDiffer { size: 3 })
        );
        assert_eq!(
            verify_consistency(0, 1, &[], &empty, &other),
            Err(MerkleError::ConsistencyFromEmpty { size2: 1 })
        );
        assert_eq!(
            verify_consistency(2, 1, &[], &other, &other),
            Err(MerkleError::SizeOrder { size1: 2, size2: 1 })
        );
        assert_eq!(
            verify_consistency(1, 2, &[], &other, &other),
            Err(MerkleError::WrongProofLength {
                expected: 1,
                actual: 0
            })
        );
        assert_eq!(consistency_plan(4, 4).unwrap().proof_len(), 0);
        assert!(consistency_plan(0, 4).is_err());
    }

    #[test]
    fn byte_verification_names_the_hash_of_the_wrong_length() {
        let leaf = [0u8; 32];
        assert_eq!(
            verify_inclusion_bytes(0, 2, &leaf, &[&[0u8; 31][..]], &leaf),
            Err(MerkleError::WrongHashLength {
                role: HashRole::ProofEntry(0),
                actual: 31
            })
        );
        assert_eq!(
            verify_consistency_bytes(1, 2, &[&leaf[..]], &leaf[..3], &leaf),
            Err(MerkleError::WrongHashLength {
                role: HashRole::Root1,
                actual: 3
            })
        );
    }

    #[test]
    fn an_inclusion_proof_binds_the_root_not_the_size() {
        // The paths of leaf 0 in trees of 3 and 4 leaves have the same shape
        // (two right siblings), so a proof for one passes as the other
        // against the same root: the size is trusted through the checkpoint
        // that signs it together with the root.
        let leaves: Vec<TreeHash> = (0..3u8).map(|i| TreeHash::from_bytes([i; 32])).collect();
        let mut range = CompactRange::new();
        for leaf in &leaves {
            range.append(*leaf).unwrap();
        }
        let proof = [leaves[1], leaves[2]];
        assert_eq!(
            verify_inclusion(0, 3, &leaves[0], &proof, &range.root()),
            Ok(())
        );
        assert_eq!(
            verify_inclusion(0, 4, &leaves[0], &proof, &range.root()),
            Ok(())
        );
        assert!(verify_inclusion(0, 5, &leaves[0], &proof, &range.root()).is_err());
    }
}
