//! Export bundles: a tenant's records with their payloads, the checkpoints
//! over them and the proofs linking those, streamed in the format of
//! `docs/FORMAT.md` ("Export bundle") for `annal-verify`.
//!
//! The server's memory stays flat whatever the range and however slowly the
//! client reads: records are read in pages bounded by rows and by bytes,
//! each in a short transaction of its own whose connection goes back to the
//! pool before the page is written, in chunks, to a bounded channel that the
//! HTTP response (or `annal verify`) drains. The range is fixed before the
//! first byte: it ends at a signed checkpoint, and everything below a
//! checkpoint is immutable, so the pages need no common snapshot.
//!
//! The exporter reports what is stored, even when that is inconsistent
//! (a row deleted behind the ledger's back, a node missing): a proof it
//! cannot build is written empty, so the verifier, not the exporter, names
//! what is wrong.

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::{Authorized, Export};
use super::checkpoints::{Checkpointer, Signed};
use super::events::Ledger;
use super::{ServiceError, purged};
use crate::ledger::{ChainHash, Seq, TenantId, TreeHash, tenant_origin};
use crate::store::checkpoints::{self, StoredCheckpoint};
use crate::store::tree::{self, TreeError};
use crate::store::{Store, StoreError, TenantTx, events, retention};
use crate::verify::bundle::BundleWriter;

/// Most records read per page.
const PAGE_ROWS: u32 = 1000;
/// Most record and payload bytes read per page (one larger record is still
/// read alone).
const PAGE_BYTES: u64 = 4 << 20;
/// Checkpoints read per query.
const CHECKPOINT_PAGE: u32 = 1000;
/// Size of the chunks handed to the reader.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks buffered between the exporter and its reader.
const CHANNEL_DEPTH: usize = 4;

/// A chunk of the bundle, or the error that cut it short.
pub type Chunk = Result<Vec<u8>, std::io::Error>;

/// Query of `GET /v1/export`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    /// First seq to export [default: 0]. Records purged by the retention
    /// policy cannot be exported: the bundle then starts at the first
    /// retained record and says what was purged.
    pub from_seq: Option<u64>,
    /// Last seq wanted [default: the latest checkpoint]; the bundle extends
    /// to the first signed checkpoint at or after it.
    pub to_seq: Option<u64>,
    /// Size of a checkpoint the auditor already trusts; when it is below
    /// `from_seq` the bundle carries a consistency proof from it.
    pub trusted_size: Option<u64>,
}

/// The range an export covers, fixed before streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRange {
    /// The tenant.
    pub tenant: TenantId,
    /// First record.
    pub from_seq: u64,
    /// Size of the last checkpoint: records `from_seq..end_size`.
    pub end_size: u64,
    /// A trusted size below `from_seq` to prove consistency from.
    pub trusted_size: Option<u64>,
    /// When records `0..from_seq` were purged by the retention policy: the
    /// size of the checkpoint that attests the purge boundary (the
    /// bundle's first).
    pub purged_attested_by: Option<u64>,
    /// The lease that keeps purges off `from_seq..` while the export runs.
    pub lease: Uuid,
}

fn invalid(message: String) -> ServiceError {
    ServiceError::Invalid {
        code: "invalid_range",
        message,
    }
}

/// Exports tenants' trails.
#[derive(Clone)]
pub struct Exporter {
    store: Store,
    checkpointer: Checkpointer,
    ledger: Ledger,
}

impl Exporter {
    /// An exporter over `store`; `ledger` records each export in the trail.
    pub fn new(store: Store, checkpointer: Checkpointer, ledger: Ledger) -> Exporter {
        Exporter {
            store,
            checkpointer,
            ledger,
        }
    }

