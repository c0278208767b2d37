//! The permission matrix of `docs/ACCESS.md`, cell by cell, against a real
//! PostgreSQL: every endpoint of the API called by every kind of caller,
//! with the exact status (and error code) of each answer written down in
//! one table. Around it: another organisation's resources answer exactly
//! like missing ones, sensitive operations need a password check in the
//! last five minutes, and logins are limited per client address.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use annal::ledger::TenantId;
use annal::service::accounts::ReauthInput;
use annal::service::auth::{
    Export, ManageApiKeys, ManageLegalHold, ManageMembers, ManageMfaPolicy, ManageRetention,
    ManageSessions, OwnAccount, OwnMfa, Permission, Principal, ReadEvents, Scope, ViewApiKeys,
    ViewMembers, ViewRetention,
};
use annal::service::{Clock, ServiceError, SharedClock, SystemClock};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, Person, TestApp, event, spawn_app, spawn_app_with};

/// Who calls: one column of the table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Owner,
    Admin,
    HrLead,
    Analyst,
    Viewer,
    Auditor,
    /// An API key of the organisation with every scope.
    KeyAll,
    /// An API key of the organisation with `events:read` only.
    KeyRead,
    /// The owner of another organisation, handed this one's resource ids.
    OtherOwner,
    /// An owner of an organisation that requires MFA, not enrolled yet.
    BeforeMfa,
    /// An owner whose last password check was six minutes ago.
    Stale,
    /// The owner's session cookie without the anti-CSRF header.
    NoCsrf,
    /// No credentials at all.
    Nobody,
    /// A viewer's session past its 12-hour lifetime.
    Expired,
    /// A viewer's session after logout.
    Ended,
}

const COLUMNS: usize = 15;

const COLS: [Col; COLUMNS] = [
    Col::Owner,
    Col::Admin,
    Col::HrLead,
    Col::Analyst,
    Col::Viewer,
    Col::Auditor,
    Col::KeyAll,
    Col::KeyRead,
    Col::OtherOwner,
    Col::BeforeMfa,
    Col::Stale,
    Col::NoCsrf,
    Col::Nobody,
    Col::Expired,
    Col::Ended,
];

/// What a cell needs made before its call. Made afresh for every cell, so
/// no cell depends on another; afterwards it must be used up when the
/// call succeeded and untouched when it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixture {
    None,
    /// `{user_id}`: a member invited to the organisation as a viewer.
    Member,
    /// `{id}`: an `events:read` API key of the organisation.
    Key,
    /// `{id}`: another session of the caller; for a caller without an
    /// account in the organisation, a member's session there.
    OwnSession,
    /// `{id}`: a session of another member of the organisation.
    MembersSession,
    /// `{token}`: an invitation to the organisation.
    Invitation,
    /// The caller's credential, made anew for a call that succeeds (it may
    /// end it); a refused call uses the column's usual one.
    FreshCaller,
}

/// One endpoint (or one way of calling it) and the status every column
/// gets. Placeholders: `{seq}` an event of the organisation, `{size}` one
/// of its checkpoints, `{user_id}` a member (or the fixture's), `{id}` the
/// fixture's key or session; in bodies `{email}` a new address, `{login}`
/// a member's, `{password}`, `{token}`.
struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    fixture: Fixture,
    /// The error code of this row's 400 and 409 answers.
    code: &'static str,
    expect: [u16; COLUMNS],
}

const fn row(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    fixture: Fixture,
    expect: [u16; COLUMNS],
) -> Row {
    Row {
        method,
        path,
        body,
        fixture,
        code: "",
        expect,
    }
}

impl Row {
    /// The row's 400 or 409 answers carry `code`.
    const fn code(self, code: &'static str) -> Row {
        Row { code, ..self }
    }
}

const EVENT: &str = r#"{"action":"salary.view","actor":{"id":"u-1","type":"user"},"resource":{"type":"employee","id":"e-1"}}"#;
const BATCH: &str = r#"{"events":[{"action":"salary.view","actor":{"id":"u-1","type":"user"},"resource":{"type":"employee","id":"e-1"}}]}"#;
const LOGIN: &str = r#"{"email":"{login}","password":"{password}"}"#;
const ACCEPT: &str = r#"{"token":"{token}","password":"{password}"}"#;
const PASSWORD_AGAIN: &str = r#"{"password":"{password}"}"#;
const INVITE: &str = r#"{"email":"{email}","role":"viewer"}"#;
const ROLE: &str = r#"{"role":"analyst"}"#;
const SCOPES: &str = r#"{"scopes":["events:read"]}"#;
const PERIOD: &str = r#"{"period_months":120}"#;
const HOLD: &str = r#"{"on":false,"reason":"matrix"}"#;
const NO_MFA: &str = r#"{"mfa_required":false}"#;
const WRONG_CODE: &str = r#"{"code":"not-a-code"}"#;
const PASSKEY_NAME: &str = r#"{"name":"matrix"}"#;
/// No authenticator's answer: the ceremonies themselves are played in
/// `passkeys.rs`.
const NO_ANSWER: &str = "{}";

use Fixture as F;

