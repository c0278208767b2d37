//! The tenant's Merkle tree as stored: leaf hashes in `annal.events`, the
//! perfect subtrees of the stored strata (levels 8, 16, ...) in
//! `annal.tree_nodes`. Roots, compact ranges and proofs are assembled from
//! one bounded range read per stratum (see `ledger::merkle`), so their cost
//! grows with the log's height, never with its size.
//!
//! After a purge, the leaves below the tenant's [`Boundary`] are gone and
//! its compact range (in `annal.purge_boundaries`) stands in for them: every
//! root, compact range and proof about sizes and leaves at or after the
//! boundary still resolves, from the same bounded reads. The boundary is read
//! only when a leaf read comes back short, so tenants never purged pay
//! nothing for it.
//!
//! Missing or extra stored hashes are reported as errors
//! ([`StoreError::Corrupt`], or [`TreeError::MissingNodes`] when only
//! stored-stratum nodes are missing): this module never guesses a hash. The
//! one repair is [`backfill`], which recomputes those nodes from the leaves.

use futures_util::future::try_join_all;
use tokio_postgres::Row;

use super::{ChainLock, StoreError, TenantTx};
use crate::ledger::{
    ChainHash, CompactRange, MerkleError, NodeId, ProofPlan, StratumRead, TreeHash,
    compact_range_ids, consistency_plan, inclusion_plan, plan_reads, plan_reads_after_purge,
    resolve, resolve_after_purge,
};

/// Leaf hashes read per statement by [`backfill`]: 320 KB of hashes.
const BACKFILL_PAGE: u64 = 10_000;

/// What can go wrong reading the stored tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Stored-stratum nodes (levels 8, 16, ...) are absent although their
    /// leaves are there: a tenant written before schema V2, whose
    /// `annal.tree_nodes` rows were never made. [`backfill`] makes them.
    #[error(
        "tree stratum {level} [{start}, {end}): {found} of {} hashes stored",
        end.saturating_sub(*start)
    )]
    MissingNodes {
        /// The stratum's level.
        level: u8,
        /// First index read.
        start: u64,
        /// One past the last index read.
        end: u64,
        /// How many were stored.
        found: u64,
    },
    /// Anything else, leaves missing included.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TreeError> for StoreError {
    fn from(error: TreeError) -> Self {
        match error {
            TreeError::MissingNodes { .. } => StoreError::Corrupt(error.to_string()),
            TreeError::Store(e) => e,
        }
    }
}

impl From<tokio_postgres::Error> for TreeError {
    fn from(error: tokio_postgres::Error) -> Self {
        TreeError::Store(error.into())
    }
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt("tree index out of range".into()))
}

/// A tenant's current purge boundary: records `[0, size)` are gone, and
/// this is what keeps the rest provable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boundary {
    /// Records `[0, size)` are purged; seq `size` is the first retained.
    pub size: u64,
    /// The chain hash of seq `size - 1`, which seq `size` chains from.
    pub chain_hash: ChainHash,
    /// The compact range of the tree of the first `size` leaves.
    pub compact_range: CompactRange,
    /// The size of the first signed checkpoint of at least `size` leaves.
    pub checkpoint_size: u64,
}

impl TryFrom<&Row> for Boundary {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("purge boundary: {what}"));
        let size: i64 = row.try_get("size")?;
        let size = u64::try_from(size).map_err(|_| corrupt("negative size"))?;
        let chain_hash: &[u8] = row.try_get("chain_hash")?;
        let hashes: Vec<&[u8]> = row.try_get("compact_range")?;
        let hashes = hashes
            .into_iter()
            .map(TreeHash::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| corrupt("compact range hash is not 32 bytes"))?;
        let checkpoint_size: i64 = row.try_get("checkpoint_size")?;
        Ok(Boundary {
            size,
            chain_hash: ChainHash::try_from(chain_hash)
                .map_err(|_| corrupt("chain hash is not 32 bytes"))?,
            compact_range: CompactRange::from_hashes(size, hashes)
                .map_err(|e| corrupt(&e.to_string()))?,
            checkpoint_size: u64::try_from(checkpoint_size)
                .map_err(|_| corrupt("negative checkpoint size"))?,
        })
    }
}

