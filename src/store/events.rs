//! The `annal.events` table: the tenant's chain of hashed records with their
//! payloads. Rows are only ever inserted; the database rejects the rest.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{ChainLock, StoreError, TenantTx};
use crate::ledger::{ChainHash, EventId, LeafHash, Salt, Seq, Timestamp};

/// A row of the ledger as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the tenant's chain.
    pub seq: Seq,
    /// Client- or server-chosen id (the idempotency key).
    pub event_id: EventId,
    /// Server receive time.
    pub received_at: Timestamp,
    /// The action, e.g. `salary.update`.
    pub action: String,
    /// Canonical header bytes (the hashed record).
    pub record: Vec<u8>,
    /// `SHA-256(0x00 || record)`.
    pub leaf_hash: LeafHash,
    /// Chain hash after this record.
    pub chain_hash: ChainHash,
    /// Canonical payload bytes.
    pub payload: Vec<u8>,
    /// Salt of the payload commitment.
    pub salt: Salt,
}

fn hash32<T: for<'a> TryFrom<&'a [u8]>>(row: &Row, column: &str) -> Result<T, StoreError> {
    let bytes: &[u8] = row.try_get(column)?;
    T::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{column} is not 32 bytes")))
}

impl TryFrom<&Row> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        let seq: i64 = row.try_get("seq")?;
        let received_at: DateTime<Utc> = row.try_get("received_at")?;
        Ok(StoredEvent {
            seq: Seq::new(
                u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative seq".into()))?,
            ),
            event_id: EventId::from_uuid(row.try_get("event_id")?),
            received_at: Timestamp::from_datetime(received_at),
            action: row.try_get("action")?,
            record: row.try_get("record")?,
            leaf_hash: hash32(row, "leaf_hash")?,
            chain_hash: hash32(row, "chain_hash")?,
            payload: row.try_get("payload")?,
            salt: hash32(row, "salt")?,
        })
    }
}

fn rows_to_events(rows: &[Row]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter().map(StoredEvent::try_from).collect()
}

/// The last record of a chain: where the next append continues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    /// Seq of the last record.
    pub seq: Seq,
    /// Its chain hash.
    pub chain_hash: ChainHash,
    /// Its receive time (the next may not be earlier).
    pub received_at: Timestamp,
}

/// The head of the tenant's chain, or `None` for an empty chain; with the
/// chain lock held, so nothing can be appended after it meanwhile.
pub async fn head(lock: &ChainLock<'_, '_>) -> Result<Option<Head>, StoreError> {
    last(lock.tx()).await
}

/// The last committed record, without the chain lock: every record before
/// it is committed too (a chain is appended in order, under the lock), so
/// `0..=seq` is a stable prefix to sign or export.
pub async fn last(tx: &TenantTx<'_>) -> Result<Option<Head>, StoreError> {
    const LAST: &str = "SELECT seq, chain_hash, received_at FROM annal.events \
                        WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1";
    let stmt = tx.inner().prepare_cached(LAST).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid()])
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let seq: i64 = row.try_get("seq")?;
    let received_at: DateTime<Utc> = row.try_get("received_at")?;
    Ok(Some(Head {
        seq: Seq::new(u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative seq".into()))?),
        chain_hash: hash32(&row, "chain_hash")?,
        received_at: Timestamp::from_datetime(received_at),
    }))
}

/// The stored records with these event ids, in any order.
pub async fn by_event_ids(
    tx: &TenantTx<'_>,
    ids: &[EventId],
) -> Result<Vec<StoredEvent>, StoreError> {
    const BY_IDS: &str = "SELECT seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt \
                          FROM annal.events WHERE tenant_id = $1 AND event_id = ANY($2)";
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let stmt = tx.inner().prepare_cached(BY_IDS).await?;
    let rows = tx
        .inner()
        .query(&stmt, &[&tx.tenant().as_uuid(), &ids])
        .await?;
    rows_to_events(&rows)
}

