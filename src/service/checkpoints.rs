//! Signed checkpoints: the deployment's keys, and the signer that turns each
//! tenant's new tree size into a C2SP checkpoint.
//!
//! A checkpoint is signed only after the new tree has been proven consistent
//! with the tenant's previous checkpoint, from stored hashes, with the same
//! verification code an auditor runs: Annal never signs two inconsistent
//! checkpoints, and never under another origin than the tenant's latest
//! checkpoint: a changed origin would break every bundle spanning the
//! change. The background signer signs at most once per `interval` per
//! tenant, soon after new events commit; requests signing on demand
//! (`sign_on_demand`) add at most one more per interval.
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
    ChainHash, Checkpoint, CheckpointError, MerkleError, SignedCheckpoint, TenantId, TreeHash,
    VerifierKey, tenant_origin, verify_consistency,
};
use crate::store::checkpoints::{self, StoredCheckpoint};
use crate::store::tree::{self, TreeError};
use crate::store::{Store, StoreError, events};

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
    /// The keys' name cannot start a checkpoint's origin line.
    #[error(
        "the signing keys' name {0:?} cannot be a checkpoint origin: it must be free of spaces, '+' and control characters; generate a key with another --origin"
    )]
    InvalidOrigin(String),
}

impl Keyring {
    /// A keyring from keys listed newest first. Refuses keys whose name
    /// cannot be the origin of a checkpoint, so that a deployment that
    /// could never sign does not start.
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
        // Tenant ids are lowercase hex and hyphens, so one tenant stands
        // for all.
        let any_tenant = TenantId::from_uuid(uuid::Uuid::nil());
        Checkpoint::new(
            tenant_origin(&origin, any_tenant),
            0,
            TreeHash::from_bytes([0; 32]),
            ChainHash::genesis(any_tenant),
        )
        .map_err(|_| KeyringError::InvalidOrigin(origin))?;
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

/// Why a checkpoint was not signed. Only a database failure is worth
/// retrying; the refusals stand until an operator acts.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The stored tree does not extend the latest checkpoint: signing it
    /// would attest two inconsistent histories.
    #[error(
        "refusing to sign size {size}: not consistent with the checkpoint of size {previous}: {reason}"
    )]
    Inconsistent {
        /// The size that would have been signed.
        size: u64,
        /// The latest checkpoint's size.
        previous: u64,
        /// What the consistency check found.
        reason: MerkleError,
    },
    /// The latest checkpoint names another origin than this process signs
    /// with: auditors follow a log by its origin, so a bundle spanning the
    /// change would not verify.
    #[error(
        "refusing to sign: the tenant's latest checkpoint has origin {stored}, this process would sign as {ours}; a deployment's origin cannot change (serve with keys named as before)"
    )]
    OriginChanged {
        /// The latest checkpoint's origin.
        stored: String,
        /// The origin this process signs with.
        ours: String,
    },
    /// The latest checkpoint's stored note is not a checkpoint, so its
    /// origin cannot be compared.
    #[error("refusing to sign: the stored checkpoint of size {size} does not parse: {reason}")]
    UnreadableLatest {
        /// Its size.
        size: u64,
        /// Why it does not parse.
        reason: CheckpointError,
    },
    /// The checkpoint could not be made or signed.
    #[error("signing a checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignError {
    /// Whether trying again later may succeed: a database failure may pass,
    /// a refusal does not.
    pub fn is_retryable(&self) -> bool {
        // Corrupt rows stay corrupt: retrying them would only repeat the
        // error every interval.
        matches!(
            self,
            SignError::Store(StoreError::Pool(_) | StoreError::Postgres(_))
        )
    }
}

impl From<SignError> for ServiceError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::Store(e) => e.into(),
            refused => ServiceError::Internal(refused.into()),
        }
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
    /// Nothing new was signed: the latest checkpoint (if any) covers the
    /// committed tree or, on demand, was signed less than an interval ago.
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

