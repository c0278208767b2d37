//! The stored Merkle tree after a purge, read through `annal::store::tree`
//! from a real PostgreSQL: every compact range, root and proof about sizes
//! and leaves at or after the boundary is the one read before the purge;
//! what needs purged leaves is refused, never answered with another hash.
//!
//! Purges are simulated as a superuser with triggers off (the retention
//! job's own tests drive `annal.purge_expired`): insert the boundary row,
//! delete the records below it. That lets the boundaries fall exactly on
//! and around the 256-leaf blocks.

use std::collections::BTreeMap;

use annal::ledger::{CompactRange, TreeHash};
use annal::pg;
use annal::service::auth::Scope;
use annal::store::tree;
use annal::store::{StoreError, TenantTx};

use crate::helpers::{Tenant, TestApp, post_events, spawn_app, spawn_app_with};

/// Records appended: past two 512-leaf blocks.
const EVENTS: u64 = 1_300;

/// Tree sizes checked: on and around the block edges, and the whole log.
const SIZES: [u64; 14] = [
    1, 2, 255, 256, 257, 300, 511, 512, 513, 700, 701, 1024, 1299, EVENTS,
];

/// Leaves whose inclusion is checked.
const LEAVES: [u64; 17] = [
    0, 1, 254, 255, 256, 257, 299, 300, 511, 512, 699, 700, 701, 1023, 1024, 1298, 1299,
];

/// Successive purge boundaries of the one tenant.
const PURGES: [u64; 6] = [1, 255, 256, 257, 700, 1299];

/// Everything the tree answers about [`SIZES`] and [`LEAVES`].
#[derive(Default)]
struct Answers {
    ranges: BTreeMap<u64, Result<CompactRange, String>>,
    roots: BTreeMap<u64, Result<TreeHash, String>>,
    inclusions: BTreeMap<(u64, u64), Result<Vec<TreeHash>, String>>,
    consistencies: BTreeMap<(u64, u64), Result<Vec<TreeHash>, String>>,
}

fn message<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

async fn answers(tx: &TenantTx<'_>) -> Answers {
    let mut answers = Answers::default();
    for size2 in SIZES {
        let range = tree::compact_range(tx, size2).await;
        answers.ranges.insert(size2, message(range));
        answers
            .roots
            .insert(size2, message(tree::root(tx, size2).await));
        for index in LEAVES.into_iter().filter(|&index| index < size2) {
            let proof = tree::inclusion_proof(tx, index, size2).await;
            answers.inclusions.insert((index, size2), message(proof));
        }
        for size1 in SIZES.into_iter().filter(|&size1| size1 <= size2) {
            let proof = tree::consistency_proof(tx, size1, size2).await;
            answers.consistencies.insert((size1, size2), message(proof));
        }
    }
    answers
}

/// Checks `after` against `before` (which holds only answers): equal where
/// `retained`, and elsewhere equal or refused for needing purged leaves.
/// Returns how many were refused.
fn compare<K: std::fmt::Debug + Ord, T: std::fmt::Debug + PartialEq>(
    what: &str,
    purged: u64,
    before: &BTreeMap<K, Result<T, String>>,
    after: &BTreeMap<K, Result<T, String>>,
    retained: impl Fn(&K) -> bool,
) -> usize {
    let mut refused = 0;
    for (key, answer) in after {
        let expected = before[key].as_ref().unwrap();
        match answer {
            Ok(value) => assert_eq!(value, expected, "{what} {key:?} purged below {purged}"),
            Err(e) if !retained(key) && e.contains("purged below") => refused += 1,
            Err(e) => panic!("{what} {key:?} purged below {purged}: {e}"),
        }
    }
    refused
}

/// Deletes `tenant`'s records below `size` as a purge does, keeping the
/// boundary row: `range` is the compact range of the first `size` leaves.
async fn purge(app: &TestApp, tenant: &Tenant, size: u64, range: &CompactRange, signed: u64) {
    const BOUNDARY: &str = "INSERT INTO annal.purge_boundaries (tenant_id, size, chain_hash, \
        compact_range, checkpoint_size, cutoff, period_months, decided_at, purged_at) \
        SELECT $1, $2::int8, chain_hash, $3, $4, now(), 84, now(), now() \
        FROM annal.events WHERE tenant_id = $1 AND seq = $2::int8 - 1";
    const DELETE: &str = "DELETE FROM annal.events WHERE tenant_id = $1 AND seq < $2";
    let mut client = app.db.connect(pg::SUPERUSER).await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let hashes: Vec<&[u8]> = range.hashes().iter().map(|h| &h.as_bytes()[..]).collect();
    let (tenant, size, signed) = (tenant.id.as_uuid(), size as i64, signed as i64);
    let inserted = tx
        .execute(BOUNDARY, &[&tenant, &size, &hashes, &signed])
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    tx.execute(DELETE, &[&tenant, &size]).await.unwrap();
    tx.commit().await.unwrap();
}