/// The tenant's current purge boundary (its largest), or `None` when
/// nothing was ever purged.
pub async fn boundary(tx: &TenantTx<'_>) -> Result<Option<Boundary>, StoreError> {
    const CURRENT: &str = "SELECT size, chain_hash, compact_range, checkpoint_size \
        FROM annal.purge_boundaries WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1";
    let stmt = tx.inner().prepare_cached(CURRENT).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid()])
        .await?;
    row.as_ref().map(Boundary::try_from).transpose()
}

/// The hashes stored in `[read.start, read.end)` of one stratum, in index
/// order: fewer than asked when some are missing (see [`check_complete`]).
async fn read_stratum(tx: &TenantTx<'_>, read: StratumRead) -> Result<Vec<TreeHash>, StoreError> {
    const LEAVES: &str = "SELECT leaf_hash FROM annal.events \
        WHERE tenant_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
    const NODES: &str = "SELECT hash FROM annal.tree_nodes \
        WHERE tenant_id = $1 AND level = $2 AND idx >= $3 AND idx < $4 ORDER BY idx";
    let (start, end) = (to_i64(read.start)?, to_i64(read.end)?);
    let tenant = tx.tenant().as_uuid();
    let rows = if read.level == 0 {
        let stmt = tx.inner().prepare_cached(LEAVES).await?;
        tx.inner().query(&stmt, &[&tenant, &start, &end]).await?
    } else {
        let stmt = tx.inner().prepare_cached(NODES).await?;
        let level = i16::from(read.level);
        tx.inner()
            .query(&stmt, &[&tenant, &level, &start, &end])
            .await?
    };
    rows.iter().map(tree_hash).collect()
}

/// The first read of `reads` at `level` (any level for `None`) that
/// `fetched` answers with fewer hashes than it asked for, as an error.
fn incomplete(
    reads: &[StratumRead],
    fetched: &[Vec<TreeHash>],
    level: Option<u8>,
) -> Option<TreeError> {
    reads
        .iter()
        .zip(fetched)
        .filter(|(read, _)| level.is_none_or(|level| read.level == level))
        .find_map(|(read, hashes)| {
            let found = u64::try_from(hashes.len()).unwrap_or(u64::MAX);
            if found == read.len() {
                return None;
            }
            let missing = TreeError::MissingNodes {
                level: read.level,
                start: read.start,
                end: read.end,
                found,
            };
            // Missing leaves are missing records, which nothing may repair.
            Some(if read.level == 0 {
                StoreError::from(missing).into()
            } else {
                missing
            })
        })
}

/// Fails unless every read was answered in full.
fn check_complete(reads: &[StratumRead], fetched: &[Vec<TreeHash>]) -> Result<(), TreeError> {
    incomplete(reads, fetched, None).map_or(Ok(()), Err)
}

fn unresolved(error: MerkleError) -> TreeError {
    StoreError::Corrupt(format!("tree nodes do not resolve: {error}")).into()
}

fn tree_hash(row: &tokio_postgres::Row) -> Result<TreeHash, StoreError> {
    let bytes: &[u8] = row.try_get(0)?;
    TreeHash::try_from(bytes).map_err(|_| StoreError::Corrupt("tree hash is not 32 bytes".into()))
}

