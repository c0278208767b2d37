//! Retention: each tenant's period and legal hold, and the purge job.
//!
//! What may be purged is decided by the database (`annal.purge_expired`,
//! callable only by the retention role), never here: this layer asks it for
//! one bounded batch at a time, records every policy change and every purge
//! in the tenant's own log, and has a checkpoint signed after each purge.
//! Every step is idempotent, so a run that dies half-way is finished by the
//! next one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;
use uuid::Uuid;

use super::ServiceError;
use super::checkpoints::Checkpointer;
use super::events::Ledger;
use crate::ledger::{Actor, Payload, Resource, TenantId};
use crate::store::retention::{self as rows, NewPolicy, PolicyChange, PurgeStatus, StoredPolicy};
use crate::store::{Store, StoreError, TenantTx};

/// Rows deleted per purge transaction.
pub const DEFAULT_BATCH: u32 = 10_000;
/// The largest batch the database accepts.
pub const MAX_BATCH: u32 = 100_000;
/// Time between two scheduled runs inside `serve`.
pub const DEFAULT_RUN_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// Rest between two purge batches: leaves the database to the ingest now
/// and then (measured in docs/PERFORMANCE.md, "Retention": with 10,000-row
/// batches and 20 ms, ingest kept at least 0.7x its throughput while the
/// purge stayed above 50,000 rows/s).
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(20);
/// The longest period a tenant can choose: 100 years.
pub const MAX_PERIOD_MONTHS: u32 = 1200;

/// Who changes a policy: an operator at the command line (the API for
/// organisation admins comes with identity and access).
#[derive(Debug, Clone)]
pub struct Operator {
    /// Recorded as the change's actor id, e.g. `cli:alice`.
    pub name: String,
}

/// A tenant's retention policy as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Months records are kept after they were received.
    pub period_months: u32,
    /// The deployment's floor: no period is shorter.
    pub floor_months: u32,
    /// Whether a legal hold blocks every purge.
    pub legal_hold: bool,
    /// The reason given for the hold (or its release).
    pub hold_reason: Option<String>,
    /// Policy version (0: never changed).
    pub version: i32,
    /// When it last changed.
    pub changed_at: Option<DateTime<Utc>>,
    /// Records `0..purged_before` are purged (0: none).
    pub purged_before: u64,
}

/// What one run did (or, dry, would do) to one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRun {
    /// The tenant.
    pub tenant_id: TenantId,
    /// `purged`, `would_purge`, `nothing_expired`, `legal_hold` or
    /// `export_in_progress` (expired records wait for an export to end).
    pub status: &'static str,
    /// Records deleted in this run (or that would be).
    pub purged: u64,
    /// The boundary before the run.
    pub boundary_from: u64,
    /// The boundary after it: records `0..boundary_to` are gone.
    pub boundary_to: u64,
    /// The signed checkpoint attesting the boundary.
    pub attested_by: Option<u64>,
    /// Records received at or before this time were expired.
    pub cutoff: DateTime<Utc>,
    /// The period applied.
    pub period_months: u32,
    /// Transactions used.
    pub batches: u32,
    /// Seq of the `retention.purged` event recording the purge.
    pub recorded_at_seq: Option<u64>,
}

/// Retention policies and purging.
#[derive(Clone)]
pub struct Retention {
    store: Store,
    purger: Option<Store>,
    ledger: Ledger,
    checkpointer: Checkpointer,
    batch: u32,
    pause: Duration,
}

fn invalid(code: &'static str, message: String) -> ServiceError {
    ServiceError::Invalid { code, message }
}