    /// Fixes the range of an export of the caller's trail, records the
    /// export as an `audit.export` event, and starts streaming the bundle.
    pub async fn export(
        &self,
        who: &Authorized<Export>,
        input: &ExportInput,
    ) -> Result<(ExportRange, mpsc::Receiver<Chunk>), ServiceError> {
        // At most one new checkpoint per interval, however many exports ask.
        let signed = self.checkpointer.sign_on_demand(who.tenant()).await;
        let range = self.plan(who.tenant(), input, signed).await?;
        let recorded = self
            .ledger
            .record_read(
                who.principal(),
                "export",
                json!({
                    "filter": { "from_seq": range.from_seq, "to_seq": range.end_size - 1 },
                    "rows": range.end_size - range.from_seq,
                }),
                "audit.export",
            )
            .await;
        if let Err(error) = recorded {
            self.release(range).await;
            return Err(error);
        }
        Ok((range, self.stream(range)))
    }

    /// Fixes an export's range: it ends at a signed checkpoint. `signed`
    /// is the caller's attempt to sign the committed head first; when it
    /// failed, the export still covers what is signed and the verifier will
    /// say what is wrong with the rest.
    pub async fn plan(
        &self,
        tenant: TenantId,
        input: &ExportInput,
        signed: Result<Signed, ServiceError>,
    ) -> Result<ExportRange, ServiceError> {
        if let Err(error) = signed {
            tracing::error!(tenant.id = %tenant, error = %error, "no fresh checkpoint for export");
        }
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        // No purge batch runs while the range is fixed; the lease taken
        // below keeps them off it until the export ends.
        retention::hold_off_purges(&tx).await?;
        let latest = checkpoints::latest(&tx)
            .await?
            .ok_or(ServiceError::NotFound("checkpoint"))?;
        let committed = events::last(&tx)
            .await?
            .map_or(0, |head| head.seq.value() + 1);
        let not_yet = |seq: u64| {
            ServiceError::Unavailable(format!(
                "seq {seq} is committed but not yet covered by a signed checkpoint (size {}); \
                 retry in a second",
                latest.size
            ))
        };
        // Records below the purge boundary are gone: an export starts at
        // the boundary at the earliest, and says why.
        let boundary = retention::latest_boundary(&tx).await?;
        let purged_before = boundary.as_ref().map_or(0, |b| b.size);
        let from_seq = input.from_seq.unwrap_or(0).max(purged_before);
        if from_seq >= latest.size && from_seq < committed {
            return Err(not_yet(from_seq));
        }
        if from_seq >= latest.size {
            return Err(invalid(format!(
                "from_seq {from_seq} is past the last signed checkpoint (size {})",
                latest.size
            )));
        }
        let end_size = match input.to_seq {
            Some(to) if to < from_seq => {
                return Err(invalid(format!(
                    "to_seq {to} is before from_seq {from_seq}"
                )));
            }
            // Asked for records committed after the last checkpoint: the
            // bundle could not reach them, so say so rather than cut short.
            Some(to) if to >= latest.size && to < committed => return Err(not_yet(to)),
            Some(to) => checkpoints::first_at_or_after(&tx, to.saturating_add(1))
                .await?
                .map_or(latest.size, |c| c.size),
            None => latest.size,
        };
        let trusted_size = match input.trusted_size {
            Some(0) => return Err(invalid("trusted_size must be at least 1".into())),
            Some(t) if t > latest.size => {
                return Err(invalid(format!(
                    "trusted_size {t} is past the last signed checkpoint (size {})",
                    latest.size
                )));
            }
            Some(t) if t < purged_before => {
                return Err(purged(
                    &format!("linking a trusted checkpoint of size {t}"),
                    purged_before,
                ));
            }
            Some(t) if t < from_seq => Some(t),
            _ => None,
        };
        let purged_attested_by = if purged_before > 0 && from_seq == purged_before {
            let attesting = checkpoints::first_at_or_after(&tx, purged_before)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "no checkpoint covers the purge boundary {purged_before}"
                    ))
                })?;
            Some(attesting.size)
        } else {
            None
        };
        let lease = Uuid::new_v4();
        retention::take_lease(&tx, lease, from_seq).await?;
        tx.commit().await?;
        Ok(ExportRange {
            tenant,
            from_seq,
            end_size,
            trusted_size,
            purged_attested_by,
            lease,
        })
    }

    /// Streams the bundle of `range` into a bounded channel.
    pub fn stream(&self, range: ExportRange) -> mpsc::Receiver<Chunk> {
        let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
        let exporter = self.clone();
        tokio::spawn(async move {
            let written = exporter.write(range, &sender).await;
            exporter.release(range).await;
            if let Err(error) = written {
                tracing::error!(tenant.id = %range.tenant, error = %error, "export cut short");
                let _ = sender
                    .send(Err(std::io::Error::other(
                        "export failed; see the server log",
                    )))
                    .await;
            }
        });
        receiver
    }

    /// Releases an export's lease; a failure only leaves it to expire.
    async fn release(&self, range: ExportRange) {
        let released = async {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(range.tenant).await?;
            retention::release_lease(&tx, range.lease).await?;
            tx.commit().await
        };
        if let Err(error) = released.await {
            tracing::warn!(tenant.id = %range.tenant, error = %error, "export lease not released; it expires by itself");
        }
    }

    async fn write(
        &self,
        range: ExportRange,
        out: &mpsc::Sender<Chunk>,
    ) -> Result<(), ServiceError> {
        let tenant = range.tenant;
        let keyring = self.checkpointer.keyring();
        let mut writer = BundleWriter::new();

        let mut head = writer.header(
            &tenant_origin(&keyring.origin(), tenant),
            tenant,
            range.from_seq,
            range.end_size - 1,
        );
        for key in keyring.verifier_keys() {
            head.extend(writer.vkey(&key.to_vkey()));
        }
        if let Some(attested_by) = range.purged_attested_by {
            head.extend(writer.purged(range.from_seq, attested_by));
        }
        {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let (chain, compact) = start_state(&tx, range.from_seq).await?;
            tx.commit().await?;
            head.extend(writer.start(range.from_seq, &chain, &compact));
        }
        send(out, head).await?;

        let mut checkpoints = Checkpoints::new(range.from_seq.max(1), range.end_size);
        let mut next = range.from_seq;
        while next < range.end_size {
            if out.is_closed() {
                return Err(ServiceError::Unavailable("the reader went away".into()));
            }
            // A page is read and written out in its own short transaction;
            // the connection is back in the pool before the reader is waited on.
            let mut bytes = Vec::new();
            let fetched = {
                let mut conn = self.store.conn().await?;
                let tx = conn.tenant(tenant).await?;
                let page = events::page(
                    &tx,
                    Seq::new(next),
                    Seq::new(range.end_size),
                    PAGE_ROWS,
                    PAGE_BYTES,
                )
                .await?;
                retention::renew_lease(&tx, range.lease).await?;
                for event in &page {
                    let seq = event.seq.value();
                    // Checkpoints due before this record (only when records
                    // are missing) go first, so the verifier meets them in order.
                    checkpoints
                        .emit_through(&tx, &mut writer, seq, &mut bytes)
                        .await?;
                    bytes.extend(writer.record(
                        seq,
                        &event.record,
                        Some((&event.payload, &event.salt)),
                    ));
                    checkpoints
                        .emit_through(&tx, &mut writer, seq + 1, &mut bytes)
                        .await?;
                }
                tx.commit().await?;
                page.last().map(|event| event.seq.value())
            };
            send_chunked(out, bytes).await?;
            match fetched {
                Some(last) => next = last + 1,
                // Nothing left below the end: the rest is missing.
                None => break,
            }
        }

        let mut tail = Vec::new();
        {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            checkpoints
                .emit_through(&tx, &mut writer, range.end_size, &mut tail)
                .await?;
            if let Some(trusted) = range.trusted_size {
                let proof = proof_or_empty(&tx, trusted, range.end_size).await?;
                tail.extend(writer.consistency(trusted, range.end_size, &proof));
            }
            tx.commit().await?;
        }
        tail.extend(writer.end());
        send_chunked(out, tail).await
    }
}

