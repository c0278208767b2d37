//! Export bundles: a tenant's records with their payloads, the signed
//! checkpoints over them and the consistency proofs between those, as one
//! JSON Lines file an auditor verifies offline (`docs/FORMAT.md`, "Export
//! bundle").
//!
//! Owns the reading and the verification of a bundle, line by line in
//! constant memory, trusting nothing in it but what a trusted key signed or
//! the auditor's own saved checkpoint states; and re-exports the
//! [`BundleWriter`] that produces one. Must never hold more of a bundle in
//! memory than a bounded read-ahead (a few MiB and one line), never report
//! any failure but the first one in line order, and never accept a bundle
//! without reporting exactly what anchored its trust and what became of the
//! records before its first one (purged by the retention policy, or just
//! not exported).
//!
//! A failure is found as soon as its line is read, even if the input then
//! pauses, but [`verify_bundle`] returns it only once a read of the input
//! already under way comes back (input ends, fails or delivers more).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::Failure;
use crate::ledger::{
    ChainHash, Checkpoint, CompactRange, Header, LeafHash, NoteError, Payload, Salt, Seq,
    SignedCheckpoint, TenantId, TreeHash, VerifierKey, chain_hash, commit_payload, decode_payload,
    empty_root, leaf_hash, verify_consistency,
};

pub use super::bundle_writer::BundleWriter;

/// The only bundle format version, the header's `annal_export` value.
pub const BUNDLE_VERSION: u64 = 1;

/// The longest line a verifier reads, newline included. It bounds the
/// verifier's memory; the server's request limits keep every real record far
/// below it.
pub const MAX_LINE_LEN: usize = 64 << 20;

/// Most `vkey` lines a bundle may carry.
pub const MAX_PUBLISHED_VKEYS: usize = 64;

/// The action of the record Annal appends to a tenant's log after each
/// purge, announcing the new purge boundary in its payload's `after`
/// (`docs/FORMAT.md`, "Retention").
pub const PURGE_RECORD_ACTION: &str = "retention.purged";

/// What a bundle verification trusts: the auditor's keys and, optionally, a
/// checkpoint they saved earlier. Nothing in the bundle itself is trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleOptions {
    /// The log's public keys the auditor trusts. Every checkpoint in the
    /// bundle must carry a valid signature by at least one of them;
    /// signatures by other keys are ignored.
    pub vkeys: Vec<VerifierKey>,
    /// The text of a signed checkpoint the auditor saved earlier. The
    /// bundle must agree with it: its root where the bundle covers its size,
    /// or a consistency proof from it when it is older than the bundle.
    /// Without any [`vkeys`](Self::vkeys) it is the only anchor of trust,
    /// and every record must lie within it.
    pub trusted_checkpoint: Option<String>,
    /// Whether the bundle must account for every record from seq 0: a
    /// bundle that starts later must then say that the records before it
    /// were purged by the retention policy. Without it, a bundle that starts
    /// later is a partial export whose earlier records are simply not
    /// verified.
    pub require_complete: bool,
}

/// How the auditor's trusted checkpoint relates to the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TrustedCheckpointStatus {
    /// No trusted checkpoint was given.
    NotGiven,
    /// Its size lies within the bundle and its root and chain head equal
    /// the ones recomputed from the records.
    Matched {
        /// Its tree size.
        size: u64,
    },
    /// It is older than the bundle's first record, and a consistency proof
    /// in the bundle links it to the bundle's last checkpoint.
    Linked {
        /// Its tree size.
        size: u64,
    },
    /// It is older than the bundle's purge boundary: the records that would
    /// link it were deleted by the retention policy, so it could NOT be
    /// linked to the bundle. Not a failure, but it vouches for nothing
    /// here: the auditor should save a newer checkpoint.
    PredatesPurge {
        /// Its tree size.
        size: u64,
    },
}

/// Records `0..size` of the tenant were deleted by its retention policy, as
/// the bundle's `purged` line says and its first checkpoint attests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PurgedPrefix {
    /// The purge boundary: records `0..=size - 1` are gone, and the bundle
    /// starts at seq `size`.
    pub size: u64,
    /// The size of the bundle's first checkpoint, whose signed root and
    /// chain head prove the start line's compact range and chain hash for
    /// the purged prefix.
    pub attested_by: u64,
    /// The seq of the first [`PURGE_RECORD_ACTION`] record in the bundle
    /// that announces this boundary, with the start line's chain hash and
    /// compact range: the purge is then recorded in the signed log, not only
    /// stated by the `purged` line. `None` when the bundle holds no such
    /// record (its payload withheld, the purge interrupted before its record
    /// was appended, or the bundle ending before it): not a failure, but
    /// then that the records were purged by policy rests on the server's
    /// word alone.
    pub recorded_at: Option<u64>,
}

/// What a successful bundle verification covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The checkpoint origin, `<deployment origin>/<tenant id>`.
    pub origin: String,
    /// The tenant every record belongs to.
    pub tenant_id: TenantId,
    /// The first record's seq.
    pub from_seq: Seq,
    /// The last record's seq.
    pub to_seq: Seq,
    /// Records whose bytes, leaf, chain link and Merkle position were
    /// checked (all of them).
    pub records_checked: u64,
    /// Records whose payload and salt came with them and matched the
    /// header's commitment.
    pub payloads_checked: u64,
    /// Records whose payload was withheld or erased: their header is
    /// verified, their payload cannot be.
    pub payloads_withheld: u64,
    /// Checkpoints whose root and chain head equal the recomputed ones
    /// (and whose signature verified, when keys were given).
    pub checkpoints_verified: u64,
    /// The tree size of the last checkpoint (`to_seq + 1`).
    pub last_checkpoint_size: u64,
    /// Its Merkle root.
    #[serde(serialize_with = "base64_hash")]
    pub last_checkpoint_root: TreeHash,
    /// Its chain head: the chain hash of `to_seq`.
    pub chain_head: ChainHash,
    /// The trusted keys that signed the bundle's checkpoints, as
    /// `<name>+<key id>`. Empty when no keys were given: then only the
    /// trusted checkpoint anchors the bundle.
    pub signing_keys: Vec<String>,
    /// The keys the bundle says the server publishes (well-formed vkeys, at
    /// most [`MAX_PUBLISHED_VKEYS`]). Informational only and NOT verified:
    /// anyone can write these lines; only `--vkey` keys are trusted.
    pub published_vkeys: Vec<String>,
    /// How the auditor's trusted checkpoint relates to the bundle.
    pub trusted_checkpoint: TrustedCheckpointStatus,
    /// The records before the bundle that the retention policy purged, when
    /// its `purged` line says so. `None` with `from_seq > 0` means a partial
    /// export: records `0..from_seq` were neither exported nor verified.
    pub purged: Option<PurgedPrefix>,
    /// The size a consistency line before the end links from, when no
    /// trusted checkpoint of that size was given: that proof was NOT
    /// checked (pass the checkpoint with `--trusted-checkpoint` to check it).
    pub unverified_link_from: Option<u64>,
}

fn base64_hash<S: Serializer>(hash: &TreeHash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hash.to_base64())
}

