//! What an auditor asks for: signed checkpoints, inclusion and consistency
//! proofs, C2SP tlog-proof files, the deployment's public keys.
//!
//! Checkpoints and inclusion and consistency proofs are hashes and
//! positions only, so they are not themselves recorded. A tlog-proof file
//! carries the hashed record (tenant, event id, receive time, action), so
//! asking for one is a read of the trail and is recorded as `audit.read`,
//! like `GET /v1/events/{seq}`; exports are recorded too (see `export`).
//!
//! Requests sign a fresh checkpoint at most once per checkpoint interval
//! per tenant; within it they get the latest one.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::auth::{Authorized, ReadEvents};
use super::checkpoints::Checkpointer;
use super::events::Ledger;
use super::{ServiceError, purged, purged_before};
use crate::ledger::{Seq, TenantId, TlogProof, TreeHash};
use crate::store::checkpoints::{self, StoredCheckpoint};
use crate::store::{Store, TenantTx, events, tree};

/// An inclusion proof with the checkpoint it leads to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InclusionProof {
    /// The record's seq: its leaf index.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// `SHA-256(0x00 || record)`, base64.
    pub leaf_hash: String,
    /// RFC 6962 audit path, base64, leaf to root.
    pub audit_path: Vec<String>,
    /// The signed checkpoint of `tree_size` (C2SP signed note).
    pub checkpoint: String,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The smaller size.
    pub from: u64,
    /// The larger size.
    pub to: u64,
    /// RFC 6962 consistency proof, base64.
    pub proof: Vec<String>,
}

/// The auditor's endpoints.
#[derive(Clone)]
pub struct Proofs {
    store: Store,
    checkpointer: Checkpointer,
    /// Records the reads that reveal records.
    ledger: Ledger,
}

fn base64_all(hashes: &[TreeHash]) -> Vec<String> {
    hashes.iter().map(TreeHash::to_base64).collect()
}

fn out_of_range(message: String) -> ServiceError {
    ServiceError::Invalid {
        code: "tree_size_out_of_range",
        message,
    }
}

/// The number of committed records: the largest tree that can be proven.
async fn committed_size(tx: &TenantTx<'_>) -> Result<u64, ServiceError> {
    Ok(events::last(tx)
        .await?
        .map_or(0, |head| head.seq.value() + 1))
}

impl Proofs {
    /// Proofs over `store`, signing on demand through `checkpointer` and
    /// recording reads of records through `ledger`.
    pub fn new(store: Store, checkpointer: Checkpointer, ledger: Ledger) -> Proofs {
        Proofs {
            store,
            checkpointer,
            ledger,
        }
    }

    /// The checkpointer (for the keys and on-demand signing).
    pub fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// The latest checkpoint, first signing one if committed events are not
    /// covered yet and the latest is at least a checkpoint interval old.
    pub async fn latest_checkpoint(
        &self,
        who: &Authorized<ReadEvents>,
    ) -> Result<StoredCheckpoint, ServiceError> {
        self.fresh(who.tenant())
            .await?
            .ok_or(ServiceError::NotFound("checkpoint"))
    }

    /// The latest checkpoint after trying to sign the committed head (at
    /// most once per interval). When signing fails (the database
    /// unreachable aside) the latest stored checkpoint still stands and is
    /// served; the failure is logged.
    async fn fresh(&self, tenant: TenantId) -> Result<Option<StoredCheckpoint>, ServiceError> {
        match self.checkpointer.sign_on_demand(tenant).await {
            Ok(signed) => Ok(signed.latest()),
            Err(error @ ServiceError::Unavailable(_)) => Err(error),
            Err(error) => {
                tracing::error!(tenant.id = %tenant, error = %error, "checkpoint not signed");
                let mut conn = self.store.conn().await?;
                let tx = conn.tenant(tenant).await?;
                let latest = checkpoints::latest(&tx).await?;
                tx.commit().await?;
                Ok(latest)
            }
        }
    }

