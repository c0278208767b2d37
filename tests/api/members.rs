//! An organisation administered over the API against a real PostgreSQL:
//! members and invitations, roles and Last-Owner protection, API keys, and
//! retention; who may do each, and what each leaves in the log.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, Person, Tenant, TestApp, spawn_app, spawn_app_with};

/// Who makes a request.
enum As<'a> {
    Person(&'a Person),
    Key(&'a str),
    Nobody,
}

/// Sends `method path` as `who`; the status and the JSON body (`Null` when
/// there is none).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    who: As<'_>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.server.url(path));
    request = match who {
        As::Person(person) => request
            .header("cookie", &person.cookie)
            .header("x-annal-csrf", &person.csrf),
        As::Key(key) => request.bearer_auth(key),
        As::Nobody => request,
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn as_person(
    app: &TestApp,
    method: Method,
    path: &str,
    person: &Person,
    body: Option<&Value>,
) -> (u16, Value) {
    call(app, method, path, As::Person(person), body).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Accepts an invitation (no session).
async fn accept(app: &TestApp, token: &str, password: &str) -> (u16, Value) {
    let body = json!({ "token": token, "password": password });
    call(
        app,
        Method::POST,
        "/v1/auth/invitations/accept",
        As::Nobody,
        Some(&body),
    )
    .await
}

/// Invites `email` in `role` as `by`; the answer.
async fn invite(app: &TestApp, by: &Person, email: &str, role: &str) -> (u16, Value) {
    let body = json!({ "email": email, "role": role });
    as_person(app, Method::POST, "/v1/members", by, Some(&body)).await
}

/// The organisation's access events with `action`, oldest first.
async fn recorded(app: &TestApp, tenant: &Tenant, action: &str) -> Vec<Value> {
    app.all_events(tenant)
        .await
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect()
}

/// How many stored events of any tenant contain `secret`, and whether the
/// server printed it.
async fn leaked(app: &TestApp, secret: &str) -> bool {
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM annal.events WHERE position($1::bytea IN payload) > 0 \
             OR position($1::bytea IN record) > 0",
            &[&secret.as_bytes()],
        )
        .await
        .unwrap()
        .get(0);
    n > 0 || app.server.output().contains(secret)
}

async fn active_owners(app: &TestApp, tenant: Uuid) -> i64 {
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    client
        .query_one(
            "SELECT count(*) FROM annal.memberships WHERE tenant_id = $1 \
             AND role = 'owner' AND status = 'active'",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0)
}

fn member(list: &Value, user: Uuid) -> Option<&Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user.to_string())
}

#[tokio::test]
async fn owners_and_admins_list_members_with_their_role_status_and_mfa() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let owner = app.person(t, "owner").await;
    let admin = app.person(t, "admin").await;
    let (analyst_id, analyst_email) = app.add_member(t, "analyst").await;

    for person in [&owner, &admin] {
        let (status, list) = as_person(&app, Method::GET, "/v1/members", person, None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list.as_array().unwrap().len(), 3);
        let analyst = member(&list, analyst_id).unwrap();
        assert_eq!(analyst["email"], analyst_email);
        assert_eq!(analyst["role"], "analyst");
        assert_eq!(analyst["status"], "active");
        assert_eq!(analyst["mfa_enrolled"], false);
        assert!(analyst["created_at"].is_string() && analyst["updated_at"].is_string());
        assert_eq!(member(&list, owner.user_id).unwrap()["role"], "owner");
    }
}