/// The latest checkpoint's size, once one covers every record.
async fn signed_size(app: &TestApp) -> u64 {
    let r = app.get("/v1/checkpoint", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let note = r.text().await.unwrap();
    let signed = annal::ledger::SignedCheckpoint::parse(&note).unwrap();
    assert_eq!(signed.checkpoint().size, EVENTS);
    signed.checkpoint().size
}

async fn chain_hash(app: &TestApp, seq: u64) -> Vec<u8> {
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .query_one(
            "SELECT chain_hash FROM annal.events WHERE tenant_id = $1 AND seq = $2",
            &[&app.tenant.id.as_uuid(), &(seq as i64)],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn after_each_purge_the_retained_tree_proves_as_before() {
    // Arrange
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "1ms")]).await;
    for batch in 0..EVENTS / 100 {
        post_events(&app, &app.tenant, 100, (batch * 100) as usize).await;
    }
    let signed = signed_size(&app).await;
    let store = app.store();
    let mut conn = store.conn().await.unwrap();
    let before = {
        let tx = conn.tenant(app.tenant.id).await.unwrap();
        assert_eq!(tree::boundary(&tx).await.unwrap(), None);
        answers(&tx).await
    };
    let chain_hashes: Vec<Vec<u8>> = {
        let mut hashes = Vec::new();
        for size in PURGES {
            hashes.push(chain_hash(&app, size - 1).await);
        }
        hashes
    };

    for (purged, chain) in PURGES.into_iter().zip(chain_hashes) {
        // Act
        // Every boundary is one of SIZES: its compact range was read before.
        let range = before.ranges[&purged].clone().unwrap();
        purge(&app, &app.tenant, purged, &range, signed).await;
        let tx = conn.tenant(app.tenant.id).await.unwrap();
        let after = answers(&tx).await;

        // Assert
        let boundary = tree::boundary(&tx).await.unwrap().unwrap();
        assert_eq!(boundary.size, purged);
        assert_eq!(boundary.chain_hash.as_bytes()[..], chain[..]);
        assert_eq!(boundary.compact_range, range);
        assert_eq!(boundary.checkpoint_size, signed);
        let refused = compare(
            "compact range",
            purged,
            &before.ranges,
            &after.ranges,
            |&size| size >= purged,
        ) + compare("root", purged, &before.roots, &after.roots, |&size| {
            size >= purged
        }) + compare(
            "inclusion",
            purged,
            &before.inclusions,
            &after.inclusions,
            |&(index, _)| index >= purged,
        ) + compare(
            "consistency",
            purged,
            &before.consistencies,
            &after.consistencies,
            |&(size1, _)| size1 >= purged,
        );
        if purged >= 2 {
            // Leaf 0's sibling is gone and no boundary node.
            assert!(refused > 0, "nothing refused after purging below {purged}");
            for result in [
                tree::inclusion_proof(&tx, 0, EVENTS).await,
                tree::consistency_proof(&tx, 1, EVENTS).await,
            ] {
                assert!(
                    matches!(&result, Err(StoreError::Corrupt(e)) if e.contains("purged below")),
                    "{result:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn leaves_deleted_without_a_purge_boundary_are_still_corruption() {
    // Arrange
    let app = spawn_app().await;
    let other = app.new_tenant(&Scope::ALL).await;
    post_events(&app, &other, 300, 0).await;
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM annal.events WHERE tenant_id = $1 AND seq < 10",
            &[&other.id.as_uuid()],
        )
        .await
        .unwrap();

    // Act
    let store = app.store();
    let mut conn = store.conn().await.unwrap();
    let tx = conn.tenant(other.id).await.unwrap();
    let root = tree::root(&tx, 300).await;
    let inclusion = tree::inclusion_proof(&tx, 5, 300).await;
    let consistency = tree::consistency_proof(&tx, 3, 300).await;

    // Assert
    assert_eq!(tree::boundary(&tx).await.unwrap(), None);
    // The root of 300 needs no leaf below 256: the deletion goes unseen.
    assert!(root.is_ok(), "{root:?}");
    for result in [inclusion, consistency] {
        assert!(
            matches!(&result, Err(StoreError::Corrupt(e)) if e.contains("tree stratum 0")),
            "{result:?}"
        );
    }
}