/// What is wrong with a bundle. Hashes "signed" come from a checkpoint,
/// "calculated" ones from the records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleFailureKind {
    /// Reading the input failed.
    #[error("cannot read the bundle: {0}")]
    Io(String),
    /// Neither a trusted key nor a trusted checkpoint was given, so nothing
    /// could anchor the bundle.
    #[error("nothing to trust: give at least one trusted key or a trusted checkpoint")]
    NoTrustAnchor,
    /// The trusted checkpoint is not a signed checkpoint.
    #[error("the trusted checkpoint is malformed: {0}")]
    TrustedCheckpointMalformed(String),
    /// The trusted checkpoint is not validly signed by a trusted key.
    #[error("the trusted checkpoint: {0}")]
    TrustedCheckpointUnsigned(NoteError),
    /// The trusted checkpoint is of another log.
    #[error("the trusted checkpoint is of log {trusted}, the bundle of {bundle}")]
    TrustedCheckpointOrigin {
        /// The bundle's origin.
        bundle: String,
        /// The trusted checkpoint's origin.
        trusted: String,
    },
    /// The trusted checkpoint is newer than the bundle's last record.
    #[error(
        "the trusted checkpoint (size {size}) is newer than the bundle, which ends at size {bundle_size}: export up to at least seq {last}",
        last = size - 1
    )]
    TrustedCheckpointNewer {
        /// The trusted checkpoint's size.
        size: u64,
        /// The size the bundle ends at.
        bundle_size: u64,
    },
    /// The records give another root or chain head at the trusted
    /// checkpoint's size than the trusted checkpoint states.
    #[error("the records disagree with the trusted checkpoint at size {size}: its {what} differs")]
    TrustedCheckpointMismatch {
        /// The trusted checkpoint's size.
        size: u64,
        /// `root` or `chain head`.
        what: &'static str,
    },
    /// The consistency proof from the trusted checkpoint to the bundle does
    /// not verify: the log was rewritten since the auditor saved it.
    #[error(
        "the bundle is not consistent with the trusted checkpoint (size {size}): the proof to size {to} fails: {reason}"
    )]
    TrustedCheckpointInconsistent {
        /// The trusted checkpoint's size.
        size: u64,
        /// The bundle checkpoint the proof leads to.
        to: u64,
        /// Why the proof fails.
        reason: String,
    },
    /// The trusted checkpoint is older than the bundle and no consistency
    /// line links it.
    #[error(
        "the trusted checkpoint (size {size}) is older than the bundle's first record and the bundle has no consistency proof from it: export again with trusted_size={size}"
    )]
    TrustedCheckpointUnlinked {
        /// The trusted checkpoint's size.
        size: u64,
    },
    /// Without trusted keys, a record lies beyond the trusted checkpoint,
    /// so nothing trusted covers it.
    #[error(
        "without --vkey only the trusted checkpoint (size {size}) anchors trust, and this record is beyond it"
    )]
    BeyondTrustedCheckpoint {
        /// The trusted checkpoint's size.
        size: u64,
    },
    /// The bundle stops before its end line, or its last line has no
    /// newline.
    #[error("the bundle is truncated: {0}")]
    Truncated(&'static str),
    /// A line is longer than [`MAX_LINE_LEN`].
    #[error("the line is longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// A line is not a bundle line: not JSON, an unknown or missing key, a
    /// wrong type, bad base64 or hex.
    #[error("malformed line: {0}")]
    MalformedLine(String),
    /// A line of a kind that may not appear here.
    #[error("unexpected {found} line: expected {expected}")]
    UnexpectedLine {
        /// The kind of line found.
        found: &'static str,
        /// What may appear here.
        expected: &'static str,
    },
    /// The header's `annal_export` is not a version this verifier knows.
    #[error("unsupported bundle version {0} (this verifier reads version {BUNDLE_VERSION})")]
    UnsupportedVersion(u64),
    /// The header is inconsistent.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The start line does not fit the header or the tenant.
    #[error("bad start line: {0}")]
    BadStart(String),
    /// The `purged` line does not fit the header.
    #[error("bad purged line: {0}")]
    BadPurge(String),
    /// The `purged` line names a checkpoint to attest the purge boundary,
    /// but the bundle's first checkpoint is of another size.
    #[error("{}", purge_unattested(*attested_by, *first_checkpoint))]
    PurgeUnattested {
        /// The size the `purged` line names.
        attested_by: u64,
        /// The size of the bundle's first checkpoint, or `None` when records
        /// go past `attested_by` before any checkpoint.
        first_checkpoint: Option<u64>,
    },
    /// A [`PURGE_RECORD_ACTION`] record contradicts the purge boundary the
    /// bundle starts at: it announces that boundary with another chain hash
    /// or compact range than the start line, or a later boundary, which an
    /// export (starting at the newest boundary) never precedes.
    #[error("{}", purge_record_mismatch(*boundary, *recorded, *field))]
    PurgeRecordMismatch {
        /// The bundle's purge boundary, the `purged` line's size.
        boundary: u64,
        /// The boundary size the record announces.
        recorded: u64,
        /// When the sizes are equal, the field of the record's boundary
        /// that differs from the start line (`chain_hash` or
        /// `compact_range`); `None` when the record's boundary is later.
        field: Option<&'static str>,
    },
    /// Verification was asked to cover every record from seq 0, but the
    /// bundle starts later and says nothing of the records before it.
    #[error(
        "records 0..={last} are neither in this bundle nor attested as purged",
        last = from_seq.saturating_sub(1)
    )]
    Incomplete {
        /// The bundle's first seq.
        from_seq: u64,
    },
    /// A record is missing: the next record line has a later seq.
    #[error("gap: this record is missing, the next record line has seq {found}")]
    Gap {
        /// The seq that came instead.
        found: Seq,
    },
    /// The record's seq repeats the previous one.
    #[error("seq appears more than once")]
    DuplicateSeq,
    /// The record's seq is lower than the previous one.
    #[error("out of order: expected seq {expected}")]
    OutOfOrder {
        /// The seq that should have come.
        expected: Seq,
    },
    /// A record beyond the header's range.
    #[error("the header's range ends at seq {to_seq}")]
    RecordOutOfRange {
        /// The header's last seq.
        to_seq: Seq,
    },
    /// A record's bytes, tenant or payload are wrong.
    #[error(transparent)]
    Record(Failure),
    /// A checkpoint's size is beyond the records present: records are
    /// missing before it.
    #[error("checkpoint of size {size} follows only {records_end} records: records are missing")]
    CheckpointBeyondRecords {
        /// The checkpoint's size.
        size: u64,
        /// The tree size the records reach.
        records_end: u64,
    },
    /// A checkpoint that is not right after its last record, or not larger
    /// than the previous checkpoint.
    #[error("checkpoint of size {size} is misplaced: the records reach size {records_end}")]
    MisplacedCheckpoint {
        /// The checkpoint's size.
        size: u64,
        /// The tree size the records reach.
        records_end: u64,
    },
    /// A checkpoint note that does not parse, or states another size than
    /// its line.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A checkpoint of another log.
    #[error("checkpoint origin {found} is not the bundle's {expected}")]
    WrongOrigin {
        /// The bundle's origin.
        expected: String,
        /// The checkpoint's.
        found: String,
    },
    /// A signature by a trusted key does not verify, or a trusted key
    /// signed twice.
    #[error("checkpoint signature: {0}")]
    BadSignature(NoteError),
    /// No trusted key signed the checkpoint.
    #[error("the checkpoint of size {size} is not signed by any trusted key")]
    NoTrustedSignature {
        /// The checkpoint's size.
        size: u64,
    },
    /// The records give another Merkle root than the checkpoint signs.
    #[error(
        "records {first}..={last} do not match the checkpoint of size {size}: signed root {signed}, calculated {calculated}",
        last = size.saturating_sub(1),
        signed = signed.to_base64(),
        calculated = calculated.to_base64()
    )]
    RootMismatch {
        /// The first seq since the previous verified checkpoint (or the
        /// start line's size).
        first: u64,
        /// The checkpoint's size.
        size: u64,
        /// The root the checkpoint signs.
        signed: TreeHash,
        /// The root of the records.
        calculated: TreeHash,
    },
    /// The records give another chain head than the checkpoint signs.
    #[error(
        "the chain of records {first}..={last} does not match the checkpoint of size {size}: signed chain head {signed}, calculated {calculated}",
        last = size.saturating_sub(1)
    )]
    ChainHeadMismatch {
        /// The first seq since the previous verified checkpoint.
        first: u64,
        /// The checkpoint's size.
        size: u64,
        /// The chain head the checkpoint signs.
        signed: ChainHash,
        /// The chain hash recomputed from the records.
        calculated: ChainHash,
    },
    /// A checkpoint after the first is not followed by its consistency
    /// proof.
    #[error("the consistency proof from size {from} to {to} is missing")]
    MissingConsistency {
        /// The previous checkpoint's size.
        from: u64,
        /// This checkpoint's size.
        to: u64,
    },
    /// A consistency line for other sizes than the checkpoints around it
    /// call for.
    #[error("a consistency line from {from} to {to} where {expected} belongs")]
    MisplacedConsistency {
        /// As stated.
        from: u64,
        /// As stated.
        to: u64,
        /// What belongs there.
        expected: String,
    },
    /// A consistency proof between two signed checkpoints does not verify:
    /// the log was rewritten between them.
    #[error("the consistency proof from size {from} to {to} fails: {reason}")]
    ConsistencyInvalid {
        /// The earlier size.
        from: u64,
        /// The later size.
        to: u64,
        /// Why it fails.
        reason: String,
    },
    /// Records follow the last checkpoint: no signature covers them.
    #[error(
        "records after the last checkpoint (size {last_checkpoint}) are not covered by any signature"
    )]
    UnsignedRecords {
        /// The last checkpoint's size.
        last_checkpoint: u64,
    },
    /// The bundle has records but no checkpoint.
    #[error("the bundle has no checkpoint")]
    NoCheckpoint,
    /// The header's range and the records and checkpoints present differ.
    #[error(
        "the header says records up to seq {to_seq}, but the bundle ends at size {last_checkpoint}"
    )]
    RangeMismatch {
        /// The header's last seq.
        to_seq: u64,
        /// The last checkpoint's size.
        last_checkpoint: u64,
    },
    /// The end line's counts differ from the lines present.
    #[error("the end line states {stated} {what}, the bundle has {counted}")]
    EndMismatch {
        /// `records` or `checkpoints`.
        what: &'static str,
        /// As stated.
        stated: u64,
        /// As counted.
        counted: u64,
    },
    /// The end line's digest is not the SHA-256 of the bytes before it:
    /// something was altered.
    #[error("the bundle's SHA-256 is {calculated}, the end line states {stated}")]
    BundleHashMismatch {
        /// As stated.
        stated: String,
        /// As calculated.
        calculated: String,
    },
    /// Bytes follow the end line.
    #[error("data follows the end line")]
    TrailingData,
}

impl BundleFailureKind {
    /// A stable machine-readable name, e.g. `root_mismatch`.
    pub fn code(&self) -> &'static str {
        use BundleFailureKind as K;
        match self {
            K::Io(_) => "io",
            K::NoTrustAnchor => "no_trust_anchor",
            K::TrustedCheckpointMalformed(_) => "trusted_checkpoint_malformed",
            K::TrustedCheckpointUnsigned(_) => "trusted_checkpoint_unsigned",
            K::TrustedCheckpointOrigin { .. } => "trusted_checkpoint_origin",
            K::TrustedCheckpointNewer { .. } => "trusted_checkpoint_newer",
            K::TrustedCheckpointMismatch { .. } => "trusted_checkpoint_mismatch",
            K::TrustedCheckpointInconsistent { .. } => "trusted_checkpoint_inconsistent",
            K::TrustedCheckpointUnlinked { .. } => "trusted_checkpoint_unlinked",
            K::BeyondTrustedCheckpoint { .. } => "beyond_trusted_checkpoint",
            K::Truncated(_) => "truncated",
            K::LineTooLong => "line_too_long",
            K::MalformedLine(_) => "malformed_line",
            K::UnexpectedLine { .. } => "unexpected_line",
            K::UnsupportedVersion(_) => "unsupported_version",
            K::BadHeader(_) => "bad_header",
            K::BadStart(_) => "bad_start",
            K::BadPurge(_) => "bad_purge",
            K::PurgeUnattested { .. } => "purge_unattested",
            K::PurgeRecordMismatch { .. } => "purge_record_mismatch",
            K::Incomplete { .. } => "incomplete",
            K::Gap { .. } => "gap",
            K::DuplicateSeq => "duplicate_seq",
            K::OutOfOrder { .. } => "out_of_order",
            K::RecordOutOfRange { .. } => "record_out_of_range",
            K::Record(failure) => failure.code(),
            K::CheckpointBeyondRecords { .. } => "checkpoint_beyond_records",
            K::MisplacedCheckpoint { .. } => "misplaced_checkpoint",
            K::MalformedCheckpoint(_) => "malformed_checkpoint",
            K::WrongOrigin { .. } => "wrong_origin",
            K::BadSignature(_) => "bad_signature",
            K::NoTrustedSignature { .. } => "no_trusted_signature",
            K::RootMismatch { .. } => "root_mismatch",
            K::ChainHeadMismatch { .. } => "chain_head_mismatch",
            K::MissingConsistency { .. } => "missing_consistency",
            K::MisplacedConsistency { .. } => "misplaced_consistency",
            K::ConsistencyInvalid { .. } => "consistency_invalid",
            K::UnsignedRecords { .. } => "unsigned_records",
            K::NoCheckpoint => "no_checkpoint",
            K::RangeMismatch { .. } => "range_mismatch",
            K::EndMismatch { .. } => "end_mismatch",
            K::BundleHashMismatch { .. } => "bundle_hash_mismatch",
            K::TrailingData => "trailing_data",
        }
    }
}