#[tokio::test]
async fn the_wrong_role_an_api_key_and_no_credentials_are_refused_everywhere() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let (target, _) = app.add_member(t, "viewer").await;
    let key = app.tenant.key_id.to_string();
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/members".into(), None),
        (
            Method::POST,
            "/v1/members".into(),
            Some(json!({ "email": "x@example.com", "role": "viewer" })),
        ),
        (
            Method::PATCH,
            format!("/v1/members/{target}"),
            Some(json!({ "role": "analyst" })),
        ),
        (Method::DELETE, format!("/v1/members/{target}"), None),
        (Method::GET, "/v1/api-keys".into(), None),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({ "scopes": ["events:read"] })),
        ),
        (Method::POST, format!("/v1/api-keys/{key}/rotate"), None),
        (Method::DELETE, format!("/v1/api-keys/{key}"), None),
        (Method::GET, "/v1/retention".into(), None),
        (
            Method::PUT,
            "/v1/retention".into(),
            Some(json!({ "period_months": 120 })),
        ),
        (
            Method::PUT,
            "/v1/retention/hold".into(),
            Some(json!({ "on": true, "reason": "case 1" })),
        ),
    ];
    let mut refused = Vec::new();
    for role in ["viewer", "analyst", "hr_lead", "auditor"] {
        refused.push((role, app.person(t, role).await));
    }
    for (method, path, body) in &endpoints {
        for (role, person) in &refused {
            let (status, answer) =
                as_person(&app, method.clone(), path, person, body.as_ref()).await;
            assert_eq!(
                (status, code(&answer)),
                (403, "forbidden"),
                "{role} {method} {path}"
            );
        }
        let (status, answer) = call(
            &app,
            method.clone(),
            path,
            As::Key(&app.tenant.key),
            body.as_ref(),
        )
        .await;
        assert_eq!(
            (status, code(&answer)),
            (403, "forbidden"),
            "API key {method} {path}"
        );
        let (status, answer) = call(&app, method.clone(), path, As::Nobody, body.as_ref()).await;
        assert_eq!(
            (status, code(&answer)),
            (401, "unauthenticated"),
            "nobody {method} {path}"
        );
    }
    // Nothing changed: the key still works and the member is still there.
    assert_eq!(app.get("/v1/events", &app.tenant.key).await.status(), 200);
    let owner = app.person(t, "owner").await;
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &owner, None).await;
    assert_eq!(member(&list, target).unwrap()["role"], "viewer");
    assert!(
        recorded(&app, &app.tenant, "access.api_key_created")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_invited_new_user_sets_a_password_then_logs_in_and_it_is_on_the_record() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let email = format!("New.Hire-{}@Example.com", Uuid::new_v4().simple());

    let (status, invitation) = invite(&app, &owner, &email, "analyst").await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["email"], email.to_lowercase());
    assert_eq!(invitation["role"], "analyst");
    assert_eq!(invitation["status"], "invited");
    assert!(invitation["expires_at"].is_string());
    let token = invitation["invitation_token"].as_str().unwrap().to_owned();
    let user: Uuid = invitation["user_id"].as_str().unwrap().parse().unwrap();
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &owner, None).await;
    assert_eq!(member(&list, user).unwrap()["status"], "invited");
    // Not a member yet: no login.
    assert_eq!(
        app.login_with(json!({ "email": email, "password": PASSWORD }))
            .await
            .unwrap_err()
            .0,
        401
    );

    let (status, answer) = accept(&app, &token, "too short").await;
    assert_eq!((status, code(&answer)), (400, "invalid_password"));
    let (status, accepted) = accept(&app, &token, PASSWORD).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["user_id"], user.to_string());
    assert_eq!(accepted["organization_id"], app.tenant.id.to_string());
    assert_eq!(accepted["status"], "active");
    let analyst = app.login(&email, PASSWORD).await;
    assert_eq!(analyst.user_id, user);
    assert_eq!(app.get_as("/v1/events", &analyst).await.status(), 200);
    // Used: gone.
    let (status, answer) = accept(&app, &token, PASSWORD).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));

    let invited = recorded(&app, &app.tenant, "access.member_invited").await;
    assert_eq!(invited.len(), 1);
    assert_eq!(invited[0]["actor"]["id"], owner.user_id.to_string());
    assert_eq!(invited[0]["resource"]["type"], "member");
    assert_eq!(invited[0]["resource"]["id"], user.to_string());
    assert_eq!(invited[0]["metadata"]["role"], "analyst");
    let accepted = recorded(&app, &app.tenant, "access.invitation_accepted").await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["actor"]["id"], user.to_string());
    assert!(!leaked(&app, &token).await, "the token is on the record");
}

