//! The pure ledger core: how a record is encoded, hashed and chained.
//!
//! This module owns the auditor's contract (`docs/FORMAT.md`): the canonical
//! MessagePack encodings of the header and the payload, the salted payload
//! commitment, RFC 6962 leaf hashing, and the per-tenant hash chain. It must
//! never do I/O, read the clock, draw random numbers, or hold global state:
//! time, salts and ids are arguments, so every function here is deterministic
//! and can be checked against the golden vectors.

mod canonical;
mod chain;
mod hash;
mod ids;
mod payload;
mod record;
mod timestamp;

#[cfg(test)]
mod proptests;

pub use canonical::{DecodeError, MAX_JSON_DEPTH, decode_json, encode_json};
pub use chain::Chain;
pub use hash::{
    CHAIN_PREFIX, ChainHash, GENESIS_PREFIX, HASH_LEN, HashLengthError, HexError, LEAF_PREFIX,
    LeafHash, NODE_PREFIX, PayloadCommitment, Salt, TreeHash, chain_hash, commit_payload, leaf_hash,
};
pub use ids::{EventId, ParseIdError, Seq, TenantId};
pub use payload::{
    Actor, Outcome, ParseOutcomeError, Payload, Resource, decode_payload, encode_payload,
};
pub use record::{FORMAT_VERSION, Header, Sealed, seal};
pub use timestamp::{ParseTimestampError, Timestamp};