/// The permission matrix of `docs/ACCESS.md`: the status each column
/// gets from each endpoint. Columns, in the order of [`COLS`]: Owner,
/// Admin, HR Lead, Analyst, Viewer, Auditor; API keys with every scope and
/// with `events:read`; the other organisation's owner; an owner who must
/// enroll MFA first; an owner whose password check is six minutes old; the
/// owner's cookie without the anti-CSRF header; no credentials; an expired
/// and an ended session.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    //                                                                                                         Own  Adm  HR   Ana  View Aud  Key* KeyR Othr Mfa  Old  Csrf None Exp  End
    // Open to anyone: the credentials sent along neither help nor hinder.
    row("GET",    "/healthz",                                        None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/readyz",                                         None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/v1/openapi.json",                                None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("POST",   "/v1/auth/login",                                  Some(LOGIN),          F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("POST",   "/v1/auth/invitations/accept",                     Some(ACCEPT),         F::Invitation,     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // Nobody has a passkey.
    row("POST",   "/v1/auth/passkeys/login/start",                   Some(LOGIN),          F::None,           [409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409])
        .code("no_passkey"),
    row("POST",   "/v1/auth/passkeys/login/finish",                  Some(NO_ANSWER),      F::None,           [400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400])
        .code("missing_field"),
    // The trail, its checkpoints and proofs.
    row("POST",   "/v1/events",                                      Some(EVENT),          F::None,           [403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 403, 403, 401, 401, 401]),
    row("POST",   "/v1/events/batch",                                Some(BATCH),          F::None,           [403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 403, 403, 401, 401, 401]),
    row("GET",    "/v1/events",                                      None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/events/{seq}",                                None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 404, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/events/{seq}/proof",                          None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 404, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/checkpoint",                                  None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/checkpoints/{size}",                          None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 404, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/proofs/inclusion?seq={seq}&tree_size={size}", None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 404, 403, 200, 200, 401, 401, 401]),
    // Sizes are of the caller's own tree, and the other organisation's is smaller.
    row("GET",    "/v1/proofs/consistency?from=1&to={size}",         None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 400, 403, 200, 200, 401, 401, 401])
        .code("tree_size_out_of_range"),
    row("GET",    "/v1/keys",                                        None,                 F::None,           [200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/export",                                      None,                 F::None,           [200, 200, 200, 403, 403, 200, 200, 403, 200, 403, 403, 200, 401, 401, 401]),
    // Your own account and sessions; other members' sessions.
    row("POST",   "/v1/auth/logout",                                 None,                 F::FreshCaller,    [204, 204, 204, 204, 204, 204, 403, 403, 204, 204, 204, 403, 401, 401, 401]),
    row("GET",    "/v1/auth/me",                                     None,                 F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 200, 200, 401, 401, 401]),
    row("POST",   "/v1/auth/reauthenticate",                         Some(PASSWORD_AGAIN), F::FreshCaller,    [204, 204, 204, 204, 204, 204, 403, 403, 204, 204, 204, 403, 401, 401, 401]),
    row("GET",    "/v1/auth/sessions",                               None,                 F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/auth/sessions?all=true",                      None,                 F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 401, 401, 401]),
    row("GET",    "/v1/auth/sessions?user_id={user_id}",             None,                 F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 401, 401, 401]),
    row("DELETE", "/v1/auth/sessions/{id}",                          None,                 F::OwnSession,     [204, 204, 204, 204, 204, 204, 403, 403, 404, 204, 204, 403, 401, 401, 401]),
    // Another member's session is "not found" to a member who may only end their own.
    row("DELETE", "/v1/auth/sessions/{id}",                          None,                 F::MembersSession, [204, 204, 404, 404, 404, 404, 403, 403, 404, 404, 204, 403, 401, 401, 401]),
    // Members.
    row("GET",    "/v1/members",                                     None,                 F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 401, 401, 401]),
    row("POST",   "/v1/members",                                     Some(INVITE),         F::None,           [201, 201, 403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 401, 401, 401]),
    row("PATCH",  "/v1/members/{user_id}",                           Some(ROLE),           F::Member,         [200, 200, 403, 403, 403, 403, 403, 403, 404, 403, 403, 403, 401, 401, 401]),
    row("DELETE", "/v1/members/{user_id}",                           None,                 F::Member,         [204, 204, 403, 403, 403, 403, 403, 403, 404, 403, 403, 403, 401, 401, 401]),
    // API keys.
    row("GET",    "/v1/api-keys",                                    None,                 F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 401, 401, 401]),
    row("POST",   "/v1/api-keys",                                    Some(SCOPES),         F::None,           [201, 201, 403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 401, 401, 401]),
    row("POST",   "/v1/api-keys/{id}/rotate",                        None,                 F::Key,            [201, 201, 403, 403, 403, 403, 403, 403, 404, 403, 403, 403, 401, 401, 401]),
    row("DELETE", "/v1/api-keys/{id}",                               None,                 F::Key,            [204, 204, 403, 403, 403, 403, 403, 403, 404, 403, 403, 403, 401, 401, 401]),
    // Retention and legal hold.
    row("GET",    "/v1/retention",                                   None,                 F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 401, 401, 401]),
    row("PUT",    "/v1/retention",                                   Some(PERIOD),         F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 401, 401, 401]),
    row("PUT",    "/v1/retention/hold",                              Some(HOLD),           F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 401, 401, 401]),
    // The organisation's MFA requirement; your own second factor.
    row("GET",    "/v1/org/settings",                                None,                 F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 200, 200, 401, 401, 401]),
    row("PUT",    "/v1/org/settings",                                Some(NO_MFA),         F::None,           [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 401, 401, 401]),
    row("POST",   "/v1/auth/mfa/totp",                               None,                 F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 403, 403, 401, 401, 401]),
    // Every person has an enrollment pending, and the code is never right.
    row("POST",   "/v1/auth/mfa/totp/confirm",                       Some(WRONG_CODE),     F::None,           [400, 400, 400, 400, 400, 400, 403, 403, 400, 400, 403, 403, 401, 401, 401])
        .code("invalid_code"),
    // Nobody has TOTP yet.
    row("DELETE", "/v1/auth/mfa/totp",                               None,                 F::None,           [409, 409, 409, 409, 409, 409, 403, 403, 409, 409, 403, 403, 401, 401, 401])
        .code("mfa_not_enrolled"),
    row("POST",   "/v1/auth/mfa/recovery-codes",                     None,                 F::None,           [409, 409, 409, 409, 409, 409, 403, 403, 409, 409, 403, 403, 401, 401, 401])
        .code("mfa_not_enrolled"),
    // Passkeys: nobody has one, and no authenticator answers here.
    row("POST",   "/v1/auth/passkeys/register/start",                Some(PASSKEY_NAME),   F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 403, 403, 401, 401, 401]),
    row("POST",   "/v1/auth/passkeys/register/finish",               Some(NO_ANSWER),      F::None,           [400, 400, 400, 400, 400, 400, 403, 403, 400, 400, 403, 403, 401, 401, 401])
        .code("missing_field"),
    row("GET",    "/v1/auth/passkeys",                               None,                 F::None,           [200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 200, 200, 401, 401, 401]),
    // An id that is no passkey of anyone's.
    row("DELETE", "/v1/auth/passkeys/{id}",                          None,                 F::Key,            [404, 404, 404, 404, 404, 404, 403, 403, 404, 404, 403, 403, 401, 401, 401]),
    row("POST",   "/v1/auth/passkeys/reauth/start",                  Some(PASSWORD_AGAIN), F::None,           [409, 409, 409, 409, 409, 409, 403, 403, 409, 409, 409, 403, 401, 401, 401])
        .code("no_passkey"),
    row("POST",   "/v1/auth/passkeys/reauth/finish",                 Some(NO_ANSWER),      F::None,           [400, 400, 400, 400, 400, 400, 403, 403, 400, 400, 400, 403, 401, 401, 401])
        .code("missing_field"),
];