#[tokio::test]
async fn inviting_another_orgs_user_answers_like_a_new_user_and_cannot_reset_their_password() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let owner = app.person(app.tenant.id, "owner").await;
    let (existing, existing_email) = app.add_member(other.id, "viewer").await;
    let new_email = format!("someone-{}@example.com", Uuid::new_v4().simple());

    let (status_a, known) = invite(&app, &owner, &existing_email, "viewer").await;
    let (status_b, unknown) = invite(&app, &owner, &new_email, "viewer").await;
    assert_eq!((status_a, status_b), (201, 201));
    // The same answer but for the email, the id, the token and its expiry.
    let shape = |v: &Value| {
        let mut v = v.clone();
        for field in ["email", "user_id", "invitation_token", "expires_at"] {
            assert!(v[field].is_string(), "{field}");
            v[field] = Value::Null;
        }
        v
    };
    assert_eq!(shape(&known), shape(&unknown));
    assert_eq!(known["user_id"], existing.to_string());
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &owner, None).await;
    let (a, b) = (
        member(&list, existing).unwrap(),
        member(&list, unknown["user_id"].as_str().unwrap().parse().unwrap()).unwrap(),
    );
    for field in ["role", "status", "mfa_enrolled"] {
        assert_eq!(a[field], b[field], "{field}");
    }

    // The invitation cannot set a password the account already has.
    let token = known["invitation_token"].as_str().unwrap();
    let (status, answer) = accept(&app, token, "an attacker's new password").await;
    assert_eq!((status, code(&answer)), (401, "invalid_credentials"));
    app.login_with(json!({ "email": existing_email, "password": PASSWORD, "organization_id": other.id.as_uuid() }))
        .await
        .unwrap();
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &owner, None).await;
    assert_eq!(member(&list, existing).unwrap()["status"], "invited");
    assert_eq!(
        recorded(&app, &app.tenant, "access.invitation_refused")
            .await
            .len(),
        1
    );

    // With the account's own password it joins, keeping that password.
    let (status, answer) = accept(&app, token, PASSWORD).await;
    assert_eq!(status, 200, "{answer}");
    let here = app
        .login_with(json!({ "email": existing_email, "password": PASSWORD, "organization_id": app.tenant.id.as_uuid() }))
        .await
        .unwrap();
    assert_eq!(here.user_id, existing);
    let there = app
        .login_with(json!({ "email": existing_email, "password": PASSWORD, "organization_id": other.id.as_uuid() }))
        .await
        .unwrap();
    let me: Value = app
        .get_as("/v1/auth/me", &there)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "viewer");
    // Nothing of this is in the other organisation's log.
    for action in [
        "access.member_invited",
        "access.invitation_accepted",
        "access.invitation_refused",
    ] {
        assert!(recorded(&app, &other, action).await.is_empty(), "{action}");
    }
}