/// A UUID fixed by its inputs, so that a record that is retried after a
/// crash is the same event (the ledger deduplicates on event ids).
fn derived_event_id(parts: &[&[u8]]) -> Uuid {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.finalize()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl Retention {
    /// Policies over `store` (the app role); purging through `purger`, a
    /// pool of the retention role (`None`: purging is not configured).
    pub fn new(
        store: Store,
        purger: Option<Store>,
        ledger: Ledger,
        checkpointer: Checkpointer,
    ) -> Retention {
        Retention {
            store,
            purger,
            ledger,
            checkpointer,
            batch: DEFAULT_BATCH,
            pause: DEFAULT_PAUSE,
        }
    }

    /// The same, resting `pause` between two batches so that a large purge
    /// leaves the database to the ingest now and then.
    pub fn with_pause(self, pause: Duration) -> Retention {
        Retention { pause, ..self }
    }

    /// The same, deleting at most `batch` rows per transaction.
    pub fn with_batch(self, batch: u32) -> Result<Retention, ServiceError> {
        if batch == 0 || batch > MAX_BATCH {
            return Err(invalid(
                "invalid_batch",
                format!("a purge batch is 1 to {MAX_BATCH} rows, not {batch}"),
            ));
        }
        Ok(Retention { batch, ..self })
    }

    /// The deployment's floor and retention clock.
    pub async fn deployment(&self) -> Result<rows::DeploymentSettings, ServiceError> {
        let mut conn = self.store.conn().await?;
        // Not a tenant table: any tenant reads the one row.
        let tx = conn.tenant(TenantId::from_uuid(Uuid::nil())).await?;
        let settings = rows::settings(&tx).await?;
        tx.commit().await?;
        Ok(settings)
    }

    /// The tenant's policy in force.
    pub async fn show(&self, tenant: TenantId) -> Result<PolicyView, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        let view = view(&tx).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Sets the tenant's retention period (never below the floor); recorded
    /// as `retention.policy_changed` in the tenant's log.
    pub async fn set_period(
        &self,
        who: &Operator,
        tenant: TenantId,
        months: u32,
    ) -> Result<PolicyView, ServiceError> {
        if months == 0 || months > MAX_PERIOD_MONTHS {
            return Err(invalid(
                "invalid_period",
                format!("a retention period is 1 to {MAX_PERIOD_MONTHS} months, not {months}"),
            ));
        }
        self.change(who, tenant, |current, floor| {
            if months < floor {
                return Err(invalid(
                    "below_floor",
                    format!(
                        "{months} months is below this deployment's retention floor of {floor} months"
                    ),
                ));
            }
            Ok((months, current.legal_hold, None, PolicyChange::Period))
        })
        .await
    }

    /// Places (`on`) or lifts a legal hold, with its reason; recorded as
    /// `retention.legal_hold_placed` / `retention.legal_hold_lifted`.
    pub async fn set_hold(
        &self,
        who: &Operator,
        tenant: TenantId,
        on: bool,
        reason: &str,
    ) -> Result<PolicyView, ServiceError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_reason",
                "a legal hold needs a reason of 1 to 500 bytes, without control characters".into(),
            ));
        }
        let reason = reason.to_owned();
        self.change(who, tenant, move |current, _| {
            let change = if on {
                PolicyChange::HoldOn
            } else {
                PolicyChange::HoldOff
            };
            Ok((current.period_months, on, Some(reason.clone()), change))
        })
        .await
    }

    /// Inserts the next policy version computed by `next` from the current
    /// one, then records it in the tenant's log and has it signed.
    async fn change<F>(
        &self,
        who: &Operator,
        tenant: TenantId,
        next: F,
    ) -> Result<PolicyView, ServiceError>
    where
        F: Fn(&PolicyView, u32) -> Result<(u32, bool, Option<String>, PolicyChange), ServiceError>,
    {
        // A change whose record did not make it (a crash between the two
        // steps) is recorded first, so the log has every change in order.
        self.record_pending_change(tenant).await?;
        let (previous, stored) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let current = view(&tx).await?;
            let (period_months, legal_hold, reason, change) = next(&current, current.floor_months)?;
            let previous = rows::policy(&tx).await?;
            let stored = rows::insert_policy(
                &tx,
                &NewPolicy {
                    period_months,
                    legal_hold,
                    reason: reason.as_deref(),
                    change,
                    changed_at: self.ledger.clock().now(),
                    changed_by: &who.name,
                    event_id: Uuid::new_v4(),
                },
            )
            .await
            .map_err(|e| policy_error(e, current.floor_months))?;
            tx.commit().await?;
            (
                previous.unwrap_or_else(|| floor_policy(current.floor_months)),
                stored,
            )
        };
        self.record_change(tenant, &previous, &stored).await?;
        self.show(tenant).await
    }

    /// Appends the record of the tenant's latest policy change if it is not
    /// in the log yet.
    async fn record_pending_change(&self, tenant: TenantId) -> Result<(), ServiceError> {
        let pending = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let latest = rows::policy(&tx).await?;
            let pending = match latest {
                Some(latest) if !rows::policy_recorded(&tx, latest.version).await? => {
                    let floor = rows::settings(&tx).await?.floor_months;
                    let previous = match latest.version {
                        1 => floor_policy(floor),
                        v => rows::policy_version(&tx, v - 1).await?.ok_or_else(|| {
                            StoreError::Corrupt(format!("policy version {} is missing", v - 1))
                        })?,
                    };
                    Some((previous, latest))
                }
                _ => None,
            };
            tx.commit().await?;
            pending
        };
        if let Some((previous, latest)) = pending {
            self.record_change(tenant, &previous, &latest).await?;
        }
        Ok(())
    }

    /// Appends the record of policy version `stored` (built from the
    /// stored rows alone, so a retry writes the same event) and notes it.
    async fn record_change(
        &self,
        tenant: TenantId,
        previous: &StoredPolicy,
        stored: &StoredPolicy,
    ) -> Result<(), ServiceError> {
        let action = match stored.change {
            PolicyChange::Period => "retention.policy_changed",
            PolicyChange::HoldOn => "retention.legal_hold_placed",
            PolicyChange::HoldOff => "retention.legal_hold_lifted",
        };
        let state = |p: &StoredPolicy| json!({ "period_months": p.period_months, "legal_hold": p.legal_hold });
        let payload = Payload {
            before: Some(state(previous)),
            after: Some(state(stored)),
            metadata: Some(json!({
                "version": stored.version,
                "reason": stored.reason,
                "changed_at": stored.changed_at.to_rfc3339(),
            })),
            outcome: Some(crate::ledger::Outcome::Success),
            ..Payload::new(
                Actor {
                    id: stored.changed_by.clone(),
                    kind: actor_kind(&stored.changed_by).into(),
                    name: None,
                    email: None,
                },
                Resource {
                    kind: "retention_policy".into(),
                    id: tenant.to_string(),
                },
            )
        };
        let seq = self
            .ledger
            .record_system(tenant, stored.event_id, action, &payload)
            .await?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        rows::insert_policy_record(&tx, stored.version, stored.event_id, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Purges (or, dry, reports) every expired record of `tenant`, batch by
    /// batch; then records the purge as `retention.purged` and has a
    /// checkpoint signed over it.
    pub async fn run_tenant(
        &self,
        tenant: TenantId,
        dry_run: bool,
    ) -> Result<TenantRun, ServiceError> {
        let purger = self.purger.as_ref().ok_or_else(|| {
            ServiceError::Unavailable(
                "purging needs the retention role: set ANNAL_RETENTION_DATABASE_URL".into(),
            )
        })?;
        if !dry_run {
            self.record_pending_change(tenant).await?;
            // The purge never passes the last signed checkpoint: sign what
            // is committed so that everything expired can go.
            if let Err(error) = self.checkpointer.sign_now(tenant).await {
                tracing::warn!(tenant.id = %tenant, error = %error, "no fresh checkpoint before purging");
            }
        }
        let max_rows = if dry_run { i32::MAX as u32 } else { self.batch };
        let mut batches = 0;
        let mut purged = 0;
        let mut first: Option<rows::PurgeBatch> = None;
        let last = loop {
            let batch = rows::purge_expired(purger, tenant, max_rows, dry_run).await?;
            batches += 1;
            purged += batch.purged;
            first.get_or_insert_with(|| batch.clone());
            if batch.status != PurgeStatus::Purged || !batch.more {
                break batch;
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        };
        let first = first.unwrap_or_else(|| last.clone());
        let status = match (last.status, purged) {
            (PurgeStatus::LegalHold, 0) => "legal_hold",
            (PurgeStatus::ExportInProgress, 0) => "export_in_progress",
            (PurgeStatus::LegalHold | PurgeStatus::ExportInProgress, _) => "purged",
            (PurgeStatus::WouldPurge, _) => "would_purge",
            (_, 0) => "nothing_expired",
            _ => "purged",
        };
        let recorded_at_seq = if dry_run {
            None
        } else {
            self.announce(tenant).await?
        };
        let boundary_to = first.boundary_from.max(last.boundary_to);
        Ok(TenantRun {
            tenant_id: tenant,
            status,
            purged,
            boundary_from: first.boundary_from,
            boundary_to,
            attested_by: last.checkpoint_size.or(first.checkpoint_size),
            cutoff: last.cutoff,
            period_months: last.period_months,
            batches,
            recorded_at_seq,
        })
    }

    /// Runs [`Retention::run_tenant`] for `tenant`, or for every tenant.
    /// A tenant that fails is reported and the others still run.
    pub async fn run(
        &self,
        tenant: Option<TenantId>,
        dry_run: bool,
    ) -> Result<Vec<Result<TenantRun, (TenantId, ServiceError)>>, ServiceError> {
        let tenants = match tenant {
            Some(t) => vec![t],
            None => {
                let purger = self.purger.as_ref().ok_or_else(|| {
                    ServiceError::Unavailable(
                        "purging needs the retention role: set ANNAL_RETENTION_DATABASE_URL".into(),
                    )
                })?;
                rows::tenants(purger).await?
            }
        };
        let mut runs = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            runs.push(
                self.run_tenant(tenant, dry_run)
                    .await
                    .map_err(|e| (tenant, e)),
            );
        }
        Ok(runs)
    }

    /// Runs over every tenant once per `interval`, inside `serve`, logging
    /// what each run purged (counts and seqs only).
    pub async fn schedule(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let span = tracing::info_span!("retention_run");
            match self.run(None, false).instrument(span.clone()).await {
                Ok(runs) => {
                    for run in runs {
                        match run {
                            Ok(run) if run.purged > 0 => tracing::info!(
                                parent: &span,
                                tenant.id = %run.tenant_id,
                                retention.purged = run.purged,
                                retention.boundary = run.boundary_to,
                                retention.attested_by = run.attested_by,
                                retention.recorded_at_seq = run.recorded_at_seq,
                                "purged expired records"
                            ),
                            Ok(_) => {}
                            Err((tenant, error)) => tracing::error!(
                                parent: &span,
                                tenant.id = %tenant, error = %error, "retention run failed"
                            ),
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(parent: &span, error = %error, "retention run failed");
                }
            }
        }
    }

    /// Appends `retention.purged` for the tenant's boundary if no event has
    /// announced it yet, and has it signed. Returns the event's seq.
    async fn announce(&self, tenant: TenantId) -> Result<Option<u64>, ServiceError> {
        let (boundary, from) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let boundary = rows::latest_boundary(&tx).await?;
            let from = rows::last_announced(&tx).await?;
            tx.commit().await?;
            (boundary, from)
        };
        let Some(boundary) = boundary.filter(|b| b.size > from) else {
            return Ok(None);
        };
        let event_id = derived_event_id(&[
            b"retention.purged",
            tenant.as_uuid().as_bytes(),
            &boundary.size.to_be_bytes(),
        ]);
        // An event under this id already (a run that died before noting
        // it): note that one.
        let existing = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let existing = rows::event_by_id(&tx, event_id).await?;
            tx.commit().await?;
            existing
        };
        if let Some((seq, action)) = existing {
            if action != "retention.purged" {
                return Err(
                    StoreError::Corrupt(format!("event {event_id} is not a purge record")).into(),
                );
            }
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            rows::insert_announcement(&tx, boundary.size, event_id, seq).await?;
            tx.commit().await?;
            return Ok(Some(seq));
        }
        let payload = Payload {
            after: Some(json!({
                "purged": { "from_seq": from, "to_seq": boundary.size - 1 },
                "boundary": {
                    "size": boundary.size,
                    "chain_hash": boundary.chain_hash.to_string(),
                    "compact_range": boundary.compact_range.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
                    "attested_by_checkpoint": boundary.checkpoint_size,
                },
                "policy": {
                    "period_months": boundary.period_months,
                    "cutoff": boundary.cutoff.to_rfc3339(),
                    "decided_at": boundary.decided_at.to_rfc3339(),
                    "purged_at": boundary.purged_at.to_rfc3339(),
                },
            })),
            outcome: Some(crate::ledger::Outcome::Success),
            ..Payload::new(
                Actor {
                    id: "annal-retention".into(),
                    kind: "system".into(),
                    name: None,
                    email: None,
                },
                Resource {
                    kind: "audit_trail".into(),
                    id: tenant.to_string(),
                },
            )
        };
        let seq = self
            .ledger
            .record_system(tenant, event_id, "retention.purged", &payload)
            .await?;
        {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            rows::insert_announcement(&tx, boundary.size, event_id, seq).await?;
            tx.commit().await?;
        }
        if let Err(error) = self.checkpointer.sign_now(tenant).await {
            tracing::warn!(tenant.id = %tenant, error = %error, "no checkpoint after purging; the background signer will retry");
        }
        Ok(Some(seq))
    }
}

