//! Tampering with the database behind Annal's back, as a superuser with
//! triggers switched off, is caught: by `annal-verify` on a fresh export and
//! by `annal verify --tenant`, both naming the first seq that fails.
//!
//! Each trail gets a checkpoint after every event (the server signs on
//! every request that asks, with a 1 ms interval), so that a Merkle root
//! mismatch pins down a single seq.

use annal::ledger::{ChainHash, Header, chain_hash, decode_payload, encode_payload, leaf_hash};
use annal::pg;
use serde_json::Value;

use crate::helpers::{ANNAL_VERIFY, TestApp, annal_cmd, event, spawn_app_with};

const EVENTS: u64 = 12;

async fn seeded() -> TestApp {
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "1ms")]).await;
    for n in 0..EVENTS as usize {
        let r = app.post("/v1/events", &app.tenant.key, &event(n)).await;
        assert_eq!(r.status(), 201);
        let r = app.get("/v1/checkpoint", &app.tenant.key).await;
        assert_eq!(r.status(), 200);
        let signed = annal::ledger::SignedCheckpoint::parse(&r.text().await.unwrap()).unwrap();
        assert_eq!(signed.checkpoint().size, n as u64 + 1);
    }
    app
}

/// A superuser connection with triggers off: what an attacker with the
/// database's keys has.
async fn attacker(app: &TestApp) -> tokio_postgres::Client {
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    client
}

async fn row_bytes(
    client: &tokio_postgres::Client,
    app: &TestApp,
    seq: i64,
    column: &str,
) -> Vec<u8> {
    client
        .query_one(
            &format!("SELECT {column} FROM annal.events WHERE tenant_id = $1 AND seq = $2"),
            &[&app.tenant.id.as_uuid(), &seq],
        )
        .await
        .unwrap()
        .get(0)
}

async fn set_bytes(
    client: &tokio_postgres::Client,
    app: &TestApp,
    seq: i64,
    column: &str,
    value: &[u8],
) {
    let n = client
        .execute(
            &format!("UPDATE annal.events SET {column} = $3 WHERE tenant_id = $1 AND seq = $2"),
            &[&app.tenant.id.as_uuid(), &seq, &value],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Runs `sql` with the tenant id as `$1`, and any further parameters.
async fn attack(
    client: &tokio_postgres::Client,
    app: &TestApp,
    sql: &str,
    more: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) {
    let tenant = app.tenant.id.as_uuid();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&tenant];
    params.extend_from_slice(more);
    client.execute(sql, &params).await.unwrap();
}

/// The failure both verifiers report: (offline seq, online seq).
async fn detected(app: &TestApp) -> (Value, Value) {
    let r = app.get("/v1/export", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let bundle = r.bytes().await.unwrap();
    let path = crate::helpers::data_path("tampered-bundle");
    std::fs::write(&path, &bundle).unwrap();
    let out = std::process::Command::new(ANNAL_VERIFY)
        .arg(&path)
        .args(["--vkey", &app.db.vkey, "--json"])
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["ok"], false);

    let url = app.db.app_url();
    let out = annal_cmd(
        &["verify", "--tenant", &app.tenant.id.to_string(), "--json"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("ANNAL_SIGNING_KEY", app.db.skey.as_str()),
        ],
    )
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "annal verify passed a tampered trail"
    );
    let online: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "annal verify --json: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(online["ok"], false);
    (offline["error"].clone(), online["error"].clone())
}

async fn assert_names_seq(app: &TestApp, seq: u64) {
    let (offline, online) = detected(app).await;
    assert_eq!(offline["seq"], seq, "annal-verify: {offline}");
    assert_eq!(online["seq"], seq, "annal verify: {online}");
}

#[tokio::test]
async fn an_untouched_trail_verifies_online_and_offline() {
    let app = seeded().await;
    let url = app.db.app_url();
    let out = annal_cmd(
        &["verify", "--tenant", &app.tenant.id.to_string(), "--json"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("ANNAL_SIGNING_KEY", app.db.skey.as_str()),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["report"]["records_checked"], EVENTS);
}

#[tokio::test]
async fn an_altered_payload_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    let bytes = row_bytes(&client, &app, 5, "payload").await;
    let mut payload = decode_payload(&bytes).unwrap();
    payload.actor.id = "someone-else".into();
    set_bytes(&client, &app, 5, "payload", &encode_payload(&payload)).await;
    assert_names_seq(&app, 5).await;
}