#[tokio::test]
async fn unknown_used_and_expired_invitations_are_all_not_found() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let (_, invitation) = invite(&app, &owner, "late@example.com", "viewer").await;
    let token = invitation["invitation_token"].as_str().unwrap();
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    client
        .execute(
            "UPDATE annal.memberships SET invite_expires_at = now() - interval '1 second' \
             WHERE user_id = $1",
            &[&invitation["user_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()],
        )
        .await
        .unwrap();
    let expired = accept(&app, token, PASSWORD).await;
    let unknown = accept(&app, "no-such-invitation-token", PASSWORD).await;
    assert_eq!(expired.0, 404);
    assert_eq!(expired, unknown);
}

#[tokio::test]
async fn guessing_at_an_invitation_hits_the_login_limit() {
    let app = spawn_app_with(&[("ANNAL_LOGIN_LIMIT_ACCOUNT", "3")]).await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let owner = app.person(app.tenant.id, "owner").await;
    let (_, email) = app.add_member(other.id, "viewer").await;
    let (_, invitation) = invite(&app, &owner, &email, "viewer").await;
    let token = invitation["invitation_token"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(accept(&app, token, "a guess at the password").await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // Even the right password waits now.
    assert_eq!(accept(&app, token, PASSWORD).await.0, 429);
}

#[tokio::test]
async fn inviting_a_member_again_conflicts() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let (_, email) = app.add_member(app.tenant.id, "viewer").await;
    let (status, answer) = invite(&app, &owner, &email.to_uppercase(), "analyst").await;
    assert_eq!((status, code(&answer)), (409, "already_a_member"));
    assert_eq!(
        invite(&app, &owner, "twice@example.com", "viewer").await.0,
        201
    );
    let (status, answer) = invite(&app, &owner, "twice@example.com", "viewer").await;
    assert_eq!((status, code(&answer)), (409, "already_a_member"));
    let (status, answer) = invite(&app, &owner, "not an email", "viewer").await;
    assert_eq!((status, code(&answer)), (400, "invalid_email"));
}

#[tokio::test]
async fn admins_cannot_make_change_or_remove_owners_but_owners_can() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let owner = app.person(t, "owner").await;
    let admin = app.person(t, "admin").await;
    let (other_owner, _) = app.add_member(t, "owner").await;
    let (analyst, _) = app.add_member(t, "analyst").await;
    let patch = |user: Uuid| format!("/v1/members/{user}");

    let (status, answer) = invite(&app, &admin, "boss@example.com", "owner").await;
    assert_eq!((status, code(&answer)), (403, "forbidden"));
    let to_owner = json!({ "role": "owner" });
    let to_viewer = json!({ "role": "viewer" });
    for (method, path, body) in [
        (Method::PATCH, patch(analyst), Some(&to_owner)),
        (Method::PATCH, patch(other_owner), Some(&to_viewer)),
        (Method::DELETE, patch(other_owner), None),
    ] {
        let (status, answer) = as_person(&app, method.clone(), &path, &admin, body).await;
        assert_eq!(
            (status, code(&answer)),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
    assert_eq!(active_owners(&app, t.as_uuid()).await, 2);
    // Other roles are the admins' to change.
    let (status, changed) = as_person(
        &app,
        Method::PATCH,
        &patch(analyst),
        &admin,
        Some(&to_viewer),
    )
    .await;
    assert_eq!((status, changed["role"].as_str()), (200, Some("viewer")));

    assert_eq!(
        invite(&app, &owner, "boss@example.com", "owner").await.0,
        201
    );
    let (status, changed) = as_person(
        &app,
        Method::PATCH,
        &patch(analyst),
        &owner,
        Some(&to_owner),
    )
    .await;
    assert_eq!((status, changed["role"].as_str()), (200, Some("owner")));
    let (status, _) = as_person(&app, Method::DELETE, &patch(other_owner), &owner, None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_role_change_ends_the_members_sessions_and_is_recorded_with_both_roles() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let analyst = app.person(app.tenant.id, "analyst").await;
    let path = format!("/v1/members/{}", analyst.user_id);

    let (status, changed) = as_person(
        &app,
        Method::PATCH,
        &path,
        &owner,
        Some(&json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["role"], "viewer");
    assert_eq!(app.get_as("/v1/events", &analyst).await.status(), 401);
    let again = app.login(&analyst.email, PASSWORD).await;
    let me: Value = app
        .get_as("/v1/auth/me", &again)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "viewer");

    let events = recorded(&app, &app.tenant, "access.member_role_changed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"]["id"], owner.user_id.to_string());
    assert_eq!(events[0]["resource"]["type"], "member");
    assert_eq!(events[0]["resource"]["id"], analyst.user_id.to_string());
    assert_eq!(events[0]["metadata"]["before"]["role"], "analyst");
    assert_eq!(events[0]["metadata"]["after"]["role"], "viewer");
    assert_eq!(events[0]["metadata"]["sessions_ended"], 1);
}

#[tokio::test]
async fn removing_a_member_ends_their_sessions_and_their_access() {
    let app = spawn_app().await;
    let admin = app.person(app.tenant.id, "admin").await;
    let viewer = app.person(app.tenant.id, "viewer").await;
    let path = format!("/v1/members/{}", viewer.user_id);

    let (status, _) = as_person(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as("/v1/events", &viewer).await.status(), 401);
    assert_eq!(
        app.login_with(json!({ "email": viewer.email, "password": PASSWORD }))
            .await
            .unwrap_err()
            .0,
        401
    );
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &admin, None).await;
    assert!(member(&list, viewer.user_id).is_none());
    let (status, answer) = as_person(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));

    let events = recorded(&app, &app.tenant, "access.member_removed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"]["id"], admin.user_id.to_string());
    assert_eq!(events[0]["resource"]["id"], viewer.user_id.to_string());
    assert_eq!(events[0]["metadata"]["before"]["role"], "viewer");
}

