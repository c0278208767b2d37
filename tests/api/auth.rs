//! Every protected endpoint refuses missing, malformed, unknown and revoked
//! keys (401), keys without the scope (403), and never shows another
//! tenant's data.

use annal::crypto::ApiKeyToken;
use annal::service::auth::Scope;
use annal::service::keys::Keys;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, event, spawn_app};

const ENDPOINTS: [(&str, &str, Option<Scope>); 4] = [
    ("POST", "/v1/events", Some(Scope::EventsWrite)),
    ("POST", "/v1/events/batch", Some(Scope::EventsWrite)),
    ("GET", "/v1/events", Some(Scope::EventsRead)),
    ("GET", "/v1/events/0", Some(Scope::EventsRead)),
];

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = if path.ends_with("batch") {
        json!({ "events": [event(1)] })
    } else {
        event(1)
    };
    let mut request = app.http.request(method.clone(), app.server.url(path));
    if method == Method::POST {
        request = request.json(&body);
    }
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_get_401() {
    let app = spawn_app().await;
    let revoked = app.new_key(app.tenant.id, &Scope::ALL).await;
    Keys::new(app.store(), app.pepper.clone(), app.clock())
        .revoke(revoked.key_id)
        .await
        .unwrap();
    let unknown = format!("Bearer {}", ApiKeyToken::generate().reveal());
    // The same key with its last secret digit changed (always to another one).
    let (head, last) = app.tenant.key.split_at(app.tenant.key.len() - 1);
    let wrong_secret = format!("Bearer {head}{}", if last == "0" { "1" } else { "0" });
    let revoked = format!("Bearer {}", revoked.key);
    let basic = "Basic dXNlcjpwYXNz".to_owned();
    let cases: [(&str, Option<&str>); 6] = [
        ("missing", None),
        ("malformed", Some("Bearer not-a-key")),
        ("not bearer", Some(&basic)),
        ("unknown", Some(&unknown)),
        ("wrong secret", Some(&wrong_secret)),
        ("revoked", Some(&revoked)),
    ];
    for (method, path, _) in ENDPOINTS {
        for (case, authorization) in &cases {
            let r = call(&app, method, path, *authorization).await;
            assert_eq!(r.status(), 401, "{method} {path}: {case}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], "unauthenticated",
                "{method} {path}: {case}"
            );
        }
    }
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn a_key_without_the_needed_scope_gets_403() {
    let app = spawn_app().await;
    let write_only = app.new_key(app.tenant.id, &[Scope::EventsWrite]).await;
    let read_only = app.new_key(app.tenant.id, &[Scope::EventsRead]).await;
    for (method, path, scope) in ENDPOINTS {
        let key = if scope == Some(Scope::EventsWrite) {
            &read_only
        } else {
            &write_only
        };
        let r = call(&app, method, path, Some(&format!("Bearer {}", key.key))).await;
        assert_eq!(r.status(), 403, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    assert_eq!(app.db.count_events().await, 0);
}

#[tokio::test]
async fn a_key_of_another_tenant_never_sees_this_tenants_events() {
    let app = spawn_app().await;
    for n in 0..5 {
        assert_eq!(
            app.post("/v1/events", &app.tenant.key, &event(n))
                .await
                .status(),
            201
        );
    }
    let other = app.new_tenant(&Scope::ALL).await;
    // Same seq, other tenant: not found, exactly as for a seq that never existed.
    let r = app.get("/v1/events/2", &other.key).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Searching by this tenant's values finds nothing.
    let page: Value = app
        .get("/v1/events?resource_id=e-2", &other.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    // The other tenant's own trail holds only its own audit.read events.
    let page: Value = app
        .get("/v1/events", &other.key)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "audit.read")
    );
    // A body cannot name a tenant: the field does not exist.
    let mut body = event(9);
    body["tenant_id"] = json!(app.tenant.id.to_string());
    assert_eq!(
        app.post("/v1/events", &other.key, &body).await.status(),
        400
    );
}

#[tokio::test]
async fn writes_land_in_the_keys_own_tenant_and_nowhere_else() {
    let app = spawn_app().await;
    let other = app.new_tenant(&Scope::ALL).await;
    let mut one = event(1);
    one["resource"]["id"] = json!("written-by-b");
    let r = app.post("/v1/events", &other.key, &one).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap()["seq"],
        0,
        "B's chain starts at 0"
    );
    let mut two = event(2);
    two["resource"]["id"] = json!("batch-by-b");
    let r = app
        .post("/v1/events/batch", &other.key, &json!({ "events": [two] }))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["events"][0]["seq"], 1);

    for id in ["written-by-b", "batch-by-b"] {
        let mine: Value = app
            .get(&format!("/v1/events?resource_id={id}"), &app.tenant.key)
            .await
            .json()
            .await
            .unwrap();
        assert!(
            mine["events"].as_array().unwrap().is_empty(),
            "A does not see {id}"
        );
        let theirs: Value = app
            .get(&format!("/v1/events?resource_id={id}"), &other.key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(theirs["events"].as_array().unwrap().len(), 1, "B sees {id}");
    }
    // A's chain holds only its own two audit.read records (seq 0 and 1).
    let r = app.post("/v1/events", &app.tenant.key, &event(3)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["seq"], 2);
    let report = app.verify_chain(&other).await;
    assert_eq!(report.tenant_id, other.id);
}

#[tokio::test]
async fn a_key_over_its_ingest_limit_gets_429_with_retry_after_and_nothing_is_stored() {
    let app = crate::helpers::spawn_app_with(&[
        ("ANNAL_INGEST_LIMIT", "1"),
        ("ANNAL_INGEST_BURST", "1000"),
    ])
    .await;
    // The burst fits a whole batch.
    crate::helpers::post_events(&app, &app.tenant, 1000, 0).await;
    let before = app.db.count_events().await;

    let r = app
        .post("/v1/events", &app.tenant.key, &crate::helpers::event(5000))
        .await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(app.db.count_events().await, before, "nothing stored");

    // The limit is per key: another key of the same tenant still posts,
    // and reads are not limited.
    let other = app
        .new_key(app.tenant.id, &annal::service::auth::Scope::ALL)
        .await;
    let r = app
        .post("/v1/events", &other.key, &crate::helpers::event(5001))
        .await;
    assert_eq!(r.status(), 201);
    let r = app.get("/v1/events?limit=1", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn serve_refuses_an_ingest_burst_smaller_than_a_batch() {
    let db = crate::helpers::TestDb::new().await;
    let out = std::process::Command::new(crate::helpers::ANNAL)
        .args(["serve", "--bind", "127.0.0.1:0", "--ingest-burst", "10"])
        .env("DATABASE_URL", db.app_url())
        .env(
            "ANNAL_API_KEY_PEPPER",
            annal::crypto::Pepper::generate().to_hex(),
        )
        .env("ANNAL_SIGNING_KEY", &db.skey)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least the largest batch"));
}