async fn send(out: &mpsc::Sender<Chunk>, bytes: Vec<u8>) -> Result<(), ServiceError> {
    out.send(Ok(bytes))
        .await
        .map_err(|_| ServiceError::Unavailable("the reader went away".into()))
}

/// Hands `bytes` to the reader in chunks of at most [`CHUNK_BYTES`].
async fn send_chunked(out: &mpsc::Sender<Chunk>, bytes: Vec<u8>) -> Result<(), ServiceError> {
    if bytes.len() <= CHUNK_BYTES {
        if !bytes.is_empty() {
            send(out, bytes).await?;
        }
        return Ok(());
    }
    for chunk in bytes.chunks(CHUNK_BYTES) {
        send(out, chunk.to_vec()).await?;
    }
    Ok(())
}

/// The chain hash before `from_seq` and the compact range of the tree of
/// `from_seq` leaves; written as they are stored, proven by the first
/// checkpoint.
async fn start_state(
    tx: &TenantTx<'_>,
    from_seq: u64,
) -> Result<(ChainHash, Vec<TreeHash>), ServiceError> {
    if from_seq == 0 {
        return Ok((ChainHash::genesis(tx.tenant()), Vec::new()));
    }
    // At the purge boundary, what the boundary kept.
    if let Some(boundary) = retention::latest_boundary(tx).await? {
        if boundary.size == from_seq {
            return Ok((boundary.chain_hash, boundary.compact_range));
        }
    }
    let chain = match events::by_seq(tx, Seq::new(from_seq - 1)).await? {
        Some(event) => event.chain_hash,
        None => ChainHash::from_bytes([0; 32]),
    };
    let compact = match tree::compact_range(tx, from_seq).await {
        Ok(range) => range.hashes().to_vec(),
        // What is stored is inconsistent: written as it is, for the
        // verifier to name. A failing database ends the export instead.
        Err(TreeError::MissingNodes { .. } | TreeError::Store(StoreError::Corrupt(_))) => {
            tracing::warn!(tenant.id = %tx.tenant(), "export start state incomplete");
            Vec::new()
        }
        Err(TreeError::Store(error)) => return Err(error.into()),
    };
    Ok((chain, compact))
}