/// How a request proves who sends it.
#[derive(Debug, Clone)]
enum Cred {
    Session {
        cookie: String,
        csrf: Option<String>,
    },
    Key(String),
    Nobody,
}

impl Cred {
    fn of(person: &Person) -> Cred {
        Cred::Session {
            cookie: person.cookie.clone(),
            csrf: Some(person.csrf.clone()),
        }
    }
}

/// Sends `method path` with `cred`; the status and the body.
async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    cred: &Cred,
    body: Option<&Value>,
) -> (u16, String) {
    let mut request = app.http.request(method.clone(), app.server.url(path));
    request = match cred {
        Cred::Session { cookie, csrf } => {
            let request = request.header("cookie", cookie);
            match csrf {
                Some(csrf) => request.header("x-annal-csrf", csrf),
                None => request,
            }
        }
        Cred::Key(key) => request.bearer_auth(key),
        Cred::Nobody => request,
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A session and its id.
struct Session {
    person: Person,
    id: Uuid,
}

/// Logs `email` in; the session with its id.
async fn session(app: &TestApp, email: &str) -> Session {
    let person = app.login(email, PASSWORD).await;
    let me: Value = app
        .get_as("/v1/auth/me", &person)
        .await
        .json()
        .await
        .unwrap();
    let id = me["session"]["id"].as_str().unwrap().parse().unwrap();
    Session { person, id }
}

/// Moves the times `columns` of session `id` back by `by` (e.g. `6 minutes`).
async fn age(app: &TestApp, id: Uuid, columns: &[&str], by: &str) {
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    let set = columns
        .iter()
        .map(|c| format!("{c} = {c} - interval '{by}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let n = client
        .execute(
            &format!("UPDATE annal.sessions SET {set} WHERE id = $1"),
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Who calls in one column.
struct Caller {
    cred: Cred,
    /// The person's email, for the columns that are people.
    email: Option<String>,
}

/// The organisations, people, keys and resources the table is played on.
struct World {
    org: TenantId,
    callers: Vec<Caller>,
    /// The organisation's owner (the first column), who makes fixtures.
    owner: Person,
    /// A member whose sessions cells end, and whose email logs in.
    member: (Uuid, String),
    /// The last of its records, covered by checkpoint `size`.
    seq: u64,
    size: u64,
    /// Ids of the organisation no other may ever be shown.
    secrets: Vec<String>,
    /// The owners of the other two organisations.
    outsiders: [Uuid; 2],
    /// Ids the other organisation's owner was answered with.
    seen_by_other: Mutex<Vec<String>>,
}

impl World {
    fn cred(&self, col: Col) -> &Cred {
        &self.callers[index(col)].cred
    }

    fn email(&self, col: Col) -> Option<&str> {
        self.callers[index(col)].email.as_deref()
    }
}

fn index(col: Col) -> usize {
    COLS.iter().position(|c| *c == col).unwrap()
}

/// The roles of the first six columns.
const ROLES: [&str; 6] = ["owner", "admin", "hr_lead", "analyst", "viewer", "auditor"];

async fn build_world(app: &TestApp) -> World {
    let org = &app.tenant;
    let read_key = app.new_key(org.id, &[Scope::EventsRead]).await;
    let other = app.new_tenant(&Scope::ALL).await;
    let strict = app.new_tenant(&Scope::ALL).await;
    let mut people = Vec::new();
    for role in ROLES {
        people.push(app.add_member(org.id, role).await);
    }
    let member = app.add_member(org.id, "analyst").await;
    let (other_owner, other_email) = app.add_member(other.id, "owner").await;
    let (strict_owner, strict_email) = app.add_member(strict.id, "owner").await;

    // Records to read and prove: the last one's seq is far beyond anything
    // the other organisations write while the table runs.
    let events: Vec<Value> = (0..300).map(event).collect();
    let r = app
        .post("/v1/events/batch", &org.key, &json!({ "events": events }))
        .await;
    assert_eq!(r.status(), 201);
    let receipts: Value = r.json().await.unwrap();
    let seq = receipts["events"][299]["seq"].as_u64().unwrap();

    // Every column that is a person logs in with a session of its own.
    let email = |col: Col| match col {
        Col::Owner | Col::Admin | Col::HrLead | Col::Analyst | Col::Viewer | Col::Auditor => {
            Some(people[index(col)].1.clone())
        }
        Col::OtherOwner => Some(other_email.clone()),
        Col::BeforeMfa => Some(strict_email.clone()),
        Col::Stale | Col::NoCsrf => Some(people[0].1.clone()),
        Col::Expired | Col::Ended => Some(people[4].1.clone()),
        Col::KeyAll | Col::KeyRead | Col::Nobody => None,
    };
    let sessions = join_all(COLS.map(|col| {
        let email = email(col);
        async move {
            match email {
                Some(email) => Some(session(app, &email).await),
                None => None,
            }
        }
    }))
    .await;
    let mut callers = Vec::new();
    let mut owner = None;
    for (col, session) in COLS.into_iter().zip(sessions) {
        let Some(session) = session else {
            let cred = match col {
                Col::KeyAll => Cred::Key(org.key.clone()),
                Col::KeyRead => Cred::Key(read_key.key.clone()),
                _ => Cred::Nobody,
            };
            callers.push(Caller { cred, email: None });
            continue;
        };
        let cred = Cred::of(&session.person);
        match col {
            Col::Owner => owner = Some(session.person.clone()),
            // Its organisation requires MFA from now on: without TOTP, its
            // owner may only enroll.
            Col::BeforeMfa => {
                let body = json!({ "mfa_required": true });
                let r = send(app, &Method::PUT, "/v1/org/settings", &cred, Some(&body)).await;
                assert_eq!(r.0, 200, "{}", r.1);
            }
            Col::Stale => age(app, session.id, &["authenticated_at"], "6 minutes").await,
            Col::Expired => {
                let times = [
                    "created_at",
                    "last_seen_at",
                    "authenticated_at",
                    "expires_at",
                ];
                age(app, session.id, &times, "13 hours").await;
            }
            Col::Ended => {
                let r = send(app, &Method::POST, "/v1/auth/logout", &cred, None).await;
                assert_eq!(r.0, 204);
            }
            _ => {}
        }
        let cred = match (col, cred) {
            (Col::NoCsrf, Cred::Session { cookie, .. }) => Cred::Session { cookie, csrf: None },
            (_, cred) => cred,
        };
        callers.push(Caller {
            cred,
            email: email(col),
        });
    }

    // Every person has a TOTP enrollment pending (and none confirmed).
    let persons = COLS.into_iter().take(ROLES.len());
    for col in persons.chain([Col::OtherOwner, Col::BeforeMfa]) {
        let cred = &callers[index(col)].cred;
        let r = send(app, &Method::POST, "/v1/auth/mfa/totp", cred, None).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }

    // A checkpoint covering the last record.
    let size = loop {
        let note = app
            .get("/v1/checkpoint", &org.key)
            .await
            .text()
            .await
            .unwrap();
        let size = annal::ledger::SignedCheckpoint::parse(&note)
            .unwrap()
            .checkpoint()
            .size;
        if size > seq {
            break size;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let mut secrets = vec![
        org.id.to_string(),
        org.key_id.to_string(),
        read_key.key_id.to_string(),
        member.0.to_string(),
    ];
    secrets.extend(people.iter().map(|(id, _)| id.to_string()));
    World {
        org: org.id,
        callers,
        owner: owner.unwrap(),
        member,
        seq,
        size,
        secrets,
        outsiders: [other_owner, strict_owner],
        seen_by_other: Mutex::new(Vec::new()),
    }
}

/// A fixture as made for one cell.
enum Made {
    None,
    Member(Uuid),
    Key { id: Uuid, token: String },
    Session(Session),
    Invitation(String),
    Caller(Cred),
}

/// A new session of the member whose sessions cells end.
async fn members_session(app: &TestApp, world: &World) -> Made {
    Made::Session(session(app, &world.member.1).await)
}

/// Invites a new address to the organisation as its owner; the user id and
/// the invitation token.
async fn invite(app: &TestApp, world: &World) -> (Uuid, String) {
    let email = format!("invitee-{}@example.com", Uuid::new_v4().simple());
    let (status, body) = send(
        app,
        &Method::POST,
        "/v1/members",
        &Cred::of(&world.owner),
        Some(&json!({ "email": email, "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    (
        body["user_id"].as_str().unwrap().parse().unwrap(),
        body["invitation_token"].as_str().unwrap().to_owned(),
    )
}

/// A new credential for `col`, made the way the column's usual one was
/// (keys and dead sessions are never used up: they are reused).
async fn fresh_caller(app: &TestApp, world: &World, col: Col) -> Cred {
    let email = match (col, world.email(col)) {
        (Col::Expired | Col::Ended, _) | (_, None) => return world.cred(col).clone(),
        (_, Some(email)) => email,
    };
    let s = session(app, email).await;
    match col {
        Col::Stale => age(app, s.id, &["authenticated_at"], "6 minutes").await,
        Col::NoCsrf => {
            return Cred::Session {
                cookie: s.person.cookie,
                csrf: None,
            };
        }
        _ => {}
    }
    Cred::of(&s.person)
}

async fn make(app: &TestApp, world: &World, fixture: Fixture, col: Col, succeeds: bool) -> Made {
    match fixture {
        Fixture::None => Made::None,
        Fixture::Member => Made::Member(invite(app, world).await.0),
        Fixture::Key => {
            let key = app.new_key(world.org, &[Scope::EventsRead]).await;
            Made::Key {
                id: key.key_id.as_uuid(),
                token: key.key,
            }
        }
        Fixture::OwnSession => match (col, world.email(col)) {
            (Col::OtherOwner, _) | (_, None) => members_session(app, world).await,
            (_, Some(email)) => Made::Session(session(app, email).await),
        },
        Fixture::MembersSession => members_session(app, world).await,
        Fixture::Invitation => Made::Invitation(invite(app, world).await.1),
        Fixture::FreshCaller if succeeds => Made::Caller(fresh_caller(app, world, col).await),
        Fixture::FreshCaller => Made::None,
    }
}

/// The error code a refused cell must carry.
fn expected_code(row: &Row, col: Col, status: u16) -> &'static str {
    match status {
        400 | 409 => row.code,
        401 => "unauthenticated",
        404 => "not_found",
        403 => match col {
            Col::NoCsrf if row.method != "GET" => "csrf_rejected",
            Col::BeforeMfa => "mfa_enrollment_required",
            Col::Stale if row.expect[index(Col::Owner)] != 403 => "reauthentication_required",
            _ => "forbidden",
        },
        _ => "",
    }
}

/// Plays one cell; what disagrees with the table, if anything.
async fn play(app: &TestApp, world: &World, row: &Row, col: Col) -> Vec<String> {
    let expected = row.expect[index(col)];
    let succeeds = (200..300).contains(&expected);
    let made = make(app, world, row.fixture, col, succeeds).await;
    let fixture_id = match &made {
        Made::Member(id) | Made::Key { id, .. } | Made::Session(Session { id, .. }) => {
            Some(id.to_string())
        }
        _ => None,
    };
    let path = row
        .path
        .replace("{seq}", &world.seq.to_string())
        .replace("{size}", &world.size.to_string())
        .replace(
            "{user_id}",
            &fixture_id.clone().unwrap_or(world.member.0.to_string()),
        )
        .replace("{id}", fixture_id.as_deref().unwrap_or(""));
    let body = row.body.map(|b| {
        let token = match &made {
            Made::Invitation(token) => token.as_str(),
            _ => "",
        };
        let text = b
            .replace(
                "{email}",
                &format!("new-{}@example.com", Uuid::new_v4().simple()),
            )
            .replace("{login}", &world.member.1)
            .replace("{password}", PASSWORD)
            .replace("{token}", token);
        serde_json::from_str::<Value>(&text).unwrap()
    });
    let cred = match &made {
        Made::Caller(cred) => cred,
        _ => world.cred(col),
    };
    let method = Method::from_bytes(row.method.as_bytes()).unwrap();
    let (status, answer) = send(app, &method, &path, cred, body.as_ref()).await;

    let cell = format!("{col:?} {} {}", row.method, row.path);
    let mut wrong = Vec::new();
    if status != expected {
        wrong.push(format!("{cell}: {status}, not {expected}: {answer}"));
        return wrong;
    }
    if !succeeds {
        let code = serde_json::from_str::<Value>(&answer).unwrap()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let want = expected_code(row, col, status);
        if code != want {
            wrong.push(format!("{cell}: code {code}, not {want}"));
        }
    }
    // What another organisation's owner is shown must be theirs (login and
    // invitations answer anyone about the account they name).
    let public = (200..300).contains(&row.expect[index(Col::Nobody)]);
    if col == Col::OtherOwner && succeeds && !public {
        for secret in &world.secrets {
            if answer.contains(secret.as_str()) {
                wrong.push(format!("{cell}: shows the organisation's {secret}"));
            }
        }
        if let Ok(body) = serde_json::from_str::<Value>(&answer) {
            for field in ["id", "user_id"] {
                if let Some(id) = body[field].as_str() {
                    world.seen_by_other.lock().unwrap().push(id.to_owned());
                }
            }
        }
    }
    wrong.extend(aftermath(app, world, row, &made, succeeds, &answer, &cell).await);
    wrong
}

/// Whether the fixture was used up by a call that succeeded, and left
/// alone by one that was refused.
async fn aftermath(
    app: &TestApp,
    world: &World,
    row: &Row,
    made: &Made,
    succeeded: bool,
    answer: &str,
    cell: &str,
) -> Option<String> {
    match made {
        Made::Member(id) => {
            let (_, list) = send(
                app,
                &Method::GET,
                "/v1/members",
                &Cred::of(&world.owner),
                None,
            )
            .await;
            let list: Value = serde_json::from_str(&list).unwrap();
            let role = list
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["user_id"] == id.to_string())
                .map(|m| m["role"].as_str().unwrap().to_owned());
            let want = match (succeeded, row.method) {
                (false, _) => Some("viewer"),
                (true, "PATCH") => Some("analyst"),
                (true, _) => None,
            };
            (role.as_deref() != want).then(|| format!("{cell}: the member is now {role:?}"))
        }
        Made::Key { token, .. } => {
            let (status, _) = send(
                app,
                &Method::GET,
                "/v1/events?limit=1",
                &Cred::Key(token.clone()),
                None,
            )
            .await;
            let want = if succeeded { 401 } else { 200 };
            if status != want {
                return Some(format!("{cell}: the key answers {status}"));
            }
            if succeeded && row.method == "POST" {
                let new: Value = serde_json::from_str(answer).unwrap();
                let key = Cred::Key(new["api_key"].as_str().unwrap().to_owned());
                let (status, _) = send(app, &Method::GET, "/v1/events?limit=1", &key, None).await;
                return (status != 200).then(|| format!("{cell}: the new key answers {status}"));
            }
            None
        }
        Made::Session(s) => alive(app, &Cred::of(&s.person), !succeeded, cell).await,
        Made::Caller(cred) if row.path == "/v1/auth/logout" => alive(app, cred, false, cell).await,
        Made::Caller(_) | Made::Invitation(_) | Made::None => None,
    }
}

/// Whether the session `cred` is alive exactly when it should be.
async fn alive(app: &TestApp, cred: &Cred, should: bool, cell: &str) -> Option<String> {
    let (status, _) = send(app, &Method::GET, "/v1/auth/me", cred, None).await;
    let want = if should { 200 } else { 401 };
    (status != want).then(|| format!("{cell}: the session answers {status}"))
}

/// Every route the handlers declare, as `METHOD /path/{param}`.
fn declared_routes() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(rest) = line.trim().strip_prefix(&format!("#[{method}(\"")) {
                    let path = rest.split('"').next().unwrap();
                    routes.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
    }
    routes
}

/// The route a row calls, with the handler's parameter names.
fn route(row: &Row) -> String {
    format!("{} {}", row.method, row.path.split('?').next().unwrap())
}

#[test]
fn the_table_has_a_row_for_every_route_and_only_those() {
    let declared = declared_routes();
    let tabled: BTreeSet<String> = TABLE.iter().map(route).collect();
    assert_eq!(tabled, declared);
}

#[tokio::test]
async fn every_endpoint_answers_every_caller_as_the_permission_matrix_says() {
    // Dozens of logins from one address: the login limits would be the
    // only thing tested.
    let app = spawn_app_with(&[
        ("ANNAL_LOGIN_LIMIT_ACCOUNT", "0"),
        ("ANNAL_LOGIN_LIMIT_IP", "0"),
    ])
    .await;
    let world = build_world(&app).await;

    let mut wrong = Vec::new();
    for row in TABLE {
        let cells = join_all(COLS.iter().map(|col| play(&app, &world, row, *col))).await;
        wrong.extend(cells.into_iter().flatten());
    }
    assert!(
        wrong.is_empty(),
        "{} cells disagree with the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Nothing the other organisations' owners did shows in this one's log
    // or lists.
    let log = serde_json::to_string(&app.all_events(&app.tenant).await).unwrap();
    for outsider in world.outsiders {
        assert!(
            !log.contains(&outsider.to_string()),
            "{outsider} in the log"
        );
    }
    let made = world.seen_by_other.lock().unwrap().clone();
    assert!(made.len() >= 2, "{made:?}");
    for path in ["/v1/members", "/v1/api-keys"] {
        let (_, list) = send(&app, &Method::GET, path, &Cred::of(&world.owner), None).await;
        for id in &made {
            assert!(!list.contains(id.as_str()), "{path} shows {id}");
        }
    }
    // The keys the table called with still work.
    for col in [Col::KeyAll, Col::KeyRead] {
        let r = send(
            &app,
            &Method::GET,
            "/v1/events?limit=1",
            world.cred(col),
            None,
        )
        .await;
        assert_eq!(r.0, 200, "{col:?}");
    }
}

/// Who asks, how, for the organisation's resource and for nothing, with
/// which body, and the status both must get.
type Twins<'a> = (&'a Cred, Method, String, String, Option<&'a Value>, u16);

#[tokio::test]
async fn another_orgs_resources_answer_byte_for_byte_like_missing_ones() {
    let app = spawn_app().await;
    let org = &app.tenant;
    let other = app.new_tenant(&Scope::ALL).await;
    crate::helpers::post_events(&app, org, 50, 0).await;
    let (member, member_email) = app.add_member(org.id, "analyst").await;
    let viewer = app.person(org.id, "viewer").await;
    let target = session(&app, &member_email).await;
    let intruder = app.person(other.id, "owner").await;
    let key = org.key_id;
    let nobody = Uuid::new_v4();
    let far = 1u64 << 40;
    let size = loop {
        let note = app
            .get("/v1/checkpoint", &org.key)
            .await
            .text()
            .await
            .unwrap();
        let size = annal::ledger::SignedCheckpoint::parse(&note)
            .unwrap()
            .checkpoint()
            .size;
        if size >= 50 {
            break size;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let seq = size - 1;
    let role = json!({ "role": "viewer" });

    let intruder_cred = Cred::of(&intruder);
    let viewer_cred = Cred::of(&viewer);
    let other_key = Cred::Key(other.key.clone());
    let cases: Vec<Twins> = vec![
        (
            &intruder_cred,
            Method::PATCH,
            format!("/v1/members/{member}"),
            format!("/v1/members/{nobody}"),
            Some(&role),
            404,
        ),
        (
            &intruder_cred,
            Method::DELETE,
            format!("/v1/members/{member}"),
            format!("/v1/members/{nobody}"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::POST,
            format!("/v1/api-keys/{key}/rotate"),
            format!("/v1/api-keys/{nobody}/rotate"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::DELETE,
            format!("/v1/api-keys/{key}"),
            format!("/v1/api-keys/{nobody}"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::DELETE,
            format!("/v1/auth/sessions/{}", target.id),
            format!("/v1/auth/sessions/{nobody}"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::GET,
            format!("/v1/events/{seq}"),
            format!("/v1/events/{far}"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::GET,
            format!("/v1/events/{seq}/proof"),
            format!("/v1/events/{far}/proof"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::GET,
            format!("/v1/checkpoints/{size}"),
            format!("/v1/checkpoints/{far}"),
            None,
            404,
        ),
        (
            &intruder_cred,
            Method::GET,
            format!("/v1/proofs/inclusion?seq={seq}&tree_size={size}"),
            format!("/v1/proofs/inclusion?seq={seq}&tree_size={far}"),
            None,
            404,
        ),
        (
            &other_key,
            Method::GET,
            format!("/v1/events/{seq}"),
            format!("/v1/events/{far}"),
            None,
            404,
        ),
        (
            &other_key,
            Method::GET,
            format!("/v1/events/{seq}/proof"),
            format!("/v1/events/{far}/proof"),
            None,
            404,
        ),
        // Within the organisation, a session a member may not end is one
        // that is not there.
        (
            &viewer_cred,
            Method::DELETE,
            format!("/v1/auth/sessions/{}", target.id),
            format!("/v1/auth/sessions/{nobody}"),
            None,
            404,
        ),
        // Refusals are decided before anything is looked up.
        (
            &viewer_cred,
            Method::PATCH,
            format!("/v1/members/{member}"),
            format!("/v1/members/{nobody}"),
            Some(&role),
            403,
        ),
        (
            &viewer_cred,
            Method::DELETE,
            format!("/v1/api-keys/{key}"),
            format!("/v1/api-keys/{nobody}"),
            None,
            403,
        ),
        (
            &other_key,
            Method::DELETE,
            format!("/v1/auth/sessions/{}", target.id),
            format!("/v1/auth/sessions/{nobody}"),
            None,
            403,
        ),
    ];
    for (who, method, theirs, none, body, status) in cases {
        let a = send(&app, &method, &theirs, who, body).await;
        let b = send(&app, &method, &none, who, body).await;
        assert_eq!(a.0, status, "{method} {theirs}: {}", a.1);
        assert_eq!(a, b, "{method} {theirs} and {none} must answer alike");
    }

    // And nothing of the organisation changed.
    assert_eq!(app.get("/v1/events?limit=1", &org.key).await.status(), 200);
    assert_eq!(
        app.get_as("/v1/auth/me", &target.person).await.status(),
        200
    );
    let owner = app.person(org.id, "owner").await;
    let list: Value = app
        .get_as("/v1/members", &owner)
        .await
        .json()
        .await
        .unwrap();
    let analyst = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == member.to_string())
        .unwrap();
    assert_eq!(analyst["role"], "analyst");
}

struct MovableClock(Mutex<DateTime<Utc>>);

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Whether `principal` holds `P`, or why not.
fn holds<P: Permission>(principal: &Principal) -> Result<(), ServiceError> {
    principal.authorize::<P>().map(|_| ())
}

/// Each permission of an owner's session: whether it needs a password check
/// in the last five minutes (the `REAUTH` rows of the matrix).
fn owners_permissions(
    principal: &Principal,
) -> Vec<(&'static str, bool, Result<(), ServiceError>)> {
    vec![
        (ReadEvents::NAME, false, holds::<ReadEvents>(principal)),
        (Export::NAME, true, holds::<Export>(principal)),
        (ViewMembers::NAME, false, holds::<ViewMembers>(principal)),
        (ManageMembers::NAME, true, holds::<ManageMembers>(principal)),
        (ViewApiKeys::NAME, false, holds::<ViewApiKeys>(principal)),
        (ManageApiKeys::NAME, true, holds::<ManageApiKeys>(principal)),
        (
            ViewRetention::NAME,
            false,
            holds::<ViewRetention>(principal),
        ),
        (
            ManageRetention::NAME,
            true,
            holds::<ManageRetention>(principal),
        ),
        (
            ManageLegalHold::NAME,
            true,
            holds::<ManageLegalHold>(principal),
        ),
        (
            ManageMfaPolicy::NAME,
            true,
            holds::<ManageMfaPolicy>(principal),
        ),
        (
            ManageSessions::NAME,
            false,
            holds::<ManageSessions>(principal),
        ),
        (OwnAccount::NAME, false, holds::<OwnAccount>(principal)),
        (OwnMfa::NAME, true, holds::<OwnMfa>(principal)),
    ]
}

/// The service methods of sensitive operations take an `Authorized<P>`,
/// which only `authorize` makes: a stale session cannot reach them at all,
/// so the refusal to check is `authorize`'s.
#[tokio::test]
async fn sensitive_operations_need_a_password_check_in_the_last_five_minutes() {
    let app = spawn_app().await;
    let owner = app.person(app.tenant.id, "owner").await;
    let token = owner.cookie.split_once('=').unwrap().1.to_owned();
    let start = SystemClock.now();
    let clock = Arc::new(MovableClock(Mutex::new(start)));
    let shared: SharedClock = clock.clone();
    let accounts = app.accounts(shared);
    let at = |seconds: i64| *clock.0.lock().unwrap() = start + TimeDelta::seconds(seconds);
    let principal = || async { accounts.authenticate(&token, None, false).await.unwrap() };

    // Four minutes after the login: everything.
    at(4 * 60);
    for (name, _, held) in owners_permissions(&principal().await) {
        assert!(held.is_ok(), "{name}: {held:?}");
    }
    // Just over five: everything but the sensitive ones.
    at(5 * 60 + 2);
    let late = principal().await;
    for (name, sensitive, held) in owners_permissions(&late) {
        if sensitive {
            assert!(
                matches!(held, Err(ServiceError::ReauthenticationRequired)),
                "{name}: {held:?}"
            );
        } else {
            assert!(held.is_ok(), "{name}: {held:?}");
        }
    }
    // Re-authenticating opens the window again, for five more minutes.
    let own = late.authorize::<OwnAccount>().unwrap();
    let input = ReauthInput {
        password: PASSWORD.into(),
        totp_code: None,
        recovery_code: None,
    };
    accounts.reauthenticate(&own, input, None).await.unwrap();
    at(9 * 60);
    for (name, _, held) in owners_permissions(&principal().await) {
        assert!(held.is_ok(), "{name}: {held:?}");
    }
    at(10 * 60 + 4);
    let export = principal().await.authorize::<Export>();
    assert!(matches!(
        export,
        Err(ServiceError::ReauthenticationRequired)
    ));
}

#[tokio::test]
async fn logins_from_one_address_hit_its_limit_whatever_the_account() {
    let app = spawn_app_with(&[("ANNAL_LOGIN_LIMIT_IP", "5")]).await;
    let (_, email) = app.add_member(app.tenant.id, "viewer").await;
    // One attempt that succeeds, four with other, unknown emails.
    let person = app.login(&email, PASSWORD).await;
    for n in 0..4 {
        let failed = app
            .login_with(json!({ "email": format!("guess-{n}@example.com"), "password": PASSWORD }))
            .await
            .unwrap_err();
        assert_eq!(failed.0, 401, "{failed:?}");
    }
    // The sixth attempt from this address waits, whoever it is for.
    for email in ["guess-5@example.com", email.as_str()] {
        let r = app
            .http
            .post(app.server.url("/v1/auth/login"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=12).contains(&retry_after), "{retry_after}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // A re-authentication is an attempt too.
    let r = app
        .send_as(
            Method::POST,
            "/v1/auth/reauthenticate",
            &person,
            Some(&json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status(), 429);
}
