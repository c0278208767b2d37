//! Export bundles and `.tlog-proof` files, verified offline: good ones pass,
//! and every kind of tampering fails with its code and the first failing
//! seq. Bundles are built with `BundleWriter` from sealed records and signed
//! with a fixed test key; nothing here needs a database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ops::Range;

use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use annal::ledger::{
    Actor, Chain, ChainHash, Checkpoint, CompactRange, EventId, Note, NoteSignature, Outcome,
    Payload, Resource, Salt, Seq, TenantId, Timestamp, TlogProof, TreeHash, VerifierKey,
    consistency_plan, empty_root, hash_children, inclusion_plan, seal, tenant_origin,
};
use annal::verify::bundle::{
    BundleFailure, BundleOptions, BundleReport, BundleWriter, MAX_PUBLISHED_VKEYS, PurgedPrefix,
    TrustedCheckpointStatus, verify_bundle,
};
use annal::verify::proof::verify_tlog_proof;

const DEPLOYMENT: &str = "audit.example.com";

fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x0f8f_ad5b_d9cb_469f_a165_7086_7728_950e))
}

fn origin() -> String {
    tenant_origin(DEPLOYMENT, tenant())
}

/// The log's signing key and its verifier key.
fn log_key() -> (SigningKey, VerifierKey) {
    key(7, DEPLOYMENT)
}

fn key(seed: u8, name: &str) -> (SigningKey, VerifierKey) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let verifier = VerifierKey::from_public(name, signing.verifying_key()).unwrap();
    (signing, verifier)
}

fn payload(i: u64) -> Payload {
    Payload {
        before: Some(json!({"salary": 50_000 + i})),
        ..Payload::new(
            Actor {
                id: format!("u{i}"),
                kind: "user".to_owned(),
                name: None,
                email: None,
            },
            Resource {
                kind: "employee".to_owned(),
                id: format!("e{i}"),
            },
        )
    }
}

/// RFC 6962 MTH, straight from the definition.
fn mth(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            hash_children(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// One sealed record as the store keeps it.
#[derive(Clone)]
struct Stored {
    record: Vec<u8>,
    payload: Vec<u8>,
    salt: Salt,
}

/// A tenant's log: every record from seq 0, with its leaves and chain.
struct Log {
    tenant: TenantId,
    records: Vec<Stored>,
    leaves: Vec<TreeHash>,
    chain: Vec<ChainHash>,
}

impl Log {
    /// `n` records; `variant` changes the payloads so that two logs of the
    /// same tenant differ.
    fn new(n: u64, variant: u64) -> Log {
        Log::of(tenant(), n, variant)
    }

    fn of(tenant: TenantId, n: u64, variant: u64) -> Log {
        Log::build(tenant, n, |_, i| {
            (
                "employee.salary.read".to_owned(),
                payload(i + 1000 * variant),
            )
        })
    }

    /// `n` records of `tenant`, record `i` with the action and payload
    /// `record(log of the records before it, i)`.
    fn build(tenant: TenantId, n: u64, record: impl Fn(&Log, u64) -> (String, Payload)) -> Log {
        let mut log = Log {
            tenant,
            records: Vec::new(),
            leaves: Vec::new(),
            chain: Vec::new(),
        };
        let mut chain = Chain::genesis(tenant);
        for i in 0..n {
            let salt = Salt::from_bytes([(i % 251) as u8; 32]);
            let (action, payload) = record(&log, i);
            let sealed = seal(
                tenant,
                Seq::new(i),
                EventId::from_uuid(Uuid::from_u128(u128::from(i) + 1)),
                Timestamp::from_micros(1_700_000_000_000_000 + i as i64),
                action,
                &payload,
                salt,
            );
            let (_, chain_hash) = chain.append(&sealed.leaf_hash);
            log.leaves.push(TreeHash::from(sealed.leaf_hash));
            log.chain.push(chain_hash);
            log.records.push(Stored {
                record: sealed.record,
                payload: sealed.payload,
                salt,
            });
        }
        log
    }

    fn root(&self, size: u64) -> TreeHash {
        mth(&self.leaves[..size as usize])
    }

    /// The chain hash before seq `seq` (the genesis value before seq 0).
    fn chain_before(&self, seq: u64) -> ChainHash {
        match seq {
            0 => ChainHash::genesis(self.tenant),
            _ => self.chain[seq as usize - 1],
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint::new(
            tenant_origin(DEPLOYMENT, self.tenant),
            size,
            self.root(size),
            self.chain_before(size),
        )
        .unwrap()
    }

    /// The checkpoint of `size`, signed by each of `keys`.
    fn note(&self, size: u64, keys: &[&(SigningKey, VerifierKey)]) -> String {
        sign(&self.checkpoint(size).body(), keys)
    }

    fn compact_range(&self, size: u64) -> Vec<TreeHash> {
        let mut range = CompactRange::new();
        for leaf in &self.leaves[..size as usize] {
            range.append(*leaf).unwrap();
        }
        range.hashes().to_vec()
    }

    fn node_hash(&self, node: annal::ledger::NodeId) -> TreeHash {
        let leaves = node.leaves().unwrap();
        mth(&self.leaves[leaves.start as usize..leaves.end as usize])
    }

    fn consistency(&self, from: u64, to: u64) -> Vec<TreeHash> {
        let plan = consistency_plan(from, to).unwrap();
        let nodes: Vec<TreeHash> = plan.nodes().iter().map(|n| self.node_hash(*n)).collect();
        plan.assemble(&nodes).unwrap()
    }

    fn inclusion(&self, index: u64, size: u64) -> Vec<TreeHash> {
        let plan = inclusion_plan(index, size).unwrap();
        let nodes: Vec<TreeHash> = plan.nodes().iter().map(|n| self.node_hash(*n)).collect();
        plan.assemble(&nodes).unwrap()
    }
}

fn sign(body: &str, keys: &[&(SigningKey, VerifierKey)]) -> String {
    let signatures = keys
        .iter()
        .map(|(signing, verifier)| {
            NoteSignature::from_ed25519(verifier, &signing.sign(body.as_bytes()))
        })
        .collect();
    Note::new(body, signatures).unwrap().to_text()
}

/// What a bundle holds.
struct Export {
    /// Records `records.start..records.end`.
    records: Range<u64>,
    /// Checkpoint sizes, ascending; the last is `records.end`.
    checkpoints: Vec<u64>,
    /// A consistency proof from this size to the last checkpoint.
    trusted_size: Option<u64>,
    /// Seqs exported without payload and salt.
    withheld: Vec<u64>,
    /// For a tenant whose records before `records.start` were purged: the
    /// size of the checkpoint the `purged` line names.
    purged_attested_by: Option<u64>,
}

impl Export {
    fn new(records: Range<u64>, checkpoints: &[u64]) -> Export {
        Export {
            records,
            checkpoints: checkpoints.to_vec(),
            trusted_size: None,
            withheld: Vec::new(),
            purged_attested_by: None,
        }
    }

    /// Records `records` of a tenant whose records before them were purged,
    /// the purge attested by the first of `checkpoints`.
    fn after_purge(records: Range<u64>, checkpoints: &[u64]) -> Export {
        Export {
            purged_attested_by: Some(checkpoints[0]),
            ..Export::new(records, checkpoints)
        }
    }
}

/// The bundle of `export`, written with `BundleWriter` the way the server's
/// exporter writes it, checkpoints signed by the log key.
fn bundle(log: &Log, export: &Export) -> Vec<u8> {
    let key = log_key();
    let (from, end) = (export.records.start, export.records.end);
    let mut writer = BundleWriter::new();
    let mut out = writer.header(&origin(), log.tenant, from, end - 1);
    out.extend(writer.vkey(&key.1.to_vkey()));
    if let Some(attested_by) = export.purged_attested_by {
        out.extend(writer.purged(from, attested_by));
    }
    out.extend(writer.start(from, &log.chain_before(from), &log.compact_range(from)));
    let mut previous = None;
    let mut emit = |out: &mut Vec<u8>, writer: &mut BundleWriter, through: u64| {
        for &size in export.checkpoints.iter().filter(|&&s| s == through) {
            out.extend(writer.checkpoint(size, &log.note(size, &[&key])));
            if let Some(previous) = previous {
                out.extend(writer.consistency(previous, size, &log.consistency(previous, size)));
            }
            previous = Some(size);
        }
    };
    emit(&mut out, &mut writer, from);
    for seq in from..end {
        let stored = &log.records[seq as usize];
        let payload =
            (!export.withheld.contains(&seq)).then_some((stored.payload.as_slice(), &stored.salt));
        out.extend(writer.record(seq, &stored.record, payload));
        emit(&mut out, &mut writer, seq + 1);
    }
    if let Some(trusted) = export.trusted_size {
        out.extend(writer.consistency(trusted, end, &log.consistency(trusted, end)));
    }
    out.extend(writer.end());
    out
}

fn with_keys() -> BundleOptions {
    BundleOptions {
        vkeys: vec![log_key().1],
        trusted_checkpoint: None,
        require_complete: false,
    }
}

fn verify_with(bytes: &[u8], options: &BundleOptions) -> Result<BundleReport, BundleFailure> {
    verify_bundle(bytes, options, &mut |_| {})
}

fn verify(bytes: &[u8]) -> Result<BundleReport, BundleFailure> {
    verify_with(bytes, &with_keys())
}

/// The failure's code and seq.
fn failure(result: Result<BundleReport, BundleFailure>) -> (&'static str, Option<u64>) {
    match result {
        Ok(report) => panic!("expected a failure, got {report:?}"),
        Err(failure) => (failure.code(), failure.seq.map(|s| s.value())),
    }
}

/// The bundle's lines, without their newlines.
fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Joins `lines` into a bundle, replacing the end line by a correct one
/// (counts and SHA-256): what a forger who edits a bundle would do.
fn reseal(lines: &[String]) -> Vec<u8> {
    let body: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("{\"end\""))
        .collect();
    let mut out = Vec::new();
    for line in &body {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    let count = |prefix: &str| body.iter().filter(|l| l.starts_with(prefix)).count();
    let end = json!({"end": {
        "records": count("{\"seq\""),
        "checkpoints": count("{\"checkpoint\""),
        "sha256": hex::encode(Sha256::digest(&out)),
    }});
    out.extend_from_slice(format!("{end}\n").as_bytes());
    out
}

/// Index of the record line of `seq`.
fn record_line(lines: &[String], seq: u64) -> usize {
    let prefix = format!("{{\"seq\":{seq},");
    lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().unwrap())
        .unwrap()
}

/// A bundle of seqs 0..10 with checkpoints at 3, 7 and 10.
fn standard() -> (Log, Vec<u8>) {
    let log = Log::new(12, 0);
    let bytes = bundle(&log, &Export::new(0..10, &[3, 7, 10]));
    (log, bytes)
}

// ---------------------------------------------------------------------------
// Good bundles.

#[test]
fn a_bundle_from_seq_zero_with_several_checkpoints_verifies() {
    let (log, bytes) = standard();
    let report = verify(&bytes).unwrap();
    assert_eq!(report.origin, origin());
    assert_eq!(report.tenant_id, tenant());
    assert_eq!((report.from_seq.value(), report.to_seq.value()), (0, 9));
    assert_eq!(report.records_checked, 10);
    assert_eq!((report.payloads_checked, report.payloads_withheld), (10, 0));
    assert_eq!(report.checkpoints_verified, 3);
    assert_eq!(report.last_checkpoint_size, 10);
    assert_eq!(report.last_checkpoint_root, log.root(10));
    assert_eq!(report.chain_head, log.chain[9]);
    let vkey = log_key().1;
    assert_eq!(
        report.signing_keys,
        vec![format!("{}+{:08x}", vkey.name(), vkey.key_id())]
    );
    assert_eq!(report.published_vkeys, vec![vkey.to_vkey()]);
    assert_eq!(report.trusted_checkpoint, TrustedCheckpointStatus::NotGiven);
}

#[test]
fn a_bundle_starting_later_verifies_from_its_compact_range() {
    let log = Log::new(20, 0);
    // A checkpoint right at the start, then two more.
    let report = verify(&bundle(&log, &Export::new(5..13, &[5, 8, 13]))).unwrap();
    assert_eq!((report.from_seq.value(), report.to_seq.value()), (5, 12));
    assert_eq!(
        (report.records_checked, report.checkpoints_verified),
        (8, 3)
    );
    // Without one at the start; a power-of-two size too.
    let report = verify(&bundle(&log, &Export::new(6..16, &[16]))).unwrap();
    assert_eq!(report.last_checkpoint_root, log.root(16));
    let report = verify(&bundle(&log, &Export::new(19..20, &[20]))).unwrap();
    assert_eq!(report.records_checked, 1);
}

#[test]
fn withheld_payloads_verify_their_headers_and_are_counted() {
    let log = Log::new(10, 0);
    let mut export = Export::new(0..10, &[4, 10]);
    export.withheld = vec![1, 2, 9];
    let report = verify(&bundle(&log, &export)).unwrap();
    assert_eq!((report.payloads_checked, report.payloads_withheld), (7, 3));
}

#[test]
fn the_writer_is_deterministic() {
    let (_, first) = standard();
    let (_, second) = standard();
    assert_eq!(first, second);
}

#[test]
fn progress_reports_every_byte() {
    let (_, bytes) = standard();
    let mut last = 0;
    verify_bundle(&bytes[..], &with_keys(), &mut |consumed| last = consumed).unwrap();
    assert_eq!(last, bytes.len() as u64);
}

// ---------------------------------------------------------------------------
// Tampered records.

#[test]
fn an_altered_payload_is_caught_at_its_seq() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let i = record_line(&lines, 5);
    let mut line = parse(&lines[i]);
    let mut payload = unb64(&line["payload"]);
    let at = payload.windows(2).position(|w| w == b"u5").unwrap();
    payload[at + 1] = b'6';
    line["payload"] = json!(b64(&payload));
    lines[i] = line.to_string();
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("payload_commitment_mismatch", Some(5))
    );
}