#[tokio::test]
async fn an_altered_header_field_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    let bytes = row_bytes(&client, &app, 6, "record").await;
    let mut header = Header::decode(&bytes).unwrap();
    header.action = "salary.view".into();
    set_bytes(&client, &app, 6, "record", &header.encode()).await;
    assert_names_seq(&app, 6).await;
}

#[tokio::test]
async fn a_deleted_row_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    attack(
        &client,
        &app,
        "DELETE FROM annal.events WHERE tenant_id = $1 AND seq = 4",
        &[],
    )
    .await;
    assert_names_seq(&app, 4).await;
}

#[tokio::test]
async fn two_swapped_rows_are_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    for (from, to) in [(2i64, 1_000_000i64), (3, 2), (1_000_000, 3)] {
        attack(
            &client,
            &app,
            "UPDATE annal.events SET seq = $3 WHERE tenant_id = $1 AND seq = $2",
            &[&from, &to],
        )
        .await;
    }
    assert_names_seq(&app, 2).await;
}

#[tokio::test]
async fn a_truncated_tail_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    attack(
        &client,
        &app,
        "DELETE FROM annal.events WHERE tenant_id = $1 AND seq >= 9",
        &[],
    )
    .await;
    assert_names_seq(&app, 9).await;
}

#[tokio::test]
async fn a_rewritten_checkpoint_signature_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    let note: String = client
        .query_one(
            "SELECT note FROM annal.checkpoints WHERE tenant_id = $1 AND size = 8",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    // Change one base64 character of the signature line (not the key id).
    let line_start = note.rfind("\u{2014} ").unwrap();
    let position = note.len() - 10;
    assert!(position > line_start);
    let mut forged = note.into_bytes();
    forged[position] = if forged[position] == b'A' { b'B' } else { b'A' };
    client
        .execute(
            "UPDATE annal.checkpoints SET note = $2 WHERE tenant_id = $1 AND size = 8",
            &[
                &app.tenant.id.as_uuid(),
                &String::from_utf8(forged).unwrap(),
            ],
        )
        .await
        .unwrap();
    assert_names_seq(&app, 7).await;
}

#[tokio::test]
async fn a_forged_chain_rewritten_from_one_seq_on_is_caught() {
    let app = seeded().await;
    let client = attacker(&app).await;
    let tenant = app.tenant.id.as_uuid();
    // Replace records 8.. with altered ones whose chain links are all valid.
    let rows = client
        .query(
            "SELECT seq, record FROM annal.events WHERE tenant_id = $1 AND seq >= 8 ORDER BY seq",
            &[&tenant],
        )
        .await
        .unwrap();
    let prev: Vec<u8> = row_bytes(&client, &app, 7, "chain_hash").await;
    let mut prev = ChainHash::try_from(prev.as_slice()).unwrap();
    for row in rows {
        let seq: i64 = row.get(0);
        let mut header = Header::decode(row.get::<_, &[u8]>(1)).unwrap();
        header.action = "rating.delete".into();
        let record = header.encode();
        let leaf = leaf_hash(&record);
        let chain = chain_hash(&prev, &leaf);
        client
            .execute(
                "UPDATE annal.events SET record = $3, action = 'rating.delete', leaf_hash = $4, chain_hash = $5 \
                 WHERE tenant_id = $1 AND seq = $2",
                &[
                    &tenant,
                    &seq,
                    &record,
                    &leaf.as_bytes().as_slice(),
                    &chain.as_bytes().as_slice(),
                ],
            )
            .await
            .unwrap();
        prev = chain;
    }
    assert_names_seq(&app, 8).await;
}

#[tokio::test]
async fn the_signer_refuses_a_tree_inconsistent_with_its_last_checkpoint() {
    let app = seeded().await;
    let client = attacker(&app).await;
    // A stored leaf hash rewritten: the tree no longer extends checkpoint 12.
    set_bytes(&client, &app, 3, "leaf_hash", &[7u8; 32]).await;
    let r = app.post("/v1/events", &app.tenant.key, &event(99)).await;
    assert_eq!(r.status(), 201);
    let r = app.get("/v1/checkpoint", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let latest = annal::ledger::SignedCheckpoint::parse(&r.text().await.unwrap()).unwrap();
    assert_eq!(latest.checkpoint().size, EVENTS, "nothing newer was signed");
    assert!(
        app.server
            .wait_for_output("refusing to sign", std::time::Duration::from_secs(5)),
        "the refusal is logged"
    );
    let stored: i64 = client
        .query_one(
            "SELECT max(size) FROM annal.checkpoints WHERE tenant_id = $1",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, EVENTS as i64);
}
