//! Retention as stored (schema V3): the deployment's floor and clock offset,
//! each tenant's policy history, and the purge itself, which only the
//! `annal_retention` role can run, through `annal.purge_expired`.
//!
//! The purge boundary rows are read with [`super::tree::boundary`]: they are
//! part of the tenant's tree.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError, TenantTx};
use crate::ledger::{ChainHash, TenantId, TreeHash};

/// What a policy change changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChange {
    /// The retention period.
    Period,
    /// A legal hold was placed.
    HoldOn,
    /// The legal hold was lifted.
    HoldOff,
}

impl PolicyChange {
    /// The name stored in `annal.retention_policies.change`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyChange::Period => "period",
            PolicyChange::HoldOn => "hold_on",
            PolicyChange::HoldOff => "hold_off",
        }
    }

    fn parse(name: &str) -> Result<PolicyChange, StoreError> {
        match name {
            "period" => Ok(PolicyChange::Period),
            "hold_on" => Ok(PolicyChange::HoldOn),
            "hold_off" => Ok(PolicyChange::HoldOff),
            other => Err(StoreError::Corrupt(format!(
                "unknown policy change {other:?}"
            ))),
        }
    }
}

/// One version of a tenant's retention policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// 1 for the first change, then one more per change.
    pub version: i32,
    /// Months records are kept after they were received.
    pub period_months: u32,
    /// Whether a legal hold blocks every purge.
    pub legal_hold: bool,
    /// Why this change was made.
    pub reason: Option<String>,
    /// What this version changed.
    pub change: PolicyChange,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Who.
    pub changed_by: String,
    /// The event recording the change in the tenant's log.
    pub event_id: Uuid,
}

impl TryFrom<&Row> for StoredPolicy {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        let months: i32 = row.try_get("period_months")?;
        Ok(StoredPolicy {
            version: row.try_get("version")?,
            period_months: u32::try_from(months)
                .map_err(|_| StoreError::Corrupt("negative retention period".into()))?,
            legal_hold: row.try_get("legal_hold")?,
            reason: row.try_get("reason")?,
            change: PolicyChange::parse(row.try_get("change")?)?,
            changed_at: row.try_get("changed_at")?,
            changed_by: row.try_get("changed_by")?,
            event_id: row.try_get("event_id")?,
        })
    }
}

/// The deployment-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentSettings {
    /// No tenant's period may be shorter.
    pub floor_months: u32,
    /// `annal.retention_now()`: the database's clock plus its test offset.
    pub now: DateTime<Utc>,
    /// Whether the offset is not zero (it is in production).
    pub clock_offset: bool,
}

/// The deployment's floor and the time retention decisions are made at.
pub async fn settings(tx: &TenantTx<'_>) -> Result<DeploymentSettings, StoreError> {
    const SETTINGS: &str = "SELECT retention_floor_months, now() + clock_offset, \
        clock_offset <> '0'::interval FROM annal.deployment_settings";
    let row = tx.inner().query_one(SETTINGS, &[]).await?;
    let floor: i32 = row.try_get(0)?;
    Ok(DeploymentSettings {
        floor_months: u32::try_from(floor)
            .map_err(|_| StoreError::Corrupt("negative retention floor".into()))?,
        now: row.try_get(1)?,
        clock_offset: row.try_get(2)?,
    })
}

/// The tenant's policy in force, if it ever changed one.
pub async fn policy(tx: &TenantTx<'_>) -> Result<Option<StoredPolicy>, StoreError> {
    const LATEST: &str = "SELECT version, period_months, legal_hold, reason, change, changed_at, \
        changed_by, event_id FROM annal.retention_policies WHERE tenant_id = $1 \
        ORDER BY version DESC LIMIT 1";
    let row = tx
        .inner()
        .query_opt(LATEST, &[&tx.tenant().as_uuid()])
        .await?;
    row.as_ref().map(StoredPolicy::try_from).transpose()
}

/// A new version of the tenant's policy.
#[derive(Debug, Clone)]
pub struct NewPolicy<'a> {
    /// Months records are kept.
    pub period_months: u32,
    /// Whether a legal hold is on.
    pub legal_hold: bool,
    /// Why.
    pub reason: Option<&'a str>,
    /// What changed.
    pub change: PolicyChange,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Who.
    pub changed_by: &'a str,
    /// The event that will record it.
    pub event_id: Uuid,
}

