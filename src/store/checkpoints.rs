//! The `annal.checkpoints` table: every signed checkpoint of a tenant's
//! tree, kept forever, never replaced.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{StoreError, TenantTx};
use crate::ledger::{ChainHash, TreeHash};

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size (records `0..size`).
    pub size: u64,
    /// Merkle root at that size.
    pub root: TreeHash,
    /// Chain hash of record `size - 1`.
    pub chain_head: ChainHash,
    /// The complete signed note.
    pub note: String,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
}

impl TryFrom<&Row> for StoredCheckpoint {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        let size: i64 = row.try_get("size")?;
        let root: &[u8] = row.try_get("root")?;
        let chain_head: &[u8] = row.try_get("chain_head")?;
        Ok(StoredCheckpoint {
            size: u64::try_from(size)
                .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
            root: TreeHash::try_from(root)
                .map_err(|_| StoreError::Corrupt("checkpoint root is not 32 bytes".into()))?,
            chain_head: ChainHash::try_from(chain_head)
                .map_err(|_| StoreError::Corrupt("checkpoint chain head is not 32 bytes".into()))?,
            note: row.try_get("note")?,
            signed_at: row.try_get("signed_at")?,
        })
    }
}

fn to_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// The checkpoint with the largest size, if any.
pub async fn latest(tx: &TenantTx<'_>) -> Result<Option<StoredCheckpoint>, StoreError> {
    const LATEST: &str = "SELECT size, root, chain_head, note, signed_at FROM annal.checkpoints \
        WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1";
    let stmt = tx.inner().prepare_cached(LATEST).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid()])
        .await?;
    row.as_ref().map(StoredCheckpoint::try_from).transpose()
}

/// The checkpoint of exactly `size`, if one was signed.
pub async fn at_size(tx: &TenantTx<'_>, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
    const AT: &str = "SELECT size, root, chain_head, note, signed_at FROM annal.checkpoints \
        WHERE tenant_id = $1 AND size = $2";
    let stmt = tx.inner().prepare_cached(AT).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid(), &to_i64(size)])
        .await?;
    row.as_ref().map(StoredCheckpoint::try_from).transpose()
}

/// The smallest checkpoint of at least `size`, if any.
pub async fn first_at_or_after(
    tx: &TenantTx<'_>,
    size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    const FIRST: &str = "SELECT size, root, chain_head, note, signed_at FROM annal.checkpoints \
        WHERE tenant_id = $1 AND size >= $2 ORDER BY size LIMIT 1";
    let stmt = tx.inner().prepare_cached(FIRST).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid(), &to_i64(size)])
        .await?;
    row.as_ref().map(StoredCheckpoint::try_from).transpose()
}

/// Checkpoints with `from <= size <= to`, smallest first, at most `limit`.
pub async fn range(
    tx: &TenantTx<'_>,
    from: u64,
    to: u64,
    limit: u32,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    const RANGE: &str = "SELECT size, root, chain_head, note, signed_at FROM annal.checkpoints \
        WHERE tenant_id = $1 AND size >= $2 AND size <= $3 ORDER BY size LIMIT $4";
    let stmt = tx.inner().prepare_cached(RANGE).await?;
    let rows = tx
        .inner()
        .query(
            &stmt,
            &[
                &tx.tenant().as_uuid(),
                &to_i64(from),
                &to_i64(to),
                &i64::from(limit),
            ],
        )
        .await?;
    rows.iter().map(StoredCheckpoint::try_from).collect()
}

/// Stores a checkpoint. Returns false when one of that size already exists
/// (signed concurrently by another process from the same tree, so with the
/// same root); the stored one stands.
pub async fn insert(tx: &TenantTx<'_>, checkpoint: &StoredCheckpoint) -> Result<bool, StoreError> {
    const INSERT: &str = "INSERT INTO annal.checkpoints \
        (tenant_id, size, root, chain_head, note, signed_at) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (tenant_id, size) DO NOTHING";
    let stmt = tx.inner().prepare_cached(INSERT).await?;
    let inserted = tx
        .inner()
        .execute(
            &stmt,
            &[
                &tx.tenant().as_uuid(),
                &to_i64(checkpoint.size),
                &checkpoint.root.as_bytes().as_slice(),
                &checkpoint.chain_head.as_bytes().as_slice(),
                &checkpoint.note,
                &checkpoint.signed_at,
            ],
        )
        .await?;
    Ok(inserted == 1)
}