#[tokio::test]
async fn another_orgs_members_are_not_found_exactly_like_nobody_and_stay_untouched() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let intruder = app.person(other.id, "owner").await;
    let (victim, victim_email) = app.add_member(app.tenant.id, "analyst").await;
    let nobody = Uuid::new_v4();
    let body = json!({ "role": "viewer" });

    for method in [Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then_some(&body);
        let theirs = as_person(
            &app,
            method.clone(),
            &format!("/v1/members/{victim}"),
            &intruder,
            body,
        )
        .await;
        let none = as_person(
            &app,
            method.clone(),
            &format!("/v1/members/{nobody}"),
            &intruder,
            body,
        )
        .await;
        assert_eq!(theirs.0, 404, "{method}");
        assert_eq!(theirs, none, "{method}: the answers must not differ");
    }
    let (_, list) = as_person(&app, Method::GET, "/v1/members", &intruder, None).await;
    assert!(member(&list, victim).is_none());
    // Inviting the victim's email tells nothing and changes nothing there.
    assert_eq!(
        invite(&app, &intruder, &victim_email, "viewer").await.0,
        201
    );
    let victim_session = app
        .login_with(json!({ "email": victim_email, "password": PASSWORD, "organization_id": app.tenant.id.as_uuid() }))
        .await
        .unwrap();
    let me: Value = app
        .get_as("/v1/auth/me", &victim_session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "analyst");
    assert!(
        recorded(&app, &app.tenant, "access.member_role_changed")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_last_active_owner_can_be_neither_demoted_nor_removed() {
    let app = spawn_app().await;
    let t = app.tenant.id;
    let owner = app.person(t, "owner").await;
    // An invited owner does not count until they accept.
    assert_eq!(
        invite(&app, &owner, "heir@example.com", "owner").await.0,
        201
    );
    let path = format!("/v1/members/{}", owner.user_id);

    let (status, answer) = as_person(
        &app,
        Method::PATCH,
        &path,
        &owner,
        Some(&json!({ "role": "admin" })),
    )
    .await;
    assert_eq!((status, code(&answer)), (409, "last_owner"));
    let (status, answer) = as_person(&app, Method::DELETE, &path, &owner, None).await;
    assert_eq!((status, code(&answer)), (409, "last_owner"));
    assert_eq!(active_owners(&app, t.as_uuid()).await, 1);

    // With a second active owner, the first may step down.
    let (second, _) = app.add_member(t, "owner").await;
    let (status, _) = as_person(
        &app,
        Method::PATCH,
        &path,
        &owner,
        Some(&json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(active_owners(&app, t.as_uuid()).await, 1);
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    let remaining: Uuid = client
        .query_one(
            "SELECT user_id FROM annal.memberships WHERE tenant_id = $1 AND role = 'owner' \
             AND status = 'active'",
            &[&t.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(remaining, second);
}

#[tokio::test]
async fn two_concurrent_demotions_of_the_last_two_owners_never_both_succeed() {
    // In about half the rounds both requests pass authentication and meet
    // at the owners' lock (409 last_owner); without FOR UPDATE in
    // `lock_owners` both of those succeed and this fails within a few
    // rounds. Logins are repeated every round: no login limit.
    let app = spawn_app_with(&[
        ("ANNAL_LOGIN_LIMIT_ACCOUNT", "0"),
        ("ANNAL_LOGIN_LIMIT_IP", "0"),
    ])
    .await;
    let t = app.tenant.id;
    let mut a = app.person(t, "owner").await;
    let mut b = app.person(t, "owner").await;
    let demote = json!({ "role": "admin" });
    let promote = json!({ "role": "owner" });
    for round in 0..12 {
        let a_path = format!("/v1/members/{}", a.user_id);
        let b_path = format!("/v1/members/{}", b.user_id);
        // Each demotes the other at the same moment.
        let (by_a, by_b) = tokio::join!(
            as_person(&app, Method::PATCH, &b_path, &a, Some(&demote)),
            as_person(&app, Method::PATCH, &a_path, &b, Some(&demote)),
        );
        let statuses = [by_a.0, by_b.0];
        let won = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(won, 1, "round {round}: {by_a:?} {by_b:?}");
        // The loser was refused as the last owner; or it was demoted (or
        // lost its session) by the winner's change before its request was
        // authenticated.
        let lost = if by_a.0 == 200 { &by_b } else { &by_a };
        assert!(
            matches!(
                (lost.0, code(&lost.1)),
                (409, "last_owner") | (403, "forbidden") | (401, "unauthenticated")
            ),
            "round {round}: {lost:?}"
        );
        assert_eq!(active_owners(&app, t.as_uuid()).await, 1, "round {round}");

        // The winner makes the loser owner again; the loser logs in again.
        let (winner, loser) = if by_a.0 == 200 { (&a, &b) } else { (&b, &a) };
        let path = format!("/v1/members/{}", loser.user_id);
        let (status, _) = as_person(&app, Method::PATCH, &path, winner, Some(&promote)).await;
        assert_eq!(status, 200, "round {round}");
        let again = app.login(&loser.email, PASSWORD).await;
        if by_a.0 == 200 {
            b = again;
        } else {
            a = again;
        }
        assert_eq!(active_owners(&app, t.as_uuid()).await, 2);
    }
}

#[tokio::test]
async fn api_keys_are_created_listed_rotated_and_revoked_and_each_is_recorded() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let admin = app.person(app.tenant.id, "admin").await;

    let (status, created) = as_person(
        &app,
        Method::POST,
        "/v1/api-keys",
        &admin,
        Some(&json!({ "scopes": ["events:write", "events:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scopes"], json!(["events:write", "events:read"]));
    let first = created["api_key"].as_str().unwrap().to_owned();
    let first_id = created["id"].as_str().unwrap().to_owned();
    crate::helpers::post_events(
        &app,
        &Tenant {
            id: app.tenant.id,
            key: first.clone(),
            key_id: app.tenant.key_id,
        },
        1,
        0,
    )
    .await;

    // Listed without its secret.
    let (status, list) = as_person(&app, Method::GET, "/v1/api-keys", &admin, None).await;
    assert_eq!(status, 200);
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == first_id)
        .unwrap();
    assert_eq!(listed["scopes"], json!(["events:write", "events:read"]));
    assert!(listed["created_at"].is_string() && listed["revoked_at"].is_null());
    assert!(!list.to_string().contains(&first[20..]));
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Rotation: a new key with the same scopes; the old one is refused on
    // its next request.
    let (status, rotated) = as_person(
        &app,
        Method::POST,
        &format!("/v1/api-keys/{first_id}/rotate"),
        &owner,
        None,
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["scopes"], json!(["events:write", "events:read"]));
    assert_eq!(rotated["replaces"], first_id);
    let second = rotated["api_key"].as_str().unwrap().to_owned();
    let second_id = rotated["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/events", &first).await.status(), 401);
    assert_eq!(app.get("/v1/events", &second).await.status(), 200);
    let (status, answer) = as_person(
        &app,
        Method::POST,
        &format!("/v1/api-keys/{first_id}/rotate"),
        &owner,
        None,
    )
    .await;
    assert_eq!((status, code(&answer)), (404, "not_found"));

    // Revocation takes effect on the next request; again is no error.
    assert_eq!(app.get("/v1/events", &second).await.status(), 200);
    let path = format!("/v1/api-keys/{second_id}");
    assert_eq!(
        as_person(&app, Method::DELETE, &path, &owner, None).await.0,
        204
    );
    assert_eq!(app.get("/v1/events", &second).await.status(), 401);
    assert_eq!(
        as_person(&app, Method::DELETE, &path, &owner, None).await.0,
        204
    );
    let (_, list) = as_person(&app, Method::GET, "/v1/api-keys", &owner, None).await;
    for id in [&first_id, &second_id] {
        let key = list
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == **id)
            .unwrap();
        assert!(key["revoked_at"].is_string(), "{id}");
    }

    // Bad scopes.
    for (scopes, expected) in [
        (json!(["events:delete"]), "invalid_scope"),
        (json!([]), "invalid_field"),
    ] {
        let (status, answer) = as_person(
            &app,
            Method::POST,
            "/v1/api-keys",
            &owner,
            Some(&json!({ "scopes": scopes })),
        )
        .await;
        assert_eq!((status, code(&answer)), (400, expected));
    }

    let created = recorded(&app, &app.tenant, "access.api_key_created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor"]["id"], admin.user_id.to_string());
    assert_eq!(created[0]["resource"]["type"], "api_key");
    assert_eq!(created[0]["resource"]["id"], first_id);
    let rotations = recorded(&app, &app.tenant, "access.api_key_rotated").await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["resource"]["id"], first_id);
    assert_eq!(rotations[0]["metadata"]["replaced_by"], second_id);
    let revocations = recorded(&app, &app.tenant, "access.api_key_revoked").await;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0]["resource"]["id"], second_id);
    for secret in [&first, &second] {
        assert!(!leaked(&app, secret).await, "a key is on the record");
    }
}

