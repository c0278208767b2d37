//! Passkeys against a real PostgreSQL, with real WebAuthn ceremonies: a
//! software authenticator (`webauthn-authenticator-rs`'s `SoftPasskey`)
//! registers with the running server and answers its login challenges,
//! calling from the origin the server is configured with.

use reqwest::Method;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::helpers::{PASSWORD, Person, TestApp, spawn_app_with};

/// The web client's origin, as the server is told and the authenticator
/// calls from.
const ORIGIN: &str = "http://localhost:8443";

type Authenticator = WebauthnAuthenticator<SoftPasskey>;

async fn passkey_app() -> TestApp {
    spawn_app_with(&[
        ("ANNAL_WEBAUTHN_RP_ID", "localhost"),
        ("ANNAL_WEBAUTHN_ORIGIN", ORIGIN),
    ])
    .await
}

fn authenticator() -> Authenticator {
    // `true`: the soft authenticator claims user verification, as a
    // platform authenticator with a PIN or biometrics would.
    WebauthnAuthenticator::new(SoftPasskey::new(true))
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Registers a passkey named `name` held by `key` for `person`; the
/// server's answer.
async fn register(app: &TestApp, person: &Person, key: &mut Authenticator, name: &str) -> Value {
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/register/start",
            person,
            Some(&json!({ "name": name })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let challenge: CreationChallengeResponse = r.json().await.unwrap();
    let credential = key.do_registration(origin(), challenge).unwrap();
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/register/finish",
            person,
            Some(&serde_json::to_value(&credential).unwrap()),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// `POST /v1/auth/passkeys/login/start`: the status and body.
async fn login_start(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.server.url("/v1/auth/passkeys/login/start"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The ceremony id and the authenticator's assertion for a login started
/// with the right password.
async fn assertion(app: &TestApp, email: &str, key: &mut Authenticator) -> (Value, Value) {
    let (status, started) = login_start(app, email, PASSWORD).await;
    assert_eq!(status, 200, "{started}");
    let challenge: RequestChallengeResponse =
        serde_json::from_value(started["challenge"].clone()).unwrap();
    let credential = key.do_authentication(origin(), challenge).unwrap();
    (
        started["ceremony_id"].clone(),
        serde_json::to_value(&credential).unwrap(),
    )
}

/// `POST /v1/auth/passkeys/login/finish`: the person logged in, or the
/// status and error code.
async fn login_finish(
    app: &TestApp,
    email: &str,
    ceremony_id: &Value,
    credential: &Value,
) -> Result<(Person, Value), (u16, String)> {
    let r = app
        .http
        .post(app.server.url("/v1/auth/passkeys/login/finish"))
        .json(&json!({ "ceremony_id": ceremony_id, "credential": credential }))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Err(code(r).await);
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-annal_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"));
    let answer: Value = r.json().await.unwrap();
    let person = Person {
        user_id: answer["session"]["user_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        email: email.to_owned(),
        cookie: cookie.split(';').next().unwrap().to_owned(),
        csrf: answer["csrf_token"].as_str().unwrap().to_owned(),
    };
    Ok((person, answer))
}

/// The organisation's events whose action starts with `access.`.
async fn access_events(app: &TestApp) -> Vec<Value> {
    app.all_events(&app.tenant)
        .await
        .into_iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("access."))
        .collect()
}

#[tokio::test]
async fn a_registered_passkey_is_listed_and_with_the_password_logs_in_with_mfa() {
    let app = passkey_app().await;
    let (user, email) = app.add_member(app.tenant.id, "analyst").await;
    let person = app.login(&email, PASSWORD).await;
    let mut key = authenticator();

    let registered = register(&app, &person, &mut key, "laptop").await;
    assert_eq!(registered["name"], "laptop");
    assert!(registered["last_used_at"].is_null());

    let listed: Value = app
        .get_as("/v1/auth/passkeys", &person)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], registered["id"]);
    assert_eq!(listed[0]["name"], "laptop");

    // The password alone is not enough any more.
    let alone = app
        .login_with(json!({ "email": email, "password": PASSWORD }))
        .await
        .unwrap_err();
    assert_eq!(alone.0, 401);
    assert_eq!(alone.1["error"]["code"], "mfa_required");

    // Password + passkey: a session like any login's, with MFA.
    let (ceremony, credential) = assertion(&app, &email, &mut key).await;
    let (again, answer) = login_finish(&app, &email, &ceremony, &credential)
        .await
        .unwrap();
    assert_eq!(again.user_id, user);
    assert_eq!(answer["session"]["mfa"], true);
    assert_eq!(answer["mfa_enrolled"], true);
    assert_eq!(answer["role"], "analyst");
    let me: Value = app
        .get_as("/v1/auth/me", &again)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], user.to_string());
    assert_eq!(me["session"]["mfa"], true);
    assert_eq!(me["mfa_enrolled"], true);
    assert_eq!(app.get_as("/v1/events", &again).await.status(), 200);
    // The anti-CSRF token works with the cookie.
    let r = app
        .send_as(Method::POST, "/v1/auth/logout", &again, None)
        .await;
    assert_eq!(r.status(), 204);

    // Its use is on the passkey.
    let listed: Value = app
        .get_as("/v1/auth/passkeys", &person)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed[0]["last_used_at"].is_string());

    // On the record, with no key material in it.
    let events = access_events(&app).await;
    let registered_event = events
        .iter()
        .find(|e| e["action"] == "access.passkey_registered")
        .unwrap();
    assert_eq!(registered_event["actor"]["id"], user.to_string());
    assert_eq!(registered_event["metadata"]["passkey_id"], registered["id"]);
    let login = events
        .iter()
        .rfind(|e| e["action"] == "access.login_succeeded")
        .unwrap();
    assert_eq!(login["metadata"]["method"], "passkey");
    assert_eq!(login["metadata"]["mfa"], true);
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(credential["response"]["signature"].as_str().unwrap()));
}

