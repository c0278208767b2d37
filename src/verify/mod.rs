//! The offline verifier: checks what an auditor takes home against the
//! format in `docs/FORMAT.md`, trusting nothing in it but signatures by keys
//! the auditor was given and checkpoints the auditor saved.
//!
//! Owns the chain checks of exported events (contiguity, canonical headers,
//! leaf hashes, payload commitments, chain links, the expected tenant), the
//! comparison of the human-readable event fields with the verified bytes and
//! the parsing of exported event JSON (this module); export bundles, with
//! their signed checkpoints and consistency proofs ([`bundle`]); and C2SP
//! tlog-proof files for single records ([`proof`]). Must never touch a
//! database, the network or the clock: an auditor runs it on a laptop with
//! nothing but the export.

pub mod bundle;
mod bundle_writer;
mod display;
mod events;
pub mod proof;

use serde::Serialize;

use crate::ledger::{
    ChainHash, DecodeError, Header, LeafHash, Payload, PayloadCommitment, Salt, Seq, TenantId,
    chain_hash, commit_payload, decode_payload, leaf_hash,
};

pub use display::Displayed;
pub use events::{EventError, EventsError, parse_events};

use display::{DisplayCheck, check_display};

/// One record as exported: the stored bytes and hashes, and the payload with
/// its salt where the exporter was allowed to include them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRecord {
    /// The seq the export lists the record under.
    pub seq: Seq,
    /// The canonical header bytes.
    pub record: Vec<u8>,
    /// The leaf hash the export states.
    pub leaf_hash: LeafHash,
    /// The chain hash the export states.
    pub chain_hash: ChainHash,
    /// The canonical payload bytes, if included.
    pub payload: Option<Vec<u8>>,
    /// The payload's salt, if included.
    pub salt: Option<Salt>,
    /// The human-readable fields the export shows next to the bytes
    /// ([`parse_events`] fills them; `Displayed::default()` shows nothing).
    /// Every shown field is compared with the verified bytes.
    pub displayed: Displayed,
}

/// What a verification expects beyond the format itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The tenant every record must belong to. Without it, the first
    /// record's tenant is taken on trust and the others must match it.
    pub tenant: Option<TenantId>,
}

impl VerifyOptions {
    /// Requires every record to belong to `tenant`.
    pub fn with_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }
}

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// How many records were checked.
    pub records_checked: u64,
    /// How many of them came with payload and salt, both checked against the
    /// header's commitment.
    pub payloads_checked: u64,
    /// The lowest seq.
    pub first_seq: Seq,
    /// The highest seq.
    pub last_seq: Seq,
    /// The tenant all records belong to.
    pub tenant_id: TenantId,
    /// Whether that tenant was given in advance ([`VerifyOptions::tenant`])
    /// rather than taken from the first record.
    pub tenant_pinned: bool,
    /// The chain hash of the last record, which commits to the whole run.
    pub head_chain_hash: ChainHash,
    /// Whether the run starts at seq 0 and so was linked to the tenant's
    /// genesis value. If not, the first record's stated chain hash was taken
    /// on trust as the anchor; compare it with a checkpoint or an earlier
    /// export.
    pub anchored_at_genesis: bool,
    /// How many records show payload fields (`actor`, `resource`, …) without
    /// payload bytes to check them against. Those fields are unverified;
    /// every other shown field was compared with the bytes.
    pub displays_unchecked: u64,
}

