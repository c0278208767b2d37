//! Verifying a `.tlog-proof` file (C2SP tlog-proof, `docs/FORMAT.md`): one
//! record, the inclusion proof of its leaf, and the signed checkpoint the
//! proof leads to.
//!
//! Owns the checks that make the file's unauthenticated parts trustworthy:
//! the checkpoint's signature, the record's tenant against the checkpoint's
//! origin, its seq against the proof's index, and the inclusion proof
//! against the signed root. Must never trust the extra data (the record)
//! before all of those hold.

use serde::{Serialize, Serializer};

use super::Failure;
use super::bundle::{BundleOptions, CheckpointProblem, TrustedCheckpointStatus, open_checkpoint};
use crate::ledger::{
    Checkpoint, Header, NoteError, Seq, TenantId, TlogProof, TreeHash, leaf_hash, verify_inclusion,
};

/// What a verified proof shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofReport {
    /// The record's seq (the proof's index).
    pub seq: Seq,
    /// The record's tenant.
    pub tenant_id: TenantId,
    /// The checkpoint's origin, `<deployment origin>/<tenant id>`.
    pub origin: String,
    /// The size of the checkpoint the record is proven in.
    pub checkpoint_size: u64,
    /// That checkpoint's root.
    #[serde(serialize_with = "base64_hash")]
    pub checkpoint_root: TreeHash,
    /// The trusted keys that signed the checkpoint (`<name>+<key id>`);
    /// empty when no keys were given and the trusted checkpoint vouched
    /// for it instead.
    pub signing_keys: Vec<String>,
    /// Whether a trusted checkpoint was given (and then matched).
    pub trusted_checkpoint: TrustedCheckpointStatus,
}

fn base64_hash<S: Serializer>(hash: &TreeHash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hash.to_base64())
}

/// Why a proof file does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofFailure {
    /// Neither a trusted key nor a trusted checkpoint was given.
    #[error("nothing to trust: give at least one trusted key or a trusted checkpoint")]
    NoTrustAnchor,
    /// The text is not a tlog-proof.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The proof carries no `extra` line, so no record to check.
    #[error("the proof carries no record (its extra line is missing)")]
    MissingRecord,
    /// The checkpoint in the proof does not parse.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A trusted key's signature on the checkpoint does not verify.
    #[error("checkpoint signature: {0}")]
    BadSignature(NoteError),
    /// No trusted key signed the checkpoint.
    #[error("the checkpoint is not signed by any trusted key")]
    NoTrustedSignature,
    /// The record's bytes or seq are wrong.
    #[error("seq {seq}: {failure}")]
    Record {
        /// The proof's index.
        seq: Seq,
        /// What is wrong.
        failure: Failure,
    },
    /// The checkpoint is not the log of the record's tenant.
    #[error("the checkpoint's origin {origin} is not the log of tenant {tenant}")]
    WrongOrigin {
        /// The checkpoint's origin.
        origin: String,
        /// The record's tenant.
        tenant: TenantId,
    },
    /// The inclusion proof does not lead from the record's leaf to the
    /// signed root.
    #[error("seq {seq}: the inclusion proof fails: {reason}")]
    InclusionInvalid {
        /// The proof's index.
        seq: Seq,
        /// Why it fails.
        reason: String,
    },
    /// The trusted checkpoint is not a signed checkpoint.
    #[error("the trusted checkpoint is malformed: {0}")]
    TrustedCheckpointMalformed(String),
    /// The trusted checkpoint is not validly signed by a trusted key.
    #[error("the trusted checkpoint: {0}")]
    TrustedCheckpointUnsigned(NoteError),
    /// The trusted checkpoint is of another log, or states another root or
    /// chain head for the same size.
    #[error("the proof's checkpoint (size {size}) disagrees with the trusted checkpoint: {what}")]
    TrustedCheckpointMismatch {
        /// The common size.
        size: u64,
        /// What differs.
        what: &'static str,
    },
    /// The trusted checkpoint has another size than the proof's, so the
    /// two cannot be compared.
    #[error(
        "the trusted checkpoint has size {size}, the proof's checkpoint {proof_size}: ask for an inclusion proof at tree size {size}"
    )]
    TrustedCheckpointUnlinked {
        /// The trusted checkpoint's size.
        size: u64,
        /// The proof's checkpoint's size.
        proof_size: u64,
    },
}

impl ProofFailure {
    /// A stable machine-readable name, e.g. `inclusion_invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            ProofFailure::NoTrustAnchor => "no_trust_anchor",
            ProofFailure::Malformed(_) => "malformed_proof",
            ProofFailure::MissingRecord => "missing_record",
            ProofFailure::MalformedCheckpoint(_) => "malformed_checkpoint",
            ProofFailure::BadSignature(_) => "bad_signature",
            ProofFailure::NoTrustedSignature => "no_trusted_signature",
            ProofFailure::Record { failure, .. } => failure.code(),
            ProofFailure::WrongOrigin { .. } => "wrong_origin",
            ProofFailure::InclusionInvalid { .. } => "inclusion_invalid",
            ProofFailure::TrustedCheckpointMalformed(_) => "trusted_checkpoint_malformed",
            ProofFailure::TrustedCheckpointUnsigned(_) => "trusted_checkpoint_unsigned",
            ProofFailure::TrustedCheckpointMismatch { .. } => "trusted_checkpoint_mismatch",
            ProofFailure::TrustedCheckpointUnlinked { .. } => "trusted_checkpoint_unlinked",
        }
    }

    /// The record's seq, when the failure concerns it.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            ProofFailure::Record { seq, .. } | ProofFailure::InclusionInvalid { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        }
    }

    /// Whether the inputs could not be used at all (no anchor of trust, or
    /// a trusted checkpoint that is not a checkpoint), as opposed to a
    /// proof that does not verify.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            ProofFailure::NoTrustAnchor | ProofFailure::TrustedCheckpointMalformed(_)
        )
    }
}

