//! What verifying an export bundle costs on top of hashing its records.
//!
//! One group, two functions over the same 20,000 records, both reported as
//! elements/s so their ratio reads straight off one run:
//! - `verify_bundle`: the whole offline verification of an in-memory bundle
//!   (JSON parsing, base64, canonical decoding of every header and payload,
//!   commitments, leaves, chain, Merkle tree, a signed checkpoint every 1,000
//!   records with its consistency proof, and the bundle's SHA-256), on
//!   every core the machine has (up to six threads);
//! - `sha256_records`: one SHA-256 per record over the same record bytes,
//!   on one core: the floor any verifier pays. The verifier hashes about
//!   nine times as many SHA-256 blocks per record (the line for the
//!   bundle's digest, the payload commitment, the leaf, the chain link and
//!   a Merkle node on average), so their ratio cannot pass the number of
//!   cores over nine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use annal::ledger::{
    Actor, Chain, ChainHash, Checkpoint, CompactRange, EventId, Note, NoteSignature, Outcome,
    Payload, Resource, Salt, Seq, TenantId, Timestamp, TreeHash, VerifierKey, consistency_plan,
    empty_root, hash_children, seal, tenant_origin,
};
use annal::verify::bundle::{BundleOptions, BundleWriter, verify_bundle};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const RECORDS: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 1_000;

fn payload(i: u64) -> Payload {
    Payload {
        occurred_at: Some(Timestamp::from_micros(1_709_296_490_000_123 + i as i64)),
        request_id: Some(format!("req-{i:08x}")),
        source_ip: Some("203.0.113.7".to_owned()),
        outcome: Some(Outcome::Success),
        before: Some(json!({"salary": 85_000 + i, "currency": "EUR", "grade": "L4"})),
        after: Some(json!({"salary": 91_000 + i, "currency": "EUR", "grade": "L5"})),
        ..Payload::new(
            Actor {
                id: format!("u-{}", 1000 + i % 50),
                kind: "user".to_owned(),
                name: Some("Zoë Ångström".to_owned()),
                email: Some("zoe.angstrom@example.com".to_owned()),
            },
            Resource {
                kind: "employee".to_owned(),
                id: format!("emp-{i:05}"),
            },
        )
    }
}

/// RFC 6962 MTH of a slice of leaves.
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

fn consistency(leaves: &[TreeHash], from: u64, to: u64) -> Vec<TreeHash> {
    let plan = consistency_plan(from, to).unwrap();
    let nodes: Vec<TreeHash> = plan
        .nodes()
        .iter()
        .map(|node| {
            let range = node.leaves().unwrap();
            mth(&leaves[range.start as usize..range.end as usize])
        })
        .collect();
    plan.assemble(&nodes).unwrap()
}

/// A bundle of seqs `0..RECORDS`, and the record bytes it holds.
fn bundle(signing: &SigningKey, verifier: &VerifierKey) -> (Vec<u8>, Vec<Vec<u8>>) {
    let tenant = TenantId::from_uuid(Uuid::from_u128(42));
    let origin = tenant_origin("audit.example.com", tenant);
    let mut writer = BundleWriter::new();
    let mut out = writer.header(&origin, tenant, 0, RECORDS - 1);
    out.extend(writer.vkey(&verifier.to_vkey()));
    out.extend(writer.start(0, &ChainHash::genesis(tenant), &[]));
    let mut chain = Chain::genesis(tenant);
    let mut tree = CompactRange::new();
    let mut leaves = Vec::new();
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let salt = Salt::from_bytes([(i % 251) as u8; 32]);
        let sealed = seal(
            tenant,
            Seq::new(i),
            EventId::from_uuid(Uuid::from_u128(u128::from(i) * 7919)),
            Timestamp::from_micros(1_709_296_496_789_012 + i as i64 * 1_000),
            "employee.salary.update".to_owned(),
            &payload(i),
            salt,
        );
        let (_, chain_hash) = chain.append(&sealed.leaf_hash);
        tree.append(TreeHash::from(sealed.leaf_hash)).unwrap();
        leaves.push(TreeHash::from(sealed.leaf_hash));
        out.extend(writer.record(i, &sealed.record, Some((&sealed.payload, &salt))));
        let size = i + 1;
        if size % CHECKPOINT_EVERY == 0 {
            let body = Checkpoint::new(origin.clone(), size, tree.root(), chain_hash)
                .unwrap()
                .body();
            let signature = NoteSignature::from_ed25519(verifier, &signing.sign(body.as_bytes()));
            let note = Note::new(&body, vec![signature]).unwrap().to_text();
            out.extend(writer.checkpoint(size, &note));
            if size > CHECKPOINT_EVERY {
                let from = size - CHECKPOINT_EVERY;
                out.extend(writer.consistency(from, size, &consistency(&leaves, from, size)));
            }
        }
        records.push(sealed.record);
    }
    out.extend(writer.end());
    (out, records)
}

fn verify(c: &mut Criterion) {
    let signing = SigningKey::from_bytes(&[7; 32]);
    let verifier = VerifierKey::from_public("audit.example.com", signing.verifying_key()).unwrap();
    let (bytes, records) = bundle(&signing, &verifier);
    let options = BundleOptions {
        vkeys: vec![verifier],
        trusted_checkpoint: None,
        require_complete: false,
    };

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    group.bench_function("verify_bundle", |b| {
        b.iter(|| {
            let report = verify_bundle(black_box(&bytes[..]), &options, &mut |_| {}).unwrap();
            black_box(report)
        })
    });
    group.bench_function("sha256_records", |b| {
        b.iter(|| {
            let mut last = [0u8; 32];
            for record in &records {
                last = Sha256::digest(black_box(record)).into();
            }
            black_box(last)
        })
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
