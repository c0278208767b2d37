//! People against a real PostgreSQL: logins, sessions, the cookie and its
//! anti-CSRF header, expiry, brute force, and what roles may do.

use std::sync::{Arc, Mutex};

use annal::service::{Clock, SharedClock, SystemClock};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

struct MovableClock(Mutex<DateTime<Utc>>);

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn actions(app: &TestApp, tenant: uuid::Uuid) -> Vec<String> {
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    client
        .query(
            "SELECT action FROM annal.events WHERE tenant_id = $1 ORDER BY seq",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_member_logs_in_reads_the_trail_and_logs_out() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    crate::helpers::post_events(&app, &app.tenant, 3, 0).await;
    let (_, email) = app.add_member(t, "viewer").await;

    // The cookie is a __Host- cookie: Secure, HttpOnly, SameSite=Strict.
    let r = app
        .http
        .post(app.server.url("/v1/auth/login"))
        .json(&json!({ "email": email.to_uppercase(), "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "__Host-annal_session=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["mfa_enrolled"], false);

    let viewer = app.login(&email, PASSWORD).await;
    let me: Value = app
        .get_as("/v1/auth/me", &viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], viewer.email);
    assert_eq!(me["organization_id"], t.to_string());
    let r = app.get_as("/v1/events", &viewer).await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert!(page["events"].as_array().unwrap().len() >= 3);

    // Reading is recorded with the person as its actor.
    let reads = app.all_events(&app.tenant).await;
    let read = reads
        .iter()
        .rev()
        .find(|e| e["action"] == "audit.read")
        .unwrap();
    assert_eq!(read["actor"]["type"], "user");
    assert_eq!(read["actor"]["id"], viewer.user_id.to_string());

    // A viewer may neither post nor export.
    let r = app
        .send_as(
            Method::POST,
            "/v1/events",
            &viewer,
            Some(&crate::helpers::event(9)),
        )
        .await;
    assert_eq!(code(r).await, (403, "forbidden".into()));
    assert_eq!(
        code(app.get_as("/v1/export", &viewer).await).await,
        (403, "forbidden".into())
    );

    // State-changing requests need the anti-CSRF header.
    let r = app
        .http
        .post(app.server.url("/v1/auth/logout"))
        .header("cookie", &viewer.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "csrf_rejected".into()));
    let r = app
        .http
        .post(app.server.url("/v1/auth/logout"))
        .header("cookie", &viewer.cookie)
        .header("x-annal-csrf", "not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "csrf_rejected".into()));
    let r = app
        .send_as(Method::POST, "/v1/auth/logout", &viewer, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        code(app.get_as("/v1/events", &viewer).await).await,
        (401, "unauthenticated".into())
    );
    let log = actions(&app, t.as_uuid()).await;
    for action in ["access.login_succeeded", "access.session_ended"] {
        assert!(log.contains(&action.to_owned()), "{action}: {log:?}");
    }
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_answer_and_are_recorded() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let (_, email) = app.add_member(t, "analyst").await;
    let wrong = app
        .login_with(json!({ "email": email, "password": "not the password at all" }))
        .await
        .unwrap_err();
    let unknown = app
        .login_with(json!({ "email": "nobody@example.com", "password": PASSWORD }))
        .await
        .unwrap_err();
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown, "no difference to learn from");
    assert_eq!(wrong.1["error"]["code"], "invalid_credentials");
    // The known user's failure is in its organisation's log, the unknown
    // email's in the system log.
    assert!(
        actions(&app, t.as_uuid())
            .await
            .contains(&"access.login_failed".to_owned())
    );
    assert!(
        actions(&app, uuid::Uuid::nil())
            .await
            .contains(&"access.login_failed".to_owned())
    );
    // Malformed input is a 400, not a login failure.
    let bad = app
        .login_with(json!({ "email": "no-at-sign", "password": PASSWORD }))
        .await
        .unwrap_err();
    assert_eq!(bad.1["error"]["code"], "invalid_email");
}

#[tokio::test]
async fn brute_force_against_one_account_hits_the_limit() {
    let app = spawn_app_with(&[("ANNAL_LOGIN_LIMIT_ACCOUNT", "5")]).await;
    let (_, email) = app.add_member(app.tenant.id, "viewer").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = app
            .http
            .post(app.server.url("/v1/auth/login"))
            .json(&json!({ "email": email, "password": "guess guess guess" }))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password waits now: the limit is per account.
    let blocked = app
        .login_with(json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(blocked.unwrap_err().0, 429);
}

#[tokio::test]
async fn sessions_end_when_idle_or_old_with_an_injected_clock() {
    let app = spawn_app().await;
    let person = app.person(app.tenant.id, "auditor").await;
    let token = person.cookie.split_once('=').unwrap().1.to_owned();
    let start = SystemClock.now();
    let clock = Arc::new(MovableClock(Mutex::new(start)));
    let shared: SharedClock = clock.clone();
    let accounts = app.accounts(shared);
    let at = |minutes: i64| *clock.0.lock().unwrap() = start + TimeDelta::minutes(minutes);

    // Busy every 20 minutes: alive for 12 hours, not longer.
    for minutes in (20..=700).step_by(20) {
        at(minutes);
        accounts.authenticate(&token, None, false).await.unwrap();
    }
    at(12 * 60 + 1);
    assert!(accounts.authenticate(&token, None, false).await.is_err());

    // Idle for 31 minutes: over.
    let idle = app.person(app.tenant.id, "viewer").await;
    let token = idle.cookie.split_once('=').unwrap().1.to_owned();
    at(0);
    accounts.authenticate(&token, None, false).await.unwrap();
    at(31);
    assert!(accounts.authenticate(&token, None, false).await.is_err());
}

#[tokio::test]
async fn api_keys_are_not_people_and_people_of_one_org_see_nothing_of_another() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    crate::helpers::post_events(&app, &other, 2, 0).await;
    let owner = app.person(app.tenant.id, "owner").await;
    // The other organisation's events are not there to read.
    let page: Value = app.get_as("/v1/events", &owner).await.json().await.unwrap();
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["id"] != "e-0")
    );
    // An API key is no session.
    let r = app.get("/v1/auth/me", &app.tenant.key).await;
    assert_eq!(code(r).await, (403, "forbidden".into()));
}