/// The actor kind of a policy change: a person's user id, or an operator.
fn actor_kind(changed_by: &str) -> &'static str {
    if Uuid::parse_str(changed_by).is_ok() {
        "user"
    } else {
        "operator"
    }
}

/// The policy a tenant has before its first change: the floor, no hold.
fn floor_policy(floor: u32) -> StoredPolicy {
    StoredPolicy {
        version: 0,
        period_months: floor,
        legal_hold: false,
        reason: None,
        change: PolicyChange::Period,
        changed_at: DateTime::<Utc>::UNIX_EPOCH,
        changed_by: "annal".into(),
        event_id: Uuid::nil(),
    }
}

fn policy_error(error: StoreError, floor: u32) -> ServiceError {
    use tokio_postgres::error::SqlState;
    match error.sqlstate() {
        Some(&SqlState::CHECK_VIOLATION) => invalid(
            "below_floor",
            format!("the retention period is below this deployment's floor of {floor} months"),
        ),
        Some(&SqlState::UNIQUE_VIOLATION) => ServiceError::Unavailable(
            "another change to this tenant's retention policy was made at the same moment; retry"
                .into(),
        ),
        _ => error.into(),
    }
}

async fn view(tx: &TenantTx<'_>) -> Result<PolicyView, ServiceError> {
    if !crate::store::tenants::exists(tx).await? {
        return Err(ServiceError::NotFound("tenant"));
    }
    let settings = rows::settings(tx).await?;
    let policy = rows::policy(tx).await?;
    let boundary = rows::latest_boundary(tx).await?;
    let hold_reason = rows::latest_hold_change(tx).await?.and_then(|p| p.reason);
    Ok(PolicyView {
        tenant_id: tx.tenant(),
        period_months: policy.as_ref().map_or(settings.floor_months, |p| {
            p.period_months.max(settings.floor_months)
        }),
        floor_months: settings.floor_months,
        legal_hold: policy.as_ref().is_some_and(|p| p.legal_hold),
        hold_reason,
        version: policy.as_ref().map_or(0, |p| p.version),
        changed_at: policy.as_ref().map(|p| p.changed_at),
        purged_before: boundary.map_or(0, |b| b.size),
    })
}