/// The record at `seq`, if any.
pub async fn by_seq(tx: &TenantTx<'_>, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
    const BY_SEQ: &str = "SELECT seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt \
                          FROM annal.events WHERE tenant_id = $1 AND seq = $2";
    let Ok(seq) = i64::try_from(seq.value()) else {
        return Ok(None);
    };
    let stmt = tx.inner().prepare_cached(BY_SEQ).await?;
    let row = tx
        .inner()
        .query_opt(&stmt, &[&tx.tenant().as_uuid(), &seq])
        .await?;
    row.as_ref().map(StoredEvent::try_from).transpose()
}

/// One row to insert, with the copies of payload fields used for filtering.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// The sealed record.
    pub event: StoredEvent,
    /// `actor.id` from the payload.
    pub actor_id: String,
    /// `resource.type` from the payload.
    pub resource_type: String,
    /// `resource.id` from the payload.
    pub resource_id: String,
    /// `request_id` from the payload.
    pub request_id: Option<String>,
}

/// Inserts rows in one statement. Rows must continue the chain (seqs
/// following the head read under the same lock); the primary key rejects
/// anything else.
pub async fn insert(lock: &ChainLock<'_, '_>, rows: &[NewRow]) -> Result<(), StoreError> {
    let tx = lock.tx();
    const INSERT: &str = "INSERT INTO annal.events \
        (tenant_id, seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt, \
         actor_id, resource_type, resource_id, request_id) \
        SELECT $1, * FROM UNNEST($2::int8[], $3::uuid[], $4::timestamptz[], $5::text[], $6::bytea[], \
         $7::bytea[], $8::bytea[], $9::bytea[], $10::bytea[], $11::text[], $12::text[], $13::text[], $14::text[])";
    let mut seq = Vec::with_capacity(rows.len());
    let mut event_id = Vec::with_capacity(rows.len());
    let mut received_at = Vec::with_capacity(rows.len());
    let mut action = Vec::with_capacity(rows.len());
    let mut record = Vec::with_capacity(rows.len());
    let mut leaf_hash = Vec::with_capacity(rows.len());
    let mut chain_hash = Vec::with_capacity(rows.len());
    let mut payload = Vec::with_capacity(rows.len());
    let mut salt = Vec::with_capacity(rows.len());
    let mut actor_id = Vec::with_capacity(rows.len());
    let mut resource_type = Vec::with_capacity(rows.len());
    let mut resource_id = Vec::with_capacity(rows.len());
    let mut request_id = Vec::with_capacity(rows.len());
    for row in rows {
        let e = &row.event;
        seq.push(
            i64::try_from(e.seq.value()).map_err(|_| StoreError::Corrupt("seq overflow".into()))?,
        );
        event_id.push(e.event_id.as_uuid());
        received_at.push(e.received_at.to_datetime());
        action.push(e.action.as_str());
        record.push(e.record.as_slice());
        leaf_hash.push(e.leaf_hash.as_bytes().as_slice());
        chain_hash.push(e.chain_hash.as_bytes().as_slice());
        payload.push(e.payload.as_slice());
        salt.push(e.salt.as_bytes().as_slice());
        actor_id.push(row.actor_id.as_str());
        resource_type.push(row.resource_type.as_str());
        resource_id.push(row.resource_id.as_str());
        request_id.push(row.request_id.as_deref());
    }
    let stmt = tx.inner().prepare_cached(INSERT).await?;
    tx.inner()
        .execute(
            &stmt,
            &[
                &tx.tenant().as_uuid(),
                &seq,
                &event_id,
                &received_at,
                &action,
                &record,
                &leaf_hash,
                &chain_hash,
                &payload,
                &salt,
                &actor_id,
                &resource_type,
                &resource_id,
                &request_id,
            ],
        )
        .await?;
    Ok(())
}

/// How an `action` filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionMatch {
    /// The whole action.
    Exact(String),
    /// Actions starting with this prefix.
    Prefix(String),
}

