//! Second factors against a real PostgreSQL: TOTP enrollment, logins that
//! need a code (each code once, one step of drift either way), recovery
//! codes, removal, and the organisation's MFA requirement. Codes are
//! computed here from the secret the API handed out.

use std::sync::{Arc, Mutex};

use annal::service::accounts::{LoginInput, ReauthInput};
use annal::service::auth::{OwnAccount, OwnMfa, Scope};
use annal::service::mfa::Mfa;
use annal::service::{Clock, ServiceError, SharedClock, SystemClock};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::helpers::{PASSWORD, Person, TestApp, spawn_app};

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

/// An authenticator app holding the base32 `secret`.
fn app_for(secret: &str) -> TOTP {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "test".into()).unwrap()
}

/// Unix seconds `offset` seconds from now.
fn unix(offset: i64) -> u64 {
    (SystemClock.now().timestamp() + offset) as u64
}

/// A six-digit code that no step within one of `at` has.
fn wrong_code(app: &TOTP, at: u64) -> String {
    let valid: Vec<String> = [at - 30, at, at + 30]
        .iter()
        .map(|t| app.generate(*t))
        .collect();
    (0..)
        .map(|n: u32| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

async fn post_as(
    app: &TestApp,
    path: &str,
    person: &Person,
    body: Option<&Value>,
) -> reqwest::Response {
    app.send_as(Method::POST, path, person, body).await
}

/// Begins enrollment; the base32 secret.
async fn start(app: &TestApp, person: &Person) -> String {
    let r = post_as(app, "/v1/auth/mfa/totp", person, None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["secret"].as_str().unwrap().to_owned()
}

/// Enrolls `person` with the current code; the secret and the recovery
/// codes.
async fn enroll(app: &TestApp, person: &Person) -> (String, Vec<String>) {
    let secret = start(app, person).await;
    let now = app_for(&secret).generate(unix(0));
    let r = post_as(
        app,
        "/v1/auth/mfa/totp/confirm",
        person,
        Some(&json!({ "code": now })),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn login(app: &TestApp, email: &str, extra: Value) -> Result<Person, (u16, Value)> {
    let mut body = json!({ "email": email, "password": PASSWORD });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.login_with(body).await
}

fn error_code(failure: (u16, Value)) -> (u16, String) {
    (
        failure.0,
        failure.1["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// The organisation's events whose action starts with `access.`.
async fn access_events(app: &TestApp) -> Vec<Value> {
    app.all_events(&app.tenant)
        .await
        .into_iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("access."))
        .collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn after_enrollment_login_needs_a_totp_code_and_each_code_works_once() {
    let app = spawn_app().await;
    let (user, email) = app.add_member(app.tenant.id, "analyst").await;
    let person = app.login(&email, PASSWORD).await;

    // Begin: the secret, as base32 and as an otpauth URI for a QR code.
    let r = post_as(&app, "/v1/auth/mfa/totp", &person, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let started: Value = r.json().await.unwrap();
    let secret = started["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        Secret::Encoded(secret.clone()).to_bytes().unwrap().len(),
        20
    );
    let uri = started["otpauth_uri"].as_str().unwrap();
    let label = format!("otpauth://totp/Annal:{}?", email.replace('@', "%40"));
    assert!(uri.starts_with(&label), "{uri}");
    for part in [
        format!("secret={secret}"),
        "issuer=Annal".into(),
        "algorithm=SHA1".into(),
        "digits=6".into(),
        "period=30".into(),
    ] {
        assert!(uri.contains(&part), "{part}: {uri}");
    }
    assert_eq!(TOTP::from_url(uri).unwrap().get_secret_base32(), secret);
    // Not enrolled until confirmed: login still needs no code.
    login(&app, &email, json!({})).await.unwrap();

    // Confirm with the app's code: ten recovery codes, shown once, and
    // this session counts as MFA-verified.
    let first = app_for(&secret).generate(unix(0));
    let r = post_as(
        &app,
        "/v1/auth/mfa/totp/confirm",
        &person,
        Some(&json!({ "code": first })),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let confirmed: Value = r.json().await.unwrap();
    let codes = confirmed["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let me: Value = app
        .get_as("/v1/auth/me", &person)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enrolled"], true);
    assert_eq!(me["session"]["mfa"], true);

    // Login now needs a code.
    let missing = login(&app, &email, json!({})).await.unwrap_err();
    assert_eq!(error_code(missing), (401, "mfa_required".into()));
    // The code that confirmed the enrollment is used up.
    let replayed = login(&app, &email, json!({ "totp_code": first }))
        .await
        .unwrap_err();
    assert_eq!(error_code(replayed), (401, "invalid_credentials".into()));
    // The next step's code works (one step of drift), once.
    let next = app_for(&secret).generate(unix(30));
    let again = login(&app, &email, json!({ "totp_code": next }))
        .await
        .unwrap();
    let me: Value = app
        .get_as("/v1/auth/me", &again)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["session"]["mfa"], true);
    let replayed = login(&app, &email, json!({ "totp_code": next }))
        .await
        .unwrap_err();
    assert_eq!(error_code(replayed), (401, "invalid_credentials".into()));
    let wrong = login(
        &app,
        &email,
        json!({ "totp_code": wrong_code(&app_for(&secret), unix(0)) }),
    )
    .await
    .unwrap_err();
    assert_eq!(error_code(wrong), (401, "invalid_credentials".into()));

    // On the record, with the person as actor and no secret or code in it.
    let events = access_events(&app).await;
    let mfa: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("access.mfa_"))
        .collect();
    assert_eq!(
        mfa.iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["access.mfa_enrollment_started", "access.mfa_enrolled"]
    );
    for event in &mfa {
        assert_eq!(event["actor"]["id"], user.to_string());
        assert_eq!(event["resource"]["id"], user.to_string());
    }
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&secret));
    assert!(!text.contains(&first) && !text.contains(&next));
    for code in codes {
        assert!(!text.contains(code.as_str().unwrap()));
    }
}

#[tokio::test]
async fn codes_one_step_either_side_of_the_clock_work_and_older_ones_do_not() {
    let app = spawn_app().await;
    let (_, email) = app.add_member(app.tenant.id, "viewer").await;
    let person = app.login(&email, PASSWORD).await;
    let (secret, _) = enroll(&app, &person).await;
    let totp = app_for(&secret);
    // The server's own accounts service, ten minutes ahead: well past the
    // step the enrollment used.
    let at = SystemClock.now() + TimeDelta::minutes(10);
    let clock: SharedClock = Arc::new(MovableClock(Mutex::new(at)));
    let accounts = app.accounts(clock);
    let t = at.timestamp() as u64;
    let with_code = |code: String| LoginInput {
        email: email.clone(),
        password: PASSWORD.into(),
        totp_code: Some(code),
        recovery_code: None,
        organization_id: None,
    };

    for (steps, offset) in [(-3, -90), (2, 60)] {
        let refused = accounts
            .login(
                with_code(totp.generate(t.wrapping_add_signed(offset))),
                None,
            )
            .await;
        assert!(
            matches!(refused, Err(ServiceError::InvalidCredentials)),
            "a code {steps} steps away: {:?}",
            refused.err()
        );
    }
    accounts
        .login(with_code(totp.generate(t - 30)), None)
        .await
        .unwrap();
    accounts
        .login(with_code(totp.generate(t)), None)
        .await
        .unwrap();
    // Once a step is used, it and those before it are spent.
    assert!(matches!(
        accounts.login(with_code(totp.generate(t - 30)), None).await,
        Err(ServiceError::InvalidCredentials)
    ));
    accounts
        .login(with_code(totp.generate(t + 30)), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_recovery_code_logs_in_once_and_replaced_codes_are_void() {
    let app = spawn_app().await;
    let (_, email) = app.add_member(app.tenant.id, "hr_lead").await;
    let person = app.login(&email, PASSWORD).await;
    let (_, codes) = enroll(&app, &person).await;

    // Dashes and case do not matter.
    let first = codes[0].to_uppercase().replace('-', "");
    login(&app, &email, json!({ "recovery_code": first }))
        .await
        .unwrap();
    let used = login(&app, &email, json!({ "recovery_code": codes[0] }))
        .await
        .unwrap_err();
    assert_eq!(error_code(used), (401, "invalid_credentials".into()));
    // A recovery code re-authenticates too.
    let r = post_as(
        &app,
        "/v1/auth/reauthenticate",
        &person,
        Some(&json!({ "password": PASSWORD, "recovery_code": codes[1] })),
    )
    .await;
    assert_eq!(r.status(), 204);

    // New codes: shown once, and the old ones stop working.
    let r = post_as(&app, "/v1/auth/mfa/recovery-codes", &person, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let fresh: Vec<&str> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(fresh.len(), 10);
    let void = login(&app, &email, json!({ "recovery_code": codes[2] }))
        .await
        .unwrap_err();
    assert_eq!(error_code(void), (401, "invalid_credentials".into()));
    login(&app, &email, json!({ "recovery_code": fresh[0] }))
        .await
        .unwrap();

    // Each use is on the record, without the code.
    let events = access_events(&app).await;
    let used: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "access.recovery_code_used")
        .collect();
    let during: Vec<&str> = used
        .iter()
        .map(|e| e["metadata"]["during"].as_str().unwrap())
        .collect();
    assert_eq!(during, ["login", "reauthentication", "login"]);
    assert_eq!(used[0]["metadata"]["codes_left"], 9);
    assert_eq!(used[2]["metadata"]["codes_left"], 9);
    assert!(actions(&events).contains(&"access.recovery_codes_replaced"));
    let text = serde_json::to_string(&events).unwrap();
    for code in codes.iter().map(String::as_str).chain(fresh) {
        assert!(!text.contains(code));
    }
}

#[tokio::test]
async fn confirming_needs_the_pending_secret_and_its_current_code() {
    let app = spawn_app().await;
    let person = app.person(app.tenant.id, "auditor").await;
    let confirm = |given: String| {
        let (app, person) = (&app, &person);
        async move {
            code(
                post_as(
                    app,
                    "/v1/auth/mfa/totp/confirm",
                    person,
                    Some(&json!({ "code": given })),
                )
                .await,
            )
            .await
        }
    };

    assert_eq!(
        confirm("123456".into()).await,
        (409, "no_enrollment_pending".into())
    );
    let old = start(&app, &person).await;
    assert_eq!(
        confirm(wrong_code(&app_for(&old), unix(0))).await,
        (400, "invalid_code".into())
    );
    // Beginning again replaces the pending secret.
    let new = start(&app, &person).await;
    assert_ne!(old, new);
    assert_eq!(
        confirm(app_for(&old).generate(unix(0))).await,
        (400, "invalid_code".into())
    );
    assert_eq!(confirm(app_for(&new).generate(unix(0))).await.0, 200);

    // Enrolled: neither beginning nor confirming again.
    assert_eq!(
        code(post_as(&app, "/v1/auth/mfa/totp", &person, None).await).await,
        (409, "mfa_already_enrolled".into())
    );
    assert_eq!(
        confirm(app_for(&new).generate(unix(30))).await,
        (409, "mfa_already_enrolled".into())
    );
}

#[tokio::test]
async fn removing_totp_turns_the_second_factor_off() {
    let app = spawn_app().await;
    let (_, email) = app.add_member(app.tenant.id, "owner").await;
    let person = app.login(&email, PASSWORD).await;
    let (secret, codes) = enroll(&app, &person).await;
    let person = login(
        &app,
        &email,
        json!({ "totp_code": app_for(&secret).generate(unix(30)) }),
    )
    .await
    .unwrap();

    let r = app
        .send_as(Method::DELETE, "/v1/auth/mfa/totp", &person, None)
        .await;
    assert_eq!(r.status(), 204);
    let person = login(&app, &email, json!({})).await.unwrap();
    let me: Value = app
        .get_as("/v1/auth/me", &person)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enrolled"], false);
    // Nothing left to remove or to replace; the old recovery codes are gone
    // with it.
    assert_eq!(
        code(
            app.send_as(Method::DELETE, "/v1/auth/mfa/totp", &person, None)
                .await
        )
        .await,
        (409, "mfa_not_enrolled".into())
    );
    assert_eq!(
        code(post_as(&app, "/v1/auth/mfa/recovery-codes", &person, None).await).await,
        (409, "mfa_not_enrolled".into())
    );
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM annal.recovery_codes WHERE user_id = $1",
            &[&person.user_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((left, codes.len()), (0, 10));
    // Enrolling again works, with a new secret.
    let (again, _) = enroll(&app, &person).await;
    assert_ne!(again, secret);
    assert!(actions(&access_events(&app).await).contains(&"access.mfa_removed"));
}

#[tokio::test]
async fn an_org_requiring_mfa_holds_owners_and_admins_without_totp_to_enrolling() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let owner = app.person(t, "owner").await;
    let (_, admin_email) = app.add_member(t, "admin").await;
    let viewer = app.person(t, "viewer").await;

    let r = app
        .send_as(
            Method::PUT,
            "/v1/org/settings",
            &owner,
            Some(&json!({ "mfa_required": true })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let settings: Value = r.json().await.unwrap();
    assert_eq!(settings["mfa_required"], true);
    assert_eq!(settings["organization_id"], t.to_string());

    // The admin without TOTP logs in, but may only enroll.
    let r = app
        .http
        .post(app.server.url("/v1/auth/login"))
        .json(&json!({ "email": admin_email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["must_enroll_mfa"], true);
    let admin = app.login(&admin_email, PASSWORD).await;
    assert_eq!(
        code(app.get_as("/v1/events", &admin).await).await,
        (403, "mfa_enrollment_required".into())
    );
    assert_eq!(app.get_as("/v1/auth/me", &admin).await.status(), 200);
    enroll(&app, &admin).await;
    assert_eq!(app.get_as("/v1/events", &admin).await.status(), 200);
    // And may not remove it while the organisation requires it.
    assert_eq!(
        code(
            app.send_as(Method::DELETE, "/v1/auth/mfa/totp", &admin, None)
                .await
        )
        .await,
        (403, "mfa_required_by_organization".into())
    );

    // A viewer is not concerned.
    assert_eq!(app.get_as("/v1/events", &viewer).await.status(), 200);
    let seen: Value = app
        .get_as("/v1/org/settings", &viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["mfa_required"], true);
    // Nor is the owner who switched it on spared: enroll first, even to
    // switch it off.
    assert_eq!(
        code(app.get_as("/v1/events", &owner).await).await,
        (403, "mfa_enrollment_required".into())
    );
    assert_eq!(
        code(
            app.send_as(
                Method::PUT,
                "/v1/org/settings",
                &owner,
                Some(&json!({ "mfa_required": false })),
            )
            .await
        )
        .await,
        (403, "mfa_enrollment_required".into())
    );

    let events = access_events(&app).await;
    let changed = events
        .iter()
        .find(|e| e["action"] == "access.mfa_policy_changed")
        .unwrap();
    assert_eq!(changed["actor"]["id"], owner.user_id.to_string());
    assert_eq!(changed["resource"]["type"], "organization");
    assert_eq!(changed["metadata"]["mfa_required"], true);
    assert_eq!(changed["metadata"]["previous"], false);
}

#[tokio::test]
async fn changing_mfa_needs_a_password_check_in_the_last_five_minutes() {
    let app = spawn_app().await;
    let person = app.person(app.tenant.id, "viewer").await;
    let token = person.cookie.split_once('=').unwrap().1.to_owned();
    let start = SystemClock.now();
    let clock = Arc::new(MovableClock(Mutex::new(start)));
    let shared: SharedClock = clock.clone();
    let accounts = app.accounts(shared.clone());
    let mfa = Mfa::new(app.store(), &app.pepper, shared, accounts.clone());
    let at = |minutes: i64| *clock.0.lock().unwrap() = start + TimeDelta::minutes(minutes);

    at(6);
    let late = accounts
        .authenticate(&token, Some(&person.csrf), true)
        .await
        .unwrap();
    assert!(matches!(
        late.authorize::<OwnMfa>(),
        Err(ServiceError::ReauthenticationRequired)
    ));
    // Re-authenticating opens the window again.
    let own = late.authorize::<OwnAccount>().unwrap();
    let input = ReauthInput {
        password: PASSWORD.into(),
        totp_code: None,
        recovery_code: None,
    };
    accounts.reauthenticate(&own, input, None).await.unwrap();
    let fresh = accounts
        .authenticate(&token, Some(&person.csrf), true)
        .await
        .unwrap();
    let who = fresh.authorize::<OwnMfa>().unwrap();
    let enrollment = mfa.start_totp(&who, None).await.unwrap();
    assert!(enrollment.otpauth_uri.starts_with("otpauth://totp/Annal:"));
}

#[tokio::test]
async fn only_owners_and_admins_change_the_settings_and_only_of_their_organisation() {
    let app = spawn_app().await;
    let a = app.tenant.id;
    let b = app.new_tenant(&Scope::ALL).await;
    let put = |person: &Person, required: bool| {
        let (app, person) = (&app, person.clone());
        async move {
            code(
                app.send_as(
                    Method::PUT,
                    "/v1/org/settings",
                    &person,
                    Some(&json!({ "mfa_required": required })),
                )
                .await,
            )
            .await
        }
    };

    for role in ["hr_lead", "analyst", "viewer", "auditor"] {
        let person = app.person(a, role).await;
        assert_eq!(
            put(&person, true).await,
            (403, "forbidden".into()),
            "{role}"
        );
        // Any member may read them.
        assert_eq!(app.get_as("/v1/org/settings", &person).await.status(), 200);
    }
    let admin = app.person(a, "admin").await;
    assert_eq!(put(&admin, false).await.0, 200);

    // An owner of B changes B's settings, not A's.
    let owner_b = app.person(b.id, "owner").await;
    assert_eq!(put(&owner_b, true).await.0, 200);
    let read = |person: &Person| {
        let (app, person) = (&app, person.clone());
        async move {
            let body: Value = app
                .get_as("/v1/org/settings", &person)
                .await
                .json()
                .await
                .unwrap();
            (
                body["organization_id"].clone(),
                body["mfa_required"].clone(),
            )
        }
    };
    assert_eq!(read(&owner_b).await, (json!(b.id.to_string()), json!(true)));
    assert_eq!(read(&admin).await, (json!(a.to_string()), json!(false)));

    // Without the anti-CSRF header.
    let r = app
        .http
        .put(app.server.url("/v1/org/settings"))
        .header("cookie", &admin.cookie)
        .json(&json!({ "mfa_required": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "csrf_rejected".into()));

    // API keys are not people; without credentials, nothing.
    for (method, path) in [
        (Method::GET, "/v1/org/settings"),
        (Method::PUT, "/v1/org/settings"),
        (Method::POST, "/v1/auth/mfa/totp"),
        (Method::POST, "/v1/auth/mfa/totp/confirm"),
        (Method::DELETE, "/v1/auth/mfa/totp"),
        (Method::POST, "/v1/auth/mfa/recovery-codes"),
    ] {
        let body = json!({ "mfa_required": true });
        let r = app
            .http
            .request(method.clone(), app.server.url(path))
            .bearer_auth(&app.tenant.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (403, "forbidden".into()), "{method} {path}");
        let r = app
            .http
            .request(method.clone(), app.server.url(path))
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
    assert_eq!(read(&admin).await.1, json!(false));

    // The endpoints are described.
    let doc: Value = reqwest::get(app.server.url("/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/auth/mfa/totp",
        "/v1/auth/mfa/totp/confirm",
        "/v1/auth/mfa/recovery-codes",
        "/v1/org/settings",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(doc["paths"]["/v1/auth/mfa/totp"]["delete"].is_object());
    assert!(doc["paths"]["/v1/org/settings"]["put"].is_object());
    assert!(doc["components"]["schemas"]["RecoveryCodes"].is_object());
}
