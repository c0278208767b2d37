//! Group commit: one logical writer per tenant chain.
//!
//! Requests for a tenant queue up for that tenant's writer task. While one
//! transaction commits, the next requests gather; the writer then takes all
//! of them (up to a cap) into one transaction: lock the chain (a
//! transaction-scoped advisory lock, so several processes on one database
//! take turns), read the head, seal the records in order, insert them in
//! one statement, commit, and only then answer every waiting request.
//!
//! The writer never answers before the commit, and a failed commit fails
//! every request in it: nothing is acknowledged that is not durable.
//!
//! The same transaction advances the tenant's Merkle tree: the writer keeps
//! the tree's compact range (its right border, at most 64 hashes) between
//! groups, appends the new leaves to it and stores the stratum nodes they
//! complete. So the cost of a group grows with the group, never with the
//! log. When another process appended meanwhile, the range is reloaded
//! from the stored strata (one bounded read per stratum). A tenant written
//! before schema V2 has no stored strata: its first append builds them from
//! its leaves, once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::checkpoints::Checkpointer;
use super::{ServiceError, SharedClock};
use crate::ledger::{
    ChainHash, CompactRange, EventId, Header, PayloadCommitment, Salt, Seq, TenantId, Timestamp,
    chain_hash, leaf_hash,
};
use crate::store::events::{self, NewRow, StoredEvent};
use crate::store::tree::{self, TreeError};
use crate::store::{ChainLock, Store, StoreError, TenantTx};

/// How long an idle tenant writer lives before it exits.
const IDLE: Duration = Duration::from_secs(60);
/// Requests that may wait for one tenant's writer before new ones are refused.
const QUEUE_DEPTH: usize = 4096;

/// An event ready to be sealed: everything but its place in the chain.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The event id.
    pub event_id: EventId,
    /// Whether the client chose the id (and so may be retrying).
    pub client_id: bool,
    /// The action.
    pub action: String,
    /// Canonical payload bytes.
    pub payload: Vec<u8>,
    /// Salt of the commitment.
    pub salt: Salt,
    /// `SHA-256(salt || payload)`.
    pub commitment: PayloadCommitment,
    /// `actor.id`, for filtering.
    pub actor_id: String,
    /// `resource.type`, for filtering.
    pub resource_type: String,
    /// `resource.id`, for filtering.
    pub resource_id: String,
    /// `request_id`, for filtering.
    pub request_id: Option<String>,
}

/// The durable outcome of appending one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// Its record (the original one, for a retried event id).
    pub event: StoredEvent,
    /// False when the event id had already been stored.
    pub created: bool,
}

type Reply = oneshot::Sender<Result<Vec<Appended>, ServiceError>>;

struct Job {
    events: Vec<Pending>,
    reply: Reply,
    /// The request's span: the writer logs about a job inside it, so those
    /// lines carry the request id too.
    span: tracing::Span,
}

/// Hands events to per-tenant writers.
#[derive(Clone)]
pub struct Appender {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    max_group: usize,
    checkpointer: Option<Checkpointer>,
    writers: Mutex<HashMap<TenantId, mpsc::Sender<Job>>>,
}

