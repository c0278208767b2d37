//! The write path: receipts, idempotency, batches, group commit, and chains
//! that stay linear across processes.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{Server, event, spawn_app};

#[tokio::test]
async fn posting_an_event_answers_201_with_its_seq_and_hashes() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/v1/events",
            &app.tenant.key,
            &json!({
                "event_id": "7d0c7f4e-2a61-4a55-9d0e-1f2f4b8f7a01",
                "occurred_at": "2026-03-01T10:00:00+01:00",
                "action": "salary.update",
                "actor": { "id": "u-7", "type": "user", "name": "Ada", "email": "ada@example.com" },
                "resource": { "type": "employee", "id": "e-42" },
                "request_id": "req-1",
                "source_ip": "2001:db8::1",
                "user_agent": "hr-app/1.0",
                "outcome": "success",
                "before": { "salary": 100000 },
                "after": { "salary": 110000.5 },
                "metadata": { "reason": "promotion" }
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["seq"], 0);
    assert_eq!(receipt["event_id"], "7d0c7f4e-2a61-4a55-9d0e-1f2f4b8f7a01");
    assert_eq!(receipt["status"], "created");
    assert_eq!(receipt["leaf_hash"].as_str().unwrap().len(), 64);
    assert_eq!(receipt["chain_hash"].as_str().unwrap().len(), 64);
    assert!(receipt["received_at"].as_str().unwrap().ends_with('Z'));

    let stored: Value = app
        .get("/v1/events/0", &app.tenant.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["leaf_hash"], receipt["leaf_hash"]);
    assert_eq!(stored["chain_hash"], receipt["chain_hash"]);
    assert_eq!(stored["occurred_at"], "2026-03-01T09:00:00.000000Z");
    assert_eq!(stored["after"]["salary"], 110000.5);
    assert_eq!(stored["actor"]["email"], "ada@example.com");
    let report = app.verify_chain(&app.tenant).await;
    assert!(report.anchored_at_genesis);
}

#[tokio::test]
async fn repeating_an_event_id_answers_200_with_the_original_record() {
    let app = spawn_app().await;
    let mut body = event(1);
    body["event_id"] = json!("0b6c1c43-5ad1-4f64-9b7c-3fb1f0d4e001");
    let first = app.post("/v1/events", &app.tenant.key, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.post("/v1/events", &app.tenant.key, &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    for field in ["seq", "event_id", "received_at", "leaf_hash", "chain_hash"] {
        assert_eq!(again[field], first[field], "{field}");
    }
    assert_eq!(app.db.count_events().await, 1);
}

#[tokio::test]
async fn reusing_an_event_id_for_a_different_event_is_a_conflict_and_stores_nothing() {
    let app = spawn_app().await;
    let mut body = event(1);
    body["event_id"] = json!("0b6c1c43-5ad1-4f64-9b7c-3fb1f0d4e002");
    assert_eq!(
        app.post("/v1/events", &app.tenant.key, &body)
            .await
            .status(),
        201
    );
    body["after"] = json!({ "salary": 1 });
    let response = app.post("/v1/events", &app.tenant.key, &body).await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_conflict");
    assert_eq!(app.db.count_events().await, 1);
}

#[tokio::test]
async fn the_same_event_id_in_two_tenants_is_two_events() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let mut body = event(1);
    body["event_id"] = json!("0b6c1c43-5ad1-4f64-9b7c-3fb1f0d4e003");
    assert_eq!(
        app.post("/v1/events", &app.tenant.key, &body)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post("/v1/events", &other.key, &body).await.status(),
        201
    );
}

#[tokio::test]
async fn a_batch_is_stored_in_order_with_one_receipt_per_event() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..250).map(event).collect();
    let response = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let receipts = body["events"].as_array().unwrap();
    assert_eq!(receipts.len(), 250);
    for (i, r) in receipts.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
    }
    let stored = app.all_events(&app.tenant).await;
    assert_eq!(stored[17]["resource"]["id"], "e-17");
    app.verify_chain(&app.tenant).await;
}