/// The consistency proof, or an empty one when the stored tree cannot give
/// it (for the verifier to report); a failing database ends the export.
async fn proof_or_empty(
    tx: &TenantTx<'_>,
    from: u64,
    to: u64,
) -> Result<Vec<TreeHash>, ServiceError> {
    match tree::consistency_proof(tx, from, to).await {
        Ok(proof) => Ok(proof),
        Err(error @ StoreError::Corrupt(_)) => {
            tracing::warn!(tenant.id = %tx.tenant(), error = %error, from, to, "consistency proof unavailable for export");
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// The checkpoints of an export, read a page at a time, each written after
/// the record that completes it, with its consistency proof from the one
/// before.
struct Checkpoints {
    queue: VecDeque<StoredCheckpoint>,
    /// The next size not read yet.
    cursor: u64,
    /// The last size wanted.
    last: u64,
    /// The size of the checkpoint written last.
    previous: Option<u64>,
}

impl Checkpoints {
    fn new(first: u64, last: u64) -> Checkpoints {
        Checkpoints {
            queue: VecDeque::new(),
            cursor: first,
            last,
            previous: None,
        }
    }

    async fn peek(&mut self, tx: &TenantTx<'_>) -> Result<Option<u64>, ServiceError> {
        if self.queue.is_empty() && self.cursor <= self.last {
            let page = checkpoints::range(tx, self.cursor, self.last, CHECKPOINT_PAGE).await?;
            self.cursor = page.last().map_or(self.last + 1, |c| c.size + 1);
            self.queue.extend(page);
        }
        Ok(self.queue.front().map(|c| c.size))
    }

    /// Writes every checkpoint of size at most `size`, each after the first
    /// followed by its consistency proof from the one before.
    async fn emit_through(
        &mut self,
        tx: &TenantTx<'_>,
        writer: &mut BundleWriter,
        size: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ServiceError> {
        while let Some(next) = self.peek(tx).await? {
            if next > size {
                break;
            }
            let Some(checkpoint) = self.queue.pop_front() else {
                break;
            };
            out.extend(writer.checkpoint(checkpoint.size, &checkpoint.note));
            if let Some(from) = self.previous {
                let proof = proof_or_empty(tx, from, checkpoint.size).await?;
                out.extend(writer.consistency(from, checkpoint.size, &proof));
            }
            self.previous = Some(checkpoint.size);
        }
        Ok(())
    }
}