/// Inserts the next version of the tenant's policy. It first takes the
/// tenant's purge lock, so a purge batch running now finishes before the
/// change and every later batch sees it. Two concurrent changes collide on
/// the primary key: one fails (unique violation) and must be retried on the
/// new state. The database refuses a period below the floor (check
/// violation).
pub async fn insert_policy(
    tx: &TenantTx<'_>,
    policy: &NewPolicy<'_>,
) -> Result<StoredPolicy, StoreError> {
    const INSERT: &str = "INSERT INTO annal.retention_policies \
        (tenant_id, version, period_months, legal_hold, reason, change, changed_at, changed_by, \
        event_id) \
        SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8 \
        FROM annal.retention_policies WHERE tenant_id = $1 \
        RETURNING version, period_months, legal_hold, reason, change, changed_at, changed_by, \
        event_id";
    lock_purges(tx).await?;
    let months = i32::try_from(policy.period_months)
        .map_err(|_| StoreError::Corrupt("retention period out of range".into()))?;
    let row = tx
        .inner()
        .query_one(
            INSERT,
            &[
                &tx.tenant().as_uuid(),
                &months,
                &policy.legal_hold,
                &policy.reason,
                &policy.change.as_str(),
                &policy.changed_at,
                &policy.changed_by,
                &policy.event_id,
            ],
        )
        .await?;
    StoredPolicy::try_from(&row)
}

/// Takes the tenant's purge lock exclusively until the transaction ends
/// (`annal.purge_expired` takes it for each batch).
async fn lock_purges(tx: &TenantTx<'_>) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('annal.purge'), hashtext($1::uuid::text))",
            &[&tx.tenant().as_uuid()],
        )
        .await?;
    Ok(())
}

/// Takes the tenant's purge lock shared until the transaction ends: no
/// purge batch runs meanwhile (an export fixing its range and lease).
pub async fn hold_off_purges(tx: &TenantTx<'_>) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "SELECT pg_advisory_xact_lock_shared(hashtext('annal.purge'), hashtext($1::uuid::text))",
            &[&tx.tenant().as_uuid()],
        )
        .await?;
    Ok(())
}

/// How long an export's lease lasts without being renewed.
const LEASE: &str = "10 minutes";

/// Leases records `from_seq..` to an export: no purge deletes them until
/// the lease is released or has not been renewed for ten minutes.
pub async fn take_lease(tx: &TenantTx<'_>, id: Uuid, from_seq: u64) -> Result<(), StoreError> {
    let from =
        i64::try_from(from_seq).map_err(|_| StoreError::Corrupt("seq out of range".into()))?;
    tx.inner()
        .execute(
            &format!(
                "INSERT INTO annal.export_leases (tenant_id, id, from_seq, expires_at) \
                 VALUES ($1, $2, $3, now() + interval '{LEASE}')"
            ),
            &[&tx.tenant().as_uuid(), &id, &from],
        )
        .await?;
    Ok(())
}

/// Renews an export's lease.
pub async fn renew_lease(tx: &TenantTx<'_>, id: Uuid) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            &format!(
                "UPDATE annal.export_leases SET expires_at = now() + interval '{LEASE}' \
                 WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tx.tenant().as_uuid(), &id],
        )
        .await?;
    Ok(())
}

/// Releases an export's lease (and any of the tenant's that expired).
pub async fn release_lease(tx: &TenantTx<'_>, id: Uuid) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "DELETE FROM annal.export_leases WHERE tenant_id = $1 AND (id = $2 OR expires_at < now())",
            &[&tx.tenant().as_uuid(), &id],
        )
        .await?;
    Ok(())
}

/// Whether version `version` of the tenant's policy has been recorded.
pub async fn policy_recorded(tx: &TenantTx<'_>, version: i32) -> Result<bool, StoreError> {
    let row = tx
        .inner()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM annal.policy_records WHERE tenant_id = $1 AND version = $2)",
            &[&tx.tenant().as_uuid(), &version],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Notes that version `version` is recorded by event `event_id` at `seq`.
pub async fn insert_policy_record(
    tx: &TenantTx<'_>,
    version: i32,
    event_id: Uuid,
    seq: u64,
) -> Result<(), StoreError> {
    let seq = i64::try_from(seq).map_err(|_| StoreError::Corrupt("seq out of range".into()))?;
    tx.inner()
        .execute(
            "INSERT INTO annal.policy_records (tenant_id, version, event_id, seq) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, version) DO NOTHING",
            &[&tx.tenant().as_uuid(), &version, &event_id, &seq],
        )
        .await?;
    Ok(())
}