#[tokio::test]
async fn a_wrong_or_replayed_assertion_or_an_unknown_ceremony_is_refused() {
    let app = passkey_app().await;
    let (_, email) = app.add_member(app.tenant.id, "viewer").await;
    let person = app.login(&email, PASSWORD).await;
    let mut key = authenticator();
    register(&app, &person, &mut key, "phone").await;

    // A forged signature.
    let (ceremony, mut credential) = assertion(&app, &email, &mut key).await;
    let signature = credential["response"]["signature"].as_str().unwrap();
    let mut forged: Vec<char> = signature.chars().collect();
    forged[12] = if forged[12] == 'A' { 'B' } else { 'A' };
    credential["response"]["signature"] = json!(forged.into_iter().collect::<String>());
    assert_eq!(
        login_finish(&app, &email, &ceremony, &credential)
            .await
            .unwrap_err(),
        (401, "invalid_credentials".into())
    );
    // A new ceremony, answered genuinely, logs in.
    let (ceremony, credential) = assertion(&app, &email, &mut key).await;
    login_finish(&app, &email, &ceremony, &credential)
        .await
        .unwrap();
    // Replayed: for the same ceremony, and for a new challenge.
    assert_eq!(
        login_finish(&app, &email, &ceremony, &credential)
            .await
            .unwrap_err(),
        (401, "invalid_credentials".into())
    );
    let (fresh, _) = assertion(&app, &email, &mut key).await;
    assert_eq!(
        login_finish(&app, &email, &fresh, &credential)
            .await
            .unwrap_err(),
        (401, "invalid_credentials".into())
    );
    // An unknown ceremony.
    assert_eq!(
        login_finish(&app, &email, &json!(uuid::Uuid::new_v4()), &credential)
            .await
            .unwrap_err(),
        (401, "invalid_credentials".into())
    );
    // Another authenticator, never registered, cannot answer at all: the
    // challenge names only this user's credentials.
    let (_, started) = login_start(&app, &email, PASSWORD).await;
    let challenge: RequestChallengeResponse =
        serde_json::from_value(started["challenge"].clone()).unwrap();
    assert!(
        authenticator()
            .do_authentication(origin(), challenge)
            .is_err()
    );

    // A wrong password gets no challenge; no passkey, no passkey login.
    assert_eq!(login_start(&app, &email, "not the password").await.0, 401);
    let (_, other) = app.add_member(app.tenant.id, "viewer").await;
    let (status, body) = login_start(&app, &other, PASSWORD).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("no_passkey"))
    );

    let failures: Vec<Value> = access_events(&app)
        .await
        .into_iter()
        .filter(|e| e["action"] == "access.login_failed")
        .collect();
    assert!(
        failures
            .iter()
            .any(|e| e["metadata"]["reason"] == "passkey"),
        "{failures:?}"
    );
}

