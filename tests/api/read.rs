//! The read path: filters, keyset pagination, single events, and the
//! `audit.read` record every read leaves.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn seed(app: &TestApp) {
    let events: Vec<Value> = (0..30)
        .map(|n| {
            json!({
                "action": if n % 3 == 0 { "salary.update" } else if n % 3 == 1 { "salary.view" } else { "rating.update" },
                "actor": { "id": format!("u-{}", n % 2), "type": "user" },
                "resource": { "type": if n % 5 == 0 { "team" } else { "employee" }, "id": format!("e-{}", n % 4) },
                "request_id": format!("req-{}", n / 10),
            })
        })
        .collect();
    let r = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(r.status(), 201);
}

async fn search(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/events?{query}"), &app.tenant.key)
        .await;
    assert_eq!(r.status(), 200, "{query}");
    let page: Value = r.json().await.unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "audit.read")
        .cloned()
        .collect()
}

#[tokio::test]
async fn filters_select_exactly_the_matching_events_newest_first() {
    let app = spawn_app().await;
    seed(&app).await;
    type Matches = Box<dyn Fn(u64) -> bool>;
    let cases: Vec<(&str, Matches)> = vec![
        ("actor_id=u-1", Box::new(|n| n % 2 == 1)),
        ("action=salary.update", Box::new(|n| n % 3 == 0)),
        ("action=salary.*", Box::new(|n| n % 3 != 2)),
        ("resource_type=team", Box::new(|n| n % 5 == 0)),
        (
            "resource_type=employee&resource_id=e-2",
            Box::new(|n| n % 5 != 0 && n % 4 == 2),
        ),
        ("request_id=req-2", Box::new(|n| n / 10 == 2)),
        (
            "actor_id=u-0&action=rating.*",
            Box::new(|n| n % 2 == 0 && n % 3 == 2),
        ),
    ];
    for (query, matches) in cases {
        let found: Vec<u64> = search(&app, query)
            .await
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..30).rev().filter(|&n| matches(n)).collect();
        assert_eq!(found, expected, "{query}");
    }
}

#[tokio::test]
async fn time_filters_use_the_receive_time() {
    let app = spawn_app().await;
    seed(&app).await;
    let all = search(&app, "action=salary.update").await;
    let t = all[0]["received_at"].as_str().unwrap().to_owned();
    assert_eq!(
        search(&app, &format!("action=salary.update&since={t}"))
            .await
            .len(),
        10
    );
    assert_eq!(
        search(&app, &format!("action=salary.update&until={t}"))
            .await
            .len(),
        0
    );
    assert_eq!(
        search(&app, "action=salary.update&since=2999-01-01T00:00:00Z")
            .await
            .len(),
        0
    );
}

#[tokio::test]
async fn pages_follow_the_cursor_without_overlap_or_gaps() {
    let app = spawn_app().await;
    seed(&app).await;
    let mut seen = Vec::new();
    let mut query = "action=salary.*&limit=7".to_owned();
    loop {
        let page: Value = app
            .get(&format!("/v1/events?{query}"), &app.tenant.key)
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("action=salary.*&limit=7&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..30).rev().filter(|n| n % 3 != 2).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn invalid_queries_are_refused_with_a_code() {
    let app = spawn_app().await;
    for (query, code) in [
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=abc", "invalid_query"),
        ("since=yesterday", "invalid_timestamp"),
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("action=sal*ary", "invalid_query"),
        ("colour=red", "invalid_query"),
    ] {
        let r = app
            .get(&format!("/v1/events?{query}"), &app.tenant.key)
            .await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{query}");
    }
}

#[tokio::test]
async fn an_event_is_fetched_by_seq_and_a_missing_seq_is_404() {
    let app = spawn_app().await;
    seed(&app).await;
    let r = app.get("/v1/events/4", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["seq"], 4);
    assert_eq!(e["resource"]["id"], "e-0");
    for field in ["leaf_hash", "chain_hash", "record", "payload_bytes", "salt"] {
        assert!(e[field].is_string(), "{field}");
    }
    let r = app.get("/v1/events/1000000", &app.tenant.key).await;
    assert_eq!(r.status(), 404);
    let r = app.get("/v1/events/-1", &app.tenant.key).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn every_read_is_recorded_as_an_audit_read_event() {
    let app = spawn_app().await;
    seed(&app).await;
    let _ = app
        .get("/v1/events?actor_id=u-1&limit=5", &app.tenant.key)
        .await;
    let _ = app.get("/v1/events/3", &app.tenant.key).await;
    let page: Value = app
        .get("/v1/events?action=audit.read", &app.tenant.key)
        .await
        .json()
        .await
        .unwrap();
    let reads = page["events"].as_array().unwrap();
    assert_eq!(
        reads.len(),
        2,
        "the query that lists them is recorded after it runs"
    );
    let by_seq = &reads[0];
    assert_eq!(by_seq["actor"]["id"], app.tenant.key_id.to_string());
    assert_eq!(by_seq["actor"]["type"], "api_key");
    assert_eq!(by_seq["metadata"]["filter"]["seq"], 3);
    assert_eq!(by_seq["metadata"]["rows"], 1);
    let query = &reads[1];
    assert_eq!(query["metadata"]["filter"]["actor_id"], "u-1");
    assert_eq!(query["metadata"]["filter"]["limit"], 5);
    assert_eq!(query["metadata"]["rows"], 5);
    app.verify_chain(&app.tenant).await;
}