/// Verifies a tlog-proof file's text.
///
/// Checks, in order: the file parses and carries the record in `extra`; the
/// checkpoint parses and, when `options.vkeys` is not empty, is signed by at
/// least one of them; the record is a canonical header; the checkpoint's
/// origin is `<something>/<the record's tenant>`; the proof's index is the
/// record's seq; the inclusion proof leads from `SHA-256(0x00 || record)`
/// at that index to the checkpoint's root. A trusted checkpoint, when
/// given, must be of the same log and size and state the same root and
/// chain head; without keys it is what vouches for the proof's checkpoint.
pub fn verify_tlog_proof(text: &str, options: &BundleOptions) -> Result<ProofReport, ProofFailure> {
    if options.vkeys.is_empty() && options.trusted_checkpoint.is_none() {
        return Err(ProofFailure::NoTrustAnchor);
    }
    let trusted = match &options.trusted_checkpoint {
        None => None,
        Some(text) => Some(open_checkpoint(text, &options.vkeys).map_err(
            |problem| match problem {
                CheckpointProblem::Malformed(e) => ProofFailure::TrustedCheckpointMalformed(e),
                CheckpointProblem::BadSignature(e) => ProofFailure::TrustedCheckpointUnsigned(e),
                CheckpointProblem::NoTrustedSignature => {
                    ProofFailure::TrustedCheckpointUnsigned(NoteError::NoTrustedSignature)
                }
            },
        )?),
    };
    let proof = TlogProof::parse(text).map_err(|e| ProofFailure::Malformed(e.to_string()))?;
    let record = proof.extra.as_deref().ok_or(ProofFailure::MissingRecord)?;
    let (checkpoint, signing_keys) =
        open_checkpoint(&proof.checkpoint, &options.vkeys).map_err(|problem| match problem {
            CheckpointProblem::Malformed(e) => ProofFailure::MalformedCheckpoint(e),
            CheckpointProblem::BadSignature(e) => ProofFailure::BadSignature(e),
            CheckpointProblem::NoTrustedSignature => ProofFailure::NoTrustedSignature,
        })?;
    let seq = Seq::new(proof.index);
    let header = Header::decode(record).map_err(|e| ProofFailure::Record {
        seq,
        failure: Failure::MalformedRecord(e),
    })?;
    let tenant = header.tenant_id;
    let names_tenant = checkpoint
        .origin
        .rsplit_once('/')
        .is_some_and(|(_, last)| last == tenant.to_string());
    if !names_tenant {
        return Err(ProofFailure::WrongOrigin {
            origin: checkpoint.origin,
            tenant,
        });
    }
    if header.seq != seq {
        return Err(ProofFailure::Record {
            seq,
            failure: Failure::SeqMismatch {
                in_record: header.seq,
            },
        });
    }
    let leaf = TreeHash::from(leaf_hash(record));
    verify_inclusion(
        proof.index,
        checkpoint.size,
        &leaf,
        &proof.hashes,
        &checkpoint.root,
    )
    .map_err(|e| ProofFailure::InclusionInvalid {
        seq,
        reason: e.to_string(),
    })?;
    let trusted_checkpoint = match trusted {
        None => TrustedCheckpointStatus::NotGiven,
        Some((trusted, _)) => compare_with_trusted(&checkpoint, &trusted)?,
    };
    Ok(ProofReport {
        seq,
        tenant_id: tenant,
        origin: checkpoint.origin,
        checkpoint_size: checkpoint.size,
        checkpoint_root: checkpoint.root,
        signing_keys,
        trusted_checkpoint,
    })
}

/// The proof's checkpoint must be the trusted one: same log, size, root and
/// chain head.
fn compare_with_trusted(
    checkpoint: &Checkpoint,
    trusted: &Checkpoint,
) -> Result<TrustedCheckpointStatus, ProofFailure> {
    let size = checkpoint.size;
    if trusted.size != size {
        return Err(ProofFailure::TrustedCheckpointUnlinked {
            size: trusted.size,
            proof_size: size,
        });
    }
    let what = if trusted.origin != checkpoint.origin {
        "origin"
    } else if trusted.root != checkpoint.root {
        "root"
    } else if trusted.chain_head != checkpoint.chain_head {
        "chain head"
    } else {
        return Ok(TrustedCheckpointStatus::Matched { size });
    };
    Err(ProofFailure::TrustedCheckpointMismatch { size, what })
}