#[test]
fn an_altered_record_byte_is_caught_by_the_next_signed_root() {
    for withheld in [false, true] {
        let log = Log::new(10, 0);
        let mut export = Export::new(0..10, &[3, 7, 10]);
        if withheld {
            export.withheld = vec![5];
        }
        let mut lines = lines(&bundle(&log, &export));
        let i = record_line(&lines, 5);
        let mut line = parse(&lines[i]);
        let mut record = unb64(&line["record"]);
        // A letter of the action: still a canonical header, another leaf.
        let at = record.windows(8).position(|w| w == b"employee").unwrap();
        record[at] = b'E';
        line["record"] = json!(b64(&record));
        lines[i] = line.to_string();
        // The fault lies in 3..=6, between the verified checkpoints 3 and 7.
        let result = verify(&reseal(&lines));
        let error = result.as_ref().unwrap_err().to_string();
        assert_eq!(failure(result), ("root_mismatch", Some(3)));
        assert!(error.contains("records 3..=6"), "{error}");
    }
}

#[test]
fn a_record_byte_that_breaks_the_header_is_caught_at_its_seq() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let i = record_line(&lines, 2);
    let mut line = parse(&lines[i]);
    let mut record = unb64(&line["record"]);
    record[0] = 0x98; // an array of 8
    line["record"] = json!(b64(&record));
    lines[i] = line.to_string();
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("malformed_record", Some(2))
    );
}

#[test]
fn a_deleted_record_is_a_gap_at_its_seq() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    lines.remove(record_line(&lines, 4));
    assert_eq!(failure(verify(&reseal(&lines))), ("gap", Some(4)));
}

#[test]
fn swapped_records_are_caught_at_the_first_out_of_place_seq() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let (a, b) = (record_line(&lines, 4), record_line(&lines, 5));
    lines.swap(a, b);
    assert_eq!(failure(verify(&reseal(&lines))), ("gap", Some(4)));
}

#[test]
fn a_record_relisted_under_another_seq_is_caught() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let (a, b) = (record_line(&lines, 4), record_line(&lines, 5));
    let (four, five) = (parse(&lines[a]), parse(&lines[b]));
    let mut moved = five.clone();
    moved["seq"] = json!(4);
    let mut other = four.clone();
    other["seq"] = json!(5);
    lines[a] = moved.to_string();
    lines[b] = other.to_string();
    assert_eq!(failure(verify(&reseal(&lines))), ("seq_mismatch", Some(4)));
}

#[test]
fn a_repeated_record_is_a_duplicate() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let i = record_line(&lines, 4);
    lines.insert(i + 1, lines[i].clone());
    assert_eq!(failure(verify(&reseal(&lines))), ("duplicate_seq", Some(4)));
}

#[test]
fn a_record_of_another_tenant_is_caught() {
    let other = TenantId::from_uuid(Uuid::from_u128(99));
    let foreign = Log::of(other, 10, 0);
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let i = record_line(&lines, 6);
    let mut line = parse(&lines[i]);
    line["record"] = json!(b64(&foreign.records[6].record));
    lines[i] = line.to_string();
    assert_eq!(failure(verify(&reseal(&lines))), ("wrong_tenant", Some(6)));
}

