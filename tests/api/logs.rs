//! Logs carry a request id on every line of a request and never the
//! payloads, emails, keys or tokens that pass through.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn logs_never_contain_posted_values_keys_or_emails() {
    let app = spawn_app().await;
    let secret_values = [
        "canary-actor-9f2c",
        "canary.person@example.com",
        "Canary Person Name",
        "canary-resource-77a1",
        "canary-request-5d3e",
        "198.51.100.77",
        "canary-agent/1.0",
        "canary-salary-123456",
        "canary-metadata-value",
    ];
    let body = json!({
        "action": "salary.update",
        "actor": { "id": secret_values[0], "type": "user", "email": secret_values[1], "name": secret_values[2] },
        "resource": { "type": "employee", "id": secret_values[3] },
        "request_id": secret_values[4],
        "source_ip": secret_values[5],
        "user_agent": secret_values[6],
        "before": { "salary": secret_values[7] },
        "metadata": { "note": secret_values[8] },
    });
    assert_eq!(
        app.post("/v1/events", &app.tenant.key, &body)
            .await
            .status(),
        201
    );
    // Reads with the same values in the query string, and a failing request.
    let _ = app
        .get(
            &format!("/v1/events?actor_id={}", secret_values[0]),
            &app.tenant.key,
        )
        .await;
    let _ = app
        .get(
            &format!("/v1/events?request_id={}", secret_values[4]),
            &app.tenant.key,
        )
        .await;
    let mut bad = body.clone();
    bad["colour"] = json!(secret_values[8]);
    let _ = app.post("/v1/events", &app.tenant.key, &bad).await;
    let _ = app.post("/v1/events", "annal_wrong", &body).await;
    std::thread::sleep(std::time::Duration::from_millis(300));

    let logs = app.server.output();
    assert!(logs.contains("request completed"), "the run was logged");
    for value in secret_values
        .iter()
        .chain([&app.tenant.key.as_str(), &app.pepper.to_hex().as_str()])
    {
        let leak: Vec<&str> = logs.lines().filter(|l| l.contains(value)).collect();
        assert!(leak.is_empty(), "the logs contain {value}: {leak:?}");
    }
    let secret_half = &app.tenant.key[app.tenant.key.len() - 64..];
    assert!(!logs.contains(secret_half));
}

#[tokio::test]
async fn every_request_log_line_carries_the_request_id_which_is_echoed() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.server.url("/v1/events"))
        .bearer_auth(&app.tenant.key)
        .header("X-Request-Id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc.123");
    // A malformed id is replaced, not echoed.
    let r = app
        .http
        .get(app.server.url("/healthz"))
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(300));

    let logs = app.server.output();
    let ours: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["request_id"] == "trace-abc.123")
        .collect();
    assert!(
        !ours.is_empty(),
        "the request is logged under its id: {logs}"
    );
    // Every line our library writes is written for a request and names it,
    // the writer's group-commit lines included (the server runs at debug);
    // background jobs (the checkpoint signer) name their job instead.
    let library_lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("annal::"))
        })
        .filter(|l| l["span"]["job"].is_null())
        .collect();
    assert!(
        library_lines
            .iter()
            .any(|l| l["fields"]["message"] == "group committed"),
        "the writer logged: {logs}"
    );
    for line in &library_lines {
        assert!(
            line["span"]["request_id"].is_string(),
            "no request id: {line}"
        );
    }
    assert!(logs.contains(&generated));
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let doc: Value = reqwest::get(app.server.url("/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/events/{seq}",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(doc["components"]["schemas"]["EventInput"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