/// The seq and action of the tenant's event with id `event_id`, if any.
pub async fn event_by_id(
    tx: &TenantTx<'_>,
    event_id: Uuid,
) -> Result<Option<(u64, String)>, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            "SELECT seq, action FROM annal.events WHERE tenant_id = $1 AND event_id = $2",
            &[&tx.tenant().as_uuid(), &event_id],
        )
        .await?;
    row.map(|row| {
        let seq: i64 = row.try_get(0)?;
        Ok((
            u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative seq".into()))?,
            row.try_get(1)?,
        ))
    })
    .transpose()
}

/// The largest boundary a `retention.purged` event has announced (0: none).
pub async fn last_announced(tx: &TenantTx<'_>) -> Result<u64, StoreError> {
    const LAST: &str = "SELECT coalesce(max(size), 0) FROM annal.purge_announcements \
        WHERE tenant_id = $1";
    let row = tx
        .inner()
        .query_one(LAST, &[&tx.tenant().as_uuid()])
        .await?;
    let size: i64 = row.try_get(0)?;
    u64::try_from(size).map_err(|_| StoreError::Corrupt("negative announced boundary".into()))
}

/// Records that the event `event_id` at `seq` announced boundary `size`.
pub async fn insert_announcement(
    tx: &TenantTx<'_>,
    size: u64,
    event_id: Uuid,
    seq: u64,
) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO annal.purge_announcements (tenant_id, size, event_id, seq) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, size) DO NOTHING";
    let to_i64 =
        |v: u64| i64::try_from(v).map_err(|_| StoreError::Corrupt("seq out of range".into()));
    tx.inner()
        .execute(
            INSERT,
            &[
                &tx.tenant().as_uuid(),
                &to_i64(size)?,
                &event_id,
                &to_i64(seq)?,
            ],
        )
        .await?;
    Ok(())
}

/// What `annal.purge_expired` did (or, in a dry run, would do) to one
/// batch of a tenant's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeBatch {
    /// What happened.
    pub status: PurgeStatus,
    /// Records deleted (or that would be).
    pub purged: u64,
    /// The boundary before: records `[0, boundary_from)` were already gone.
    pub boundary_from: u64,
    /// The boundary after.
    pub boundary_to: u64,
    /// The checkpoint attesting the new boundary.
    pub checkpoint_size: Option<u64>,
    /// Records received at or before this were expired.
    pub cutoff: DateTime<Utc>,
    /// The period applied (the policy, never below the floor).
    pub period_months: u32,
    /// Whether more expired records wait for the next batch.
    pub more: bool,
}

/// The outcome of one purge batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeStatus {
    /// Records were deleted.
    Purged,
    /// Dry run: records would be deleted.
    WouldPurge,
    /// Nothing is expired (or what is has no checkpoint yet, or is the
    /// newest record).
    NothingExpired,
    /// A legal hold blocks purging.
    LegalHold,
    /// Expired records wait for an export that is reading them.
    ExportInProgress,
}

impl PurgeStatus {
    fn parse(name: &str) -> Result<PurgeStatus, StoreError> {
        match name {
            "purged" => Ok(PurgeStatus::Purged),
            "would_purge" => Ok(PurgeStatus::WouldPurge),
            "nothing_expired" => Ok(PurgeStatus::NothingExpired),
            "legal_hold" => Ok(PurgeStatus::LegalHold),
            "export_in_progress" => Ok(PurgeStatus::ExportInProgress),
            other => Err(StoreError::Corrupt(format!(
                "unknown purge status {other:?}"
            ))),
        }
    }
}

fn to_u64(row: &Row, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
}

/// Runs one batch of `annal.purge_expired` in its own transaction. `store`
/// must connect as the retention role; any other role is refused by the
/// database (it may not execute the function).
pub async fn purge_expired(
    store: &Store,
    tenant: TenantId,
    max_rows: u32,
    dry_run: bool,
) -> Result<PurgeBatch, StoreError> {
    const PURGE: &str = "SELECT status, purged, boundary_from, boundary_to, checkpoint_size, \
        cutoff, period_months, more FROM annal.purge_expired($1, $2, $3)";
    let max_rows = i32::try_from(max_rows).unwrap_or(i32::MAX);
    let conn = store.conn().await?;
    let row = conn
        .client()
        .query_one(PURGE, &[&tenant.as_uuid(), &max_rows, &dry_run])
        .await?;
    let checkpoint: Option<i64> = row.try_get("checkpoint_size")?;
    let months: i32 = row.try_get("period_months")?;
    Ok(PurgeBatch {
        status: PurgeStatus::parse(row.try_get("status")?)?,
        purged: to_u64(&row, "purged")?,
        boundary_from: to_u64(&row, "boundary_from")?,
        boundary_to: to_u64(&row, "boundary_to")?,
        checkpoint_size: checkpoint.and_then(|c| u64::try_from(c).ok()),
        cutoff: row.try_get("cutoff")?,
        period_months: u32::try_from(months)
            .map_err(|_| StoreError::Corrupt("negative retention period".into()))?,
        more: row.try_get("more")?,
    })
}

