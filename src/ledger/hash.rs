//! The ledger's hashes: the 32-byte value types and the four domain-separated
//! SHA-256 constructions (leaf, Merkle node, chain link, genesis) plus the
//! salted payload commitment.
//!
//! Owns every byte that goes into a hash; must never hash anything without a
//! domain-separation prefix (the commitment is the one exception, see
//! [`commit_payload`]).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::ids::TenantId;

/// Prefix of a leaf hash: `SHA-256(0x00 || record)` (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of a Merkle interior node: `SHA-256(0x01 || left || right)`
/// (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;
/// Prefix of a chain link: `SHA-256(0x02 || previous chain hash || leaf hash)`.
pub const CHAIN_PREFIX: u8 = 0x02;
/// Prefix of a tenant's genesis chain hash: `SHA-256(0x03 || tenant id)`.
pub const GENESIS_PREFIX: u8 = 0x03;

/// Length in bytes of every hash and of a salt.
pub const HASH_LEN: usize = 32;

/// Text that is not exactly 64 hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The text is not 64 characters long.
    #[error("expected 64 hex digits, got {0} characters")]
    WrongLength(usize),
    /// A character is not a hex digit.
    #[error("invalid hex digit {character:?} at position {index}")]
    InvalidDigit {
        /// The offending character.
        character: char,
        /// Its position in the text.
        index: usize,
    },
}

/// A byte slice that is not exactly 32 bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {HASH_LEN} bytes, got {actual}")]
pub struct HashLengthError {
    /// The length that was given.
    pub actual: usize,
}

fn parse_hex(text: &str) -> Result<[u8; HASH_LEN], HexError> {
    if text.len() != 2 * HASH_LEN {
        return Err(HexError::WrongLength(text.chars().count()));
    }
    let mut bytes = [0u8; HASH_LEN];
    hex::decode_to_slice(text, &mut bytes).map_err(|err| match err {
        hex::FromHexError::InvalidHexCharacter { c, index } => HexError::InvalidDigit {
            character: c,
            index,
        },
        // The length was checked above, so only a bad digit is possible; a
        // multi-byte character can still split the byte count, report it as
        // a length problem.
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
            HexError::WrongLength(text.chars().count())
        }
    })?;
    Ok(bytes)
}

macro_rules! bytes32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name([u8; HASH_LEN]);

        impl $name {
            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
                Self(bytes)
            }

            /// The 32 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
                &self.0
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses exactly 64 hex digits (either case).
            pub fn from_hex(text: &str) -> Result<Self, HexError> {
                parse_hex(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            /// Lowercase hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::from_hex(text)
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = HashLengthError;

            fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
                <[u8; HASH_LEN]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| HashLengthError { actual: bytes.len() })
            }
        }

        impl Serialize for $name {
            /// As lowercase hex, the form the HTTP API serves.
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

bytes32! {
    /// `SHA-256(0x00 || record bytes)`: a record's leaf in the Merkle tree and
    /// its input to the chain.
    LeafHash
}

bytes32! {
    /// The running hash chain over a tenant's leaves; the value at seq `n`
    /// commits to every record `0..=n`.
    ChainHash
}

bytes32! {
    /// `SHA-256(salt || canonical payload)`: binds a payload to its header
    /// while letting the payload be erased later without changing any hash.
    PayloadCommitment
}

bytes32! {
    /// The random 32 bytes mixed into a payload commitment so that a
    /// low-entropy payload (a salary, a rating) cannot be guessed from it.
    /// Erase it together with the payload.
    Salt
}

bytes32! {
    /// A node of a tenant's RFC 6962 Merkle tree: a leaf hash, an interior
    /// node `SHA-256(0x01 || left || right)`, or a root. Checkpoints and
    /// proofs carry it in standard base64 (`to_base64`); the JSON API in hex.
    TreeHash
}

impl TreeHash {
    /// Standard base64 with padding, as C2SP checkpoints and proofs write it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard base64 that decodes to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<TreeHash, HashLengthError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| HashLengthError { actual: 0 })?;
        TreeHash::try_from(bytes.as_slice())
    }
}

impl From<LeafHash> for TreeHash {
    fn from(leaf: LeafHash) -> TreeHash {
        TreeHash(leaf.0)
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({self})")
    }
}

impl fmt::Debug for LeafHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeafHash({self})")
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl fmt::Debug for PayloadCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadCommitment({self})")
    }
}

impl fmt::Debug for Salt {
    /// Redacted: with the salt, a commitment to a small payload can be brute
    /// forced, so it must not leak through `{:?}` into logs. `Display` still
    /// prints it for the places that serve it on purpose.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `SHA-256(0x00 || record_bytes)`, where `record_bytes` is a canonically
/// encoded header (see [`super::Header::encode`]).
pub fn leaf_hash(record_bytes: &[u8]) -> LeafHash {
    LeafHash(sha256(&[&[LEAF_PREFIX], record_bytes]))
}

/// `SHA-256(0x02 || prev || leaf)`: the chain hash of a record given the
/// chain hash of the record before it (or the tenant's genesis value).
pub fn chain_hash(prev: &ChainHash, leaf: &LeafHash) -> ChainHash {
    ChainHash(sha256(&[&[CHAIN_PREFIX], &prev.0, &leaf.0]))
}

/// `SHA-256(salt || payload_bytes)`, where `payload_bytes` is a canonically
/// encoded payload (see [`super::encode_payload`]).
///
/// No prefix byte: the input always starts with 32 secret random bytes, so it
/// cannot collide with a prefixed hash input that an attacker could choose.
pub fn commit_payload(salt: &Salt, payload_bytes: &[u8]) -> PayloadCommitment {
    PayloadCommitment(sha256(&[&salt.0, payload_bytes]))
}

impl ChainHash {
    /// The value "before seq 0" of a tenant's chain:
    /// `SHA-256(0x03 || tenant id as 16 raw bytes)`. Per tenant, so a chain
    /// cannot be replayed under another tenant.
    pub fn genesis(tenant: TenantId) -> ChainHash {
        ChainHash(sha256(&[&[GENESIS_PREFIX], tenant.as_bytes()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_wrong_lengths_and_digits() {
        let hash = LeafHash::from_bytes([0xab; 32]);
        assert_eq!(hash.to_hex(), "ab".repeat(32));
        assert_eq!(LeafHash::from_hex(&hash.to_hex()).unwrap(), hash);
        assert_eq!(LeafHash::from_hex(&"AB".repeat(32)).unwrap(), hash);
        assert_eq!(ChainHash::from_hex("abcd"), Err(HexError::WrongLength(4)));
        let bad = format!("{}zz", "00".repeat(31));
        assert_eq!(
            Salt::from_hex(&bad),
            Err(HexError::InvalidDigit {
                character: 'z',
                index: 62
            })
        );
    }

    #[test]
    fn try_from_slice_requires_exactly_32_bytes() {
        assert!(PayloadCommitment::try_from(&[0u8; 32][..]).is_ok());
        assert_eq!(
            PayloadCommitment::try_from(&[0u8; 31][..]),
            Err(HashLengthError { actual: 31 })
        );
    }

    #[test]
    fn salt_debug_is_redacted() {
        assert_eq!(format!("{:?}", Salt::from_bytes([7; 32])), "Salt(..)");
    }

    #[test]
    fn leaf_hash_of_empty_input_matches_rfc6962() {
        // RFC 6962 test vector: the hash of an empty leaf.
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
