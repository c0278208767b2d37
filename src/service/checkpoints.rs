//! Signed checkpoints: the deployment's keys, and the signer that turns each
//! tenant's new tree size into a C2SP checkpoint.
//!
//! A checkpoint is signed only after the new tree has been proven consistent
//! with the tenant's previous checkpoint, from stored hashes, with the same
//! verification code an auditor runs: Annal never signs two inconsistent
//! checkpoints. Signing happens at most once per `interval` per tenant, soon
//! after new events commit, and on demand (`sign_now`).
//!
//! Private keys stay in memory: never logged, never stored in the database.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tracing::Instrument;

use super::{ServiceError, SharedClock};
use crate::crypto::signing::NoteSigner;
use crate::ledger::{
    ChainHash, Checkpoint, TenantId, TreeHash, VerifierKey, tenant_origin, verify_consistency,
};
use crate::store::checkpoints::{self, StoredCheckpoint};
use crate::store::{Store, events, tree};

/// Default time between two checkpoints of one tenant.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Tenants signed concurrently by one process.
const CONCURRENCY: usize = 4;

/// The deployment's checkpoint keys, newest first. The newest signs; all are
/// published so that checkpoints signed before a rotation still verify.
#[derive(Debug)]
pub struct Keyring {
    signers: Vec<NoteSigner>,
}

/// Why a set of keys cannot sign this deployment's checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error(
        "no checkpoint signing key: create one with `annal keys signing generate --origin ORIGIN --out FILE` and pass it with --signing-key FILE"
    )]
    Empty,
    /// Keys with different names: a deployment has one origin.
    #[error(
        "signing keys name different origins ({0} and {1}); every key of a deployment carries its origin"
    )]
    MixedOrigins(String, String),
}

impl Keyring {
    /// A keyring from keys listed newest first.
    pub fn new(signers: Vec<NoteSigner>) -> Result<Keyring, KeyringError> {
        let first = signers.first().ok_or(KeyringError::Empty)?;
        let origin = first.verifier_key().name().to_owned();
        if let Some(other) = signers
            .iter()
            .map(|s| s.verifier_key().name().to_owned())
            .find(|name| *name != origin)
        {
            return Err(KeyringError::MixedOrigins(origin, other));
        }
        Ok(Keyring { signers })
    }

    /// The deployment origin: the name of every key.
    pub fn origin(&self) -> String {
        self.signer().verifier_key().name().to_owned()
    }

    /// The key that signs new checkpoints.
    pub fn signer(&self) -> &NoteSigner {
        // `new` refuses an empty list.
        &self.signers[0]
    }

    /// Every public key, newest first.
    pub fn verifier_keys(&self) -> Vec<VerifierKey> {
        self.signers.iter().map(NoteSigner::verifier_key).collect()
    }
}

/// Signs tenants' checkpoints, in the background and on demand.
#[derive(Clone)]
pub struct Checkpointer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keyring: Arc<Keyring>,
    clock: SharedClock,
    interval: Duration,
    dirty: Mutex<HashSet<TenantId>>,
    wake: Notify,
}

/// What a signing attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// A new checkpoint was stored.
    New(StoredCheckpoint),
    /// Nothing new since the latest checkpoint (if any).
    Current(Option<StoredCheckpoint>),
}

impl Signed {
    /// The latest checkpoint after the attempt.
    pub fn latest(self) -> Option<StoredCheckpoint> {
        match self {
            Signed::New(c) => Some(c),
            Signed::Current(c) => c,
        }
    }
}

impl Checkpointer {
    /// A signer over `store`; call [`Checkpointer::run`] to sign in the background.
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        clock: SharedClock,
        interval: Duration,
    ) -> Checkpointer {
        Checkpointer {
            inner: Arc::new(Inner {
                store,
                keyring,
                clock,
                interval,
                dirty: Mutex::new(HashSet::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// The deployment's keys.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.inner.keyring
    }

    /// Notes that `tenant` has committed events a checkpoint does not cover.
    pub fn mark(&self, tenant: TenantId) {
        if let Ok(mut dirty) = self.inner.dirty.lock() {
            dirty.insert(tenant);
        }
        self.inner.wake.notify_one();
    }

    /// Signs, forever: whenever tenants are marked, at most once per
    /// interval, measured from the start of one round to the next so that an
    /// event waits at most one interval plus a round's work.
    pub async fn run(self) {
        let this = &self;
        loop {
            self.inner.wake.notified().await;
            let started = tokio::time::Instant::now();
            let tenants: Vec<TenantId> = match self.inner.dirty.lock() {
                Ok(mut dirty) => dirty.drain().collect(),
                Err(_) => return,
            };
            futures_util::stream::iter(tenants)
                .for_each_concurrent(CONCURRENCY, |tenant| {
                    // Background work, not a request's: its lines name the job.
                    let span = tracing::info_span!("job", job = "checkpoint");
                    async move {
                        if let Err(error) = this.sign_now(tenant).await {
                            tracing::error!(tenant.id = %tenant, error = %error, "checkpoint not signed");
                            if matches!(error, ServiceError::Unavailable(_)) {
                                this.mark(tenant);
                            }
                        }
                    }
                    .instrument(span)
                })
                .await;
            tokio::time::sleep_until(started + self.inner.interval).await;
        }
    }

    /// Signs a checkpoint of the tenant's whole committed tree, unless the
    /// latest one already covers it.
    pub async fn sign_now(&self, tenant: TenantId) -> Result<Signed, ServiceError> {
        let inner = &self.inner;
        let mut conn = inner.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        tx.lock_checkpoints().await?;
        let latest = checkpoints::latest(&tx).await?;
        let Some((last_seq, chain_head)) = events::last(&tx).await? else {
            tx.commit().await?;
            return Ok(Signed::Current(latest));
        };
        let size = last_seq.value() + 1;
        if latest.as_ref().is_some_and(|c| c.size >= size) {
            tx.commit().await?;
            return Ok(Signed::Current(latest));
        }
        let root = tree::root(&tx, size).await?;
        if let Some(previous) = &latest {
            let proof = tree::consistency_proof(&tx, previous.size, size).await?;
            verify_consistency(previous.size, size, &proof, &previous.root, &root).map_err(
                |e| {
                    ServiceError::Internal(anyhow::anyhow!(
                        "refusing to sign size {size}: not consistent with the checkpoint of size {}: {e}",
                        previous.size
                    ))
                },
            )?;
        }
        let checkpoint = signed(&inner.keyring, tenant, size, root, chain_head)?;
        let stored = StoredCheckpoint {
            size,
            root,
            chain_head,
            note: checkpoint,
            signed_at: inner.clock.now(),
        };
        let inserted = checkpoints::insert(&tx, &stored).await?;
        tx.commit().await?;
        if inserted {
            tracing::debug!(tenant.id = %tenant, tree.size = size, "checkpoint signed");
            Ok(Signed::New(stored))
        } else {
            // Another process signed this size first, from the same tree.
            let mut conn = inner.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            let existing = checkpoints::at_size(&tx, size).await?;
            tx.commit().await?;
            Ok(Signed::Current(existing))
        }
    }
}

fn signed(
    keyring: &Keyring,
    tenant: TenantId,
    size: u64,
    root: TreeHash,
    chain_head: ChainHash,
) -> Result<String, ServiceError> {
    let checkpoint = Checkpoint {
        origin: tenant_origin(&keyring.origin(), tenant),
        size,
        root,
        chain_head,
    };
    let signed = keyring
        .signer()
        .sign_checkpoint(&checkpoint)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("signing a checkpoint: {e}")))?;
    Ok(signed.to_text())
}