/// Every tenant's id, for the retention job (retention role).
pub async fn tenants(store: &Store) -> Result<Vec<TenantId>, StoreError> {
    let conn = store.conn().await?;
    let rows = conn
        .client()
        .query("SELECT annal.retention_tenants()", &[])
        .await?;
    rows.iter()
        .map(|row| Ok(TenantId::from_uuid(row.try_get(0)?)))
        .collect()
}

const POLICY_COLUMNS: &str =
    "version, period_months, legal_hold, reason, change, changed_at, changed_by, event_id";

/// Version `version` of the tenant's policy.
pub async fn policy_version(
    tx: &TenantTx<'_>,
    version: i32,
) -> Result<Option<StoredPolicy>, StoreError> {
    let query = format!(
        "SELECT {POLICY_COLUMNS} FROM annal.retention_policies WHERE tenant_id = $1 AND version = $2"
    );
    let row = tx
        .inner()
        .query_opt(&query, &[&tx.tenant().as_uuid(), &version])
        .await?;
    row.as_ref().map(StoredPolicy::try_from).transpose()
}

/// The tenant's latest legal hold change (placed or lifted), if any.
pub async fn latest_hold_change(tx: &TenantTx<'_>) -> Result<Option<StoredPolicy>, StoreError> {
    let query = format!(
        "SELECT {POLICY_COLUMNS} FROM annal.retention_policies WHERE tenant_id = $1 \
         AND change <> 'period' ORDER BY version DESC LIMIT 1"
    );
    let row = tx
        .inner()
        .query_opt(&query, &[&tx.tenant().as_uuid()])
        .await?;
    row.as_ref().map(StoredPolicy::try_from).transpose()
}

/// A purge boundary as stored, with what the purge decided by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundaryRow {
    /// Records `[0, size)` are purged.
    pub size: u64,
    /// Chain hash of seq `size - 1`.
    pub chain_hash: ChainHash,
    /// Compact range of the tree of `size` leaves.
    pub compact_range: Vec<TreeHash>,
    /// The first signed checkpoint with size at least `size`.
    pub checkpoint_size: u64,
    /// Records received at or before this were expired.
    pub cutoff: DateTime<Utc>,
    /// The period applied.
    pub period_months: u32,
    /// `annal.retention_now()` at the purge.
    pub decided_at: DateTime<Utc>,
    /// The database's own time at the purge.
    pub purged_at: DateTime<Utc>,
}

/// The tenant's current purge boundary (the largest), if anything was purged.
pub async fn latest_boundary(tx: &TenantTx<'_>) -> Result<Option<BoundaryRow>, StoreError> {
    const LATEST: &str = "SELECT size, chain_hash, compact_range, checkpoint_size, cutoff, \
        period_months, decided_at, purged_at FROM annal.purge_boundaries \
        WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1";
    let Some(row) = tx
        .inner()
        .query_opt(LATEST, &[&tx.tenant().as_uuid()])
        .await?
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("purge boundary: {what}"));
    let chain: &[u8] = row.try_get("chain_hash")?;
    let range: Vec<&[u8]> = row.try_get("compact_range")?;
    let months: i32 = row.try_get("period_months")?;
    Ok(Some(BoundaryRow {
        size: to_u64(&row, "size")?,
        chain_hash: ChainHash::try_from(chain).map_err(|_| corrupt("chain hash"))?,
        compact_range: range
            .into_iter()
            .map(|h| TreeHash::try_from(h).map_err(|_| corrupt("compact range hash")))
            .collect::<Result<_, _>>()?,
        checkpoint_size: to_u64(&row, "checkpoint_size")?,
        cutoff: row.try_get("cutoff")?,
        period_months: u32::try_from(months).map_err(|_| corrupt("period"))?,
        decided_at: row.try_get("decided_at")?,
        purged_at: row.try_get("purged_at")?,
    }))
}