impl Appender {
    /// An appender writing through `store`, grouping up to `max_group`
    /// events per transaction (a single request is never split), and
    /// telling `checkpointer` about every tenant it commits to.
    pub fn new(
        store: Store,
        clock: SharedClock,
        max_group: usize,
        checkpointer: Option<Checkpointer>,
    ) -> Appender {
        Appender {
            inner: Arc::new(Inner {
                store,
                clock,
                max_group,
                checkpointer,
                writers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Appends `events` to `tenant`'s chain as one unit (all or nothing) and
    /// waits for the commit.
    pub async fn append(
        &self,
        tenant: TenantId,
        events: Vec<Pending>,
    ) -> Result<Vec<Appended>, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let span = tracing::Span::current();
        self.enqueue(
            tenant,
            Job {
                events,
                reply,
                span,
            },
        )?;
        answer
            .await
            .map_err(|_| ServiceError::Unavailable("the writer stopped; retry".into()))?
    }

    fn enqueue(&self, tenant: TenantId, job: Job) -> Result<(), ServiceError> {
        // Sending under the lock lets an idle writer retire race-free: it
        // checks its queue is empty under the same lock before it leaves.
        let mut writers = self
            .inner
            .writers
            .lock()
            .map_err(|_| ServiceError::Internal(anyhow::anyhow!("appender lock poisoned")))?;
        let sender = writers
            .entry(tenant)
            .or_insert_with(|| spawn_writer(self.inner.clone(), tenant));
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ServiceError::Unavailable(
                "too many appends waiting for this tenant; retry shortly".into(),
            )),
            Err(mpsc::error::TrySendError::Closed(job)) => {
                let sender = spawn_writer(self.inner.clone(), tenant);
                let result = sender.try_send(job).map_err(|_| {
                    ServiceError::Unavailable("the writer could not start; retry".into())
                });
                writers.insert(tenant, sender);
                result
            }
        }
    }
}

fn spawn_writer(inner: Arc<Inner>, tenant: TenantId) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(write_loop(inner, tenant, receiver));
    sender
}

async fn write_loop(inner: Arc<Inner>, tenant: TenantId, mut queue: mpsc::Receiver<Job>) {
    let mut tree: Option<CompactRange> = None;
    loop {
        let first = match tokio::time::timeout(IDLE, queue.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                let Ok(mut writers) = inner.writers.lock() else {
                    return;
                };
                if queue.is_empty() {
                    writers.remove(&tenant);
                    return;
                }
                continue;
            }
        };
        let mut size = first.events.len();
        let mut jobs = vec![first];
        while size < inner.max_group {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let outcome = commit_group(&inner, tenant, &jobs, &mut tree).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let requests = jobs.len();
        match outcome {
            Ok(outcomes) => {
                if let Some(checkpointer) = &inner.checkpointer {
                    checkpointer.mark(tenant);
                }
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    job.span.in_scope(|| {
                        tracing::debug!(
                            batch.requests = requests,
                            batch.size = size,
                            duration_ms,
                            "group committed"
                        );
                    });
                    let _ = job.reply.send(outcome);
                }
            }
            Err(error) => {
                let unavailable = matches!(error, StoreError::Pool(_));
                for job in jobs {
                    job.span.in_scope(|| {
                        tracing::error!(error = %error, batch.requests = requests, "group commit failed");
                    });
                    let _ = job.reply.send(Err(if unavailable {
                        ServiceError::Unavailable("database unavailable; retry".into())
                    } else {
                        ServiceError::Internal(anyhow::anyhow!("append failed"))
                    }));
                }
            }
        }
    }
}

