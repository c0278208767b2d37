//! The database itself enforces the ledger's rules, whatever the server does.

use annal::pg;
use serde_json::Value;

use crate::helpers::{Server, TestDb, event, spawn_app};

async fn app_with_events() -> (crate::helpers::TestApp, crate::helpers::Tenant) {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    for n in 0..3 {
        assert_eq!(
            app.post("/v1/events", &app.tenant.key, &event(n))
                .await
                .status(),
            201
        );
        assert_eq!(
            app.post("/v1/events", &other.key, &event(n)).await.status(),
            201
        );
    }
    for tenant in [&app.tenant, &other] {
        assert_eq!(app.get("/v1/checkpoint", &tenant.key).await.status(), 200);
    }
    (app, other)
}

async fn as_app_in_tenant(db: &TestDb, tenant: &str) -> tokio_postgres::Client {
    let client = db.connect(pg::APP_ROLE).await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("SELECT set_config('annal.tenant_id', $1, true)", &[&tenant])
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn the_app_role_cannot_update_delete_or_truncate_the_ledger() {
    let (app, _) = app_with_events().await;
    let tenant = app.tenant.id.to_string();
    for statement in [
        "UPDATE annal.events SET action = 'forged'",
        "DELETE FROM annal.events",
        "TRUNCATE annal.events",
        "UPDATE annal.tenants SET name = 'x'",
        "DELETE FROM annal.tenants",
        "DELETE FROM annal.api_keys",
        "UPDATE annal.api_keys SET scopes = '{}'",
        "UPDATE annal.checkpoints SET note = 'forged'",
        "DELETE FROM annal.checkpoints",
        "TRUNCATE annal.checkpoints",
        "TRUNCATE annal.tree_nodes",
    ] {
        let client = as_app_in_tenant(&app.db, &tenant).await;
        let error = client.execute(statement, &[]).await.unwrap_err();
        assert!(error.code().is_some(), "{statement}: {error}");
    }
    assert_eq!(app.db.count_events().await, 6);
}

#[tokio::test]
async fn even_the_superuser_cannot_update_or_delete_ledger_rows() {
    let (app, _) = app_with_events().await;
    let client = app.db.connect(pg::SUPERUSER).await;
    for statement in [
        "UPDATE annal.events SET action = 'forged'",
        "DELETE FROM annal.events",
        "TRUNCATE annal.events",
        "UPDATE annal.checkpoints SET note = 'forged'",
        "DELETE FROM annal.checkpoints",
        "TRUNCATE annal.checkpoints",
        "TRUNCATE annal.tree_nodes",
    ] {
        let error = client.execute(statement, &[]).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only")
                || format!("{error:?}").contains("append-only"),
            "{statement}: {error:?}"
        );
    }
}

#[tokio::test]
async fn without_a_tenant_set_the_app_role_sees_no_rows() {
    let (app, _) = app_with_events().await;
    let client = app.db.connect(pg::APP_ROLE).await;
    for table in [
        "annal.events",
        "annal.tenants",
        "annal.api_keys",
        "annal.checkpoints",
        "annal.tree_nodes",
    ] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test]