/// Why a bundle does not verify: the first failure, where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{kind}", at_line(*line), at_seq(*seq))]
pub struct BundleFailure {
    /// The 1-based line where the failure was found; 0 when it concerns the
    /// options (the trusted checkpoint) rather than a line.
    pub line: u64,
    /// The first seq that fails, when the failure concerns records. For a
    /// root or chain head mismatch it is the first seq since the previous
    /// verified checkpoint: the fault lies somewhere in that range.
    pub seq: Option<Seq>,
    /// What failed.
    pub kind: BundleFailureKind,
}

fn purge_unattested(attested_by: u64, first_checkpoint: Option<u64>) -> String {
    let found = match first_checkpoint {
        Some(size) => format!("the bundle's first checkpoint has size {size}"),
        None => format!("records go past size {attested_by} before any checkpoint"),
    };
    format!(
        "the purged line says the checkpoint of size {attested_by} attests the purge, but {found}"
    )
}

fn purge_record_mismatch(boundary: u64, recorded: u64, field: Option<&str>) -> String {
    match field {
        Some(field) => format!(
            "this {PURGE_RECORD_ACTION} record announces the purge boundary {boundary} with another {field} than the bundle's start line"
        ),
        None => format!(
            "the log records a purge up to seq {last} (boundary {recorded}), but the bundle starts at the boundary {boundary}: an export starts at the newest boundary",
            last = recorded.saturating_sub(1)
        ),
    }
}

fn at_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

fn at_seq(seq: Option<Seq>) -> String {
    seq.map(|seq| format!("seq {seq}: ")).unwrap_or_default()
}

impl BundleFailure {
    /// A stable machine-readable name, e.g. `root_mismatch`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Whether the bundle could not be read at all (an I/O error) or the
    /// trusted checkpoint given is not a checkpoint, as opposed to a bundle
    /// that was read and does not verify.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self.kind,
            BundleFailureKind::Io(_)
                | BundleFailureKind::NoTrustAnchor
                | BundleFailureKind::TrustedCheckpointMalformed(_)
        )
    }
}

/// A failure before its line number is known.
#[derive(Debug)]
struct Fail {
    seq: Option<Seq>,
    kind: BundleFailureKind,
}

impl Fail {
    fn at(self, line: u64) -> BundleFailure {
        BundleFailure {
            line,
            seq: self.seq,
            kind: self.kind,
        }
    }
}

impl From<BundleFailureKind> for Fail {
    fn from(kind: BundleFailureKind) -> Fail {
        Fail { seq: None, kind }
    }
}

fn fail_at(seq: u64, kind: BundleFailureKind) -> Fail {
    Fail {
        seq: Some(Seq::new(seq)),
        kind,
    }
}

// ---------------------------------------------------------------------------
// Lines as they are written.

/// Standard base64 text, decoded while parsing (straight from the input
/// when the JSON string has no escapes).
struct Base64Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64Visitor;

        impl serde::de::Visitor<'_> for Base64Visitor {
            type Value = Base64Bytes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a standard base64 string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Base64Bytes, E> {
                STANDARD
                    .decode(text)
                    .map(Base64Bytes)
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
            }
        }

        deserializer.deserialize_str(Base64Visitor)
    }
}

/// A tree hash in standard base64.
struct Base64Hash(TreeHash);

impl<'de> Deserialize<'de> for Base64Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Base64Bytes(bytes) = Base64Bytes::deserialize(deserializer)?;
        TreeHash::try_from(bytes.as_slice())
            .map(Base64Hash)
            .map_err(serde::de::Error::custom)
    }
}

fn hashes(list: Vec<Base64Hash>) -> Vec<TreeHash> {
    list.into_iter().map(|Base64Hash(hash)| hash).collect()
}