/// One transaction for a group of requests. Returns one outcome per job;
/// a job whose event id conflicts fails alone, the others go on. `cached`
/// is the tree's compact range after the last commit of this writer; it is
/// left empty when the transaction fails.
async fn commit_group(
    inner: &Inner,
    tenant: TenantId,
    jobs: &[Job],
    cached: &mut Option<CompactRange>,
) -> Result<Vec<Result<Vec<Appended>, ServiceError>>, StoreError> {
    let mut conn = inner.store.conn().await?;
    let tx = conn.tenant_for_append(tenant).await?;
    let lock = tx.lock_chain().await?;

    let retried: Vec<EventId> = jobs
        .iter()
        .flat_map(|job| job.events.iter())
        .filter(|e| e.client_id)
        .map(|e| e.event_id)
        .collect();
    // Both reads come after the lock; sent together, they share a round trip.
    let (known, head) = if retried.is_empty() {
        (Vec::new(), events::head(&lock).await?)
    } else {
        futures_util::try_join!(events::by_event_ids(&tx, &retried), events::head(&lock))?
    };
    let mut known: HashMap<EventId, StoredEvent> =
        known.into_iter().map(|e| (e.event_id, e)).collect();

    let mut next = head.map_or(Seq::new(0), |h| h.seq.next());
    let mut prev = head.map_or(ChainHash::genesis(tenant), |h| h.chain_hash);
    // Receive times never go backwards along a chain, even across processes
    // whose clocks disagree slightly.
    let now = Timestamp::from_datetime(inner.clock.now());
    let received_at = head.map_or(now, |h| now.max(h.received_at));

    let mut rows: Vec<NewRow> = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut staged: Vec<NewRow> = Vec::new();
        let mut staged_ids: HashMap<EventId, usize> = HashMap::new();
        let mut answers = Vec::with_capacity(job.events.len());
        let mut conflict = None;
        let (mut job_next, mut job_prev) = (next, prev);
        for pending in &job.events {
            let earlier = known.get(&pending.event_id).cloned().or_else(|| {
                staged_ids
                    .get(&pending.event_id)
                    .map(|&i| staged[i].event.clone())
            });
            if let Some(earlier) = earlier {
                if earlier.action != pending.action || earlier.payload != pending.payload {
                    conflict = Some(pending.event_id);
                    break;
                }
                answers.push(Appended {
                    event: earlier,
                    created: false,
                });
                continue;
            }
            let header = Header {
                tenant_id: tenant,
                seq: job_next,
                event_id: pending.event_id,
                received_at,
                action: pending.action.clone(),
                payload_commitment: pending.commitment,
            };
            let record = header.encode();
            let leaf = leaf_hash(&record);
            let chain = chain_hash(&job_prev, &leaf);
            let event = StoredEvent {
                seq: job_next,
                event_id: pending.event_id,
                received_at,
                action: pending.action.clone(),
                record,
                leaf_hash: leaf,
                chain_hash: chain,
                payload: pending.payload.clone(),
                salt: pending.salt,
            };
            answers.push(Appended {
                event: event.clone(),
                created: true,
            });
            staged_ids.insert(pending.event_id, staged.len());
            staged.push(NewRow {
                event,
                actor_id: pending.actor_id.clone(),
                resource_type: pending.resource_type.clone(),
                resource_id: pending.resource_id.clone(),
                request_id: pending.request_id.clone(),
            });
            job_next = job_next.next();
            job_prev = chain;
        }
        if let Some(id) = conflict {
            outcomes.push(Err(ServiceError::IdempotencyConflict(id.as_uuid())));
            continue;
        }
        (next, prev) = (job_next, job_prev);
        for row in &staged {
            known.insert(row.event.event_id, row.event.clone());
        }
        rows.extend(staged);
        outcomes.push(Ok(answers));
    }

    if !rows.is_empty() {
        let size = head.map_or(0, |h| h.seq.value() + 1);
        let mut range = match cached.take() {
            Some(range) if range.size() == size => range,
            _ => load_range(&tx, &lock, size).await?,
        };
        let mut completed = Vec::new();
        for row in &rows {
            completed.extend(
                range
                    .append(row.event.leaf_hash.into())
                    .map_err(|e| StoreError::Corrupt(format!("tree: {e}")))?,
            );
        }
        // Both statements go out together on the one connection.
        futures_util::try_join!(
            events::insert(&lock, &rows),
            tree::insert_nodes(&lock, &completed)
        )?;
        tx.commit().await?;
        *cached = Some(range);
    } else {
        tx.commit().await?;
    }
    Ok(outcomes)
}

/// The compact range of the tree of `size` leaves, from the stored strata.
/// A tenant written before schema V2 has leaves but no stored strata: its
/// tree is built from its leaves, once, here (under the chain lock, so no
/// other append interleaves).
async fn load_range(
    tx: &TenantTx<'_>,
    lock: &ChainLock<'_, '_>,
    size: u64,
) -> Result<CompactRange, StoreError> {
    let tenant = tx.tenant();
    match tree::compact_range(tx, size).await {
        Ok(range) => Ok(range),
        Err(TreeError::MissingNodes { .. }) => {
            tracing::warn!(
                tenant.id = %tenant,
                tree.size = size,
                "building the Merkle tree of a tenant written before schema V2"
            );
            let started = std::time::Instant::now();
            let range = tree::backfill(lock, size).await?;
            tracing::info!(
                tenant.id = %tenant,
                tree.size = size,
                duration_ms = started.elapsed().as_millis() as u64,
                "Merkle tree built"
            );
            Ok(range)
        }
        Err(TreeError::Store(error)) => Err(error),
    }
}