#[tokio::test]
async fn a_batch_with_one_bad_event_stores_nothing() {
    let app = spawn_app().await;
    let mut events: Vec<Value> = (0..10).map(event).collect();
    events[7]["action"] = json!("bad action with spaces");
    let response = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[7]")
    );
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn a_batch_with_a_conflicting_event_id_stores_nothing() {
    let app = spawn_app().await;
    let mut original = event(1);
    original["event_id"] = json!("0b6c1c43-5ad1-4f64-9b7c-3fb1f0d4e004");
    assert_eq!(
        app.post("/v1/events", &app.tenant.key, &original)
            .await
            .status(),
        201
    );
    let mut changed = original.clone();
    changed["action"] = json!("salary.delete");
    let response = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": [event(2), changed, event(3)] }),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(app.db.count_events().await, 1);
}

#[tokio::test]
async fn a_retried_batch_returns_the_original_receipts() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..5)
        .map(|n| {
            let mut e = event(n);
            e["event_id"] = json!(uuid::Uuid::new_v4());
            e
        })
        .collect();
    let first: Value = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await
        .json()
        .await
        .unwrap();
    let again = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    for (a, b) in first["events"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["events"].as_array().unwrap())
    {
        assert_eq!(a["seq"], b["seq"]);
        assert_eq!(b["status"], "duplicate");
    }
    assert_eq!(app.db.count_events().await, 5);
}

/// Fires `clients` concurrent streams of `per_client` single-event posts at
/// the given servers (round robin) for one key; returns every receipt.
async fn hammer(urls: Vec<String>, key: String, clients: usize, per_client: usize) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, key, url) = (http.clone(), key.clone(), urls[c % urls.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for n in 0..per_client {
                let response = http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&key)
                    .json(&event(c * 10_000 + n))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                receipts.push(response.json::<Value>().await.unwrap());
            }
            receipts
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn assert_gapless(receipts: &[Value], n: usize) {
    let seqs: HashSet<u64> = receipts
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), n, "every receipt has its own seq");
    assert_eq!(
        seqs,
        (0..n as u64).collect::<HashSet<_>>(),
        "seqs are 0..n-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_of_one_tenant_get_a_gapless_chain() {
    let app = spawn_app().await;
    let receipts = hammer(vec![app.server.url("")], app.tenant.key.clone(), 16, 25).await;
    assert_gapless(&receipts, 400);
    let report = app.verify_chain(&app.tenant).await;
    assert_eq!(report.records_checked, 400);
    // Group commit happened: some transaction held more than one request.
    let grouped = app
        .server
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "group committed")
        .filter_map(|l| l["fields"]["batch.requests"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(grouped > 1, "largest group held {grouped} request(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_one_database_keep_one_linear_chain() {
    let app = spawn_app().await;
    let second = Server::spawn(&app.db, &app.pepper);
    let urls = vec![app.server.url(""), second.url("")];
    // Past 256 events, so a stored tree node is completed by whichever
    // process appends leaf 255, with a compact range that may be stale.
    let receipts = hammer(urls, app.tenant.key.clone(), 16, 40).await;
    assert_gapless(&receipts, 640);
    app.verify_chain(&app.tenant).await;
    let report = app.verify_export(&app.tenant).await;
    assert!(report.records_checked >= 640, "{}", report.records_checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_event_id_through_two_processes_store_it_once() {
    let app = spawn_app().await;
    let second = Server::spawn(&app.db, &app.pepper);
    let mut body = event(1);
    body["event_id"] = json!("9e0f2d6a-3c55-4f0e-8a4b-6f1b2c3d4e5f");
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = if i % 2 == 0 {
            app.server.url("/v1/events")
        } else {
            second.url("/v1/events")
        };
        let (http, key, body) = (http.clone(), app.tenant.key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    let mut seqs = HashSet::new();
    for t in tasks {
        let (status, receipt) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
        seqs.insert(receipt["seq"].as_u64().unwrap());
    }
    assert_eq!(created, 1, "exactly one request stored it");
    assert_eq!(seqs.len(), 1, "every answer names the same record");
    assert_eq!(app.db.count_events().await, 1);
}