    /// The checkpoint signed at exactly `size`.
    pub async fn checkpoint(
        &self,
        who: &Authorized<ReadEvents>,
        size: u64,
    ) -> Result<StoredCheckpoint, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let found = checkpoints::at_size(&tx, size).await?;
        tx.commit().await?;
        found.ok_or(ServiceError::NotFound("checkpoint"))
    }

    /// The inclusion proof of record `seq` in the tree of `tree_size`
    /// (default: the latest checkpoint), which must have a signed checkpoint.
    pub async fn inclusion(
        &self,
        who: &Authorized<ReadEvents>,
        seq: Seq,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, ServiceError> {
        let latest = match tree_size {
            None => Some(self.latest_checkpoint(who).await?),
            Some(_) => None,
        };
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let checkpoint = match (latest, tree_size) {
            (Some(latest), _) => latest,
            (None, Some(size)) => checkpoints::at_size(&tx, size)
                .await?
                .ok_or_else(|| ServiceError::NotFound("checkpoint"))?,
            (None, None) => return Err(ServiceError::NotFound("checkpoint")),
        };
        if seq.value() >= checkpoint.size {
            return Err(out_of_range(format!(
                "seq {} is not in the tree of size {}",
                seq.value(),
                checkpoint.size
            )));
        }
        let Some(event) = events::by_seq(&tx, seq).await? else {
            return Err(missing_event(&tx, seq).await?);
        };
        let path = match tree::inclusion_proof(&tx, seq.value(), checkpoint.size).await {
            Ok(path) => path,
            // A purge may have moved the boundary past `seq` meanwhile.
            Err(error) => return Err(missing_or(&tx, seq, error).await?),
        };
        tx.commit().await?;
        Ok(InclusionProof {
            leaf_index: seq.value(),
            tree_size: checkpoint.size,
            leaf_hash: TreeHash::from(event.leaf_hash).to_base64(),
            audit_path: base64_all(&path),
            checkpoint: checkpoint.note,
        })
    }

    /// The consistency proof from the tree of `from` records to that of `to`;
    /// requires `1 <= from <= to <=` the committed size.
    pub async fn consistency(
        &self,
        who: &Authorized<ReadEvents>,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, ServiceError> {
        if from == 0 || from > to {
            return Err(out_of_range(
                "a consistency proof needs 1 <= from <= to".into(),
            ));
        }
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let size = committed_size(&tx).await?;
        if to > size {
            return Err(out_of_range(format!(
                "to = {to} exceeds the tree's size, {size}"
            )));
        }
        let boundary = purged_before(&tx).await?;
        if from < boundary {
            return Err(purged(
                &format!("a consistency proof from size {from}"),
                boundary,
            ));
        }
        let proof = match tree::consistency_proof(&tx, from, to).await {
            Ok(proof) => proof,
            Err(error) => {
                let boundary = purged_before(&tx).await?;
                return Err(if from < boundary {
                    purged(&format!("a consistency proof from size {from}"), boundary)
                } else {
                    error.into()
                });
            }
        };
        tx.commit().await?;
        Ok(ConsistencyProof {
            from,
            to,
            proof: base64_all(&proof),
        })
    }

    /// A C2SP tlog-proof file for record `seq` against the latest
    /// checkpoint; its `extra` line carries the hashed record, so the file
    /// alone proves what was logged. That makes it a read of the record:
    /// recorded as `audit.read`, found or not, before it is answered.
    pub async fn event_proof(
        &self,
        who: &Authorized<ReadEvents>,
        seq: Seq,
    ) -> Result<String, ServiceError> {
        let outcome = self.tlog_proof(who, seq).await;
        let rows_read = match &outcome {
            Ok(_) => 1,
            Err(ServiceError::NotFound(_) | ServiceError::Purged(_)) => 0,
            Err(_) => return outcome,
        };
        self.ledger
            .record_read(
                who.principal(),
                "event_proof",
                json!({ "filter": { "seq": seq.value() }, "rows": rows_read }),
                "audit.read",
            )
            .await?;
        outcome
    }

    async fn tlog_proof(
        &self,
        who: &Authorized<ReadEvents>,
        seq: Seq,
    ) -> Result<String, ServiceError> {
        let checkpoint = self.latest_checkpoint(who).await?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        if seq.value() >= checkpoint.size {
            // Signing on demand waits out the checkpoint interval; the
            // background signer covers the event within it.
            return Err(if seq.value() < committed_size(&tx).await? {
                ServiceError::Unavailable(format!(
                    "event {} is not covered by a signed checkpoint yet; retry shortly",
                    seq.value()
                ))
            } else {
                ServiceError::NotFound("event")
            });
        }
        let Some(event) = events::by_seq(&tx, seq).await? else {
            return Err(missing_event(&tx, seq).await?);
        };
        let hashes = match tree::inclusion_proof(&tx, seq.value(), checkpoint.size).await {
            Ok(hashes) => hashes,
            Err(error) => return Err(missing_or(&tx, seq, error).await?),
        };
        tx.commit().await?;
        Ok(TlogProof {
            extra: Some(event.record),
            index: seq.value(),
            hashes,
            checkpoint: checkpoint.note,
        }
        .to_text())
    }

    /// The C2SP vkeys of the deployment's checkpoint keys, newest first.
    pub fn vkeys(&self) -> Vec<String> {
        self.checkpointer
            .keyring()
            .verifier_keys()
            .iter()
            .map(|k| k.to_vkey())
            .collect()
    }
}

/// Why record `seq` below the committed size is not there: purged by the
/// retention policy, or not found.
async fn missing_event(tx: &TenantTx<'_>, seq: Seq) -> Result<ServiceError, ServiceError> {
    let boundary = purged_before(tx).await?;
    Ok(if seq.value() < boundary {
        purged(&format!("seq {}", seq.value()), boundary)
    } else {
        ServiceError::NotFound("event")
    })
}

/// The error for a proof of `seq` that failed: purged if a purge has moved
/// the boundary past it meanwhile, else the failure itself.
async fn missing_or(
    tx: &TenantTx<'_>,
    seq: Seq,
    error: crate::store::StoreError,
) -> Result<ServiceError, ServiceError> {
    let boundary = purged_before(tx).await?;
    Ok(if seq.value() < boundary {
        purged(&format!("seq {}", seq.value()), boundary)
    } else {
        error.into()
    })
}