#[test]
fn a_payload_without_its_salt_is_caught() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let i = record_line(&lines, 1);
    let mut line = parse(&lines[i]);
    line["salt"] = Value::Null;
    lines[i] = line.to_string();
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("unpaired_payload", Some(1))
    );
}

#[test]
fn a_rewritten_history_with_valid_chain_links_is_caught_by_the_signed_root() {
    // The forger replaces records 3..=6 with a self-consistent run: same
    // seqs and tenant, valid payload commitments, and (as the verifier
    // recomputes them) valid chain links from the real chain hash of seq 2.
    let log = Log::new(10, 0);
    let forged = Log::new(10, 1);
    let mut lines = lines(&bundle(&log, &Export::new(0..10, &[3, 7, 10])));
    for seq in 3..7 {
        let i = record_line(&lines, seq);
        let stored = &forged.records[seq as usize];
        lines[i] = json!({
            "seq": seq,
            "record": b64(&stored.record),
            "payload": b64(&stored.payload),
            "salt": stored.salt,
        })
        .to_string();
    }
    assert_eq!(failure(verify(&reseal(&lines))), ("root_mismatch", Some(3)));
}

// ---------------------------------------------------------------------------
// Tampered structure.

#[test]
fn a_truncated_tail_leaves_a_checkpoint_beyond_the_records() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    for seq in [9, 8] {
        lines.remove(record_line(&lines, seq));
    }
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("checkpoint_beyond_records", Some(8))
    );
}

#[test]
fn a_bundle_cut_short_is_truncated() {
    let (_, bytes) = standard();
    // At a line boundary: the end line is missing.
    let cut = bytes.len() - lines(&bytes).last().unwrap().len() - 1;
    assert_eq!(failure(verify(&bytes[..cut])).0, "truncated");
    // Inside a line.
    assert_eq!(failure(verify(&bytes[..bytes.len() / 2])).0, "truncated");
    assert_eq!(failure(verify(b"")).0, "truncated");
}

#[test]
fn records_after_the_last_checkpoint_are_unsigned() {
    let log = Log::new(12, 0);
    let mut lines = lines(&bundle(&log, &Export::new(0..10, &[3, 7, 10])));
    let end = lines.len() - 1;
    for seq in [10u64, 11] {
        let stored = &log.records[seq as usize];
        let line = json!({
            "seq": seq,
            "record": b64(&stored.record),
            "payload": b64(&stored.payload),
            "salt": stored.salt,
        });
        lines.insert(end + (seq as usize - 10), line.to_string());
    }
    // Beyond the header's range.
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("record_out_of_range", Some(10))
    );
    // And with the header's range stretched to cover them.
    let mut header = parse(&lines[0]);
    header["to_seq"] = json!(11);
    lines[0] = header.to_string();
    assert_eq!(
        failure(verify(&reseal(&lines))),
        ("unsigned_records", Some(10))
    );
}

#[test]
fn a_missing_or_forged_consistency_proof_is_caught() {
    let (_, bytes) = standard();
    let lines = lines(&bytes);
    let first = lines
        .iter()
        .position(|l| l.starts_with("{\"consistency\""))
        .unwrap();

    let mut missing = lines.clone();
    missing.remove(first);
    assert_eq!(failure(verify(&reseal(&missing))).0, "missing_consistency");

    let mut forged = lines.clone();
    let mut line = parse(&forged[first]);
    line["consistency"]["proof"][0] = json!(TreeHash::from_bytes([1; 32]).to_base64());
    forged[first] = line.to_string();
    assert_eq!(
        failure(verify(&reseal(&forged))),
        ("consistency_invalid", Some(3))
    );

    let mut misplaced = lines.clone();
    let mut line = parse(&misplaced[first]);
    line["consistency"]["from"] = json!(2);
    misplaced[first] = line.to_string();
    assert_eq!(
        failure(verify(&reseal(&misplaced))).0,
        "misplaced_consistency"
    );
}

#[test]
fn unknown_keys_trailing_data_and_a_wrong_end_line_are_refused() {
    let (_, bytes) = standard();
    let lines = lines(&bytes);

    let mut unknown = lines.clone();
    let mut line = parse(&unknown[record_line(&unknown, 0)]);
    line["note"] = json!("x");
    let i = record_line(&unknown, 0);
    unknown[i] = line.to_string();
    let result = verify(&reseal(&unknown));
    assert_eq!(failure(result.clone()), ("malformed_line", Some(0)));
    assert!(result.unwrap_err().to_string().contains("note"));

    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"{}\n");
    assert_eq!(failure(verify(&trailing)).0, "trailing_data");

    let mut counts = lines.clone();
    let last = counts.len() - 1;
    counts[last] = counts[last].replace("\"records\":10", "\"records\":11");
    let mut text = counts.join("\n");
    text.push('\n');
    assert_eq!(failure(verify(text.as_bytes())).0, "end_mismatch");

    let mut vkey = lines.clone();
    vkey[1] = json!({"vkey": key(9, "forger.example").1.to_vkey()}).to_string();
    let mut text = vkey.join("\n");
    text.push('\n');
    assert_eq!(failure(verify(text.as_bytes())).0, "bundle_hash_mismatch");
}

// ---------------------------------------------------------------------------
// Signatures and the start line.

/// Replaces the note of the checkpoint line of `size`.
fn replace_note(lines: &mut [String], size: u64, note: String) {
    let prefix = format!("{{\"checkpoint\":{{\"size\":{size},");
    let i = lines.iter().position(|l| l.starts_with(&prefix)).unwrap();
    lines[i] = json!({"checkpoint": {"size": size, "note": note}}).to_string();
}

#[test]
fn a_bad_signature_by_the_trusted_key_is_caught() {
    let (log, bytes) = standard();
    let mut lines = lines(&bytes);
    let (signing, verifier) = log_key();
    let body = log.checkpoint(7).body();
    // The key's signature over another text.
    let wrong = signing.sign(log.checkpoint(8).body().as_bytes());
    let note = Note::new(&body, vec![NoteSignature::from_ed25519(&verifier, &wrong)]).unwrap();
    replace_note(&mut lines, 7, note.to_text());
    assert_eq!(failure(verify(&reseal(&lines))).0, "bad_signature");
}

#[test]
fn a_checkpoint_signed_only_by_an_unknown_key_is_refused() {
    let (log, bytes) = standard();
    let mut lines = lines(&bytes);
    let stranger = key(8, DEPLOYMENT);
    replace_note(&mut lines, 7, log.note(7, &[&stranger]));
    assert_eq!(failure(verify(&reseal(&lines))).0, "no_trusted_signature");
    // A whole bundle checked against another key fails at its first one.
    let options = BundleOptions {
        vkeys: vec![stranger.1],
        trusted_checkpoint: None,
        require_complete: false,
    };
    assert_eq!(
        failure(verify_with(&bytes, &options)).0,
        "no_trusted_signature"
    );
}

#[test]
fn signatures_by_unknown_keys_next_to_a_trusted_one_are_ignored() {
    let (log, bytes) = standard();
    let mut lines = lines(&bytes);
    let witness = key(9, "witness.example");
    replace_note(&mut lines, 7, log.note(7, &[&witness, &log_key()]));
    assert!(verify(&reseal(&lines)).is_ok());
}

#[test]
fn a_checkpoint_of_another_tenant_is_refused() {
    let (_, bytes) = standard();
    let mut lines = lines(&bytes);
    let other = Log::of(TenantId::from_uuid(Uuid::from_u128(5)), 12, 0);
    replace_note(&mut lines, 7, other.note(7, &[&log_key()]));
    assert_eq!(failure(verify(&reseal(&lines))).0, "wrong_origin");
}

/// Replaces the start line's `field` with `value`.
fn forge_start(bytes: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut lines = lines(bytes);
    let i = lines
        .iter()
        .position(|l| l.starts_with("{\"start\""))
        .unwrap();
    let mut line = parse(&lines[i]);
    line["start"][field] = value;
    lines[i] = line.to_string();
    reseal(&lines)
}

#[test]
fn a_forged_start_compact_range_is_caught_by_the_first_signed_root() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::new(6..12, &[9, 12]));
    let forged = Log::new(20, 1).compact_range(6);
    let forged: Vec<String> = forged.iter().map(TreeHash::to_base64).collect();
    let bytes = forge_start(&bytes, "compact_range", json!(forged));
    assert_eq!(failure(verify(&bytes)), ("root_mismatch", Some(6)));
}

