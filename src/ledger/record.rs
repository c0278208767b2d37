//! The hashed record: a small header that commits to its payload, and
//! sealing, which turns an accepted event into the bytes and hashes to store.
//!
//! Owns the header's byte layout; must never put personal data in the header
//! (that belongs in the payload, which can be erased).

use super::canonical::{DecodeError, Reader, Writer, decode_canonical};
use super::hash::{LeafHash, PayloadCommitment, Salt, commit_payload, leaf_hash};
use super::ids::{EventId, Seq, TenantId};
use super::payload::{Payload, encode_payload};
use super::timestamp::Timestamp;

/// The record format this code writes and the only one it reads. The first
/// element of every encoded header.
pub const FORMAT_VERSION: u8 = 1;

/// Number of elements in a version-1 header array.
const HEADER_FIELDS: u32 = 7;

/// The hashed part of a record. Everything here is kept for as long as the
/// log exists; everything erasable is behind [`Header::payload_commitment`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Whose log the record is in.
    pub tenant_id: TenantId,
    /// Position in that log.
    pub seq: Seq,
    /// The client's id for the event.
    pub event_id: EventId,
    /// When the server accepted the event.
    pub received_at: Timestamp,
    /// What happened, e.g. `employee.salary.update`. Must not carry personal
    /// data: it can never be erased.
    pub action: String,
    /// `SHA-256(salt || canonical payload)`.
    pub payload_commitment: PayloadCommitment,
}

impl Header {
    /// The canonical encoding: a MessagePack array
    /// `[version, tenant_id, seq, event_id, received_at, action,
    /// payload_commitment]` (see `docs/FORMAT.md`).
    pub fn encode(&self) -> Vec<u8> {
        // Fixed parts: array 1, version 1, ids 2 × 18, seq and time ≤ 9 each,
        // commitment 34; the action adds at most 5 header bytes.
        let mut w = Writer::with_capacity(90 + 5 + self.action.len());
        w.array_len(HEADER_FIELDS as usize);
        w.uint(u64::from(FORMAT_VERSION));
        w.bin(self.tenant_id.as_bytes());
        w.uint(self.seq.value());
        w.bin(self.event_id.as_bytes());
        w.int(self.received_at.micros());
        w.str(&self.action);
        w.bin(self.payload_commitment.as_bytes());
        w.finish()
    }

    /// Parses a canonical encoding, refusing every other byte string: an
    /// unknown version, a wrong shape, a non-canonical form or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        decode_canonical(bytes, parse_header, Header::encode)
    }

    /// `SHA-256(0x00 || self.encode())`.
    pub fn leaf_hash(&self) -> LeafHash {
        leaf_hash(&self.encode())
    }
}

fn parse_header(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
    const SHAPE: &str = "an array of 7 elements";
    let len = r.array_len("header", SHAPE)?;
    if len == 0 {
        return Err(DecodeError::WrongShape {
            field: "header",
            expected: SHAPE,
        });
    }
    // The version decides the layout, so it is checked before the length: a
    // future version may well have a different number of fields.
    let version = r.uint("version")?;
    if version != u64::from(FORMAT_VERSION) {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    if len != HEADER_FIELDS {
        return Err(DecodeError::WrongShape {
            field: "header",
            expected: SHAPE,
        });
    }
    let tenant_id = r.bin::<16>("tenant_id", "16 bytes")?;
    let seq = r.uint("seq")?;
    let event_id = r.bin::<16>("event_id", "16 bytes")?;
    let received_at = r.int("received_at")?;
    let action = r.str("action")?.to_owned();
    let payload_commitment = r.bin::<32>("payload_commitment", "32 bytes")?;
    Ok(Header {
        tenant_id: TenantId::from_uuid(uuid::Uuid::from_bytes(tenant_id)),
        seq: Seq::new(seq),
        event_id: EventId::from_uuid(uuid::Uuid::from_bytes(event_id)),
        received_at: Timestamp::from_micros(received_at),
        action,
        payload_commitment: PayloadCommitment::from_bytes(payload_commitment),
    })
}

/// Everything the store keeps for a newly accepted event.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    /// The header, decoded.
    pub header: Header,
    /// `header.encode()`: the bytes the leaf hash covers.
    pub record: Vec<u8>,
    /// `encode_payload(payload)`: the bytes the commitment covers.
    pub payload: Vec<u8>,
    /// `leaf_hash(record)`.
    pub leaf_hash: LeafHash,
}

/// Seals an event: encodes the payload, commits to it with `salt`, builds and
/// encodes the header, and hashes it into a leaf.
///
/// Chaining is separate ([`super::chain_hash`]) because only the single
/// writer of a tenant's log knows the previous chain hash.
pub fn seal(
    tenant_id: TenantId,
    seq: Seq,
    event_id: EventId,
    received_at: Timestamp,
    action: String,
    payload: &Payload,
    salt: Salt,
) -> Sealed {
    let payload = encode_payload(payload);
    let header = Header {
        tenant_id,
        seq,
        event_id,
        received_at,
        action,
        payload_commitment: commit_payload(&salt, &payload),
    };
    let record = header.encode();
    let leaf_hash = leaf_hash(&record);
    Sealed {
        header,
        record,
        payload,
        leaf_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            tenant_id: TenantId::from_uuid(uuid::Uuid::from_bytes([1; 16])),
            seq: Seq::new(300),
            event_id: EventId::from_uuid(uuid::Uuid::from_bytes([2; 16])),
            received_at: Timestamp::from_micros(-5),
            action: "a".to_owned(),
            payload_commitment: PayloadCommitment::from_bytes([3; 32]),
        }
    }

    #[test]
    fn decode_reverses_encode() {
        let h = header();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn an_unknown_version_is_reported_as_such() {
        let mut bytes = header().encode();
        bytes[1] = 2;
        assert_eq!(
            Header::decode(&bytes),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        );
        // Even when the array has a different length.
        assert_eq!(
            Header::decode(&[0x92, 0x02, 0xc0]),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn a_wrong_shape_is_reported_with_its_field() {
        assert!(matches!(
            Header::decode(&[0x90]),
            Err(DecodeError::WrongShape {
                field: "header",
                ..
            })
        ));
        assert!(matches!(
            Header::decode(&[0x92, 0x01, 0xc0]),
            Err(DecodeError::WrongShape {
                field: "header",
                ..
            })
        ));
        let mut bytes = header().encode();
        // Turn tenant_id's bin 8 marker into a str 8 marker.
        bytes[2] = 0xd9;
        assert!(matches!(
            Header::decode(&bytes),
            Err(DecodeError::WrongShape {
                field: "tenant_id",
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = header().encode();
        let len = bytes.len();
        bytes.push(0);
        assert_eq!(
            Header::decode(&bytes),
            Err(DecodeError::TrailingBytes {
                offset: len,
                extra: 1
            })
        );
    }
}