/// When to sign a tenant whose committed tree is not covered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Now.
    Always,
    /// Only if the latest checkpoint is at least an interval old.
    Due,
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
    /// event waits at most one interval plus a round's work. A tenant whose
    /// signing failed in the database is tried again the next round, so a
    /// passing failure leaves no committed event unsigned; a refusal is
    /// not retried (the next commit marks the tenant again).
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
                        if let Err(error) = this.sign(tenant, When::Always).await {
                            tracing::error!(tenant.id = %tenant, error = %error, "checkpoint not signed");
                            if error.is_retryable() {
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
        Ok(self.sign(tenant, When::Always).await?)
    }

    /// What a request asking for a fresh checkpoint gets: like
    /// [`Checkpointer::sign_now`], but when the latest checkpoint was signed
    /// less than an interval ago it is returned as it is, so requests cannot
    /// make a tenant sign more than once per interval. Events it does not
    /// cover are the background signer's, within the interval.
    pub async fn sign_on_demand(&self, tenant: TenantId) -> Result<Signed, ServiceError> {
        Ok(self.sign(tenant, When::Due).await?)
    }

    async fn sign(&self, tenant: TenantId, when: When) -> Result<Signed, SignError> {
        let inner = &self.inner;
        let mut conn = inner.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        tx.lock_checkpoints().await?;
        let latest = checkpoints::latest(&tx).await?;
        if when == When::Due && latest.as_ref().is_some_and(|c| self.is_recent(c)) {
            tx.commit().await?;
            // The background signer covers whatever is newer, within the
            // interval, even if no commit of this process marks the tenant.
            self.mark(tenant);
            return Ok(Signed::Current(latest));
        }
        let Some(events::Head {
            seq: last_seq,
            chain_hash: chain_head,
            ..
        }) = events::last(&tx).await?
        else {
            tx.commit().await?;
            return Ok(Signed::Current(latest));
        };
        let size = last_seq.value() + 1;
        if latest.as_ref().is_some_and(|c| c.size >= size) {
            tx.commit().await?;
            return Ok(Signed::Current(latest));
        }
        let origin = tenant_origin(&inner.keyring.origin(), tenant);
        if let Some(previous) = &latest {
            check_origin(previous, &origin)?;
        }
        let root = match tree::compact_range(&tx, size).await {
            Ok(range) => range.root(),
            Err(TreeError::MissingNodes { .. }) => {
                // A tenant written before schema V2 that has not appended
                // since: build its tree now, as its next append would.
                let lock = tx.lock_chain().await?;
                tracing::warn!(
                    tenant.id = %tenant,
                    tree.size = size,
                    "building the Merkle tree of a tenant written before schema V2"
                );
                tree::backfill(&lock, size).await?.root()
            }
            Err(TreeError::Store(error)) => return Err(error.into()),
        };
        if let Some(previous) = &latest {
            let proof = tree::consistency_proof(&tx, previous.size, size).await?;
            verify_consistency(previous.size, size, &proof, &previous.root, &root).map_err(
                |reason| SignError::Inconsistent {
                    size,
                    previous: previous.size,
                    reason,
                },
            )?;
        }
        let checkpoint = Checkpoint::new(origin, size, root, chain_head)?;
        let stored = StoredCheckpoint {
            size,
            root,
            chain_head,
            note: inner
                .keyring
                .signer()
                .sign_checkpoint(&checkpoint)?
                .to_text(),
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

    /// Whether `checkpoint` was signed less than an interval ago (by the
    /// injected clock). One signed more than an interval "in the future", by
    /// a process whose clock runs ahead, does not count: clock skew must not
    /// hold signing off.
    fn is_recent(&self, checkpoint: &StoredCheckpoint) -> bool {
        let interval =
            chrono::TimeDelta::from_std(self.inner.interval).unwrap_or(chrono::TimeDelta::MAX);
        let age = self
            .inner
            .clock
            .now()
            .signed_duration_since(checkpoint.signed_at);
        age < interval && age > -interval
    }
}

/// Refuses to sign under another origin than the tenant's latest checkpoint.
fn check_origin(latest: &StoredCheckpoint, origin: &str) -> Result<(), SignError> {
    let stored =
        SignedCheckpoint::parse(&latest.note).map_err(|reason| SignError::UnreadableLatest {
            size: latest.size,
            reason,
        })?;
    let stored = &stored.checkpoint().origin;
    if stored != origin {
        return Err(SignError::OriginChanged {
            stored: stored.clone(),
            ours: origin.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_refuses_keys_whose_name_cannot_be_an_origin() {
        // A valid key name (notes forbid only ASCII controls below space)
        // that a checkpoint's origin line may not carry.
        let signer = NoteSigner::generate("audit\u{7f}example").unwrap();
        let error = Keyring::new(vec![signer]).unwrap_err();
        assert!(matches!(error, KeyringError::InvalidOrigin(_)), "{error:?}");
        assert!(error.to_string().contains("cannot be a checkpoint origin"));
    }

    #[test]
    fn a_keyring_accepts_a_deployment_origin() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let keyring = Keyring::new(vec![signer]).unwrap();
        assert_eq!(keyring.origin(), "audit.example.com");
    }

    #[test]
    fn only_database_failures_are_retried() {
        assert!(!SignError::Store(StoreError::Corrupt("gap".into())).is_retryable());
        let refusals = [
            SignError::OriginChanged {
                stored: "a/t".into(),
                ours: "b/t".into(),
            },
            SignError::Inconsistent {
                size: 2,
                previous: 1,
                reason: MerkleError::TreeFull,
            },
            SignError::Checkpoint(CheckpointError::InvalidOrigin),
        ];
        for refusal in refusals {
            assert!(!refusal.is_retryable(), "{refusal}");
        }
    }
}