#[test]
fn a_forged_start_chain_hash_is_caught_by_the_first_signed_chain_head() {
    // Every link from the forged value on is valid; only the signed chain
    // head shows the forgery.
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::new(6..12, &[9, 12]));
    let forged = ChainHash::from_bytes([0x55; 32]);
    let bytes = forge_start(&bytes, "chain_hash", json!(forged));
    assert_eq!(failure(verify(&bytes)), ("chain_head_mismatch", Some(6)));
    // At seq 0 the start must be the tenant's genesis value.
    let (_, bytes) = standard();
    let bytes = forge_start(&bytes, "chain_hash", json!(forged));
    assert_eq!(failure(verify(&bytes)).0, "bad_start");
}

// ---------------------------------------------------------------------------
// The auditor's trusted checkpoint.

fn trusting(note: String, keys: bool) -> BundleOptions {
    BundleOptions {
        vkeys: if keys { vec![log_key().1] } else { Vec::new() },
        trusted_checkpoint: Some(note),
        require_complete: false,
    }
}

#[test]
fn a_trusted_checkpoint_within_the_bundle_must_match_it() {
    let (log, bytes) = standard();
    let report = verify_with(&bytes, &trusting(log.note(5, &[&log_key()]), true)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Matched { size: 5 }
    );
    // A validly signed checkpoint of a forked log: the server showed the
    // auditor another history at size 5.
    let fork = Log::new(12, 1);
    let forked = fork.note(5, &[&log_key()]);
    assert_eq!(
        failure(verify_with(&bytes, &trusting(forked, true))),
        ("trusted_checkpoint_mismatch", Some(4))
    );
}

#[test]
fn an_older_trusted_checkpoint_is_linked_by_the_consistency_line() {
    let log = Log::new(20, 0);
    let mut export = Export::new(8..14, &[10, 14]);
    export.trusted_size = Some(5);
    let bytes = bundle(&log, &export);
    let report = verify_with(&bytes, &trusting(log.note(5, &[&log_key()]), true)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Linked { size: 5 }
    );
    // The auditor's line is optional for whoever does not ask for it.
    assert!(verify(&bytes).is_ok());
}

#[test]
fn an_older_trusted_checkpoint_of_a_forked_log_is_inconsistent() {
    let log = Log::new(20, 0);
    let mut export = Export::new(8..14, &[10, 14]);
    export.trusted_size = Some(5);
    let bytes = bundle(&log, &export);
    let forked = Log::new(20, 1).note(5, &[&log_key()]);
    assert_eq!(
        failure(verify_with(&bytes, &trusting(forked, true))).0,
        "trusted_checkpoint_inconsistent"
    );
}

#[test]
fn an_older_trusted_checkpoint_without_a_consistency_line_is_unlinked() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::new(8..14, &[10, 14]));
    let result = verify_with(&bytes, &trusting(log.note(5, &[&log_key()]), true));
    let message = result.as_ref().unwrap_err().to_string();
    assert_eq!(failure(result).0, "trusted_checkpoint_unlinked");
    assert!(message.contains("trusted_size=5"), "{message}");
}

#[test]
fn a_trusted_checkpoint_newer_than_the_bundle_is_refused() {
    let (log, bytes) = standard();
    let result = verify_with(&bytes, &trusting(log.note(11, &[&log_key()]), true));
    assert_eq!(failure(result).0, "trusted_checkpoint_newer");
}

#[test]
fn without_keys_the_trusted_checkpoint_alone_anchors_the_bundle() {
    let (log, bytes) = standard();
    // Unsigned by any key the auditor names, yet trusted as saved.
    let saved = log.note(10, &[&key(3, "anything.example")]);
    let report = verify_with(&bytes, &trusting(saved, false)).unwrap();
    assert!(report.signing_keys.is_empty());
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Matched { size: 10 }
    );
    // Records beyond it are not covered by anything trusted.
    let older = log.note(7, &[&log_key()]);
    assert_eq!(
        failure(verify_with(&bytes, &trusting(older, false))),
        ("beyond_trusted_checkpoint", Some(7))
    );
}

#[test]
fn a_trusted_checkpoint_must_be_signed_by_a_given_key() {
    let (log, bytes) = standard();
    let unsigned = log.note(10, &[&key(3, "anything.example")]);
    assert_eq!(
        failure(verify_with(&bytes, &trusting(unsigned, true))).0,
        "trusted_checkpoint_unsigned"
    );
    let malformed = verify_with(&bytes, &trusting("not a note".to_owned(), true)).unwrap_err();
    assert_eq!(malformed.code(), "trusted_checkpoint_malformed");
    assert!(malformed.is_input_error());
}

#[test]
fn nothing_to_trust_is_an_input_error() {
    let (_, bytes) = standard();
    let error = verify_with(&bytes, &BundleOptions::default()).unwrap_err();
    assert_eq!(error.code(), "no_trust_anchor");
    assert!(error.is_input_error());
}

// ---------------------------------------------------------------------------
// Retention: a purged prefix.

/// Verification that requires every record from seq 0 to be accounted for.
fn complete() -> BundleOptions {
    BundleOptions {
        require_complete: true,
        ..with_keys()
    }
}

/// Index of the checkpoint line of `size`.
fn checkpoint_line(lines: &[String], size: u64) -> usize {
    let prefix = format!("{{\"checkpoint\":{{\"size\":{size},");
    lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
}

/// Index of the first line starting with `prefix`.
fn line_of(lines: &[String], prefix: &str) -> usize {
    lines.iter().position(|l| l.starts_with(prefix)).unwrap()
}

/// Replaces the purged line's `field` with `value`.
fn forge_purged(bytes: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut lines = lines(bytes);
    let i = line_of(&lines, "{\"purged\"");
    let mut line = parse(&lines[i]);
    line["purged"][field] = value;
    lines[i] = line.to_string();
    reseal(&lines)
}

#[test]
fn a_bundle_after_a_purge_verifies_and_reports_the_purged_prefix() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    assert_eq!(
        lines(&bytes)[2],
        "{\"purged\":{\"size\":5,\"attested_by\":8}}"
    );
    let report = verify_with(&bytes, &complete()).unwrap();
    assert_eq!(
        report.purged,
        Some(PurgedPrefix {
            size: 5,
            attested_by: 8,
            recorded_at: None,
        })
    );
    assert_eq!((report.from_seq.value(), report.to_seq.value()), (5, 12));
    assert_eq!(
        (report.records_checked, report.checkpoints_verified),
        (8, 2)
    );
    // Attested by a checkpoint right at the boundary, before any record.
    let bytes = bundle(&log, &Export::after_purge(5..13, &[5, 13]));
    let report = verify_with(&bytes, &complete()).unwrap();
    assert_eq!(report.purged.map(|p| p.attested_by), Some(5));
    // And by the bundle's only checkpoint, its last.
    let bytes = bundle(&log, &Export::after_purge(5..13, &[13]));
    let report = verify(&bytes).unwrap();
    assert_eq!(report.purged.map(|p| p.attested_by), Some(13));
}

#[test]
fn a_partial_export_verifies_but_fails_when_completeness_is_required() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::new(5..13, &[8, 13]));
    let report = verify(&bytes).unwrap();
    assert_eq!(report.purged, None);
    assert_eq!(report.from_seq.value(), 5);
    // Lines: header, vkey, start: the start line shows the bundle starts
    // late with nothing said of the records before it.
    let result = verify_with(&bytes, &complete());
    let message = result.as_ref().unwrap_err().to_string();
    assert_eq!(failure_at(result), ("incomplete", Some(0), 3));
    assert!(
        message.contains("records 0..=4 are neither in this bundle nor attested as purged"),
        "{message}"
    );
    // A bundle from seq 0 is complete.
    let (_, bytes) = standard();
    assert_eq!(verify_with(&bytes, &complete()).unwrap().purged, None);
}

#[test]
fn a_purged_line_must_fit_the_header() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    // Lines: header, vkey, purged.
    let cases = [
        ("size", 4, "from_seq"),
        ("size", 6, "from_seq"),
        ("attested_by", 4, "attested_by 4"),
        ("attested_by", 14, "attested_by 14"),
    ];
    for (field, value, named) in cases {
        let result = verify(&forge_purged(&bytes, field, json!(value)));
        let message = result.as_ref().unwrap_err().to_string();
        assert_eq!(
            failure_at(result),
            ("bad_purge", None, 3),
            "{field} {value}"
        );
        assert!(message.contains(named), "{message}");
    }
    // Nothing is purged before seq 0.
    let (_, bytes) = standard();
    let mut zero = lines(&bytes);
    zero.insert(2, "{\"purged\":{\"size\":0,\"attested_by\":3}}".to_owned());
    assert_eq!(failure_at(verify(&reseal(&zero))), ("bad_purge", None, 3));
    // A malformed one is a malformed line.
    let mut extra = lines(&bytes);
    extra.insert(
        2,
        "{\"purged\":{\"size\":0,\"attested_by\":3,\"at\":1}}".to_owned(),
    );
    assert_eq!(failure_at(verify(&reseal(&extra))).0, "malformed_line");
}

