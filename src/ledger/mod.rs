//! The pure ledger core: how a record is encoded, hashed, chained, placed in
//! a Merkle tree and attested.
//!
//! This module owns the auditor's contract (`docs/FORMAT.md`): the canonical
//! MessagePack encodings of the header and the payload, the salted payload
//! commitment, RFC 6962 leaf hashing, the per-tenant hash chain, the
//! tenant's RFC 6962 Merkle tree with its proofs and compact ranges, C2SP
//! checkpoints and signed notes, and C2SP tlog-proof files. It must never do
//! I/O, read the clock, draw random numbers, or hold global state:
//! time, salts and ids are arguments, so every function here is deterministic
//! and can be checked against the golden vectors.

mod canonical;
mod chain;
mod checkpoint;
mod hash;
mod ids;
mod merkle;
mod note;
mod payload;
mod record;
mod timestamp;
mod tlog_proof;

#[cfg(test)]
mod merkle_proptests;
#[cfg(test)]
mod merkle_reference;
#[cfg(test)]
mod proptests;

pub use canonical::{DecodeError, MAX_JSON_DEPTH, decode_json, encode_json};
pub use chain::Chain;
pub use checkpoint::{
    CHAIN_HEAD_EXTENSION, Checkpoint, CheckpointError, SignedCheckpoint, tenant_origin,
};
pub use hash::{
    CHAIN_PREFIX, ChainHash, GENESIS_PREFIX, HASH_LEN, HashLengthError, HexError, LEAF_PREFIX,
    LeafHash, NODE_PREFIX, PayloadCommitment, Salt, TreeHash, chain_hash, commit_payload,
    leaf_hash,
};
pub use ids::{EventId, ParseIdError, Seq, TenantId};
pub use merkle::{
    CompactRange, HashRole, MAX_READ_LEN, MerkleError, NodeId, ProofPlan, STRATUM_HEIGHT,
    StratumRead, compact_range_ids, consistency_plan, empty_root, hash_children, inclusion_plan,
    plan_reads, plan_reads_after_purge, resolve, resolve_after_purge, root_from_inclusion_proof,
    verify_consistency, verify_consistency_bytes, verify_inclusion, verify_inclusion_bytes,
};
pub use note::{
    ED25519_SIGNATURE_TYPE, KeyError, MAX_NOTE_LEN, MAX_SIGNATURES, Note, NoteError, NoteSignature,
    VerifierKey,
};
// The signing-key parser in `crypto` reads the same `<name>+<id>+<data>` shape.
#[cfg(feature = "server")]
pub(crate) use note::split_key;
pub use payload::{
    Actor, Outcome, ParseOutcomeError, Payload, Resource, decode_payload, encode_payload,
};
pub use record::{FORMAT_VERSION, Header, Sealed, seal};
pub use timestamp::{ParseTimestampError, Timestamp};
pub use tlog_proof::{MAX_PROOF_HASHES, TLOG_PROOF_HEADER, TlogProof, TlogProofError};