#[tokio::test]
async fn another_orgs_keys_are_not_found_and_keep_working() {
    let app = spawn_app().await;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let intruder = app.person(other.id, "owner").await;
    let id = app.tenant.key_id;
    let nobody = Uuid::new_v4();

    for (method, suffix) in [(Method::POST, "/rotate"), (Method::DELETE, "")] {
        let theirs = as_person(
            &app,
            method.clone(),
            &format!("/v1/api-keys/{id}{suffix}"),
            &intruder,
            None,
        )
        .await;
        let none = as_person(
            &app,
            method.clone(),
            &format!("/v1/api-keys/{nobody}{suffix}"),
            &intruder,
            None,
        )
        .await;
        assert_eq!(theirs.0, 404, "{method}");
        assert_eq!(theirs, none, "{method}");
    }
    let (_, list) = as_person(&app, Method::GET, "/v1/api-keys", &intruder, None).await;
    assert!(!list.to_string().contains(&id.to_string()));
    assert_eq!(app.get("/v1/events", &app.tenant.key).await.status(), 200);
}

#[tokio::test]
async fn owners_and_admins_set_the_retention_period_and_legal_hold_on_the_record() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let admin = app.person(app.tenant.id, "admin").await;

    let (status, policy) = as_person(&app, Method::GET, "/v1/retention", &admin, None).await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["tenant_id"], app.tenant.id.to_string());
    let floor = policy["floor_months"].as_u64().unwrap();
    assert_eq!(policy["legal_hold"], false);

    let (status, policy) = as_person(
        &app,
        Method::PUT,
        "/v1/retention",
        &admin,
        Some(&json!({ "period_months": floor + 12 })),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["period_months"], floor + 12);
    let (status, answer) = as_person(
        &app,
        Method::PUT,
        "/v1/retention",
        &owner,
        Some(&json!({ "period_months": floor - 1 })),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, "below_floor"));

    let (status, policy) = as_person(
        &app,
        Method::PUT,
        "/v1/retention/hold",
        &owner,
        Some(&json!({ "on": true, "reason": "case 2026-117" })),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["legal_hold"], true);
    assert_eq!(policy["period_months"], floor + 12);
    let (status, answer) = as_person(
        &app,
        Method::PUT,
        "/v1/retention/hold",
        &owner,
        Some(&json!({ "on": false, "reason": "" })),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, "invalid_reason"));

    let changed = recorded(&app, &app.tenant, "retention.policy_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["actor"]["id"], admin.user_id.to_string());
    let placed = recorded(&app, &app.tenant, "retention.legal_hold_placed").await;
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0]["actor"]["id"], owner.user_id.to_string());
    assert_eq!(placed[0]["metadata"]["reason"], "case 2026-117");

    // Another organisation's admin sees and sets only their own.
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    let theirs = app.person(other.id, "owner").await;
    let (_, policy) = as_person(&app, Method::GET, "/v1/retention", &theirs, None).await;
    assert_eq!(policy["tenant_id"], other.id.to_string());
    assert_eq!(policy["legal_hold"], false);
}