#[test]
fn a_purged_line_comes_once_between_the_vkeys_and_the_start_line() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let lines = lines(&bytes);
    let purged = lines[2].clone();

    let mut twice = lines.clone();
    twice.insert(3, purged.clone());
    assert_eq!(
        failure_at(verify(&reseal(&twice))),
        ("unexpected_line", None, 4)
    );

    let mut vkey_after = lines.clone();
    vkey_after.insert(3, lines[1].clone());
    assert_eq!(
        failure_at(verify(&reseal(&vkey_after))),
        ("unexpected_line", None, 4)
    );

    let mut after_start = lines.clone();
    after_start.remove(2);
    after_start.insert(3, purged.clone());
    assert_eq!(
        failure_at(verify(&reseal(&after_start))),
        ("unexpected_line", None, 4)
    );

    // Before a vkey line: the vkeys come first.
    let mut before_vkeys = lines.clone();
    before_vkeys.swap(1, 2);
    assert_eq!(
        failure_at(verify(&reseal(&before_vkeys))).0,
        "unexpected_line"
    );
}

#[test]
fn a_purge_not_attested_by_the_first_checkpoint_is_refused() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let lines = lines(&bytes);

    // It names the last checkpoint, but the first one is of size 8.
    let result = verify(&forge_purged(&bytes, "attested_by", json!(13)));
    let message = result.as_ref().unwrap_err().to_string();
    let at = checkpoint_line(&lines, 8) as u64 + 1;
    assert_eq!(failure_at(result), ("purge_unattested", None, at));
    assert!(message.contains("first checkpoint has size 8"), "{message}");

    // It names a size the bundle has no checkpoint of: the record that
    // goes past it fails.
    for (attested_by, seq) in [(5, 5), (6, 6)] {
        let result = verify(&forge_purged(&bytes, "attested_by", json!(attested_by)));
        let at = record_line(&lines, seq) as u64 + 1;
        assert_eq!(
            failure_at(result),
            ("purge_unattested", None, at),
            "{attested_by}"
        );
    }

    // The attesting checkpoint taken out (with the proof that followed the
    // next one): the record after its place fails.
    let mut removed = lines.clone();
    removed.remove(checkpoint_line(&removed, 8));
    removed.remove(line_of(&removed, "{\"consistency\""));
    let at = record_line(&removed, 8) as u64 + 1;
    let result = verify(&reseal(&removed));
    assert_eq!(failure_at(result), ("purge_unattested", None, at));
}

#[test]
fn a_forged_purge_boundary_is_caught_by_the_attesting_checkpoint() {
    let log = Log::new(20, 0);
    let forged_range: Vec<String> = Log::new(20, 1)
        .compact_range(6)
        .iter()
        .map(TreeHash::to_base64)
        .collect();
    let forged_chain = ChainHash::from_bytes([0x55; 32]);
    for checkpoints in [&[9, 12][..], &[6, 12][..]] {
        let bytes = bundle(&log, &Export::after_purge(6..12, checkpoints));
        let at = checkpoint_line(&lines(&bytes), checkpoints[0]) as u64 + 1;
        let forged = forge_start(&bytes, "compact_range", json!(forged_range));
        assert_eq!(
            failure_at(verify(&forged)),
            ("root_mismatch", Some(6), at),
            "{checkpoints:?}"
        );
        let forged = forge_start(&bytes, "chain_hash", json!(forged_chain));
        assert_eq!(
            failure_at(verify(&forged)),
            ("chain_head_mismatch", Some(6), at),
            "{checkpoints:?}"
        );
    }
}

#[test]
fn a_trusted_checkpoint_older_than_the_purge_is_reported_not_failed() {
    let log = Log::new(20, 0);
    let bytes = bundle(&log, &Export::after_purge(8..14, &[10, 14]));
    let saved = |size| trusting(log.note(size, &[&log_key()]), true);

    let report = verify_with(&bytes, &saved(5)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::PredatesPurge { size: 5 }
    );
    // At or after the boundary it is compared as always.
    let report = verify_with(&bytes, &saved(8)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Matched { size: 8 }
    );
    // The empty tree needs no proof.
    let report = verify_with(&bytes, &saved(0)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Linked { size: 0 }
    );
    // Where the bundle does link it, the link is checked.
    let mut export = Export::after_purge(8..14, &[10, 14]);
    export.trusted_size = Some(5);
    let linked = bundle(&log, &export);
    let report = verify_with(&linked, &saved(5)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Linked { size: 5 }
    );
    let forked = Log::new(20, 1).note(5, &[&log_key()]);
    assert_eq!(
        failure(verify_with(&linked, &trusting(forked, true))).0,
        "trusted_checkpoint_inconsistent"
    );
    // Without a purged line, an unlinked older checkpoint still fails.
    let partial = bundle(&log, &Export::new(8..14, &[10, 14]));
    assert_eq!(
        failure(verify_with(&partial, &saved(5))).0,
        "trusted_checkpoint_unlinked"
    );
}

// ---------------------------------------------------------------------------
// Retention: the purge's own record.

/// The payload of the `retention.purged` record announcing the boundary
/// `size` of `log`, as the retention service writes it; `log` holds the
/// records before it, so at least `size`.
fn purge_payload(log: &Log, size: u64) -> Payload {
    Payload {
        outcome: Some(Outcome::Success),
        after: Some(json!({
            "purged": {"from_seq": 0, "to_seq": size - 1},
            "boundary": {
                "size": size,
                "chain_hash": log.chain_before(size).to_string(),
                "compact_range": log
                    .compact_range(size)
                    .iter()
                    .map(TreeHash::to_base64)
                    .collect::<Vec<_>>(),
                "attested_by_checkpoint": size,
            },
            "policy": {
                "period_months": 84,
                "cutoff": "2017-01-01T00:00:00+00:00",
                "decided_at": "2024-01-01T00:00:00+00:00",
            },
        })),
        ..Payload::new(
            Actor {
                id: "annal-retention".to_owned(),
                kind: "system".to_owned(),
                name: None,
                email: None,
            },
            Resource {
                kind: "audit_trail".to_owned(),
                id: tenant().to_string(),
            },
        )
    }
}

/// A log of `n` records where, for each `(seq, size)` of `purges`, record
/// `seq` is the `retention.purged` record announcing the boundary `size`,
/// its `after` passed through `forge` (the server wrote it so).
fn log_with_purge_records(n: u64, purges: &[(u64, u64)], forge: impl Fn(&mut Value)) -> Log {
    Log::build(tenant(), n, |log, i| {
        match purges.iter().find(|(seq, _)| *seq == i) {
            Some(&(_, size)) => {
                let mut payload = purge_payload(log, size);
                if let Some(after) = &mut payload.after {
                    forge(after);
                }
                ("retention.purged".to_owned(), payload)
            }
            None => ("employee.salary.read".to_owned(), payload(i)),
        }
    })
}