async fn read_nodes(tx: &TenantTx<'_>, ids: &[NodeId]) -> Result<Vec<TreeHash>, TreeError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let reads = plan_reads(ids);
    let fetched = try_join_all(reads.iter().map(|read| read_stratum(tx, *read))).await?;
    // Leaves are missing where they were purged, or else the store is
    // corrupt: only then is the boundary worth a query.
    if let Some(missing) = incomplete(&reads, &fetched, Some(0)) {
        return read_nodes_after_purge(tx, ids, missing, &reads, &fetched).await;
    }
    check_complete(&reads, &fetched)?;
    resolve(ids, &reads, &fetched).map_err(unresolved)
}

/// [`read_nodes`] once a leaf read came back short (`missing`, the error
/// when nothing was purged): the leaves below the tenant's boundary come
/// from its compact range, the strata already read (`first`, answered by
/// `first_fetched`) are reused.
async fn read_nodes_after_purge(
    tx: &TenantTx<'_>,
    ids: &[NodeId],
    missing: TreeError,
    first: &[StratumRead],
    first_fetched: &[Vec<TreeHash>],
) -> Result<Vec<TreeHash>, TreeError> {
    let Some(boundary) = boundary(tx).await? else {
        return Err(missing);
    };
    let reads = plan_reads_after_purge(ids, boundary.size).map_err(unresolved)?;
    // Only the leaf reads change: the strata above them are never purged.
    let fetched = try_join_all(reads.iter().map(|read| {
        let done = first
            .iter()
            .zip(first_fetched)
            .find(|(done, _)| done.level > 0 && *done == read)
            .map(|(_, hashes)| hashes.clone());
        async move {
            match done {
                Some(hashes) => Ok(hashes),
                None => read_stratum(tx, *read).await,
            }
        }
    }))
    .await?;
    check_complete(&reads, &fetched)?;
    resolve_after_purge(ids, &boundary.compact_range, &reads, &fetched).map_err(unresolved)
}

/// The hashes of the perfect subtrees `ids`, in the same order. The reads,
/// one per stratum, go out together on the transaction's connection.
///
/// After a purge, a node below the boundary resolves only when it is a node
/// of the boundary's compact range or straddles the boundary; any other is
/// [`StoreError::Corrupt`] (callers refuse such requests first).
pub async fn nodes(tx: &TenantTx<'_>, ids: &[NodeId]) -> Result<Vec<TreeHash>, StoreError> {
    Ok(read_nodes(tx, ids).await?)
}

/// The compact range of the tree of the first `size` leaves; after a
/// purge, requires `size >=` the boundary.
/// [`TreeError::MissingNodes`] says that [`backfill`] can repair it.
pub async fn compact_range(tx: &TenantTx<'_>, size: u64) -> Result<CompactRange, TreeError> {
    let hashes = read_nodes(tx, &compact_range_ids(size)).await?;
    CompactRange::from_hashes(size, hashes)
        .map_err(|e| StoreError::Corrupt(format!("compact range: {e}")).into())
}

/// The root of the tree of the first `size` leaves; after a purge,
/// requires `size >=` the boundary.
pub async fn root(tx: &TenantTx<'_>, size: u64) -> Result<TreeHash, StoreError> {
    Ok(compact_range(tx, size).await?.root())
}

