//! Upgrading from schema V1, whose events have no stored Merkle strata: a
//! tenant's tree is built from its leaves on its next append, and its trail
//! then verifies like any other.

use std::time::Duration;

use annal::pg;
use serde_json::Value;

use crate::helpers::{Server, TestApp, event, post_events, spawn_app};

const REBUILDING: &str = "building the Merkle tree of a tenant written before schema V2";

/// The tenant's stored strata nodes: (level, index, hash), in order.
async fn stored_nodes(app: &TestApp) -> Vec<(i16, i64, Vec<u8>)> {
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .query(
            "SELECT level, idx, hash FROM annal.tree_nodes WHERE tenant_id = $1 ORDER BY level, idx",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Stops the server, leaves the tenant as schema V1 left it, and starts a
/// server again: what an upgrade does (stop every process, migrate, start).
async fn restart_as_written_by_v1(app: &mut TestApp) {
    app.server.kill9();
    forget_tree(app).await;
    app.server = Server::spawn(&app.db, &app.pepper);
}

/// Leaves the tenant as schema V1 left it: events only, no strata nodes
/// and no checkpoints (the append-only triggers bypassed, as a superuser).
async fn forget_tree(app: &TestApp) {
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    for delete in [
        "DELETE FROM annal.tree_nodes WHERE tenant_id = $1",
        "DELETE FROM annal.checkpoints WHERE tenant_id = $1",
    ] {
        client
            .execute(delete, &[&app.tenant.id.as_uuid()])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_tenant_written_before_schema_v2_gets_its_tree_on_its_next_append() {
    let mut app = spawn_app().await;
    post_events(&app, &app.tenant, 600, 0).await;
    let original = stored_nodes(&app).await;
    assert_eq!(original.len(), 2, "600 leaves complete two level-8 nodes");

    restart_as_written_by_v1(&mut app).await;

    let r = app.post("/v1/events", &app.tenant.key, &event(600)).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["seq"], 600);
    assert_eq!(
        stored_nodes(&app).await,
        original,
        "rebuilt from the leaves"
    );
    assert!(
        app.server
            .wait_for_output(REBUILDING, Duration::from_secs(5)),
        "the rebuild is logged:\n{}",
        app.server.output()
    );

    let report = app.verify_export(&app.tenant).await;
    assert_eq!(report.records_checked, 601);

    // Once built, the tree advances as usual: no second rebuild.
    let r = app.post("/v1/events", &app.tenant.key, &event(601)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.server.output().matches(REBUILDING).count(), 1);
    app.verify_export(&app.tenant).await;
}

#[tokio::test]
async fn a_tree_bigger_than_one_page_of_leaves_is_rebuilt_whole() {
    let mut app = spawn_app().await;
    // 10,300 leaves: the rebuild reads them in two pages, and level-8 node
    // 39 spans the boundary between them.
    for batch in 0..11 {
        let size = if batch < 10 { 1000 } else { 300 };
        post_events(&app, &app.tenant, size, batch * 1000).await;
    }
    let original = stored_nodes(&app).await;
    assert_eq!(original.len(), 40);

    restart_as_written_by_v1(&mut app).await;

    let r = app
        .post("/v1/events", &app.tenant.key, &event(20_000))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(stored_nodes(&app).await, original);
    assert_eq!(app.verify_export(&app.tenant).await.records_checked, 10_301);
}

#[tokio::test]
async fn a_tenant_below_the_first_stratum_needs_no_rebuild() {
    let mut app = spawn_app().await;
    for n in 0..3 {
        let r = app.post("/v1/events", &app.tenant.key, &event(n)).await;
        assert_eq!(r.status(), 201);
    }
    restart_as_written_by_v1(&mut app).await;

    let r = app.post("/v1/events", &app.tenant.key, &event(3)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.verify_export(&app.tenant).await.records_checked, 4);
    assert!(!app.server.output().contains(REBUILDING));
}

#[tokio::test]
async fn a_tenant_written_before_schema_v2_gets_a_checkpoint_without_appending() {
    let mut app = spawn_app().await;
    post_events(&app, &app.tenant, 300, 0).await;
    let original = stored_nodes(&app).await;
    restart_as_written_by_v1(&mut app).await;

    // Only an auditor's request: the signer builds the tree itself.
    let r = app.get("/v1/checkpoint", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let note = r.text().await.unwrap();
    let signed = annal::ledger::SignedCheckpoint::parse(&note).unwrap();
    assert_eq!(signed.checkpoint().size, 300);
    assert_eq!(
        stored_nodes(&app).await,
        original,
        "rebuilt from the leaves"
    );
    assert_eq!(app.verify_export(&app.tenant).await.records_checked, 300);
}