#[tokio::test]
async fn a_removed_passkey_no_longer_logs_in() {
    let app = passkey_app().await;
    let (_, email) = app.add_member(app.tenant.id, "hr_lead").await;
    let person = app.login(&email, PASSWORD).await;
    let mut key = authenticator();
    let registered = register(&app, &person, &mut key, "key").await;
    let (ceremony, credential) = assertion(&app, &email, &mut key).await;
    let id = registered["id"].as_str().unwrap();

    // Not someone else's to remove.
    let other = app.person(app.tenant.id, "owner").await;
    let path = format!("/v1/auth/passkeys/{id}");
    assert_eq!(
        code(app.send_as(Method::DELETE, &path, &other, None).await).await,
        (404, "not_found".into())
    );
    let r = app.send_as(Method::DELETE, &path, &person, None).await;
    assert_eq!(r.status(), 204);
    let listed: Value = app
        .get_as("/v1/auth/passkeys", &person)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));

    // A challenge issued before the removal is answered in vain; the
    // password alone logs in again.
    assert_eq!(
        login_finish(&app, &email, &ceremony, &credential)
            .await
            .unwrap_err(),
        (401, "invalid_credentials".into())
    );
    app.login(&email, PASSWORD).await;
    assert!(
        access_events(&app)
            .await
            .iter()
            .any(|e| e["action"] == "access.passkey_removed")
    );
}