#[tokio::test]
async fn sensitive_changes_need_a_recent_password_check() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    client
        .execute(
            "UPDATE annal.sessions SET authenticated_at = authenticated_at - interval '10 minutes' \
             WHERE user_id = $1",
            &[&owner.user_id],
        )
        .await
        .unwrap();
    let key = app.tenant.key_id;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/members".to_owned(),
            Some(json!({ "email": "x@example.com", "role": "viewer" })),
        ),
        (
            Method::POST,
            "/v1/api-keys".to_owned(),
            Some(json!({ "scopes": ["export"] })),
        ),
        (Method::DELETE, format!("/v1/api-keys/{key}"), None),
        (
            Method::PUT,
            "/v1/retention/hold".to_owned(),
            Some(json!({ "on": true, "reason": "case" })),
        ),
    ] {
        let (status, answer) = as_person(&app, method.clone(), &path, &owner, body.as_ref()).await;
        assert_eq!(
            (status, code(&answer)),
            (403, "reauthentication_required"),
            "{method} {path}"
        );
    }
    // Seeing is not sensitive.
    for path in ["/v1/members", "/v1/api-keys", "/v1/retention"] {
        assert_eq!(
            as_person(&app, Method::GET, path, &owner, None).await.0,
            200,
            "{path}"
        );
    }
    let r = as_person(
        &app,
        Method::POST,
        "/v1/auth/reauthenticate",
        &owner,
        Some(&json!({ "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.0, 204);
    let (status, _) = as_person(
        &app,
        Method::POST,
        "/v1/api-keys",
        &owner,
        Some(&json!({ "scopes": ["export"] })),
    )
    .await;
    assert_eq!(status, 201);
}