async fn stored_tree_nodes_are_the_roots_of_their_leaves_and_immutable() {
    let app = spawn_app().await;
    crate::helpers::post_events(&app, &app.tenant, 300, 0).await;
    let client = app.db.connect(pg::SUPERUSER).await;
    let nodes = client
        .query(
            "SELECT level, idx, hash FROM annal.tree_nodes WHERE tenant_id = $1",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1, "one level-8 node for 300 leaves");
    assert_eq!(nodes[0].get::<_, i16>(0), 8);
    assert_eq!(nodes[0].get::<_, i64>(1), 0);
    let leaves = client
        .query(
            "SELECT leaf_hash FROM annal.events WHERE tenant_id = $1 AND seq < 256 ORDER BY seq",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap();
    let mut range = annal::ledger::CompactRange::new();
    for leaf in &leaves {
        let leaf = annal::ledger::TreeHash::try_from(leaf.get::<_, &[u8]>(0)).unwrap();
        range.append(leaf).unwrap();
    }
    assert_eq!(nodes[0].get::<_, &[u8]>(2), range.root().as_bytes());
    for statement in [
        "UPDATE annal.tree_nodes SET hash = hash",
        "DELETE FROM annal.tree_nodes",
    ] {
        let error = client.execute(statement, &[]).await.unwrap_err();
        assert!(format!("{error:?}").contains("append-only"), "{statement}");
    }
}

#[tokio::test]
async fn a_query_for_tenant_a_never_returns_tenant_b_rows() {
    let (app, other) = app_with_events().await;
    let client = as_app_in_tenant(&app.db, &app.tenant.id.to_string()).await;
    let rows = client
        .query("SELECT tenant_id::text FROM annal.events", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.get::<_, String>(0) == app.tenant.id.to_string())
    );
    // Asking for B's rows explicitly still returns nothing.
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM annal.events WHERE tenant_id = $1::text::uuid",
            &[&other.id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn inserting_a_row_for_another_tenant_fails() {
    let (app, other) = app_with_events().await;
    let client = as_app_in_tenant(&app.db, &app.tenant.id.to_string()).await;
    let error = client
        .execute(
            "INSERT INTO annal.events (tenant_id, seq, event_id, received_at, action, record, leaf_hash, chain_hash, payload, salt, actor_id, resource_type, resource_id) \
             VALUES ($1::text::uuid, 99, gen_random_uuid(), now(), 'x', '\\x00', decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'), '\\x00', decode(repeat('00', 32), 'hex'), 'a', 'b', 'c')",
            &[&other.id.to_string()],
        )
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("row-level security"),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_app_role_holds_only_select_and_insert_on_ledger_tables() {
    let db = TestDb::new().await;
    let client = db.connect(pg::SUPERUSER).await;
    let row = client
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'annal_app'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1));
    for table in ["annal.events", "annal.tenants", "annal.api_keys"] {
        for (privilege, expected) in [
            ("SELECT", true),
            ("INSERT", true),
            ("UPDATE", false),
            ("DELETE", false),
            ("TRUNCATE", false),
            ("REFERENCES", false),
            ("TRIGGER", false),
        ] {
            let granted: bool = client
                .query_one(
                    "SELECT has_table_privilege('annal_app', $1, $2)",
                    &[&table, &privilege],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(granted, expected, "{table} {privilege}");
        }
    }
    // The one column the app may update: revoking a key.
    let updatable: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'annal.api_keys'::regclass \
             AND attnum > 0 AND has_column_privilege('annal_app', attrelid, attnum, 'UPDATE')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(updatable, ["revoked_at"]);
    let public_functions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'annal'::regnamespace \
             AND has_function_privilege('public', oid, 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        public_functions, 0,
        "no annal function is executable by PUBLIC"
    );
    let forced: Vec<(String, bool, bool)> = client
        .query(
            "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class \
             WHERE relnamespace = 'annal'::regnamespace AND relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(forced.len(), 18);
    assert!(
        forced.iter().all(|(_, on, force)| *on && *force),
        "{forced:?}"
    );
}

fn serve_as(db: &TestDb, role: &str) -> String {
    let output = std::process::Command::new(crate::helpers::ANNAL)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", db.url(role))
        .env(
            "ANNAL_API_KEY_PEPPER",
            annal::crypto::Pepper::generate().to_hex(),
        )
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve must refuse role {role}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn serve_refuses_a_superuser_or_the_schema_owner() {
    let db = TestDb::new().await;
    assert!(serve_as(&db, pg::SUPERUSER).contains("superuser"));
    assert!(serve_as(&db, pg::MIGRATOR_ROLE).contains("owns ledger tables"));
}

#[tokio::test]
async fn serve_refuses_a_role_with_bypassrls() {
    let db = TestDb::new().await;
    let client = db.connect(pg::SUPERUSER).await;
    let role = format!("bypass_{}", &db.name[2..12]);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN BYPASSRLS; GRANT annal_app TO {role};"
        ))
        .await
        .unwrap();
    assert!(serve_as(&db, &role).contains("BYPASSRLS"));
}

#[tokio::test]
async fn serve_refuses_a_role_that_can_become_a_superuser_or_holds_mutating_grants() {
    let db = TestDb::new().await;
    let client = db.connect(pg::SUPERUSER).await;
    let suffix = &db.name[2..12];
    client
        .batch_execute(&format!(
            "CREATE ROLE admins_{suffix} SUPERUSER NOLOGIN; \
             CREATE ROLE sneaky_{suffix} LOGIN IN ROLE annal_app, admins_{suffix}; \
             CREATE ROLE editor_{suffix} LOGIN IN ROLE annal_app; \
             GRANT UPDATE ON annal.events TO editor_{suffix}; \
             CREATE ROLE fixer_{suffix} LOGIN IN ROLE annal_app; \
             GRANT UPDATE (payload) ON annal.events TO fixer_{suffix};"
        ))
        .await
        .unwrap();
    assert!(serve_as(&db, &format!("sneaky_{suffix}")).contains("member of"));
    assert!(serve_as(&db, &format!("editor_{suffix}")).contains("annal.events UPDATE"));
    assert!(serve_as(&db, &format!("fixer_{suffix}")).contains("annal.events UPDATE (payload)"));
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_database() {
    let db = TestDb::named(&format!("t_{}", uuid::Uuid::new_v4().simple()));
    let client = TestDb::named("postgres").connect(pg::SUPERUSER).await;
    client
        .batch_execute(&format!("CREATE DATABASE {} OWNER annal_migrator", db.name))
        .await
        .unwrap();
    assert!(serve_as(&db, pg::APP_ROLE).contains("annal migrate"));
}

#[tokio::test]
async fn the_server_role_check_passes_for_annal_app() {
    let db = TestDb::new().await;
    let pepper = annal::crypto::Pepper::generate();
    let server = Server::spawn(&db, &pepper);
    let ready: Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn the_key_lookup_setting_shows_one_key_and_cannot_change_it() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let client = app.db.connect(pg::APP_ROLE).await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT set_config('annal.api_key_id', $1, true)",
            &[&other.key_id.to_string()],
        )
        .await
        .unwrap();
    let visible: i64 = client
        .query_one("SELECT count(*) FROM annal.api_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 1, "exactly the named key");
    let revoked = client
        .execute("UPDATE annal.api_keys SET revoked_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(revoked, 0, "but it cannot be revoked without its tenant");
}