/// A value that must be present, though it may be `null` (serde would
/// otherwise read a missing `Option` as `None`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    annal_export: u64,
    origin: String,
    tenant_id: TenantId,
    from_seq: u64,
    to_seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VkeyLine {
    vkey: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgedLine {
    purged: Purged,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purged {
    size: u64,
    attested_by: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartLine {
    start: Start,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    size: u64,
    chain_hash: ChainHash,
    compact_range: Vec<Base64Hash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    seq: u64,
    record: Base64Bytes,
    #[serde(deserialize_with = "nullable")]
    payload: Option<Base64Bytes>,
    #[serde(deserialize_with = "nullable")]
    salt: Option<Salt>,
}

/// A record line with every check made that needs nothing but the line:
/// what is left (its place in the seq order, its tenant against the
/// header's, the chain and the tree) needs the lines before it.
struct RecordEntry {
    /// The seq the line states.
    seq: u64,
    /// `SHA-256(0x00 || record)`.
    leaf: LeafHash,
    /// What the record's own bytes show, or why they are wrong: not a
    /// canonical header, or one of another seq.
    content: Result<RecordContent, Failure>,
}

/// What a record's header and payload show.
struct RecordContent {
    tenant_id: TenantId,
    /// Whether the payload came with the record (and matched its
    /// commitment and decoded) or was withheld; or why it is wrong.
    payload: Result<PayloadStatus, Failure>,
}

enum PayloadStatus {
    /// The payload came with the record, matched its commitment and
    /// decoded; for a [`PURGE_RECORD_ACTION`] record, with the boundary it
    /// announces.
    Checked(Option<PurgeAnnouncement>),
    Withheld,
}

/// The purge boundary a [`PURGE_RECORD_ACTION`] record announces: its
/// payload's `after.boundary`, read without trusting its shape. It is
/// compared with the start line only once the lines before it are checked.
struct PurgeAnnouncement {
    /// `size`: records `0..size` were purged.
    size: u64,
    /// `chain_hash`, or `None` when it is not 64 hex digits.
    chain_hash: Option<ChainHash>,
    /// `compact_range`, or `None` when it is not a list of base64 hashes.
    compact_range: Option<Vec<TreeHash>>,
}

impl PurgeAnnouncement {
    /// What the payload of a [`PURGE_RECORD_ACTION`] record announces, or
    /// `None` when its `after` has no `boundary.size` integer: that record
    /// announces no boundary (any client may write this action), so there
    /// is nothing to compare.
    fn read(payload: &Payload) -> Option<PurgeAnnouncement> {
        let boundary = payload.after.as_ref()?.get("boundary")?;
        let size = boundary.get("size")?.as_u64()?;
        let chain_hash = boundary
            .get("chain_hash")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| ChainHash::from_hex(text).ok());
        let compact_range = boundary
            .get("compact_range")
            .and_then(serde_json::Value::as_array)
            .and_then(|list| {
                list.iter()
                    .map(|hash| TreeHash::from_base64(hash.as_str()?).ok())
                    .collect()
            });
        Some(PurgeAnnouncement {
            size,
            chain_hash,
            compact_range,
        })
    }
}

impl RecordLine {
    fn check(self) -> RecordEntry {
        let Base64Bytes(record) = self.record;
        let content = Header::decode(&record)
            .map_err(Failure::MalformedRecord)
            .and_then(|header| {
                if header.seq.value() != self.seq {
                    return Err(Failure::SeqMismatch {
                        in_record: header.seq,
                    });
                }
                Ok(RecordContent {
                    tenant_id: header.tenant_id,
                    payload: check_payload(self.payload, self.salt, &header),
                })
            });
        RecordEntry {
            seq: self.seq,
            leaf: leaf_hash(&record),
            content,
        }
    }
}

/// Checks a record's payload and salt against its header, and reads what a
/// [`PURGE_RECORD_ACTION`] record's payload announces.
fn check_payload(
    payload: Option<Base64Bytes>,
    salt: Option<Salt>,
    header: &Header,
) -> Result<PayloadStatus, Failure> {
    match (payload, salt) {
        (None, None) => Ok(PayloadStatus::Withheld),
        (Some(Base64Bytes(payload)), Some(salt)) => {
            let calculated = commit_payload(&salt, &payload);
            if calculated != header.payload_commitment {
                return Err(Failure::PayloadCommitmentMismatch {
                    expected: header.payload_commitment,
                    calculated,
                });
            }
            let payload = decode_payload(&payload).map_err(Failure::MalformedPayload)?;
            let announced = if header.action == PURGE_RECORD_ACTION {
                PurgeAnnouncement::read(&payload)
            } else {
                None
            };
            Ok(PayloadStatus::Checked(announced))
        }
        (Some(_), None) => Err(Failure::UnpairedPayload {
            present: "payload",
            missing: "salt",
        }),
        (None, Some(_)) => Err(Failure::UnpairedPayload {
            present: "salt",
            missing: "payload",
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: CheckpointEntry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointEntry {
    size: u64,
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyLine {
    consistency: Consistency,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Consistency {
    from: u64,
    to: u64,
    proof: Vec<Base64Hash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: End,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    records: u64,
    checkpoints: u64,
    sha256: String,
}

/// The keys that mark a kind, in the order [`Kind::of_object`] tries them.
const MARKS: [&str; 8] = [
    "annal_export",
    "vkey",
    "purged",
    "start",
    "seq",
    "checkpoint",
    "consistency",
    "end",
];

/// What classifying and explaining a line need of a JSON object: which of
/// [`MARKS`] it has, and its `annal_export` and `seq` when they are u64s.
/// Read without building the line's JSON tree, so a huge malformed line
/// costs no more memory than its largest key.
#[derive(Default)]
struct Shape {
    marks: [bool; MARKS.len()],
    annal_export: Option<u64>,
    seq: Option<u64>,
}

/// A JSON value as far as [`Shape`] needs it.
enum Probed {
    U64(u64),
    Object(Shape),
    Other,
}

/// Reads a JSON value into a [`Probed`], ignoring everything else; only
/// when `object` are an object's keys looked at.
#[derive(Clone, Copy)]
struct Probe {
    object: bool,
}

impl Probe {
    /// Probes a whole line (without its newline).
    fn line(bytes: &[u8]) -> serde_json::Result<Probed> {
        use serde::de::DeserializeSeed as _;
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let probed = Probe { object: true }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(probed)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Probe {
    type Value = Probed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Probed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Probe {
    type Value = Probed;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_u64<E>(self, value: u64) -> Result<Probed, E> {
        Ok(Probed::U64(value))
    }

    fn visit_i128<E>(self, _: i128) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_u128<E>(self, value: u128) -> Result<Probed, E> {
        Ok(u64::try_from(value).map_or(Probed::Other, Probed::U64))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_unit<E>(self) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_none<E>(self) -> Result<Probed, E> {
        Ok(Probed::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Probed, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Probed, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Probed::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Probed, A::Error> {
        use serde::de::IgnoredAny;
        if !self.object {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Probed::Other);
        }
        let mut shape = Shape::default();
        while let Some(key) = map.next_key::<String>()? {
            if let Some(mark) = MARKS.iter().position(|mark| *mark == key) {
                shape.marks[mark] = true;
            }
            let value = match key.as_str() {
                "annal_export" | "seq" => match map.next_value_seed(Probe { object: false })? {
                    Probed::U64(value) => Some(value),
                    _ => None,
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // The last of duplicate keys wins, as in a `serde_json::Map`.
            if key == "seq" {
                shape.seq = value;
            } else {
                shape.annal_export = value;
            }
        }
        Ok(Probed::Object(shape))
    }
}

/// The kinds of line. No key belongs to two kinds, so any one key of a line
/// names the only kind it can be.
#[derive(Clone, Copy)]
enum Kind {
    Header,
    Vkey,
    Purged,
    Start,
    Record,
    Checkpoint,
    Consistency,
    End,
}

impl Kind {
    /// The kind whose lines have `key`.
    fn of_key(key: &str) -> Option<Kind> {
        match key {
            "annal_export" | "origin" | "tenant_id" | "from_seq" | "to_seq" => Some(Kind::Header),
            "vkey" => Some(Kind::Vkey),
            "purged" => Some(Kind::Purged),
            "start" => Some(Kind::Start),
            "seq" | "record" | "payload" | "salt" => Some(Kind::Record),
            "checkpoint" => Some(Kind::Checkpoint),
            "consistency" => Some(Kind::Consistency),
            "end" => Some(Kind::End),
            _ => None,
        }
    }

    /// The kind of a JSON object, by the first of the keys that mark a
    /// kind, in this order, that it has. A valid line has the keys of one
    /// kind only; for a line that mixes them, this order picks the kind
    /// whose parser explains what is wrong.
    fn of_object(object: &Shape) -> Option<Kind> {
        MARKS
            .into_iter()
            .zip(object.marks)
            .find(|(_, present)| *present)
            .and_then(|(key, _)| Kind::of_key(key))
    }

    /// Parses a line of this kind (without its newline); a record line is
    /// also checked as far as it can be alone.
    fn parse(self, bytes: &[u8]) -> serde_json::Result<Line> {
        use serde_json::from_slice;
        Ok(match self {
            Kind::Header => Line::Header(from_slice(bytes)?),
            Kind::Vkey => Line::Vkey(from_slice(bytes)?),
            Kind::Purged => Line::Purged(from_slice(bytes)?),
            Kind::Start => Line::Start(from_slice(bytes)?),
            Kind::Record => Line::Record(from_slice::<RecordLine>(bytes)?.check()),
            Kind::Checkpoint => Line::Checkpoint(from_slice(bytes)?),
            Kind::Consistency => Line::Consistency(from_slice(bytes)?),
            Kind::End => Line::End(from_slice(bytes)?),
        })
    }
}

/// One line of a bundle, parsed.
enum Line {
    Header(HeaderLine),
    Vkey(VkeyLine),
    Purged(PurgedLine),
    Start(StartLine),
    Record(RecordEntry),
    Checkpoint(CheckpointLine),
    Consistency(ConsistencyLine),
    End(EndLine),
}

impl Line {
    fn kind(&self) -> &'static str {
        match self {
            Line::Header(_) => "header",
            Line::Vkey(_) => "vkey",
            Line::Purged(_) => "purged",
            Line::Start(_) => "start",
            Line::Record(_) => "record",
            Line::Checkpoint(_) => "checkpoint",
            Line::Consistency(_) => "consistency",
            Line::End(_) => "end",
        }
    }
}

/// The first key of the JSON object `bytes` starts with, when it is
/// spelled without escapes (as Annal writes every line): enough to pick a
/// line's kind without parsing the line twice.
fn leading_key(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.trim_ascii_start().strip_prefix(b"{")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// Reads one line (without its newline): parses it as the kind its first
/// key names (or, when that key is spelled with escapes, its set of keys)
/// and checks a record line as far as it can be alone. Any valid JSON
/// spelling of a line is read; a line that is not valid is explained.
fn read_line(bytes: &[u8]) -> Result<Line, Fail> {
    let kind = match leading_key(bytes).and_then(Kind::of_key) {
        Some(kind) => Some(kind),
        None => match Probe::line(bytes) {
            Ok(Probed::Object(object)) => Kind::of_object(&object),
            _ => None,
        },
    };
    kind.and_then(|kind| kind.parse(bytes).ok())
        .ok_or_else(|| explain(bytes))
}

/// Says why a line is not a bundle line, naming its seq when it has one:
/// the key that marks a kind picks the type whose parser explains.
fn explain(bytes: &[u8]) -> Fail {
    let malformed = |message: String| BundleFailureKind::MalformedLine(message);
    let object = match Probe::line(bytes) {
        Ok(Probed::Object(object)) => object,
        Ok(_) => return malformed("not a JSON object".to_owned()).into(),
        Err(e) => return malformed(format!("not JSON: {e}")).into(),
    };
    if let Some(version) = object.annal_export {
        if version != BUNDLE_VERSION {
            return BundleFailureKind::UnsupportedVersion(version).into();
        }
    }
    let message = match Kind::of_object(&object).map(|kind| kind.parse(bytes)) {
        Some(Err(e)) => e.to_string(),
        Some(Ok(_)) => "the line mixes the keys of different line kinds".to_owned(),
        None => "no known line kind".to_owned(),
    };
    Fail {
        seq: object.seq.map(Seq::new),
        kind: malformed(message),
    }
}

// ---------------------------------------------------------------------------
// Reading.
//
// Three stages, each on its own threads: one thread reads batches of lines
// and feeds the end line's running digest; worker threads take the batches
// in turn and read each line (`read_line`: JSON, base64, and every check of
// a record that needs nothing but the record); the calling thread takes the
// batches back in the same turn and checks each line, in order, against the
// ones before it (`Body`). Whatever a line's own checks found is reported
// only when the calling thread reaches that line, after every check of the
// lines before it, so the failure reported is exactly the first one a
// single pass would find. Channels hold one batch each, and the reader
// waits while `READ_AHEAD_BYTES` are read but not yet verified, so memory
// stays flat whatever the bundle's length and its lines' lengths.

/// A batch is handed on once it holds this many bytes (or sooner, when
/// the input pauses after a complete line).
const BATCH_BYTES: usize = 128 << 10;

/// Room for the line that takes a batch past [`BATCH_BYTES`]: as long as
/// it fits, the batch is never copied to grow.
const BATCH_SLACK: usize = 16 << 10;

/// The reader waits while this many bytes are read but not yet verified.
/// With the batch being read and a line of at most [`MAX_LINE_LEN`], this
/// bounds the bundle bytes in memory.
const READ_AHEAD_BYTES: usize = 2 << 20;

/// The most worker threads: beyond a few, the reader's hashing of every
/// byte is the bottleneck.
const MAX_WORKERS: usize = 4;

/// Consecutive lines of the bundle, as read.
struct Batch {
    /// The running digest of every byte before the batch.
    digest_before: Sha256,
    /// Its complete lines, newlines included, then the bytes of an
    /// unterminated one if reading stopped inside a line.
    bytes: Vec<u8>,
    /// Where each complete line ends (after its newline).
    ends: Vec<usize>,
    /// Why reading stopped after this batch, if it did.
    stop: Option<Stop>,
}

/// Why the reader stopped.
enum Stop {
    /// The input ended after the batch's last complete line.
    Eof,
    /// Reading failed.
    Io(String),
    /// The input ended inside a line, or a line reached [`MAX_LINE_LEN`]
    /// without its newline.
    Unterminated {
        /// Whether the line reached [`MAX_LINE_LEN`].
        too_long: bool,
    },
}

impl Batch {
    /// Where line `index` starts.
    fn start(&self, index: usize) -> usize {
        index.checked_sub(1).map_or(0, |before| self.ends[before])
    }

    /// Its complete lines, without their newlines.
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.ends.len()).map(|index| &self.bytes[self.start(index)..self.ends[index] - 1])
    }

    /// The bytes after its last complete line.
    fn unterminated(&self) -> usize {
        self.bytes.len() - self.start(self.ends.len())
    }
}

/// Reads lines into `batch` until it holds [`BATCH_BYTES`], reading stops,
/// or it holds a complete line and finishing another one would mean a read
/// that may block: a stream that pauses has its lines verified, and a
/// failure among them reported, without waiting for more input.
fn fill_batch<R: Read>(input: &mut BufReader<R>, batch: &mut Batch) {
    let limit = MAX_LINE_LEN as u64;
    while batch.bytes.len() < BATCH_BYTES {
        if !batch.ends.is_empty() && !input.buffer().contains(&b'\n') {
            return;
        }
        let start = batch.bytes.len();
        let stop = match (&mut *input)
            .take(limit)
            .read_until(b'\n', &mut batch.bytes)
        {
            Ok(0) => Stop::Eof,
            Ok(_) if batch.bytes.ends_with(b"\n") => {
                batch.ends.push(batch.bytes.len());
                continue;
            }
            Ok(read) => Stop::Unterminated {
                too_long: read as u64 == limit,
            },
            Err(e) => {
                batch.bytes.truncate(start);
                Stop::Io(e.to_string())
            }
        };
        batch.stop = Some(stop);
        return;
    }
}

/// The reading thread: reads batches, hashes them and hands them to the
/// workers in turn, until the input ends or the verifier stops.
fn read_batches<R: Read>(input: R, read_ahead: &ReadAhead, workers: &[SyncSender<Batch>]) {
    // A buffer of its own, whose contents it can see without reading: the
    // input's own buffering, if any, hides whether a read would block. A
    // buffer this large is bypassed by the input's, so bytes are copied
    // no more often than before.
    let mut input = BufReader::with_capacity(BATCH_BYTES, input);
    let mut digest = Sha256::new();
    for worker in workers.iter().cycle() {
        if !read_ahead.wait_for_room() {
            return;
        }
        let mut batch = Batch {
            digest_before: digest.clone(),
            bytes: Vec::with_capacity(BATCH_BYTES + BATCH_SLACK),
            ends: Vec::new(),
            stop: None,
        };
        fill_batch(&mut input, &mut batch);
        digest.update(&batch.bytes);
        read_ahead.add(batch.bytes.len());
        let last = batch.stop.is_some();
        if worker.send(batch).is_err() || last {
            return;
        }
    }
}

/// A batch with each of its complete lines read.
struct ReadBatch {
    batch: Batch,
    lines: Vec<Result<Line, Fail>>,
}

/// A worker thread: reads the lines of each batch it is given.
fn read_lines(batches: Receiver<Batch>, read: SyncSender<ReadBatch>) {
    for batch in batches {
        let lines = batch.lines().map(read_line).collect();
        if read.send(ReadBatch { batch, lines }).is_err() {
            return;
        }
    }
}

/// The bytes read but not yet verified, which the reader waits on.
#[derive(Default)]
struct ReadAhead {
    state: Mutex<ReadAheadState>,
    changed: Condvar,
}

#[derive(Default)]
struct ReadAheadState {
    bytes: usize,
    /// The verifier has stopped: the reader must not wait any more.
    stopped: bool,
}

impl ReadAhead {
    fn state(&self) -> MutexGuard<'_, ReadAheadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while [`READ_AHEAD_BYTES`] are pending. False when the
    /// verifier has stopped.
    fn wait_for_room(&self) -> bool {
        let mut state = self.state();
        while state.bytes >= READ_AHEAD_BYTES && !state.stopped {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.stopped
    }

    fn add(&self, bytes: usize) {
        self.state().bytes += bytes;
    }

    fn release(&self, bytes: usize) {
        self.state().bytes -= bytes;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
    }
}

/// The batch being verified and how far.
struct Current {
    batch: Batch,
    lines: std::vec::IntoIter<Result<Line, Fail>>,
    /// The index of the next line.
    next: usize,
}

/// The lines of a bundle as the workers read them, in order, with their
/// numbers and the bytes read so far.
struct Lines<'a> {
    /// The workers' batches, taken in turn.
    workers: Vec<Receiver<ReadBatch>>,
    turn: usize,
    current: Option<Current>,
    read_ahead: &'a ReadAhead,
    number: u64,
    consumed: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Lines<'_> {
    /// Takes the next batch, releasing the one verified.
    fn advance(&mut self) -> Result<(), BundleFailure> {
        if let Some(done) = self.current.take() {
            self.read_ahead.release(done.batch.bytes.len());
        }
        let worker = &self.workers[self.turn];
        self.turn = (self.turn + 1) % self.workers.len();
        let ReadBatch { batch, lines } = worker.recv().map_err(|_| {
            Fail::from(BundleFailureKind::Io(
                "the reading thread stopped".to_owned(),
            ))
            .at(self.number + 1)
        })?;
        self.current = Some(Current {
            batch,
            lines: lines.into_iter(),
            next: 0,
        });
        Ok(())
    }

    /// The next line, or `None` at the end of the input.
    fn next(&mut self) -> Result<Option<Line>, BundleFailure> {
        loop {
            let Some(current) = &mut self.current else {
                self.advance()?;
                continue;
            };
            if let Some(line) = current.lines.next() {
                let index = current.next;
                current.next += 1;
                self.number += 1;
                self.consumed += (current.batch.ends[index] - current.batch.start(index)) as u64;
                (self.progress)(self.consumed);
                return line.map(Some).map_err(|fail| fail.at(self.number));
            }
            let kind = match &current.batch.stop {
                None => {
                    self.advance()?;
                    continue;
                }
                Some(Stop::Eof) => return Ok(None),
                Some(Stop::Io(e)) => BundleFailureKind::Io(e.clone()),
                Some(Stop::Unterminated { too_long }) => {
                    self.consumed += current.batch.unterminated() as u64;
                    (self.progress)(self.consumed);
                    if *too_long {
                        BundleFailureKind::LineTooLong
                    } else {
                        BundleFailureKind::Truncated("the last line has no newline")
                    }
                }
            };
            return Err(Fail::from(kind).at(self.number + 1));
        }
    }

    /// The next line, which must exist.
    fn expect(&mut self) -> Result<Line, BundleFailure> {
        self.next()?.ok_or_else(|| {
            Fail::from(BundleFailureKind::Truncated("the end line is missing")).at(self.number)
        })
    }

    /// Lowercase hex SHA-256 of every byte before the line just read.
    fn digest(&self) -> String {
        let Some(current) = &self.current else {
            return hex::encode(Sha256::digest(b""));
        };
        let batch = &current.batch;
        let mut digest = batch.digest_before.clone();
        digest.update(&batch.bytes[..batch.start(current.next.saturating_sub(1))]);
        hex::encode(digest.finalize())
    }

    /// Fails unless the input is exhausted after the line just read.
    fn expect_eof(&mut self) -> Result<(), BundleFailure> {
        loop {
            let Some(current) = &self.current else {
                self.advance()?;
                continue;
            };
            if current.next < current.batch.ends.len() {
                return Err(Fail::from(BundleFailureKind::TrailingData).at(self.number + 1));
            }
            let kind = match &current.batch.stop {
                None => {
                    self.advance()?;
                    continue;
                }
                Some(Stop::Eof) => return Ok(()),
                Some(Stop::Io(e)) => {
                    return Err(Fail::from(BundleFailureKind::Io(e.clone())).at(self.number));
                }
                Some(Stop::Unterminated { .. }) => BundleFailureKind::TrailingData,
            };
            return Err(Fail::from(kind).at(self.number + 1));
        }
    }

    fn unexpected(&self, found: &Line, expected: &'static str) -> BundleFailure {
        Fail::from(BundleFailureKind::UnexpectedLine {
            found: found.kind(),
            expected,
        })
        .at(self.number)
    }
}

impl Drop for Lines<'_> {
    /// Lets the reader, should it wait for room, see that nothing more will
    /// be verified.
    fn drop(&mut self) {
        self.read_ahead.stop();
    }
}
// ---------------------------------------------------------------------------
// Checkpoints.

/// Why a signed checkpoint is not acceptable.
pub(super) enum CheckpointProblem {
    /// The note or its body does not parse.
    Malformed(String),
    /// A trusted key's signature is bad.
    BadSignature(NoteError),
    /// No trusted key signed.
    NoTrustedSignature,
}

/// Parses a signed checkpoint (note and body); signatures are not checked.
pub(super) fn parse_checkpoint(note: &str) -> Result<SignedCheckpoint, CheckpointProblem> {
    SignedCheckpoint::parse(note).map_err(|e| CheckpointProblem::Malformed(e.to_string()))
}

/// When `vkeys` is not empty, checks that at least one of them signed and
/// returns their names (`<name>+<key id>`); with no keys, checks nothing.
pub(super) fn check_signers(
    signed: &SignedCheckpoint,
    vkeys: &[VerifierKey],
) -> Result<Vec<String>, CheckpointProblem> {
    if vkeys.is_empty() {
        return Ok(Vec::new());
    }
    match signed.verify(vkeys) {
        Ok(keys) => Ok(keys
            .iter()
            .map(|key| format!("{}+{:08x}", key.name(), key.key_id()))
            .collect()),
        Err(NoteError::NoTrustedSignature) => Err(CheckpointProblem::NoTrustedSignature),
        Err(e) => Err(CheckpointProblem::BadSignature(e)),
    }
}

/// [`parse_checkpoint`], then [`check_signers`].
pub(super) fn open_checkpoint(
    note: &str,
    vkeys: &[VerifierKey],
) -> Result<(Checkpoint, Vec<String>), CheckpointProblem> {
    let signed = parse_checkpoint(note)?;
    let signers = check_signers(&signed, vkeys)?;
    Ok((signed.checkpoint().clone(), signers))
}

/// Reads the auditor's trusted checkpoint, checking its signature when keys
/// are given.
fn open_trusted(options: &BundleOptions) -> Result<Option<Checkpoint>, BundleFailure> {
    let Some(text) = &options.trusted_checkpoint else {
        return Ok(None);
    };
    match open_checkpoint(text, &options.vkeys) {
        Ok((checkpoint, _)) => Ok(Some(checkpoint)),
        Err(problem) => {
            let kind = match problem {
                CheckpointProblem::Malformed(e) => BundleFailureKind::TrustedCheckpointMalformed(e),
                CheckpointProblem::BadSignature(e) => {
                    BundleFailureKind::TrustedCheckpointUnsigned(e)
                }
                CheckpointProblem::NoTrustedSignature => {
                    BundleFailureKind::TrustedCheckpointUnsigned(NoteError::NoTrustedSignature)
                }
            };
            Err(Fail::from(kind).at(0))
        }
    }
}

// ---------------------------------------------------------------------------
// Verification.

/// Verifies an export bundle read from `input`, line by line, in constant
/// memory, and stops at the first failure.
///
/// Checks: the header (version, origin `…/<tenant id>`, range); a `purged`
/// line, if any (its size = `from_seq`, and the bundle's first checkpoint
/// has the size it names, which makes that checkpoint attest the purged
/// prefix); the start line (size = `from_seq`, the genesis chain hash when
/// it is 0; with `options.require_complete`, a later start only after a
/// `purged` line); each record in seq order with no gaps or repeats
/// (canonical header bytes of the bundle's tenant and the listed seq;
/// payload and salt both present or both null, and when present matching
/// the header's commitment and decoding canonically; after a `purged` line,
/// a [`PURGE_RECORD_ACTION`] record with its payload must not announce a
/// later boundary, and one announcing the same boundary must repeat the
/// start line's chain hash and compact range: the first such is reported as
/// [`PurgedPrefix::recorded_at`]); for each checkpoint, right after its
/// last record: the note parses, states the line's size and the bundle's
/// origin, is signed by at least one of `options.vkeys` (when given), and
/// its root and chain head equal those recomputed from the start line and
/// the records; each consistency proof between consecutive checkpoints;
/// the trusted checkpoint, if given (one older than the purge boundary is
/// reported as [`TrustedCheckpointStatus::PredatesPurge`], since nothing can
/// link it any more); that the last checkpoint covers every record and ends
/// the header's range; and the end line's counts and SHA-256 over every
/// byte before it, with nothing after it.
///
/// `progress` is called after each line with the number of bytes read so
/// far, on the calling thread.
///
/// The input is read (and hashed) on another thread, and each line parsed
/// and checked as far as it can be alone on one more per core (up to
/// four), while the calling thread checks the lines in order against the
/// ones before them: the result, the first failure included, is the same
/// as checking one line after the other. Memory stays bounded: a few MiB
/// of lines are read ahead, and one line of up to [`MAX_LINE_LEN`].
pub fn verify_bundle<R: BufRead + Send>(
    input: R,
    options: &BundleOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<BundleReport, BundleFailure> {
    if options.vkeys.is_empty() && options.trusted_checkpoint.is_none() {
        return Err(Fail::from(BundleFailureKind::NoTrustAnchor).at(0));
    }
    let trusted = open_trusted(options)?;
    let workers = thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
    let read_ahead = ReadAhead::default();
    thread::scope(|scope| {
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (to_worker, batches) = mpsc::sync_channel(1);
            let (read, from_worker) = mpsc::sync_channel(1);
            scope.spawn(move || read_lines(batches, read));
            to_workers.push(to_worker);
            from_workers.push(from_worker);
        }
        let read_ahead = &read_ahead;
        scope.spawn(move || read_batches(input, read_ahead, &to_workers));
        let mut lines = Lines {
            workers: from_workers,
            turn: 0,
            current: None,
            read_ahead,
            number: 0,
            consumed: 0,
            progress,
        };
        verify_lines(&mut lines, options, trusted)
    })
}

/// Checks the lines of a bundle in order, given the trusted checkpoint
/// read from `options`.
fn verify_lines(
    lines: &mut Lines<'_>,
    options: &BundleOptions,
    trusted: Option<Checkpoint>,
) -> Result<BundleReport, BundleFailure> {
    let header = match lines.expect()? {
        Line::Header(header) => header,
        other => return Err(lines.unexpected(&other, "the header")),
    };
    let header = check_header(header, trusted.as_ref()).map_err(|fail| fail.at(lines.number))?;

    let mut published_vkeys = Vec::new();
    let mut purged = None;
    let start = loop {
        match lines.expect()? {
            Line::Vkey(VkeyLine { vkey }) if purged.is_none() => {
                // Never trusted, but they must be what they claim to be.
                let malformed = |message: String| {
                    Fail::from(BundleFailureKind::MalformedLine(message)).at(lines.number)
                };
                if published_vkeys.len() == MAX_PUBLISHED_VKEYS {
                    return Err(malformed(format!(
                        "more than {MAX_PUBLISHED_VKEYS} vkey lines"
                    )));
                }
                let key = VerifierKey::parse(&vkey)
                    .map_err(|e| malformed(format!("the vkey line is not a C2SP vkey: {e}")))?;
                published_vkeys.push(key.to_vkey());
            }
            Line::Purged(PurgedLine { purged: line }) if purged.is_none() => {
                purged = Some(check_purge(&header, line).map_err(|fail| fail.at(lines.number))?);
            }
            Line::Start(StartLine { start }) => break start,
            other => {
                let expected = if purged.is_some() {
                    "the start line"
                } else {
                    "a vkey, purged or start line"
                };
                return Err(lines.unexpected(&other, expected));
            }
        }
    };
    let mut body = Body::start(header, start, options, trusted, purged)
        .map_err(|fail| fail.at(lines.number))?;

    loop {
        let line = lines.expect()?;
        let checked = match line {
            Line::Record(record) => body.record(record),
            Line::Checkpoint(CheckpointLine { checkpoint }) => body.checkpoint(checkpoint),
            Line::Consistency(ConsistencyLine { consistency }) => body.consistency(consistency),
            Line::End(EndLine { end }) => {
                let digest = lines.digest();
                let report = body
                    .end(end, digest, published_vkeys)
                    .map_err(|fail| fail.at(lines.number))?;
                lines.expect_eof()?;
                return Ok(report);
            }
            other => {
                return Err(lines.unexpected(&other, "a record, checkpoint or consistency line"));
            }
        };
        checked.map_err(|fail| fail.at(lines.number))?;
    }
}

/// The header, checked.
struct BundleRange {
    origin: String,
    tenant_id: TenantId,
    from_seq: u64,
    to_seq: u64,
}

fn check_header(line: HeaderLine, trusted: Option<&Checkpoint>) -> Result<BundleRange, Fail> {
    if line.annal_export != BUNDLE_VERSION {
        return Err(BundleFailureKind::UnsupportedVersion(line.annal_export).into());
    }
    let bad = |message: String| Fail::from(BundleFailureKind::BadHeader(message));
    let tenant = line.tenant_id.to_string();
    let names_tenant = line
        .origin
        .rsplit_once('/')
        .is_some_and(|(_, last)| last == tenant);
    if !names_tenant {
        return Err(bad(format!(
            "the origin {} does not end with /{tenant}",
            line.origin
        )));
    }
    if line.to_seq < line.from_seq {
        return Err(bad(format!(
            "to_seq {} is below from_seq {}: the bundle holds no records",
            line.to_seq, line.from_seq
        )));
    }
    let end_size = line
        .to_seq
        .checked_add(1)
        .ok_or_else(|| bad("to_seq is too large".to_owned()))?;
    if let Some(trusted) = trusted {
        if trusted.origin != line.origin {
            return Err(BundleFailureKind::TrustedCheckpointOrigin {
                bundle: line.origin,
                trusted: trusted.origin.clone(),
            }
            .into());
        }
        if trusted.size > end_size {
            return Err(BundleFailureKind::TrustedCheckpointNewer {
                size: trusted.size,
                bundle_size: end_size,
            }
            .into());
        }
    }
    Ok(BundleRange {
        origin: line.origin,
        tenant_id: line.tenant_id,
        from_seq: line.from_seq,
        to_seq: line.to_seq,
    })
}

/// Checks the `purged` line against the header: it must say that the
/// records before the bundle's first one were purged, and name a checkpoint
/// size the bundle can hold (that its first checkpoint has that size is
/// checked as the lines come).
fn check_purge(range: &BundleRange, line: Purged) -> Result<PurgedPrefix, Fail> {
    let bad = |message: String| Fail::from(BundleFailureKind::BadPurge(message));
    if line.size == 0 {
        return Err(bad("size 0 purges nothing".to_owned()));
    }
    if line.size != range.from_seq {
        return Err(bad(format!(
            "size {} is not the header's from_seq {}: the purge must end where the bundle starts",
            line.size, range.from_seq
        )));
    }
    let end_size = range.to_seq.saturating_add(1);
    if line.attested_by < line.size || line.attested_by > end_size {
        return Err(bad(format!(
            "attested_by {} is not a checkpoint size of this bundle ({}..={end_size})",
            line.attested_by, line.size
        )));
    }
    Ok(PurgedPrefix {
        size: line.size,
        attested_by: line.attested_by,
        recorded_at: None,
    })
}

/// The state of a bundle past its start line.
struct Body<'k> {
    range: BundleRange,
    vkeys: &'k [VerifierKey],
    trusted: Option<Checkpoint>,
    trusted_status: TrustedCheckpointStatus,
    /// What the `purged` line says; its first checkpoint must attest it.
    purged: Option<PurgedPrefix>,
    /// After a `purged` line, the start line's chain hash and compact range
    /// (at most 64 hashes), which every [`PURGE_RECORD_ACTION`] record
    /// announcing that boundary must repeat.
    boundary: Option<(ChainHash, Vec<TreeHash>)>,
    unverified_link_from: Option<u64>,
    /// The tree of every leaf so far (its size is the next seq).
    tree: CompactRange,
    /// The chain hash of the last record so far.
    chain: ChainHash,
    /// The last checkpoint's size and root.
    last_checkpoint: Option<(u64, TreeHash)>,
    /// The previous checkpoint's size and root, while the consistency proof
    /// from it to the last one is due.
    consistency_due: Option<(u64, TreeHash)>,
    /// Whether the auditor's consistency line was read: only the end may
    /// follow.
    closed: bool,
    records: u64,
    payloads_checked: u64,
    payloads_withheld: u64,
    checkpoints: u64,
    signing_keys: BTreeSet<String>,
}

impl<'k> Body<'k> {
    fn start(
        range: BundleRange,
        start: Start,
        options: &'k BundleOptions,
        trusted: Option<Checkpoint>,
        purged: Option<PurgedPrefix>,
    ) -> Result<Body<'k>, Fail> {
        let bad = |message: String| Fail::from(BundleFailureKind::BadStart(message));
        if start.size != range.from_seq {
            return Err(bad(format!(
                "size {} is not the header's from_seq {}",
                start.size, range.from_seq
            )));
        }
        if start.size == 0 && start.chain_hash != ChainHash::genesis(range.tenant_id) {
            return Err(bad(
                "the chain hash before seq 0 must be the tenant's genesis value".to_owned(),
            ));
        }
        let compact_range = hashes(start.compact_range);
        let boundary = purged.map(|_| (start.chain_hash, compact_range.clone()));
        let tree = CompactRange::from_hashes(start.size, compact_range)
            .map_err(|e| bad(format!("compact range: {e}")))?;
        if options.require_complete && range.from_seq > 0 && purged.is_none() {
            return Err(fail_at(
                0,
                BundleFailureKind::Incomplete {
                    from_seq: range.from_seq,
                },
            ));
        }
        let mut body = Body {
            range,
            vkeys: &options.vkeys,
            trusted,
            trusted_status: TrustedCheckpointStatus::NotGiven,
            purged,
            boundary,
            unverified_link_from: None,
            tree,
            chain: start.chain_hash,
            last_checkpoint: None,
            consistency_due: None,
            closed: false,
            records: 0,
            payloads_checked: 0,
            payloads_withheld: 0,
            checkpoints: 0,
            signing_keys: BTreeSet::new(),
        };
        body.compare_with_trusted()?;
        body.link_empty_trusted();
        Ok(body)
    }

    /// Compares the tree and chain with the trusted checkpoint when they
    /// have reached its size.
    fn compare_with_trusted(&mut self) -> Result<(), Fail> {
        let Some(trusted) = &self.trusted else {
            return Ok(());
        };
        let size = self.tree.size();
        if trusted.size != size {
            return Ok(());
        }
        let what = if trusted.root != self.tree.root() {
            "root"
        } else if trusted.chain_head != self.chain {
            "chain head"
        } else {
            self.trusted_status = TrustedCheckpointStatus::Matched { size };
            return Ok(());
        };
        Err(fail_at(
            size.saturating_sub(1).max(self.range.from_seq),
            BundleFailureKind::TrustedCheckpointMismatch { size, what },
        ))
    }

    /// A trusted checkpoint of the empty tree needs no consistency proof:
    /// every tree extends it, so its root and chain head must just be the
    /// empty tree's and the tenant's genesis value.
    fn link_empty_trusted(&mut self) {
        let Some(trusted) = &self.trusted else {
            return;
        };
        if trusted.size == 0
            && self.range.from_seq > 0
            && trusted.root == empty_root()
            && trusted.chain_head == ChainHash::genesis(self.range.tenant_id)
        {
            self.trusted_status = TrustedCheckpointStatus::Linked { size: 0 };
        }
    }

    /// Fails when a line other than the consistency proof comes while one
    /// is due, or anything but the end after the auditor's consistency line.
    fn expect_records(&self, found: &'static str) -> Result<(), Fail> {
        if let (Some((from, _)), Some((to, _))) = (self.consistency_due, self.last_checkpoint) {
            return Err(BundleFailureKind::MissingConsistency { from, to }.into());
        }
        if self.closed {
            return Err(BundleFailureKind::UnexpectedLine {
                found,
                expected: "the end line",
            }
            .into());
        }
        Ok(())
    }

    fn record(&mut self, line: RecordEntry) -> Result<(), Fail> {
        self.expect_records("record")?;
        let seq = line.seq;
        let expected = self.tree.size();
        if seq > expected {
            return Err(fail_at(
                expected,
                BundleFailureKind::Gap {
                    found: Seq::new(seq),
                },
            ));
        }
        if seq < expected {
            let kind = if seq + 1 == expected {
                BundleFailureKind::DuplicateSeq
            } else {
                BundleFailureKind::OutOfOrder {
                    expected: Seq::new(expected),
                }
            };
            return Err(fail_at(seq, kind));
        }
        if seq > self.range.to_seq {
            return Err(fail_at(
                seq,
                BundleFailureKind::RecordOutOfRange {
                    to_seq: Seq::new(self.range.to_seq),
                },
            ));
        }
        if let Some(trusted) = &self.trusted {
            if self.vkeys.is_empty() && seq >= trusted.size {
                return Err(fail_at(
                    seq,
                    BundleFailureKind::BeyondTrustedCheckpoint { size: trusted.size },
                ));
            }
        }
        if let Some(purged) = self.purged {
            // The checkpoint of that size belongs before this record.
            if self.last_checkpoint.is_none() && seq >= purged.attested_by {
                return Err(BundleFailureKind::PurgeUnattested {
                    attested_by: purged.attested_by,
                    first_checkpoint: None,
                }
                .into());
            }
        }
        let record_failure = |failure: Failure| fail_at(seq, BundleFailureKind::Record(failure));
        let content = line.content.map_err(record_failure)?;
        if content.tenant_id != self.range.tenant_id {
            return Err(record_failure(Failure::WrongTenant {
                expected: self.range.tenant_id,
                found: content.tenant_id,
            }));
        }
        match content.payload.map_err(record_failure)? {
            PayloadStatus::Checked(announced) => {
                self.payloads_checked += 1;
                if let Some(announced) = announced {
                    self.compare_purge_record(seq, announced)?;
                }
            }
            PayloadStatus::Withheld => self.payloads_withheld += 1,
        }
        self.chain = chain_hash(&self.chain, &line.leaf);
        // The range check above keeps the tree below 2^64 - 1 leaves.
        self.tree.append(TreeHash::from(line.leaf)).map_err(|_| {
            fail_at(
                seq,
                BundleFailureKind::RecordOutOfRange {
                    to_seq: Seq::new(self.range.to_seq),
                },
            )
        })?;
        self.records += 1;
        self.compare_with_trusted()
    }

    /// Compares the boundary a [`PURGE_RECORD_ACTION`] record (of seq
    /// `seq`) announces with the bundle's purge boundary. An older boundary
    /// is a former purge and says nothing of this one; the same boundary
    /// must come with the start line's chain hash and compact range, and
    /// the first such record is reported; a later one contradicts the
    /// bundle's start. Without a `purged` line there is nothing to compare.
    fn compare_purge_record(&mut self, seq: u64, announced: PurgeAnnouncement) -> Result<(), Fail> {
        let (Some(purged), Some((chain_hash, compact_range))) = (&mut self.purged, &self.boundary)
        else {
            return Ok(());
        };
        if announced.size < purged.size {
            return Ok(());
        }
        let field = if announced.size > purged.size {
            None
        } else if announced.chain_hash != Some(*chain_hash) {
            Some("chain_hash")
        } else if announced.compact_range.as_ref() != Some(compact_range) {
            Some("compact_range")
        } else {
            purged.recorded_at.get_or_insert(seq);
            return Ok(());
        };
        Err(fail_at(
            seq,
            BundleFailureKind::PurgeRecordMismatch {
                boundary: purged.size,
                recorded: announced.size,
                field,
            },
        ))
    }

    fn checkpoint(&mut self, line: CheckpointEntry) -> Result<(), Fail> {
        self.expect_records("checkpoint")?;
        let records_end = self.tree.size();
        let size = line.size;
        if size > records_end {
            return Err(fail_at(
                records_end,
                BundleFailureKind::CheckpointBeyondRecords { size, records_end },
            ));
        }
        let after_previous = self
            .last_checkpoint
            .is_none_or(|(previous, _)| previous < size);
        // A bundle holds at least one record, so no checkpoint is of the
        // empty tree (from which no consistency proof could lead).
        if size == 0 || size < records_end || !after_previous {
            return Err(BundleFailureKind::MisplacedCheckpoint { size, records_end }.into());
        }
        if let Some(purged) = self.purged {
            if self.last_checkpoint.is_none() && size != purged.attested_by {
                return Err(BundleFailureKind::PurgeUnattested {
                    attested_by: purged.attested_by,
                    first_checkpoint: Some(size),
                }
                .into());
            }
        }
        // Whatever is wrong with this checkpoint, the records it was to
        // attest (those since the previous verified one) are unattested:
        // name the first of them.
        let first = self
            .last_checkpoint
            .map_or(self.range.from_seq, |(previous, _)| previous);
        let problem = |problem| {
            fail_at(
                first,
                match problem {
                    CheckpointProblem::Malformed(e) => BundleFailureKind::MalformedCheckpoint(e),
                    CheckpointProblem::BadSignature(e) => BundleFailureKind::BadSignature(e),
                    CheckpointProblem::NoTrustedSignature => {
                        BundleFailureKind::NoTrustedSignature { size }
                    }
                },
            )
        };
        let signed = parse_checkpoint(&line.note).map_err(problem)?;
        let checkpoint = signed.checkpoint();
        if checkpoint.size != size {
            return Err(fail_at(
                first,
                BundleFailureKind::MalformedCheckpoint(format!(
                    "the note states size {}, the line {size}",
                    checkpoint.size
                )),
            ));
        }
        if checkpoint.origin != self.range.origin {
            return Err(fail_at(
                first,
                BundleFailureKind::WrongOrigin {
                    expected: self.range.origin.clone(),
                    found: checkpoint.origin.clone(),
                },
            ));
        }
        let signers = check_signers(&signed, self.vkeys).map_err(problem)?;
        let calculated = self.tree.root();
        if checkpoint.root != calculated {
            return Err(fail_at(
                first,
                BundleFailureKind::RootMismatch {
                    first,
                    size,
                    signed: checkpoint.root,
                    calculated,
                },
            ));
        }
        if checkpoint.chain_head != self.chain {
            return Err(fail_at(
                first,
                BundleFailureKind::ChainHeadMismatch {
                    first,
                    size,
                    signed: checkpoint.chain_head,
                    calculated: self.chain,
                },
            ));
        }
        self.consistency_due = self.last_checkpoint;
        self.last_checkpoint = Some((size, calculated));
        self.checkpoints += 1;
        self.signing_keys.extend(signers);
        Ok(())
    }

    fn consistency(&mut self, line: Consistency) -> Result<(), Fail> {
        if self.closed {
            return Err(BundleFailureKind::UnexpectedLine {
                found: "consistency",
                expected: "the end line",
            }
            .into());
        }
        let Some((to, to_root)) = self.last_checkpoint else {
            return Err(BundleFailureKind::UnexpectedLine {
                found: "consistency",
                expected: "a record or checkpoint line",
            }
            .into());
        };
        let proof = hashes(line.proof);
        if let Some((from, from_root)) = self.consistency_due.take() {
            if (line.from, line.to) != (from, to) {
                return Err(BundleFailureKind::MisplacedConsistency {
                    from: line.from,
                    to: line.to,
                    expected: format!("the proof from {from} to {to}"),
                }
                .into());
            }
            return verify_consistency(from, to, &proof, &from_root, &to_root).map_err(|e| {
                fail_at(
                    from,
                    BundleFailureKind::ConsistencyInvalid {
                        from,
                        to,
                        reason: e.to_string(),
                    },
                )
            });
        }
        // Not due: the auditor's line, from a size before the bundle to its
        // last checkpoint, which must end the records.
        self.expect_all_signed(to)?;
        if line.to != to || line.from >= self.range.from_seq {
            return Err(BundleFailureKind::MisplacedConsistency {
                from: line.from,
                to: line.to,
                expected: format!(
                    "only the end line, or a proof from a size below {} to {to}",
                    self.range.from_seq
                ),
            }
            .into());
        }
        self.closed = true;
        let Some(trusted) = self.trusted.as_ref().filter(|t| t.size == line.from) else {
            // Nothing to check it against: reported as unverified.
            self.unverified_link_from = Some(line.from);
            return Ok(());
        };
        let size = trusted.size;
        verify_consistency(size, to, &proof, &trusted.root, &to_root).map_err(|e| {
            Fail::from(BundleFailureKind::TrustedCheckpointInconsistent {
                size,
                to,
                reason: e.to_string(),
            })
        })?;
        self.trusted_status = TrustedCheckpointStatus::Linked { size };
        Ok(())
    }

    /// Fails when records follow the last checkpoint (of size `last`).
    fn expect_all_signed(&self, last: u64) -> Result<(), Fail> {
        if self.tree.size() > last {
            return Err(fail_at(
                last,
                BundleFailureKind::UnsignedRecords {
                    last_checkpoint: last,
                },
            ));
        }
        Ok(())
    }

    fn end(
        mut self,
        end: End,
        digest: String,
        published_vkeys: Vec<String>,
    ) -> Result<BundleReport, Fail> {
        if let (Some((from, _)), Some((to, _))) = (self.consistency_due, self.last_checkpoint) {
            return Err(BundleFailureKind::MissingConsistency { from, to }.into());
        }
        let Some((last_size, last_root)) = self.last_checkpoint else {
            return Err(fail_at(
                self.range.from_seq,
                BundleFailureKind::NoCheckpoint,
            ));
        };
        self.expect_all_signed(last_size)?;
        if last_size != self.range.to_seq.saturating_add(1) {
            return Err(BundleFailureKind::RangeMismatch {
                to_seq: self.range.to_seq,
                last_checkpoint: last_size,
            }
            .into());
        }
        if let Some(trusted) = &self.trusted {
            if self.trusted_status == TrustedCheckpointStatus::NotGiven {
                let size = trusted.size;
                // Below the purge boundary no proof can link it any more:
                // reported, not failed (the auditor's line, when there is
                // one from its size, has been checked all the same).
                let predates_purge = self
                    .purged
                    .is_some_and(|purged| 0 < size && size < purged.size);
                if !predates_purge {
                    return Err(BundleFailureKind::TrustedCheckpointUnlinked { size }.into());
                }
                self.trusted_status = TrustedCheckpointStatus::PredatesPurge { size };
            }
        }
        for (what, stated, counted) in [
            ("records", end.records, self.records),
            ("checkpoints", end.checkpoints, self.checkpoints),
        ] {
            if stated != counted {
                return Err(BundleFailureKind::EndMismatch {
                    what,
                    stated,
                    counted,
                }
                .into());
            }
        }
        if end.sha256 != digest {
            return Err(BundleFailureKind::BundleHashMismatch {
                stated: end.sha256,
                calculated: digest,
            }
            .into());
        }
        Ok(BundleReport {
            origin: self.range.origin,
            tenant_id: self.range.tenant_id,
            from_seq: Seq::new(self.range.from_seq),
            to_seq: Seq::new(self.range.to_seq),
            records_checked: self.records,
            payloads_checked: self.payloads_checked,
            payloads_withheld: self.payloads_withheld,
            checkpoints_verified: self.checkpoints,
            last_checkpoint_size: last_size,
            last_checkpoint_root: last_root,
            chain_head: self.chain,
            signing_keys: self.signing_keys.into_iter().collect(),
            published_vkeys,
            trusted_checkpoint: self.trusted_status,
            purged: self.purged,
            unverified_link_from: self.unverified_link_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(line: &str) -> Result<&'static str, BundleFailureKind> {
        read_line(line.as_bytes())
            .map(|line| line.kind())
            .map_err(|fail| fail.kind)
    }

    #[test]
    fn the_set_of_keys_decides_the_kind_whatever_their_order() {
        let salt = "00".repeat(32);
        let cases = [
            (
                r#"{"to_seq":1,"from_seq":0,"tenant_id":"0f8fad5b-d9cb-469f-a165-70867728950e","origin":"a/b","annal_export":1}"#.to_owned(),
                "header",
            ),
            (r#"{"vkey":"x"}"#.to_owned(), "vkey"),
            (
                r#"{"purged":{"attested_by":7,"size":5}}"#.to_owned(),
                "purged",
            ),
            (
                format!(r#"{{"start":{{"compact_range":[],"chain_hash":"{salt}","size":0}}}}"#),
                "start",
            ),
            (
                r#"{"salt":null,"payload":null,"record":"AQ==","seq":0}"#.to_owned(),
                "record",
            ),
            (
                r#"{"checkpoint":{"note":"n","size":1}}"#.to_owned(),
                "checkpoint",
            ),
            (
                r#"{"consistency":{"proof":[],"to":2,"from":1}}"#.to_owned(),
                "consistency",
            ),
            (
                r#"{"end":{"sha256":"","checkpoints":0,"records":0}}"#.to_owned(),
                "end",
            ),
        ];
        for (line, kind) in cases {
            assert_eq!(kind_of(&line), Ok(kind), "{line}");
        }
    }

    #[test]
    fn a_first_key_spelled_with_escapes_or_white_space_is_read() {
        for line in [
            r#"{"\u0073eq":0,"record":"AQ==","payload":null,"salt":null}"#,
            r#" { "seq" : 0 , "record":"AQ==","payload":null,"salt":null}"#,
            r#"{"rec\u006frd":"AQ==","seq":0,"payload":null,"salt":null}"#,
        ] {
            assert_eq!(kind_of(line), Ok("record"), "{line}");
        }
        assert!(matches!(
            kind_of(r#"{"\u0073eq":0,"record":"AQ==","payload":null}"#),
            Err(BundleFailureKind::MalformedLine(m)) if m.contains("salt")
        ));
    }

    #[test]
    fn any_json_escape_of_base64_is_read() {
        let line = r#"{"seq":0,"record":"\/w==","payload":null,"salt":null}"#;
        match read_line(line.as_bytes()) {
            Ok(Line::Record(record)) => assert_eq!(record.leaf, leaf_hash(&[0xff])),
            _ => panic!("not a record line"),
        }
    }

    #[test]
    fn a_malformed_line_says_what_is_wrong_and_names_its_seq() {
        let cases = [
            (r#"{"seq":3,"record":"AQ==","payload":null}"#, "salt"),
            (
                r#"{"seq":3,"record":"AQ==","payload":null,"salt":null,"x":1}"#,
                "x",
            ),
            (
                r#"{"seq":3,"seq":3,"record":"AQ==","payload":null,"salt":null}"#,
                "seq",
            ),
            (
                r#"{"seq":3,"record":"AQ=","payload":null,"salt":null}"#,
                "base64",
            ),
            (
                r#"{"seq":3,"record":"AQ==","payload":null,"salt":"00"}"#,
                "64 hex",
            ),
        ];
        for (line, named) in cases {
            let fail = read_line(line.as_bytes()).err().unwrap();
            assert_eq!(fail.seq, Some(Seq::new(3)), "{line}");
            match fail.kind {
                BundleFailureKind::MalformedLine(message) => {
                    assert!(message.contains(named), "{line}: {message}");
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(
            kind_of("[1]"),
            Err(BundleFailureKind::MalformedLine(m)) if m.contains("object")
        ));
        assert!(matches!(
            kind_of("{\"other\":1}"),
            Err(BundleFailureKind::MalformedLine(m)) if m.contains("no known line kind")
        ));
    }

    #[test]
    fn another_bundle_version_is_unsupported_rather_than_malformed() {
        assert_eq!(
            kind_of(r#"{"annal_export":2,"whatever":true}"#),
            Err(BundleFailureKind::UnsupportedVersion(2))
        );
    }
}