/// Filters of a trail query; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `actor.id` equals.
    pub actor_id: Option<String>,
    /// Action equals or starts with.
    pub action: Option<ActionMatch>,
    /// `resource.type` equals.
    pub resource_type: Option<String>,
    /// `resource.id` equals.
    pub resource_id: Option<String>,
    /// `request_id` equals.
    pub request_id: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
    /// Only seqs below this one (the keyset cursor).
    pub before_seq: Option<Seq>,
}

/// Records matching `filter`, newest first, at most `limit`.
pub async fn query(
    tx: &TenantTx<'_>,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    const QUERY: &str = "SELECT seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt \
        FROM annal.events WHERE tenant_id = $1 \
        AND ($2::text IS NULL OR actor_id = $2) \
        AND ($3::text IS NULL OR action = $3) \
        AND ($4::text IS NULL OR action LIKE $4) \
        AND ($5::text IS NULL OR resource_type = $5) \
        AND ($6::text IS NULL OR resource_id = $6) \
        AND ($7::text IS NULL OR request_id = $7) \
        AND ($8::timestamptz IS NULL OR received_at >= $8) \
        AND ($9::timestamptz IS NULL OR received_at < $9) \
        AND ($10::int8 IS NULL OR seq < $10) \
        ORDER BY seq DESC LIMIT $11";
    let (exact, prefix) = match &filter.action {
        None => (None, None),
        Some(ActionMatch::Exact(a)) => (Some(a.clone()), None),
        Some(ActionMatch::Prefix(p)) => (None, Some(format!("{}%", escape_like(p)))),
    };
    let before_seq = filter
        .before_seq
        .map(|s| i64::try_from(s.value()).unwrap_or(i64::MAX));
    // Deliberately not a cached statement: with `$n IS NULL OR ...` filters
    // a cached plan can go generic and ignore the indexes, while the unnamed
    // statement tokio-postgres sends for a string is planned with the actual
    // values every time.
    let rows = tx
        .inner()
        .query(
            QUERY,
            &[
                &tx.tenant().as_uuid(),
                &filter.actor_id,
                &exact,
                &prefix,
                &filter.resource_type,
                &filter.resource_id,
                &filter.request_id,
                &filter.since.map(|t| t.to_datetime()),
                &filter.until.map(|t| t.to_datetime()),
                &before_seq,
                &i64::from(limit),
            ],
        )
        .await?;
    rows_to_events(&rows)
}

/// Escapes LIKE's wildcards (`%`, `_`) and its escape character.
fn escape_like(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Records with `from <= seq < end` in seq order: at most `max_rows`, and
/// no more than `max_bytes` of record and payload bytes (but always the
/// first one), so a page's memory is bounded whatever the events' sizes.
/// The sizes are read from the rows' headers, without detoasting them.
pub async fn page(
    tx: &TenantTx<'_>,
    from: Seq,
    end: Seq,
    max_rows: u32,
    max_bytes: u64,
) -> Result<Vec<StoredEvent>, StoreError> {
    const PAGE: &str = "SELECT seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt \
        FROM (SELECT *, row_number() OVER (ORDER BY seq) AS n, \
                     sum(octet_length(record) + octet_length(payload)) OVER (ORDER BY seq) AS running \
              FROM (SELECT * FROM annal.events WHERE tenant_id = $1 AND seq >= $2 AND seq < $3 \
                    ORDER BY seq LIMIT $4) AS wanted) AS sized \
        WHERE n = 1 OR running <= $5 ORDER BY seq";
    let from = i64::try_from(from.value()).unwrap_or(i64::MAX);
    let end = i64::try_from(end.value()).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let stmt = tx.inner().prepare_cached(PAGE).await?;
    let rows = tx
        .inner()
        .query(
            &stmt,
            &[
                &tx.tenant().as_uuid(),
                &from,
                &end,
                &i64::from(max_rows),
                &max_bytes,
            ],
        )
        .await?;
    rows_to_events(&rows)
}
