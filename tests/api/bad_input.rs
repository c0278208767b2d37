//! Bad input gets a 4xx with a stable code, and nothing is stored.

use serde_json::{Value, json};

use crate::helpers::{TestApp, event, spawn_app, spawn_app_with};

async fn send_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.server.url(path))
        .bearer_auth(&app.tenant.key)
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn with(field: &str, value: Value) -> Value {
    let mut e = event(1);
    let mut target = &mut e;
    let parts: Vec<&str> = field.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        target = &mut target[*part];
    }
    target[parts[parts.len() - 1]] = value;
    e
}

fn deep(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!([inner]))
}

fn without(field: &str) -> Value {
    let mut e = event(1);
    e.as_object_mut().unwrap().remove(field);
    e
}

#[tokio::test]
async fn each_kind_of_bad_event_gets_its_code_and_stores_nothing() {
    let app = spawn_app().await;
    let long = |n: usize| Value::String("x".repeat(n));
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "action wrong type",
            with("action", json!(5)),
            400,
            "invalid_type",
        ),
        (
            "actor wrong type",
            with("actor", json!("u-1")),
            400,
            "invalid_type",
        ),
        (
            "event_id not a uuid",
            with("event_id", json!("123")),
            400,
            "invalid_field",
        ),
        ("missing action", without("action"), 400, "missing_field"),
        (
            "an event id of the version Annal derives its own with",
            with("event_id", json!("7c9e6679-7425-8de9-944b-e07fc1f90ae7")),
            400,
            "reserved_event_id",
        ),
        (
            "a purge record forged by a client",
            with("action", json!("retention.purged")),
            400,
            "reserved_action",
        ),
        (
            "a read record forged by a client",
            with("action", json!("Audit.Read")),
            400,
            "reserved_action",
        ),
        (
            "an access record forged by a client",
            with("action", json!("access.login_succeeded")),
            400,
            "reserved_action",
        ),
        ("missing actor", without("actor"), 400, "missing_field"),
        (
            "missing resource",
            without("resource"),
            400,
            "missing_field",
        ),
        (
            "missing actor id",
            {
                let mut e = event(1);
                e["actor"].as_object_mut().unwrap().remove("id");
                e
            },
            400,
            "missing_field",
        ),
        (
            "unknown field",
            with("colour", json!("red")),
            400,
            "unknown_field",
        ),
        (
            "unknown nested field",
            with("actor.role", json!("admin")),
            400,
            "unknown_field",
        ),
        (
            "empty action",
            with("action", json!("")),
            400,
            "invalid_field",
        ),
        (
            "action with spaces",
            with("action", json!("salary update")),
            400,
            "invalid_field",
        ),
        (
            "action too long",
            with("action", long(129)),
            400,
            "field_too_long",
        ),
        (
            "actor id too long",
            with("actor.id", long(257)),
            400,
            "field_too_long",
        ),
        (
            "actor type too long",
            with("actor.type", long(65)),
            400,
            "field_too_long",
        ),
        (
            "actor email too long",
            with("actor.email", long(321)),
            400,
            "field_too_long",
        ),
        (
            "resource id too long",
            with("resource.id", long(257)),
            400,
            "field_too_long",
        ),
        (
            "request id too long",
            with("request_id", long(129)),
            400,
            "field_too_long",
        ),
        (
            "user agent too long",
            with("user_agent", long(1025)),
            400,
            "field_too_long",
        ),
        (
            "bad source ip",
            with("source_ip", json!("999.1.1.1")),
            400,
            "invalid_field",
        ),
        (
            "bad outcome",
            with("outcome", json!("maybe")),
            400,
            "invalid_field",
        ),
        (
            "timestamp not a date",
            with("occurred_at", json!("yesterday")),
            400,
            "invalid_timestamp",
        ),
        (
            "timestamp without zone",
            with("occurred_at", json!("2026-01-01T00:00:00")),
            400,
            "invalid_timestamp",
        ),
        (
            "timestamp impossible",
            with("occurred_at", json!("2026-02-30T00:00:00Z")),
            400,
            "invalid_timestamp",
        ),
        (
            "timestamp before 1970",
            with("occurred_at", json!("1969-12-31T23:59:59Z")),
            400,
            "invalid_timestamp",
        ),
        ("body is an array", json!([event(1)]), 400, "invalid_type"),
        (
            "after nested too deep",
            with("after", deep(65)),
            400,
            "invalid_field",
        ),
    ];
    for (case, body, status, code) in cases {
        let (got, error) = send_raw(
            &app,
            "/v1/events",
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(got, status, "{case}: {error}");
        assert_eq!(error["error"]["code"], code, "{case}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case}"
        );
    }
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn json_values_may_nest_up_to_the_documented_depth() {
    let app = spawn_app().await;
    let r = app
        .post("/v1/events", &app.tenant.key, &with("metadata", deep(64)))
        .await;
    assert_eq!(r.status(), 201);
    // And the page that shows it still parses, for the verifier too.
    app.verify_chain(&app.tenant).await;
}

#[tokio::test]
async fn malformed_bodies_get_their_codes_and_store_nothing() {
    let app = spawn_app().await;
    let json = Some("application/json");
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed json",
            json,
            b"{\"action\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "trailing garbage",
            json,
            b"{} x".to_vec(),
            400,
            "malformed_json",
        ),
        ("empty body", json, Vec::new(), 400, "malformed_json"),
        (
            "invalid utf-8",
            json,
            b"{\"action\": \"sal\xff\"}".to_vec(),
            400,
            "invalid_utf8",
        ),
        (
            "not json",
            Some("text/plain"),
            serde_json::to_vec(&event(1)).unwrap(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (case, content_type, body, status, code) in cases {
        let (got, error) = send_raw(&app, "/v1/events", content_type, body).await;
        assert_eq!(got, status, "{case}: {error}");
        assert_eq!(error["error"]["code"], code, "{case}");
    }
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = spawn_app().await;
    let mut e = event(1);
    e["metadata"] = json!({ "blob": "x".repeat(1024 * 1024) });
    let (status, error) = send_raw(
        &app,
        "/v1/events",
        Some("application/json"),
        serde_json::to_vec(&e).unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(error["error"]["code"], "body_too_large");
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = spawn_app_with(&[("ANNAL_BODY_LIMIT", "200")]).await;
    let mut e = event(1);
    e["metadata"] = json!({ "note": "y".repeat(300) });
    let (status, _) = send_raw(
        &app,
        "/v1/events",
        Some("application/json"),
        serde_json::to_vec(&e).unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = send_raw(
        &app,
        "/v1/events",
        Some("application/json"),
        serde_json::to_vec(&event(1)).unwrap(),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn batches_that_are_empty_or_over_1000_are_refused() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": [] }),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "empty_batch"
    );
    let events: Vec<Value> = (0..1001).map(event).collect();
    let r = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "batch_too_large"
    );
    let r = app
        .post(
            "/v1/events/batch",
            &app.tenant.key,
            &json!({ "events": [event(1)], "extra": 1 }),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_field"
    );
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn unknown_routes_and_bad_seqs_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let r = app.get("/v1/nothing-here", &app.tenant.key).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = app.get("/v1/events/abc", &app.tenant.key).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_seq"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    use std::io::{Read, Write};
    let app = spawn_app_with(&[("ANNAL_BODY_LIMIT", "1000")]).await;
    let mut stream = std::net::TcpStream::connect(&app.server.addr).unwrap();
    let chunk = "x".repeat(600);
    let body = format!("{{\"action\":\"{chunk}{chunk}\"}}");
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.tenant.key
    );
    for piece in body.as_bytes().chunks(500) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            std::str::from_utf8(piece).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"));
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn control_characters_in_query_filters_are_refused() {
    let app = spawn_app().await;
    for query in ["actor_id=u%001", "resource_id=a%0Ab", "action=x%00*"] {
        let r = app
            .get(&format!("/v1/events?{query}"), &app.tenant.key)
            .await;
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_query"
        );
    }
}