#[tokio::test]
async fn a_passkey_satisfies_the_organisations_mfa_requirement() {
    let app = passkey_app().await;
    let t = app.tenant.id;
    let (_, email) = app.add_member(t, "admin").await;
    let admin = app.login(&email, PASSWORD).await;
    let r = app
        .send_as(
            Method::PUT,
            "/v1/org/settings",
            &admin,
            Some(&json!({ "mfa_required": true })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        code(app.get_as("/v1/events", &admin).await).await,
        (403, "mfa_enrollment_required".into())
    );

    let mut key = authenticator();
    let registered = register(&app, &admin, &mut key, "key").await;
    assert_eq!(app.get_as("/v1/events", &admin).await.status(), 200);
    let (ceremony, credential) = assertion(&app, &email, &mut key).await;
    let (again, answer) = login_finish(&app, &email, &ceremony, &credential)
        .await
        .unwrap();
    assert_eq!(answer["must_enroll_mfa"], false);
    assert_eq!(app.get_as("/v1/events", &again).await.status(), 200);

    // The last second factor stays while the organisation requires one.
    let path = format!("/v1/auth/passkeys/{}", registered["id"].as_str().unwrap());
    assert_eq!(
        code(app.send_as(Method::DELETE, &path, &again, None).await).await,
        (403, "mfa_required_by_organization".into())
    );
    assert_eq!(
        app.get_as("/v1/auth/passkeys", &again)
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn passkey_endpoints_refuse_api_keys_no_credentials_and_other_organisations() {
    let app = passkey_app().await;
    let (_, email) = app.add_member(app.tenant.id, "auditor").await;
    let person = app.login(&email, PASSWORD).await;
    let mut key = authenticator();
    let registered = register(&app, &person, &mut key, "key").await;
    let id = registered["id"].as_str().unwrap();

    // A member of another organisation sees none of them and removes none.
    let b = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let stranger = app.person(b.id, "owner").await;
    let listed: Value = app
        .get_as("/v1/auth/passkeys", &stranger)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
    let path = format!("/v1/auth/passkeys/{id}");
    assert_eq!(
        code(app.send_as(Method::DELETE, &path, &stranger, None).await).await,
        (404, "not_found".into())
    );
    // Finishing a registration never begun.
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/register/finish",
            &stranger,
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Without the anti-CSRF header.
    let r = app
        .http
        .post(app.server.url("/v1/auth/passkeys/register/start"))
        .header("cookie", &person.cookie)
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "csrf_rejected".into()));

    // API keys are not people; without credentials, nothing.
    for (method, path) in [
        (Method::GET, "/v1/auth/passkeys".to_owned()),
        (Method::POST, "/v1/auth/passkeys/register/start".to_owned()),
        (Method::POST, "/v1/auth/passkeys/register/finish".to_owned()),
        (Method::POST, "/v1/auth/passkeys/reauth/start".to_owned()),
        (Method::POST, "/v1/auth/passkeys/reauth/finish".to_owned()),
        (Method::DELETE, path.clone()),
    ] {
        let body = json!({ "name": "x" });
        let r = app
            .http
            .request(method.clone(), app.server.url(&path))
            .bearer_auth(&app.tenant.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (403, "forbidden".into()), "{method} {path}");
        let r = app
            .http
            .request(method.clone(), app.server.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            code(r).await,
            (401, "unauthenticated".into()),
            "{method} {path}"
        );
    }
    assert_eq!(
        app.get_as("/v1/auth/passkeys", &person)
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The endpoints are described.
    let doc: Value = reqwest::get(app.server.url("/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/auth/passkeys",
        "/v1/auth/passkeys/{id}",
        "/v1/auth/passkeys/register/start",
        "/v1/auth/passkeys/register/finish",
        "/v1/auth/passkeys/login/start",
        "/v1/auth/passkeys/login/finish",
        "/v1/auth/passkeys/reauth/start",
        "/v1/auth/passkeys/reauth/finish",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn a_passkey_reauthenticates_a_session_once_per_challenge() {
    let app = passkey_app().await;
    let (user, email) = app.add_member(app.tenant.id, "owner").await;
    let person = app.login(&email, PASSWORD).await;
    let mut key = authenticator();
    register(&app, &person, &mut key, "key").await;
    let (ceremony, credential) = assertion(&app, &email, &mut key).await;
    let (session, _) = login_finish(&app, &email, &ceremony, &credential)
        .await
        .unwrap();

    // The password alone does not re-authenticate a passkey user.
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/reauthenticate",
            &session,
            Some(&json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(code(r).await, (401, "mfa_required".into()));
    // Nor does a wrong password get a challenge.
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/reauth/start",
            &session,
            Some(&json!({ "password": "not the password" })),
        )
        .await;
    assert_eq!(code(r).await, (401, "invalid_credentials".into()));

    let before: Value = app
        .get_as("/v1/auth/me", &session)
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/reauth/start",
            &session,
            Some(&json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let started: Value = r.json().await.unwrap();
    let challenge: RequestChallengeResponse =
        serde_json::from_value(started["challenge"].clone()).unwrap();
    let credential = key.do_authentication(origin(), challenge).unwrap();
    let body = json!({ "ceremony_id": started["ceremony_id"], "credential": credential });
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/reauth/finish",
            &session,
            Some(&body),
        )
        .await;
    assert_eq!(r.status(), 204);
    let after: Value = app
        .get_as("/v1/auth/me", &session)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        after["session"]["authenticated_at"],
        before["session"]["authenticated_at"]
    );
    assert_eq!(after["session"]["mfa"], true);

    // The same answer again is refused.
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/passkeys/reauth/finish",
            &session,
            Some(&body),
        )
        .await;
    assert_eq!(code(r).await, (401, "invalid_credentials".into()));

    let events = access_events(&app).await;
    let reauth = events
        .iter()
        .rfind(|e| e["action"] == "access.reauthenticated")
        .unwrap();
    assert_eq!(reauth["actor"]["id"], user.to_string());
    assert_eq!(reauth["metadata"]["method"], "passkey");
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "access.reauthentication_failed")
    );
}