/// What is wrong with a record. "Expected" is always the value the export
/// states, "calculated" the value recomputed from the bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// One or more seqs are missing before this one.
    #[error("gap: expected seq {expected} next")]
    Gap {
        /// The seq that should have come next.
        expected: Seq,
    },
    /// The seq appears more than once.
    #[error("seq appears more than once")]
    DuplicateSeq,
    /// The header bytes are not a canonical header.
    #[error("record bytes: {0}")]
    MalformedRecord(DecodeError),
    /// The header inside the record names another seq.
    #[error("record says seq {in_record}")]
    SeqMismatch {
        /// The seq inside the header.
        in_record: Seq,
    },
    /// The record belongs to another tenant than the first record.
    #[error("tenant {found} differs from {expected}")]
    TenantMismatch {
        /// The first record's tenant.
        expected: TenantId,
        /// This record's tenant.
        found: TenantId,
    },
    /// The record belongs to another tenant than the one the verification
    /// was told to expect.
    #[error("tenant {found} is not the expected tenant {expected}")]
    WrongTenant {
        /// The tenant given in [`VerifyOptions::tenant`].
        expected: TenantId,
        /// This record's tenant.
        found: TenantId,
    },
    /// Only one of payload bytes and salt is present, so the payload cannot
    /// be checked against its commitment.
    #[error("{present} without {missing}: the payload cannot be checked")]
    UnpairedPayload {
        /// The field that is present (`payload_bytes` or `salt`).
        present: &'static str,
        /// The field that is missing.
        missing: &'static str,
    },
    /// The stated leaf hash is not the hash of the record bytes.
    #[error("leaf hash mismatch: expected {expected}, calculated {calculated}")]
    LeafHashMismatch {
        /// As stated.
        expected: LeafHash,
        /// As recomputed.
        calculated: LeafHash,
    },
    /// The payload and salt do not match the header's commitment.
    #[error("payload commitment mismatch: expected {expected}, calculated {calculated}")]
    PayloadCommitmentMismatch {
        /// From the header.
        expected: PayloadCommitment,
        /// From the exported payload and salt.
        calculated: PayloadCommitment,
    },
    /// The payload bytes are not a canonical payload.
    #[error("payload bytes: {0}")]
    MalformedPayload(DecodeError),
    /// The stated chain hash does not follow from the previous one and this
    /// record's leaf.
    #[error("chain hash mismatch: expected {expected}, calculated {calculated}")]
    ChainHashMismatch {
        /// As stated.
        expected: ChainHash,
        /// As recomputed.
        calculated: ChainHash,
    },
    /// A human-readable field the export shows (`event_id`, `actor`, …)
    /// differs from what the verified header or payload says.
    #[error("displayed `{field}` differs from the verified record")]
    DisplayMismatch {
        /// The field, with the key inside an object where one differs
        /// (e.g. `actor.name`).
        field: String,
    },
}

impl Failure {
    /// A stable machine-readable name, e.g. `leaf_hash_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Gap { .. } => "gap",
            Failure::DuplicateSeq => "duplicate_seq",
            Failure::MalformedRecord(_) => "malformed_record",
            Failure::SeqMismatch { .. } => "seq_mismatch",
            Failure::TenantMismatch { .. } => "tenant_mismatch",
            Failure::WrongTenant { .. } => "wrong_tenant",
            Failure::UnpairedPayload { .. } => "unpaired_payload",
            Failure::LeafHashMismatch { .. } => "leaf_hash_mismatch",
            Failure::PayloadCommitmentMismatch { .. } => "payload_commitment_mismatch",
            Failure::MalformedPayload(_) => "malformed_payload",
            Failure::ChainHashMismatch { .. } => "chain_hash_mismatch",
            Failure::DisplayMismatch { .. } => "display_mismatch",
        }
    }
}

/// Why a run of records does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// There was nothing to verify; an empty export proves nothing, so it is
    /// not a success.
    #[error("no records to verify")]
    NoRecords,
    /// The first failing record, in seq order.
    #[error("seq {seq}: {failure}")]
    Record {
        /// The seq the export lists the failing record under.
        seq: Seq,
        /// What failed.
        failure: Failure,
    },
}

impl VerifyError {
    /// The failing seq, if a record failed.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            VerifyError::NoRecords => None,
            VerifyError::Record { seq, .. } => Some(*seq),
        }
    }

    /// A stable machine-readable name: `no_records` or the failure's code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoRecords => "no_records",
            VerifyError::Record { failure, .. } => failure.code(),
        }
    }
}

fn fail(seq: Seq, failure: Failure) -> VerifyError {
    VerifyError::Record { seq, failure }
}

/// Verifies a run of one tenant's records, in any order (exports page newest
/// first), and stops at the first failure in seq order. Same as
/// [`verify_chain_with`] with default options: the tenant is the first
/// record's.
pub fn verify_chain<I>(records: I) -> Result<ChainReport, VerifyError>
where
    I: IntoIterator<Item = ChainRecord>,
{
    verify_chain_with(records, &VerifyOptions::default())
}