async fn prove(tx: &TenantTx<'_>, plan: ProofPlan) -> Result<Vec<TreeHash>, StoreError> {
    let hashes = nodes(tx, plan.nodes()).await?;
    plan.assemble(&hashes)
        .map_err(|e| StoreError::Corrupt(format!("proof does not assemble: {e}")))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
/// Requires `index < size <=` the number of stored leaves and, after a
/// purge, `index >=` the boundary.
pub async fn inclusion_proof(
    tx: &TenantTx<'_>,
    index: u64,
    size: u64,
) -> Result<Vec<TreeHash>, StoreError> {
    let plan = inclusion_plan(index, size)
        .map_err(|e| StoreError::Corrupt(format!("inclusion proof: {e}")))?;
    prove(tx, plan).await
}

/// The consistency proof from the tree of `size1` leaves to the tree of
/// `size2`. Requires `0 < size1 <= size2 <=` the number of stored leaves
/// and, after a purge, `size1 >=` the boundary.
pub async fn consistency_proof(
    tx: &TenantTx<'_>,
    size1: u64,
    size2: u64,
) -> Result<Vec<TreeHash>, StoreError> {
    let plan = consistency_plan(size1, size2)
        .map_err(|e| StoreError::Corrupt(format!("consistency proof: {e}")))?;
    prove(tx, plan).await
}

/// Inserts the stored-stratum nodes completed by an append, in the
/// transaction that appends their leaves.
pub async fn insert_nodes(
    lock: &ChainLock<'_, '_>,
    completed: &[(NodeId, TreeHash)],
) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO annal.tree_nodes (tenant_id, level, idx, hash) \
        SELECT $1, * FROM UNNEST($2::int2[], $3::int8[], $4::bytea[])";
    run_insert(lock, INSERT, completed).await
}

async fn run_insert(
    lock: &ChainLock<'_, '_>,
    statement: &str,
    completed: &[(NodeId, TreeHash)],
) -> Result<(), StoreError> {
    if completed.is_empty() {
        return Ok(());
    }
    let tx = lock.tx();
    let mut levels = Vec::with_capacity(completed.len());
    let mut indexes = Vec::with_capacity(completed.len());
    let mut hashes = Vec::with_capacity(completed.len());
    for (id, hash) in completed {
        levels.push(i16::from(id.level));
        indexes.push(to_i64(id.index)?);
        hashes.push(hash.as_bytes().as_slice());
    }
    let stmt = tx.inner().prepare_cached(statement).await?;
    tx.inner()
        .execute(&stmt, &[&tx.tenant().as_uuid(), &levels, &indexes, &hashes])
        .await?;
    Ok(())
}

/// Builds the stored strata of the tree of the first `size` leaves from the
/// leaves themselves and inserts the nodes that are missing; returns the
/// tree's compact range. For tenants written before schema V2, whose
/// `annal.tree_nodes` rows were never made: it reads every leaf (10,000 at
/// a time, so memory stays flat), so it runs once per tenant, under the
/// chain lock so that no append interleaves. Requires `size <=` the number
/// of stored leaves; a missing leaf is an error.
pub async fn backfill(lock: &ChainLock<'_, '_>, size: u64) -> Result<CompactRange, StoreError> {
    const LEAVES: &str = "SELECT leaf_hash FROM annal.events \
        WHERE tenant_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
    // The nodes that are there already (when only some went missing)
    // stand. No append inserts nodes while the chain lock is held.
    const INSERT_MISSING: &str = "INSERT INTO annal.tree_nodes (tenant_id, level, idx, hash) \
        SELECT $1, * FROM UNNEST($2::int2[], $3::int8[], $4::bytea[]) \
        ON CONFLICT (tenant_id, level, idx) DO NOTHING";
    let tx = lock.tx();
    let tenant = tx.tenant().as_uuid();
    let mut range = CompactRange::new();
    let mut start = 0;
    while start < size {
        let end = start.saturating_add(BACKFILL_PAGE).min(size);
        let stmt = tx.inner().prepare_cached(LEAVES).await?;
        let rows = tx
            .inner()
            .query(&stmt, &[&tenant, &to_i64(start)?, &to_i64(end)?])
            .await?;
        if u64::try_from(rows.len()).ok() != Some(end - start) {
            return Err(StoreError::Corrupt(format!(
                "leaves [{start}, {end}): {} of {} stored",
                rows.len(),
                end - start
            )));
        }
        let mut completed = Vec::new();
        for row in &rows {
            completed.extend(
                range
                    .append(tree_hash(row)?)
                    .map_err(|e| StoreError::Corrupt(format!("tree: {e}")))?,
            );
        }
        run_insert(lock, INSERT_MISSING, &completed).await?;
        start = end;
    }
    Ok(range)
}
