//! Acknowledged means durable: a server killed with SIGKILL mid-stream loses
//! nothing it acknowledged, and the chain still verifies.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Server, event, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_and_the_chain_verifies() {
    let mut app = spawn_app().await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = app.server.url("/v1/events");
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, url, key) = (acked.clone(), url.clone(), app.tenant.key.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for n in 0..10_000 {
                let mut body = event(c * 100_000 + n);
                let id = uuid::Uuid::new_v4().to_string();
                body["event_id"] = Value::String(id.clone());
                match http.post(&url).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(id),
                    // The server is gone: anything unanswered was never acknowledged.
                    _ => return,
                }
            }
        }));
    }
    // Let the stream run, then kill the server without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.server.kill9();
    for c in clients {
        c.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > 10,
        "the stream was running ({} acks)",
        acked.len()
    );

    app.server = Server::spawn(&app.db, &app.pepper);
    let stored: HashSet<String> = app
        .all_events(&app.tenant)
        .await
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    let report = app.verify_chain(&app.tenant).await;
    assert!(report.anchored_at_genesis);
    // The tree and checkpoints survived too: an export verifies in full.
    let exported = app.verify_export(&app.tenant).await;
    assert!(exported.records_checked >= acked.len() as u64);
}