/// Verifies a run of one tenant's records, in any order, and stops at the
/// first failure in seq order.
///
/// Checks, per record: seqs are contiguous with no duplicates; the header is
/// canonical and names the listed seq; its tenant is `options.tenant` when
/// given, else the first record's; the stated leaf hash is the hash of the
/// header bytes; payload and salt are both present or both absent, and when
/// present the payload matches the header's commitment and decodes
/// canonically; the stated chain hash links to the previous one, or to the
/// tenant's genesis value at seq 0; every displayed field equals its
/// rendering from the header or the decoded payload (see [`Displayed`]). A run
/// that starts above seq 0 is anchored on its first record's stated chain
/// hash (see [`ChainReport::anchored_at_genesis`]).
pub fn verify_chain_with<I>(records: I, options: &VerifyOptions) -> Result<ChainReport, VerifyError>
where
    I: IntoIterator<Item = ChainRecord>,
{
    let mut records: Vec<ChainRecord> = records.into_iter().collect();
    records.sort_by_key(|r| r.seq);
    let mut report: Option<ChainReport> = None;

    for record in records {
        let seq = record.seq;
        if let Some(report) = &report {
            if seq == report.last_seq {
                return Err(fail(seq, Failure::DuplicateSeq));
            }
            let expected = report.last_seq.next();
            if seq != expected {
                return Err(fail(seq, Failure::Gap { expected }));
            }
        }
        let header = check_record(&record)?;
        let found = header.tenant_id;
        match (options.tenant, &report) {
            (Some(expected), _) if found != expected => {
                return Err(fail(seq, Failure::WrongTenant { expected, found }));
            }
            (None, Some(report)) if found != report.tenant_id => {
                return Err(fail(
                    seq,
                    Failure::TenantMismatch {
                        expected: report.tenant_id,
                        found,
                    },
                ));
            }
            _ => {}
        }
        let payload = check_payload(&record, &header)?;
        let prev = match &report {
            Some(report) => Some(report.head_chain_hash),
            None if seq == Seq::ZERO => Some(ChainHash::genesis(found)),
            None => None,
        };
        if let Some(prev) = prev {
            check_link(&record, &prev)?;
        }
        let display = check_display(&record.displayed, &header, payload.as_ref())
            .map_err(|field| fail(seq, Failure::DisplayMismatch { field }))?;

        let report = report.get_or_insert_with(|| ChainReport {
            records_checked: 0,
            payloads_checked: 0,
            first_seq: seq,
            last_seq: seq,
            tenant_id: found,
            tenant_pinned: options.tenant.is_some(),
            head_chain_hash: record.chain_hash,
            anchored_at_genesis: seq == Seq::ZERO,
            displays_unchecked: 0,
        });
        report.records_checked += 1;
        report.payloads_checked += u64::from(payload.is_some());
        report.displays_unchecked += u64::from(display == DisplayCheck::PayloadFieldsUnchecked);
        report.last_seq = seq;
        report.head_chain_hash = record.chain_hash;
    }
    report.ok_or(VerifyError::NoRecords)
}

/// Decodes the header and checks its seq and the stated leaf hash.
fn check_record(record: &ChainRecord) -> Result<Header, VerifyError> {
    let seq = record.seq;
    let header =
        Header::decode(&record.record).map_err(|e| fail(seq, Failure::MalformedRecord(e)))?;
    if header.seq != seq {
        return Err(fail(
            seq,
            Failure::SeqMismatch {
                in_record: header.seq,
            },
        ));
    }
    let calculated = leaf_hash(&record.record);
    if calculated != record.leaf_hash {
        return Err(fail(
            seq,
            Failure::LeafHashMismatch {
                expected: record.leaf_hash,
                calculated,
            },
        ));
    }
    Ok(header)
}