#[test]
fn a_purge_recorded_in_the_bundle_is_reported_at_its_first_record() {
    // An older purge (boundary 3) at seq 6, this one (boundary 5) at 9 and
    // again at 11.
    let log = log_with_purge_records(20, &[(6, 3), (9, 5), (11, 5)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let report = verify_with(&bytes, &complete()).unwrap();
    assert_eq!(
        report.purged,
        Some(PurgedPrefix {
            size: 5,
            attested_by: 8,
            recorded_at: Some(9),
        })
    );
    // Also before the attesting checkpoint, and right at the boundary.
    let log = log_with_purge_records(20, &[(5, 5)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let report = verify(&bytes).unwrap();
    assert_eq!(report.purged.and_then(|p| p.recorded_at), Some(5));
}

#[test]
fn a_purge_not_recorded_in_the_bundle_is_reported_not_failed() {
    // The bundle ends before the record (an export made before it was
    // appended, or a purge interrupted before it).
    let log = log_with_purge_records(20, &[(9, 5)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..9, &[9]));
    let report = verify_with(&bytes, &complete()).unwrap();
    assert_eq!(
        report.purged.map(|p| (p.size, p.recorded_at)),
        Some((5, None))
    );
    // Only older purges are recorded.
    let log = log_with_purge_records(20, &[(6, 3)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let report = verify(&bytes).unwrap();
    assert_eq!(report.purged.map(|p| p.recorded_at), Some(None));
}

#[test]
fn a_purge_record_with_another_chain_hash_or_compact_range_is_a_mismatch() {
    let other_range: Vec<String> = Log::new(20, 1)
        .compact_range(5)
        .iter()
        .map(TreeHash::to_base64)
        .collect();
    let cases = [
        ("chain_hash", json!("55".repeat(32))),
        ("chain_hash", json!("not hex")),
        ("chain_hash", Value::Null),
        ("compact_range", json!(other_range)),
        ("compact_range", json!([])),
        ("compact_range", json!(["not base64"])),
    ];
    for (field, value) in cases {
        let log = log_with_purge_records(20, &[(9, 5)], |after| {
            after["boundary"][field] = value.clone();
        });
        let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
        let at = record_line(&lines(&bytes), 9) as u64 + 1;
        let result = verify(&bytes);
        let message = result.as_ref().unwrap_err().to_string();
        assert_eq!(
            failure_at(result),
            ("purge_record_mismatch", Some(9), at),
            "{field} {value}"
        );
        assert!(
            message.contains(&format!(
                "announces the purge boundary 5 with another {field} than the bundle's start line"
            )),
            "{message}"
        );
    }
}

#[test]
fn a_purge_record_of_a_later_boundary_than_the_bundle_start_is_a_mismatch() {
    let log = log_with_purge_records(20, &[(9, 7)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    let at = record_line(&lines(&bytes), 9) as u64 + 1;
    let result = verify(&bytes);
    let message = result.as_ref().unwrap_err().to_string();
    assert_eq!(failure_at(result), ("purge_record_mismatch", Some(9), at));
    assert!(
        message.contains("the log records a purge up to seq 6 (boundary 7), but the bundle starts at the boundary 5"),
        "{message}"
    );
    // Even after a record of the bundle's own boundary.
    let log = log_with_purge_records(20, &[(6, 5), (9, 7)], |_| {});
    let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
    assert_eq!(failure(verify(&bytes)), ("purge_record_mismatch", Some(9)));
}

#[test]
fn purge_records_without_a_payload_or_boundary_or_purged_line_are_not_compared() {
    let later = log_with_purge_records(20, &[(9, 7)], |_| {});
    // Its payload withheld: nothing to compare, nothing recorded.
    let mut export = Export::after_purge(5..13, &[8, 13]);
    export.withheld = vec![9];
    let report = verify(&bundle(&later, &export)).unwrap();
    assert_eq!(report.purged.map(|p| p.recorded_at), Some(None));
    assert_eq!(report.payloads_withheld, 1);
    let matching = log_with_purge_records(20, &[(9, 5)], |_| {});
    let report = verify(&bundle(&matching, &export)).unwrap();
    assert_eq!(report.purged.map(|p| p.recorded_at), Some(None));
    // A partial export says nothing of a purge to compare with.
    let report = verify(&bundle(&later, &Export::new(5..13, &[8, 13]))).unwrap();
    assert_eq!(report.purged, None);
    // A record of that action whose `after` announces no boundary (any
    // client may write the action) is another record.
    for forge in [
        (|after: &mut Value| after["boundary"] = json!("none")) as fn(&mut Value),
        |after| after["boundary"]["size"] = json!("5"),
        |after| *after = json!({"purged": 12}),
    ] {
        let log = log_with_purge_records(20, &[(9, 5)], forge);
        let bytes = bundle(&log, &Export::after_purge(5..13, &[8, 13]));
        let report = verify(&bytes).unwrap();
        assert_eq!(report.purged.map(|p| p.recorded_at), Some(None));
    }
}

#[test]
fn the_cli_says_whether_the_purge_is_recorded_in_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_purge_records(20, &[(11, 8)], |_| {});
    let vkey = log_key().1.to_vkey();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let recorded = write(
        "recorded.jsonl",
        &bundle(&log, &Export::after_purge(8..14, &[10, 14])),
    );
    let unrecorded = write(
        "unrecorded.jsonl",
        &bundle(&log, &Export::after_purge(8..11, &[10, 11])),
    );

    let run = annal_verify(&[&recorded, "--vkey", &vkey]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "records 0..=7: purged by retention policy, attested by checkpoint 10; recorded in the log at seq 11"
        ),
        "{}",
        run.stdout
    );
    let run = annal_verify(&[&recorded, "--vkey", &vkey, "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["report"]["purged"],
        json!({"size": 8, "attested_by": 10, "recorded_at": 11})
    );

    let run = annal_verify(&[&unrecorded, "--vkey", &vkey]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("attested by checkpoint 10; not recorded in this bundle"),
        "{}",
        run.stdout
    );

    let mismatch = log_with_purge_records(20, &[(11, 9)], |_| {});
    let mismatch = write(
        "mismatch.jsonl",
        &bundle(&mismatch, &Export::after_purge(8..14, &[10, 14])),
    );
    let run = annal_verify(&[&mismatch, "--vkey", &vkey, "--json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["error"]["code"], "purge_record_mismatch");
    assert_eq!(report["error"]["seq"], 11);
}

#[test]
fn the_cli_reports_a_purge_a_partial_export_and_an_old_trusted_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(20, 0);
    let vkey = log_key().1.to_vkey();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let purged = write(
        "purged.jsonl",
        &bundle(&log, &Export::after_purge(8..14, &[10, 14])),
    );
    let partial = write(
        "partial.jsonl",
        &bundle(&log, &Export::new(8..14, &[10, 14])),
    );

    let run = annal_verify(&[&purged, "--vkey", &vkey, "--complete"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("records 0..=7: purged by retention policy, attested by checkpoint 10"),
        "{}",
        run.stdout
    );
    let run = annal_verify(&[&purged, "--vkey", &vkey, "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["report"]["purged"],
        json!({"size": 8, "attested_by": 10, "recorded_at": null})
    );

    let run = annal_verify(&[&partial, "--vkey", &vkey]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("records 0..=7 are not in this export and were not verified"),
        "{}",
        run.stderr
    );
    let run = annal_verify(&[&partial, "--vkey", &vkey, "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["report"]["purged"], Value::Null);
    let run = annal_verify(&[&partial, "--vkey", &vkey, "--complete", "--json"]);
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["error"]["code"], "incomplete");

    let saved = write("checkpoint.txt", log.note(5, &[&log_key()]).as_bytes());
    let run = annal_verify(&[&purged, "--vkey", &vkey, "--trusted-checkpoint", &saved]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "the trusted checkpoint (size 5) predates the purge boundary 8 and could not be linked"
        ),
        "{}",
        run.stderr
    );
    let run = annal_verify(&[
        &purged,
        "--vkey",
        &vkey,
        "--trusted-checkpoint",
        &saved,
        "--json",
    ]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["report"]["trusted_checkpoint"],
        json!({"status": "predates_purge", "size": 5})
    );
}

// ---------------------------------------------------------------------------
// Every bit.

#[test]
fn flipping_any_bit_of_a_bundle_is_detected() {
    let log = Log::new(4, 0);
    // A partial export, and one after a purge (its purged line included).
    for export in [
        Export::new(1..4, &[2, 4]),
        Export::after_purge(1..4, &[2, 4]),
    ] {
        let bytes = bundle(&log, &export);
        assert!(verify(&bytes).is_ok());
        // One bit per byte, cycling through the eight positions (so hex
        // digits also get their case flipped, which hex parsers accept).
        for position in 0..bytes.len() {
            let bit = position % 8;
            let mut flipped = bytes.clone();
            flipped[position] ^= 1 << bit;
            assert!(
                verify(&flipped).is_err(),
                "flipping bit {bit} of byte {position} ({:?}) went unnoticed",
                bytes[position] as char
            );
        }
    }
}

// ---------------------------------------------------------------------------
// .tlog-proof files.

fn tlog_proof(log: &Log, seq: u64, size: u64) -> TlogProof {
    TlogProof {
        extra: Some(log.records[seq as usize].record.clone()),
        index: seq,
        hashes: log.inclusion(seq, size),
        checkpoint: log.note(size, &[&log_key()]),
    }
}

#[test]
fn a_tlog_proof_verifies_and_its_tampering_is_caught() {
    let log = Log::new(12, 0);
    let report = verify_tlog_proof(&tlog_proof(&log, 5, 11).to_text(), &with_keys()).unwrap();
    assert_eq!(
        (report.seq.value(), report.tenant_id, report.checkpoint_size),
        (5, tenant(), 11)
    );

    let mut wrong_index = tlog_proof(&log, 5, 11);
    wrong_index.index = 6;
    let error = verify_tlog_proof(&wrong_index.to_text(), &with_keys()).unwrap_err();
    assert_eq!(
        (error.code(), error.seq()),
        ("seq_mismatch", Some(Seq::new(6)))
    );

    let mut other_record = tlog_proof(&log, 5, 11);
    other_record.extra = Some(Log::new(12, 1).records[5].record.clone());
    let error = verify_tlog_proof(&other_record.to_text(), &with_keys()).unwrap_err();
    assert_eq!(error.code(), "inclusion_invalid");

    let stranger = BundleOptions {
        vkeys: vec![key(8, DEPLOYMENT).1],
        trusted_checkpoint: None,
        require_complete: false,
    };
    let error = verify_tlog_proof(&tlog_proof(&log, 5, 11).to_text(), &stranger).unwrap_err();
    assert_eq!(error.code(), "no_trusted_signature");

    let foreign = Log::of(TenantId::from_uuid(Uuid::from_u128(5)), 12, 0);
    let mut foreign_record = tlog_proof(&log, 5, 11);
    foreign_record.extra = Some(foreign.records[5].record.clone());
    let error = verify_tlog_proof(&foreign_record.to_text(), &with_keys()).unwrap_err();
    assert_eq!(error.code(), "wrong_origin");
}

#[test]
fn a_tlog_proof_can_rest_on_a_trusted_checkpoint_of_its_size() {
    let log = Log::new(12, 0);
    let text = tlog_proof(&log, 3, 9).to_text();
    let saved = log.note(9, &[&log_key()]);
    let report = verify_tlog_proof(&text, &trusting(saved, false)).unwrap();
    assert_eq!(
        report.trusted_checkpoint,
        TrustedCheckpointStatus::Matched { size: 9 }
    );
    let other_size = log.note(10, &[&log_key()]);
    let error = verify_tlog_proof(&text, &trusting(other_size, false)).unwrap_err();
    assert_eq!(error.code(), "trusted_checkpoint_unlinked");
}

/// The checkpoint and proof file printed in `docs/FORMAT.md` ("A signed
/// checkpoint and a proof file"), over the two golden records.
#[test]
fn the_golden_checkpoint_and_proof_file_are_the_documented_bytes() {
    const NOTE: &str = "audit.example.com/0f8fad5b-d9cb-469f-a165-70867728950e\n\
        2\n\
        0i3dlF3ccaD/JmH8ejsgLGINK9LPzNeWuEe3QlCmRIk=\n\
        annal-chain-head zJzVQZwV4RDZt2p2OapI3827GvS5C7nGmasJnsBAG1w=\n\
        \n\
        \u{2014} audit.example.com yoCM7RKRdJIC8qL9Z5RK4WfwnTDKi4dZFMsvpg9eufmyWhf70OB9iWe/0Kj1YYSK3mH4Tpfd9mjZXTWK8u2JuNX4gw8=\n";
    const RECORD_1: &str = "9701c4100f8fad5bd9cb469fa16570867728950e01c4103f2504e04f8941d39a0c0305e82c3301cf000612989ab2c500b4656d706c6f7965652e73616c6172792e72656164c42069ba5c985a8c6e29c745ce81485e4bfc4a3e715c082ad6e587215fed890edc0a";
    let leaf_0 =
        TreeHash::from_hex("d91550200feea946185b39bf49cc2231826897cefe792d35148cea2f736904ea")
            .unwrap();
    let record_1 = hex::decode(RECORD_1).unwrap();
    let leaf_1 = TreeHash::from(annal::ledger::leaf_hash(&record_1));
    let root = hash_children(&leaf_0, &leaf_1);
    assert_eq!(
        root.to_hex(),
        "d22ddd945ddc71a0ff2661fc7a3b202c620d2bd2cfccd796b847b74250a64489"
    );
    let tenant: TenantId = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap();
    let chain_head =
        ChainHash::from_hex("cc9cd5419c15e110d9b76a7639aa48dfcdbb1af4b90bb9c699ab099ec0401b5c")
            .unwrap();
    let checkpoint =
        Checkpoint::new(tenant_origin(DEPLOYMENT, tenant), 2, root, chain_head).unwrap();
    let key = log_key();
    assert_eq!(
        key.1.to_vkey(),
        "audit.example.com+ca808ced+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
    );
    assert_eq!(sign(&checkpoint.body(), &[&key]), NOTE);

    let proof = TlogProof {
        extra: Some(record_1),
        index: 1,
        hashes: vec![leaf_0],
        checkpoint: NOTE.to_owned(),
    };
    let text = proof.to_text();
    assert!(text.starts_with(
        "c2sp.org/tlog-proof@v1\nextra lwHEEA+PrVvZy0afoWVwhncolQ4BxBA/JQTgT4lB05oMAwXoLDMBzwAGEpiassUAtGVtcGxveWVlLnNhbGFyeS5yZWFkxCBpulyYWoxuKcdFzoFIXkv8Sj5xXAgq1uWHIV/tiQ7cCg==\nindex 1\n2RVQIA/uqUYYWzm/ScwiMYJol87+eS01FIzqL3NpBOo=\n\n"
    ));
    let report = verify_tlog_proof(&text, &with_keys()).unwrap();
    assert_eq!((report.seq.value(), report.tenant_id), (1, tenant));
}

// ---------------------------------------------------------------------------
// Long bundles, read ahead and checked on several threads.

/// A bundle of seqs 0..3000 with a checkpoint every 1,000: close to 1 MB,
/// so it is read in many batches.
fn long() -> (Log, Vec<u8>) {
    let log = Log::new(3000, 0);
    let bytes = bundle(&log, &Export::new(0..3000, &[1000, 2000, 3000]));
    (log, bytes)
}

/// Gives a record's payload a salt it was not committed with (and its
/// line another key order).
fn resalt(lines: &mut [String], seq: u64) {
    let i = record_line(lines, seq);
    let mut line = parse(&lines[i]);
    line["salt"] = json!("00".repeat(32));
    lines[i] = line.to_string();
}

/// The failure's code, seq and 1-based line.
fn failure_at(result: Result<BundleReport, BundleFailure>) -> (&'static str, Option<u64>, u64) {
    match result {
        Ok(report) => panic!("expected a failure, got {report:?}"),
        Err(failure) => (failure.code(), failure.seq.map(|s| s.value()), failure.line),
    }
}

#[test]
fn a_long_bundle_verifies_and_reports_progress_after_every_line() {
    let (log, bytes) = long();
    let mut progress = Vec::new();
    let report = verify_bundle(&bytes[..], &with_keys(), &mut |consumed| {
        progress.push(consumed)
    })
    .unwrap();
    assert_eq!(
        (report.records_checked, report.checkpoints_verified),
        (3000, 3)
    );
    assert_eq!(report.chain_head, log.chain[2999]);
    let line_ends: Vec<u64> = (1..=bytes.len() as u64)
        .filter(|&end| bytes[end as usize - 1] == b'\n')
        .collect();
    assert_eq!(progress, line_ends);

    // A byte that only the end line's digest covers, far into the bundle.
    let mut spaced = lines(&bytes);
    let i = record_line(&spaced, 2999);
    spaced[i] = spaced[i].replacen('{', "{ ", 1);
    let mut text = spaced.join("\n");
    text.push('\n');
    assert_eq!(failure(verify(text.as_bytes())).0, "bundle_hash_mismatch");
}

#[test]
fn in_a_long_bundle_the_first_fault_in_line_order_is_reported() {
    let (_, bytes) = long();
    let lines = lines(&bytes);

    // A gap, then a payload that does not match its commitment.
    let mut faults = lines.clone();
    faults.remove(record_line(&faults, 1200));
    resalt(&mut faults, 2500);
    let at = record_line(&faults, 1201) as u64 + 1;
    assert_eq!(
        failure_at(verify(&reseal(&faults))),
        ("gap", Some(1200), at)
    );

    // The same faults the other way round.
    let mut faults = lines.clone();
    let at = record_line(&faults, 700) as u64 + 1;
    resalt(&mut faults, 700);
    faults.remove(record_line(&faults, 2500));
    assert_eq!(
        failure_at(verify(&reseal(&faults))),
        ("payload_commitment_mismatch", Some(700), at)
    );

    // A line that is not JSON after a fault in the records.
    let mut faults = lines.clone();
    let at = record_line(&faults, 1800) as u64 + 1;
    resalt(&mut faults, 1800);
    let late = record_line(&faults, 2900);
    faults[late] = "{".to_owned();
    assert_eq!(
        failure_at(verify(&reseal(&faults))),
        ("payload_commitment_mismatch", Some(1800), at)
    );
}

/// Yields its bytes, then fails.
struct FailingAfter<'a>(&'a [u8]);

impl std::io::Read for FailingAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("the disk went away"));
        }
        self.0.read(buf)
    }
}

#[test]
fn a_long_bundle_cut_short_or_unreadable_fails_at_the_line_it_stops_in() {
    let (_, bytes) = long();
    let line_starts: Vec<usize> = (0..bytes.len())
        .filter(|&at| at == 0 || bytes[at - 1] == b'\n')
        .collect();
    let line = 2000;
    let start = line_starts[line - 1];

    let cut = &bytes[..start + 10];
    assert_eq!(failure_at(verify(cut)), ("truncated", None, line as u64));

    let unreadable = std::io::BufReader::new(FailingAfter(&bytes[..start]));
    let result = verify_bundle(unreadable, &with_keys(), &mut |_| {});
    let error = result.as_ref().unwrap_err().to_string();
    assert_eq!(failure_at(result), ("io", None, line as u64));
    assert!(error.contains("the disk went away"), "{error}");

    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"{}\n");
    let lines = line_starts.len() as u64;
    assert_eq!(
        failure_at(verify(&trailing)),
        ("trailing_data", None, lines + 1)
    );
}

#[test]
fn a_line_longer_than_the_read_ahead_is_read() {
    let (_, bytes) = long();
    let mut lines = lines(&bytes);
    // Several MiB (JSON whitespace around a real vkey): more than the
    // verifier reads ahead.
    let (_, other) = key(9, "other.example");
    let padding = " ".repeat(6 << 20);
    lines.insert(2, format!("{{\"vkey\":{padding}\"{}\"}}", other.to_vkey()));
    let report = verify(&reseal(&lines)).unwrap();
    assert_eq!(report.published_vkeys.len(), 2);
    assert_eq!(report.published_vkeys[1], other.to_vkey());
    assert_eq!(report.records_checked, 3000);
}

// ---------------------------------------------------------------------------
// The command line.

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn annal_verify(args: &[&str]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_annal-verify"))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_cli_verifies_a_bundle_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = standard();
    let good = dir.path().join("export.jsonl");
    std::fs::write(&good, &bytes).unwrap();
    let good = good.to_str().unwrap();
    let vkey = log_key().1.to_vkey();

    let run = annal_verify(&[good, "--vkey", &vkey]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("OK: bundle of"), "{}", run.stdout);
    assert!(run.stdout.contains("10 records"), "{}", run.stdout);

    // --vkey also takes a file of keys.
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, format!("# the log's keys\n{vkey}\n")).unwrap();
    let run = annal_verify(&[good, "--vkey", keys.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["kind"], "bundle");
    assert_eq!(report["report"]["records_checked"], 10);
    assert_eq!(
        report["report"]["trusted_checkpoint"]["status"],
        "not_given"
    );

    // Tampered: exit 1, naming the seq.
    let mut lines = lines(&bytes);
    lines.remove(record_line(&lines, 4));
    let bad = dir.path().join("tampered.jsonl");
    std::fs::write(&bad, reseal(&lines)).unwrap();
    let bad = bad.to_str().unwrap();
    let run = annal_verify(&[bad, "--vkey", &vkey]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("FAILED: line "), "{}", run.stderr);
    assert!(run.stderr.contains("seq 4: gap"), "{}", run.stderr);
    let run = annal_verify(&[bad, "--vkey", &vkey, "--json"]);
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"]["code"], "gap");
    assert_eq!(report["error"]["seq"], 4);

    // Unusable input or command line: exit 2.
    assert_eq!(annal_verify(&[good]).code, 2);
    assert_eq!(annal_verify(&[good, "--vkey", "not-a-key"]).code, 2);
    let missing = dir.path().join("missing.jsonl");
    assert_eq!(
        annal_verify(&[missing.to_str().unwrap(), "--vkey", &vkey]).code,
        2
    );
    let run = annal_verify(&[good, "--vkey", &vkey, "--trusted-checkpoint", bad, "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["error"]["code"], "trusted_checkpoint_malformed");
}

#[test]
fn the_cli_trusts_a_saved_checkpoint_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (log, bytes) = standard();
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let saved = dir.path().join("checkpoint.txt");
    std::fs::write(&saved, log.note(10, &[&log_key()])).unwrap();
    let run = annal_verify(&[
        path.to_str().unwrap(),
        "--trusted-checkpoint",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("trusted checkpoint alone"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_cli_verifies_a_tlog_proof_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(12, 0);
    let path = dir.path().join("record.tlog-proof");
    std::fs::write(&path, tlog_proof(&log, 5, 11).to_text()).unwrap();
    let path = path.to_str().unwrap();
    let vkey = log_key().1.to_vkey();

    let run = annal_verify(&[path, "--vkey", &vkey]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("seq 5"), "{}", run.stdout);
    assert!(run.stdout.contains(&tenant().to_string()), "{}", run.stdout);
    assert!(run.stdout.contains("checkpoint size 11"), "{}", run.stdout);

    let run = annal_verify(&[path, "--vkey", &vkey, "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["kind"], "tlog_proof");
    assert_eq!(report["report"]["seq"], 5);
    assert_eq!(report["report"]["checkpoint_size"], 11);

    let mut forged = tlog_proof(&log, 5, 11);
    forged.hashes[0] = TreeHash::from_bytes([3; 32]);
    let bad = dir.path().join("forged.tlog-proof");
    std::fs::write(&bad, forged.to_text()).unwrap();
    let run = annal_verify(&[bad.to_str().unwrap(), "--vkey", &vkey, "--json"]);
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["error"]["code"], "inclusion_invalid");
    assert_eq!(report["error"]["seq"], 5);

    assert_eq!(annal_verify(&[path]).code, 2);
}

#[test]
fn vkey_lines_must_be_vkeys_and_are_capped() {
    let (_, bytes) = standard();
    let mut forged = lines(&bytes);
    forged.insert(
        1,
        json!({ "vkey": "attacker.example+00000000+AQ==" }).to_string(),
    );
    assert_eq!(failure(verify(&reseal(&forged))).0, "malformed_line");

    let (_, other) = key(9, "other.example");
    let mut many = lines(&bytes);
    for _ in 0..MAX_PUBLISHED_VKEYS {
        many.insert(1, json!({ "vkey": other.to_vkey() }).to_string());
    }
    assert_eq!(failure(verify(&reseal(&many))).0, "malformed_line");
}

/// Yields its bytes, then blocks its next read until released, then ends.
struct Paused {
    bytes: Vec<u8>,
    at: usize,
    release: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for Paused {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at < self.bytes.len() {
            let n = buf.len().min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        let _ = self.release.recv();
        Ok(0)
    }
}

#[test]
fn a_bad_line_fails_without_waiting_for_more_input() {
    use std::sync::mpsc;
    use std::time::Duration;

    let (_, bytes) = standard();
    let header = lines(&bytes).swap_remove(0);
    let (release, released) = mpsc::channel();
    let (seen, reached) = mpsc::channel();
    // The verifier reports a line's progress as it returns its result, so
    // progress past the header means the failure was found while the input
    // still blocks; the input is released either way, so the test ends.
    let releaser = std::thread::spawn(move || {
        let found = reached.recv_timeout(Duration::from_secs(2)).is_ok();
        let _ = release.send(());
        found
    });
    let input = Paused {
        bytes: format!("{header}\n{{\"garbage\":1}}\n").into_bytes(),
        at: 0,
        release: released,
    };
    let header_len = header.len() as u64 + 1;
    let result = verify_bundle(std::io::BufReader::new(input), &with_keys(), &mut |read| {
        if read > header_len {
            let _ = seen.send(());
        }
    });
    assert!(
        releaser.join().unwrap(),
        "the failure waited for more input"
    );
    let failure = result.unwrap_err();
    assert_eq!(failure.code(), "malformed_line");
    assert!(failure.to_string().contains("line 2"), "{failure}");
}

#[test]
fn a_huge_malformed_line_fails_as_malformed() {
    let (_, bytes) = standard();
    let header = lines(&bytes).swap_remove(0);
    let mut huge = format!("{header}\n{{\"zz\":[");
    huge.push_str(&"0,".repeat(4 << 20));
    huge.push_str("0]}\n");
    assert!(huge.len() > 8 << 20);
    let failure = verify(huge.as_bytes()).unwrap_err();
    assert_eq!(failure.code(), "malformed_line");
    assert!(
        failure.to_string().contains("no known line kind"),
        "{failure}"
    );

    // A line that names its seq is explained at that seq.
    let mut huge = format!("{header}\n{{\"seq\":5,\"zz\":[");
    huge.push_str(&"0,".repeat(4 << 20));
    huge.push_str("0]}\n");
    assert_eq!(failure_of(huge.as_bytes()), ("malformed_line", Some(5)));
}

fn failure_of(bytes: &[u8]) -> (&'static str, Option<u64>) {
    failure(verify(bytes))
}
