//! What the ledger's encoding costs on top of hashing alone.
//!
//! One group, two functions over the same N events, both reported as
//! elements/s so their ratio reads straight off one run:
//! - `seal_and_chain`: encode payload, commit, encode header, leaf hash,
//!   chain link (everything the write path does per event);
//! - `sha256_raw`: SHA-256 over the same payload bytes and the same record
//!   bytes, plus a 65-byte chain input, i.e. the same hashing work with no
//!   encoding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use annal::ledger::{
    Actor, Chain, EventId, Outcome, Payload, Resource, Salt, Seq, TenantId, Timestamp, seal,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const EVENTS: u64 = 1_000;

struct Event {
    event_id: EventId,
    received_at: Timestamp,
    payload: Payload,
    salt: Salt,
}

/// A salary change as an HR system would post it.
fn events() -> Vec<Event> {
    (0..EVENTS)
        .map(|i| Event {
            event_id: EventId::from_uuid(Uuid::from_u128(u128::from(i) * 7919)),
            received_at: Timestamp::from_micros(1_709_296_496_789_012 + i as i64 * 1_000),
            salt: Salt::from_bytes([(i % 251) as u8; 32]),
            payload: Payload {
                actor: Actor {
                    id: format!("u-{}", 1000 + i % 50),
                    kind: "user".to_owned(),
                    name: Some("Zoë Ångström".to_owned()),
                    email: Some("zoe.angstrom@example.com".to_owned()),
                },
                resource: Resource {
                    kind: "employee".to_owned(),
                    id: format!("emp-{:05}", i),
                },
                occurred_at: Some(Timestamp::from_micros(1_709_296_490_000_123 + i as i64)),
                request_id: Some(format!("req-{i:08x}")),
                source_ip: Some("203.0.113.7".to_owned()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0".to_owned()),
                outcome: Some(Outcome::Success),
                before: Some(json!({
                    "salary": 85_000 + i,
                    "currency": "EUR",
                    "grade": "L4",
                    "bonus_pct": 7.5,
                    "effective_from": "2023-04-01",
                    "components": [{"name": "base", "amount": 80_000}, {"name": "allowance", "amount": 5_000}],
                })),
                after: Some(json!({
                    "salary": 91_000 + i,
                    "currency": "EUR",
                    "grade": "L5",
                    "bonus_pct": 10.25,
                    "effective_from": "2024-04-01",
                    "components": [{"name": "base", "amount": 86_000}, {"name": "allowance", "amount": 5_000}],
                })),
                metadata: Some(json!({"reason": "annual review", "approvers": ["m-1", "m-2"]})),
            },
        })
        .collect()
}

fn seal_all(tenant: TenantId, events: &[Event]) -> Chain {
    let mut chain = Chain::genesis(tenant);
    for (i, event) in events.iter().enumerate() {
        let sealed = seal(
            tenant,
            Seq::new(i as u64),
            event.event_id,
            event.received_at,
            "employee.salary.update".to_owned(),
            &event.payload,
            event.salt,
        );
        chain.append(&sealed.leaf_hash);
    }
    chain
}

fn bench_ledger(c: &mut Criterion) {
    let tenant = TenantId::from_uuid(Uuid::from_u128(0x0f8f_ad5b_d9cb_469f_a165_7086_7728_950e));
    let events = events();
    // The exact bytes sealing produces, so both functions hash the same input.
    let bytes: Vec<(Vec<u8>, Vec<u8>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let s = seal(
                tenant,
                Seq::new(i as u64),
                e.event_id,
                e.received_at,
                "employee.salary.update".to_owned(),
                &e.payload,
                e.salt,
            );
            (s.record, s.payload)
        })
        .collect();

    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("seal_and_chain", |b| {
        b.iter(|| black_box(seal_all(tenant, black_box(&events))))
    });
    group.bench_function("sha256_raw", |b| {
        b.iter(|| {
            let mut head = [0u8; 32];
            for (record, payload) in black_box(&bytes) {
                let mut commit = Sha256::new();
                commit.update([0u8; 32]);
                commit.update(payload);
                black_box(commit.finalize());
                let leaf: [u8; 32] = Sha256::new()
                    .chain_update([0x00])
                    .chain_update(record)
                    .finalize()
                    .into();
                head = Sha256::new()
                    .chain_update([0x02])
                    .chain_update(head)
                    .chain_update(leaf)
                    .finalize()
                    .into();
            }
            black_box(head)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_ledger);
criterion_main!(benches);