/// Checks payload and salt: both absent is fine (nothing to check), one
/// without the other is a failure. Returns the decoded payload when checked.
fn check_payload(record: &ChainRecord, header: &Header) -> Result<Option<Payload>, VerifyError> {
    let seq = record.seq;
    let (payload, salt) = match (&record.payload, &record.salt) {
        (None, None) => return Ok(None),
        (Some(payload), Some(salt)) => (payload, salt),
        (Some(_), None) => {
            return Err(fail(
                seq,
                Failure::UnpairedPayload {
                    present: "payload_bytes",
                    missing: "salt",
                },
            ));
        }
        (None, Some(_)) => {
            return Err(fail(
                seq,
                Failure::UnpairedPayload {
                    present: "salt",
                    missing: "payload_bytes",
                },
            ));
        }
    };
    let calculated = commit_payload(salt, payload);
    if calculated != header.payload_commitment {
        return Err(fail(
            seq,
            Failure::PayloadCommitmentMismatch {
                expected: header.payload_commitment,
                calculated,
            },
        ));
    }
    decode_payload(payload)
        .map(Some)
        .map_err(|e| fail(seq, Failure::MalformedPayload(e)))
}

/// Checks that the stated chain hash follows from `prev` and the leaf (the
/// leaf hash was already checked against the bytes).
fn check_link(record: &ChainRecord, prev: &ChainHash) -> Result<(), VerifyError> {
    let calculated = chain_hash(prev, &record.leaf_hash);
    if calculated != record.chain_hash {
        return Err(fail(
            record.seq,
            Failure::ChainHashMismatch {
                expected: record.chain_hash,
                calculated,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::ledger::{
        Actor, Chain, EventId, Payload, Resource, Timestamp, encode_payload, seal,
    };

    fn tenant(n: u8) -> TenantId {
        TenantId::from_uuid(Uuid::from_bytes([n; 16]))
    }

    fn payload(i: u64) -> Payload {
        Payload {
            before: Some(serde_json::json!({"salary": 1000 + i})),
            ..Payload::new(
                Actor {
                    id: format!("u{i}"),
                    kind: "user".to_owned(),
                    name: None,
                    email: None,
                },
                Resource {
                    kind: "employee".to_owned(),
                    id: "e1".to_owned(),
                },
            )
        }
    }

    /// A valid run `seqs` of tenant `t`'s log (chained from genesis, so the
    /// chain hashes are right even when the run starts later).
    fn run(t: TenantId, seqs: std::ops::Range<u64>) -> Vec<ChainRecord> {
        let mut chain = Chain::genesis(t);
        let mut out = Vec::new();
        for i in 0..seqs.end {
            let salt = Salt::from_bytes([i as u8; 32]);
            let sealed = seal(
                t,
                Seq::new(i),
                EventId::from_uuid(Uuid::from_u128(u128::from(i))),
                Timestamp::from_micros(i as i64),
                "employee.read".to_owned(),
                &payload(i),
                salt,
            );
            let (_, chain_hash) = chain.append(&sealed.leaf_hash);
            if seqs.contains(&i) {
                out.push(ChainRecord {
                    seq: Seq::new(i),
                    displayed: Displayed::rendered(&sealed.header, Some(&payload(i))),
                    record: sealed.record,
                    leaf_hash: sealed.leaf_hash,
                    chain_hash,
                    payload: Some(sealed.payload),
                    salt: Some(salt),
                });
            }
        }
        out
    }

    fn failure_at(result: Result<ChainReport, VerifyError>) -> (u64, &'static str) {
        match result {
            Err(VerifyError::Record { seq, failure }) => (seq.value(), failure.code()),
            other => panic!("expected a record failure, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_run_from_genesis_verifies_in_any_order() {
        let mut records = run(tenant(1), 0..5);
        records.reverse();
        let report = verify_chain(records.clone()).unwrap();
        assert_eq!(report.records_checked, 5);
        assert_eq!(report.payloads_checked, 5);
        assert_eq!(
            (report.first_seq, report.last_seq),
            (Seq::new(0), Seq::new(4))
        );
        assert_eq!(report.tenant_id, tenant(1));
        assert_eq!(report.head_chain_hash, records[0].chain_hash);
        assert!(report.anchored_at_genesis);
    }

    #[test]
    fn a_run_starting_later_is_anchored_on_its_first_record() {
        let report = verify_chain(run(tenant(1), 3..6)).unwrap();
        assert!(!report.anchored_at_genesis);
        assert_eq!(report.first_seq, Seq::new(3));
    }

    #[test]
    fn nothing_to_verify_is_an_error() {
        assert_eq!(verify_chain(Vec::new()), Err(VerifyError::NoRecords));
    }

    #[test]
    fn a_tampered_record_byte_is_caught() {
        let mut records = run(tenant(1), 0..4);
        let last = records[2].record.len() - 1;
        records[2].record[last] ^= 1;
        assert_eq!(failure_at(verify_chain(records)), (2, "leaf_hash_mismatch"));
    }

    #[test]
    fn a_record_re_hashed_after_tampering_breaks_the_link() {
        let mut records = run(tenant(1), 0..4);
        let mut header = Header::decode(&records[2].record).unwrap();
        header.action = "employee.delete".to_owned();
        records[2].record = header.encode();
        records[2].leaf_hash = header.leaf_hash();
        assert_eq!(
            failure_at(verify_chain(records)),
            (2, "chain_hash_mismatch")
        );
    }

    #[test]
    fn a_broken_link_is_caught() {
        let mut records = run(tenant(1), 0..4);
        records[3].chain_hash = records[2].chain_hash;
        assert_eq!(
            failure_at(verify_chain(records)),
            (3, "chain_hash_mismatch")
        );
        let mut records = run(tenant(1), 0..2);
        records[0].chain_hash = ChainHash::genesis(tenant(1));
        assert_eq!(
            failure_at(verify_chain(records)),
            (0, "chain_hash_mismatch")
        );
    }

    #[test]
    fn a_gap_is_caught() {
        let mut records = run(tenant(1), 0..5);
        records.remove(2);
        match verify_chain(records) {
            Err(VerifyError::Record { seq, failure }) => {
                assert_eq!(seq, Seq::new(3));
                assert_eq!(
                    failure,
                    Failure::Gap {
                        expected: Seq::new(2)
                    }
                );
            }
            other => panic!("expected a gap, got {other:?}"),
        }
    }

    #[test]
    fn a_duplicate_is_caught_even_when_identical() {
        let mut records = run(tenant(1), 0..3);
        records.push(records[1].clone());
        assert_eq!(failure_at(verify_chain(records)), (1, "duplicate_seq"));
    }

    #[test]
    fn a_record_from_another_tenant_is_caught() {
        let mut records = run(tenant(1), 0..3);
        records[2] = run(tenant(2), 2..3).remove(0);
        match verify_chain(records) {
            Err(VerifyError::Record { seq, failure }) => {
                assert_eq!(seq, Seq::new(2));
                assert_eq!(
                    failure,
                    Failure::TenantMismatch {
                        expected: tenant(1),
                        found: tenant(2)
                    }
                );
            }
            other => panic!("expected a tenant mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_payload_that_does_not_match_its_commitment_is_caught() {
        let mut records = run(tenant(1), 0..3);
        records[1].payload = Some(encode_payload(&payload(99)));
        assert_eq!(
            failure_at(verify_chain(records)),
            (1, "payload_commitment_mismatch")
        );
        let mut records = run(tenant(1), 0..3);
        records[1].salt = Some(Salt::from_bytes([0xee; 32]));
        assert_eq!(
            failure_at(verify_chain(records)),
            (1, "payload_commitment_mismatch")
        );
    }

    #[test]
    fn payload_and_salt_must_come_together() {
        let mut records = run(tenant(1), 0..3);
        records[1].salt = None;
        assert_eq!(failure_at(verify_chain(records)), (1, "unpaired_payload"));
        let mut records = run(tenant(1), 0..3);
        records[2].payload = None;
        match verify_chain(records) {
            Err(VerifyError::Record { seq, failure }) => {
                assert_eq!(seq, Seq::new(2));
                assert_eq!(
                    failure,
                    Failure::UnpairedPayload {
                        present: "salt",
                        missing: "payload_bytes"
                    }
                );
            }
            other => panic!("expected an unpaired payload, got {other:?}"),
        }
        // Both absent: nothing to check, and not a failure.
        let mut records = run(tenant(1), 0..3);
        records[1].payload = None;
        records[1].salt = None;
        records[1].displayed = Displayed::default();
        let report = verify_chain(records).unwrap();
        assert_eq!((report.payloads_checked, report.displays_unchecked), (2, 0));
    }

    #[test]
    fn deleting_the_salt_does_not_hide_a_tampered_payload() {
        let mut records = run(tenant(1), 0..3);
        records[1].payload = Some(encode_payload(&payload(99)));
        records[1].displayed = Displayed::rendered(
            &Header::decode(&records[1].record).unwrap(),
            Some(&payload(99)),
        );
        records[1].salt = None;
        assert_eq!(failure_at(verify_chain(records)), (1, "unpaired_payload"));
    }

    #[test]
    fn a_forged_displayed_field_is_caught_and_named() {
        let mut records = run(tenant(1), 0..3);
        records[1].displayed.actor = Some(serde_json::json!({"id": "u7", "type": "user"}));
        match verify_chain(records) {
            Err(VerifyError::Record { seq, failure }) => {
                assert_eq!(seq, Seq::new(1));
                assert_eq!(failure.code(), "display_mismatch");
                assert_eq!(
                    failure,
                    Failure::DisplayMismatch {
                        field: "actor.id".to_owned()
                    }
                );
            }
            other => panic!("expected a display mismatch, got {other:?}"),
        }
        let mut records = run(tenant(1), 0..3);
        records[2].displayed.action = Some(serde_json::json!("employee.delete"));
        assert_eq!(failure_at(verify_chain(records)), (2, "display_mismatch"));
    }

    #[test]
    fn payload_fields_shown_without_payload_bytes_are_counted_as_unchecked() {
        let mut records = run(tenant(1), 0..3);
        records[1].payload = None;
        records[1].salt = None;
        records[1].displayed.actor = Some(serde_json::json!({"id": "forged", "type": "user"}));
        let report = verify_chain(records.clone()).unwrap();
        assert_eq!((report.payloads_checked, report.displays_unchecked), (2, 1));
        // The header fields are still checked.
        records[1].displayed.event_id = Some(serde_json::json!(Uuid::nil()));
        assert_eq!(failure_at(verify_chain(records)), (1, "display_mismatch"));
    }

    #[test]
    fn a_pinned_tenant_is_required_of_every_record() {
        let options = VerifyOptions::default().with_tenant(tenant(1));
        let report = verify_chain_with(run(tenant(1), 2..4), &options).unwrap();
        assert!(report.tenant_pinned);
        assert!(!verify_chain(run(tenant(1), 2..4)).unwrap().tenant_pinned);

        match verify_chain_with(run(tenant(2), 0..2), &options) {
            Err(VerifyError::Record { seq, failure }) => {
                assert_eq!(seq, Seq::new(0));
                assert_eq!(failure.code(), "wrong_tenant");
                assert_eq!(
                    failure,
                    Failure::WrongTenant {
                        expected: tenant(1),
                        found: tenant(2)
                    }
                );
            }
            other => panic!("expected a wrong tenant, got {other:?}"),
        }
        let mut records = run(tenant(1), 0..3);
        records[2] = run(tenant(2), 2..3).remove(0);
        assert_eq!(
            failure_at(verify_chain_with(records, &options)),
            (2, "wrong_tenant")
        );
    }

    #[test]
    fn a_record_listed_under_another_seq_is_caught() {
        let mut records = run(tenant(1), 0..3);
        records.swap(1, 2);
        let (a, b) = (records[1].seq, records[2].seq);
        records[1].seq = b;
        records[2].seq = a;
        assert_eq!(failure_at(verify_chain(records)), (1, "seq_mismatch"));
    }

    #[test]
    fn non_canonical_record_bytes_are_caught() {
        let mut records = run(tenant(1), 0..1);
        records[0].record.push(0);
        records[0].leaf_hash = leaf_hash(&records[0].record);
        assert_eq!(failure_at(verify_chain(records)), (0, "malformed_record"));
    }
}
