//! People: logging in (password, then TOTP or a recovery code when
//! enrolled; a passkey's login is `passkeys`'s, built on the steps here),
//! sessions, re-authentication, and the first owner of an
//! organisation.
//!
//! A session is an opaque 256-bit token in a `__Host-` cookie, stored as
//! SHA-256; it ends after 30 minutes without a request or 12 hours after
//! login (configurable), on logout, when an admin ends it, or when the
//! member's role changes or their membership ends. Every login, failed or
//! not, and every session change is recorded in the organisation's log
//! (a failed login for an unknown email in the system log).

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Authorized, ManageSessions, OwnAccount, Principal, Role, SessionCaller};
use super::events::Ledger;
use super::limits::LoginLimiter;
use super::tenants::SYSTEM;
use super::{ServiceError, SharedClock};
use crate::crypto::Pepper;
use crate::crypto::identity::{
    Sealer, Token, hash_password, recovery_code_hash, token_hash, token_matches, verify_password,
};
use crate::ledger::{Actor, Outcome, Payload, Resource, TenantId};
use crate::store::identity::{self as rows, NewSession, StoredSession, StoredUser};
use crate::store::{Store, StoreError, TenantTx, tenants};

/// The session cookie's name. `__Host-` makes browsers insist on Secure,
/// `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "__Host-annal_session";
/// The header carrying the anti-CSRF token on state-changing requests made
/// with the session cookie.
pub const CSRF_HEADER: &str = "x-annal-csrf";
/// Sessions are marked used at most this often (the idle limit is checked
/// against that mark).
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(30);
/// TOTP: 30-second steps, 6 digits, SHA-1 (what authenticator apps do),
/// one step of clock drift either way.
const TOTP_STEP: u64 = 30;

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ended after this long without a request.
    pub idle: TimeDelta,
    /// Ended this long after login, however busy.
    pub lifetime: TimeDelta,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            idle: TimeDelta::minutes(30),
            lifetime: TimeDelta::hours(12),
        }
    }
}

/// A login request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// The user's email.
    pub email: String,
    /// Their password.
    pub password: String,
    /// A current TOTP code, when the user has enrolled one.
    pub totp_code: Option<String>,
    /// Or one of their recovery codes (each works once).
    pub recovery_code: Option<String>,
    /// The organisation to log in to, when the user belongs to several.
    pub organization_id: Option<Uuid>,
}

impl std::fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginInput(..)")
    }
}

/// A second factor given for a login or a re-authentication.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthInput {
    /// The user's password.
    pub password: String,
    /// A current TOTP code, when the user has enrolled one.
    pub totp_code: Option<String>,
    /// Or one of their recovery codes.
    pub recovery_code: Option<String>,
}

impl std::fmt::Debug for ReauthInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReauthInput(..)")
    }
}

/// A session as shown to its user (never its token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id (not a credential).
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The organisation it acts in.
    pub organization_id: Uuid,
    /// When it began.
    pub created_at: DateTime<Utc>,
    /// Its last request.
    pub last_seen_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
    /// Last password (and TOTP) check.
    pub authenticated_at: DateTime<Utc>,
    /// Whether TOTP was verified at that check.
    pub mfa: bool,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// What a login hands back: the session's token goes in the cookie and
/// nowhere else.
pub struct LoggedIn {
    /// The session token, for the cookie.
    pub token: Token,
    /// What the client may see.
    pub answer: LoginAnswer,
}

/// The body of a successful login.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// The new session.
    pub session: SessionView,
    /// The member's role.
    pub role: Role,
    /// Send it back as `X-Annal-CSRF` on every state-changing request made
    /// with the session cookie.
    pub csrf_token: String,
    /// Whether the user has a second factor (TOTP or a passkey).
    pub mfa_enrolled: bool,
    /// The organisation requires MFA of this role and the user has none:
    /// until they enroll, the session can do nothing else.
    pub must_enroll_mfa: bool,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// The organisation of this session.
    pub organization_id: Uuid,
    /// Their role there.
    pub role: Role,
    /// Whether they have a second factor (TOTP or a passkey).
    pub mfa_enrolled: bool,
    /// Whether they must enroll before anything else.
    pub must_enroll_mfa: bool,
    /// This session.
    pub session: SessionView,
}

/// People and their sessions.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    sealer: Sealer,
    clock: SharedClock,
    ledger: Ledger,
    limits: SessionLimits,
    limiter: LoginLimiter,
}

fn view(session: &StoredSession, current: Option<Uuid>) -> SessionView {
    SessionView {
        id: session.id,
        user_id: session.user_id,
        organization_id: session.tenant_id.as_uuid(),
        created_at: session.created_at,
        last_seen_at: session.last_seen_at,
        expires_at: session.expires_at,
        authenticated_at: session.authenticated_at,
        mfa: session.mfa,
        current: current == Some(session.id),
    }
}

/// Emails are compared trimmed and lower-cased.
pub fn normalise_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 320
        && email.chars().all(|c| !c.is_control() && !c.is_whitespace())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !valid {
        return Err(ServiceError::Invalid {
            code: "invalid_email",
            message: "an email is local@domain, at most 320 bytes, without spaces".into(),
        });
    }
    Ok(email)
}

/// The access event Annal records: who, about what, how it went.
pub(crate) struct AccessEvent<'a> {
    pub action: &'a str,
    pub actor: Actor,
    pub resource: Resource,
    pub outcome: Outcome,
    pub source_ip: Option<IpAddr>,
    pub metadata: Value,
}

impl AccessEvent<'_> {
    pub(crate) fn payload(self) -> Payload {
        Payload {
            outcome: Some(self.outcome),
            source_ip: self.source_ip.map(|ip| ip.to_string()),
            metadata: Some(self.metadata),
            ..Payload::new(self.actor, self.resource)
        }
    }
}

fn user_actor(user: Uuid) -> Actor {
    Actor {
        id: user.to_string(),
        kind: "user".into(),
        name: None,
        email: None,
    }
}

fn session_resource(id: Uuid) -> Resource {
    Resource {
        kind: "session".into(),
        id: id.to_string(),
    }
}

impl Accounts {
    /// People over `store`; their secrets sealed under `pepper`; their
    /// actions recorded through `ledger`.
    pub fn new(
        store: Store,
        pepper: &Pepper,
        clock: SharedClock,
        ledger: Ledger,
        limits: SessionLimits,
        limiter: LoginLimiter,
    ) -> Accounts {
        Accounts {
            store,
            sealer: Sealer::new(pepper),
            clock,
            ledger,
            limits,
            limiter,
        }
    }

    /// Appends an access event to `tenant`'s log.
    pub(crate) async fn record(
        &self,
        tenant: TenantId,
        event: AccessEvent<'_>,
    ) -> Result<(), ServiceError> {
        let action = event.action.to_owned();
        self.ledger
            .record_system(tenant, Uuid::new_v4(), &action, &event.payload())
            .await?;
        Ok(())
    }

    /// Logs in: password, then TOTP or a recovery code when enrolled.
    pub async fn login(
        &self,
        input: LoginInput,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, ServiceError> {
        let known = self
            .check_password(&input.email, &input.password, input.organization_id, ip)
            .await?;
        let user = &known.user;
        let tenant = known.tenant;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        tx.act_as(user.id).await?;
        let second = self
            .second_factor(
                &tx,
                user,
                input.totp_code.as_deref(),
                input.recovery_code.as_deref(),
            )
            .await?;
        let mfa = match second {
            SecondFactor::NotEnrolled => false,
            SecondFactor::Passed | SecondFactor::RecoveryCode => true,
            SecondFactor::Missing => {
                tx.commit().await?;
                return Err(ServiceError::MfaRequired);
            }
            SecondFactor::Failed => {
                tx.commit().await?;
                drop(conn);
                self.record_failed_login(
                    &known.email,
                    Some(user.id),
                    &known.memberships,
                    Some(tenant.as_uuid()),
                    ip,
                    "second_factor",
                )
                .await;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        let opened = self.open_session(&tx, &known, mfa).await?;
        let codes_left = recovery_codes_left(&tx, user.id, second).await?;
        tx.commit().await?;
        drop(conn);
        let session = opened.stored.id;
        let logged_in = self.record_login(&known, opened, None, ip).await?;
        if let Some(left) = codes_left {
            self.record_recovery_code_used(tenant, user.id, session, ip, "login", left)
                .await?;
        }
        Ok(logged_in)
    }

    /// The first step of every login: the password of the user with
    /// `email`, and the organisation they log in to. Limited per account
    /// and address; an unknown email costs the same Argon2 work as a
    /// wrong password and gets the same answer. Failures are recorded.
    pub(crate) async fn check_password(
        &self,
        email: &str,
        password: &str,
        organization_id: Option<Uuid>,
        ip: Option<IpAddr>,
    ) -> Result<PasswordChecked, ServiceError> {
        let email = normalise_email(email)?;
        self.limiter.check(&email, ip)?;
        let (user, memberships) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.lookup().await?;
            let user = rows::user_by_email(&tx, &email).await?;
            let memberships = match &user {
                Some(user) => rows::memberships_of(&tx, user.id).await?,
                None => Vec::new(),
            };
            tx.commit().await?;
            (user, memberships)
        };
        let password_ok = verify_password(
            user.as_ref().and_then(|u| u.password_hash.as_deref()),
            password,
        );
        let user = match (user, password_ok) {
            (Some(user), true) => user,
            (user, _) => {
                // Unknown email or wrong password: the same answer, after
                // the same Argon2 work. Recorded where it belongs.
                let id = user.map(|u| u.id);
                self.record_failed_login(&email, id, &memberships, organization_id, ip, "password")
                    .await;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        let membership = match organization_id {
            Some(org) => memberships.iter().find(|m| m.tenant_id.as_uuid() == org),
            None if memberships.len() == 1 => memberships.first(),
            None if memberships.is_empty() => None,
            None => {
                return Err(ServiceError::Invalid {
                    code: "organization_required",
                    message: format!(
                        "you belong to several organisations: log in with organization_id, one of {}",
                        memberships
                            .iter()
                            .map(|m| m.tenant_id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        };
        let Some(membership) = membership.cloned() else {
            self.record_failed_login(&email, Some(user.id), &memberships, None, ip, "membership")
                .await;
            return Err(ServiceError::InvalidCredentials);
        };
        let role = Role::parse(&membership.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {:?}", membership.role)))?;
        Ok(PasswordChecked {
            user,
            email,
            memberships,
            tenant: membership.tenant_id,
            role,
        })
    }

    /// Opens a session for a login whose factors all passed, in `tx`
    /// (of the login's organisation, acting as its user).
    pub(crate) async fn open_session(
        &self,
        tx: &TenantTx<'_>,
        known: &PasswordChecked,
        mfa: bool,
    ) -> Result<OpenedSession, ServiceError> {
        let user = &known.user;
        let now = self.clock.now();
        let token = Token::generate();
        let csrf = Token::generate();
        let mfa_enrolled = has_second_factor(tx, user).await?;
        let must_enroll_mfa =
            known.role.mfa_applies() && !mfa_enrolled && rows::mfa_required(tx).await?;
        let session = NewSession {
            id: Uuid::new_v4(),
            user_id: user.id,
            token_hash: &token.hash(),
            csrf_hash: &csrf.hash(),
            at: now,
            expires_at: now + self.limits.lifetime,
            mfa,
        };
        rows::insert_session(tx, &session).await?;
        let stored = rows::session(tx, session.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the new session is not there".into()))?;
        Ok(OpenedSession {
            token,
            csrf,
            stored,
            mfa_enrolled,
            must_enroll_mfa,
        })
    }

    /// Records a login whose session `tx` has committed, and hands it back.
    /// `method` names a second factor other than TOTP (`passkey`).
    pub(crate) async fn record_login(
        &self,
        known: &PasswordChecked,
        opened: OpenedSession,
        method: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, ServiceError> {
        let mut metadata = json!({ "mfa": opened.stored.mfa, "role": known.role.as_str() });
        if let (Some(method), Some(fields)) = (method, metadata.as_object_mut()) {
            fields.insert("method".into(), Value::from(method));
        }
        self.record(
            known.tenant,
            AccessEvent {
                action: "access.login_succeeded",
                actor: user_actor(known.user.id),
                resource: session_resource(opened.stored.id),
                outcome: Outcome::Success,
                source_ip: ip,
                metadata,
            },
        )
        .await?;
        Ok(LoggedIn {
            token: opened.token,
            answer: LoginAnswer {
                session: view(&opened.stored, Some(opened.stored.id)),
                role: known.role,
                csrf_token: opened.csrf.expose().to_owned(),
                mfa_enrolled: opened.mfa_enrolled,
                must_enroll_mfa: opened.must_enroll_mfa,
            },
        })
    }

    /// Records a failed login: in the organisation it was for (or the
    /// user's only one), else in the system log. Never fails the request
    /// further: the answer is already "invalid credentials".
    pub(crate) async fn record_failed_login(
        &self,
        email: &str,
        user: Option<Uuid>,
        memberships: &[rows::StoredMembership],
        organization: Option<Uuid>,
        ip: Option<IpAddr>,
        reason: &str,
    ) {
        let tenant = user
            .and_then(|_| {
                organization
                    .and_then(|org| memberships.iter().find(|m| m.tenant_id.as_uuid() == org))
                    .or(if memberships.len() == 1 {
                        memberships.first()
                    } else {
                        None
                    })
            })
            .map_or(SYSTEM, |m| m.tenant_id);
        let actor = match user {
            Some(user) if tenant != SYSTEM => user_actor(user),
            _ => Actor {
                id: "anonymous".into(),
                kind: "anonymous".into(),
                name: None,
                email: Some(email.to_owned()),
            },
        };
        let event = AccessEvent {
            action: "access.login_failed",
            actor,
            resource: Resource {
                kind: "session".into(),
                id: "-".into(),
            },
            outcome: Outcome::Failure,
            source_ip: ip,
            metadata: json!({ "reason": reason }),
        };
        if let Err(error) = self.record(tenant, event).await {
            tracing::error!(error = %error, "a failed login could not be recorded");
        }
    }

    /// Records that a recovery code stood in for TOTP (which code is never
    /// said), so the owner of the account can tell if it was not them.
    async fn record_recovery_code_used(
        &self,
        tenant: TenantId,
        user: Uuid,
        session: Uuid,
        ip: Option<IpAddr>,
        during: &str,
        codes_left: i64,
    ) -> Result<(), ServiceError> {
        self.record(
            tenant,
            AccessEvent {
                action: "access.recovery_code_used",
                actor: user_actor(user),
                resource: session_resource(session),
                outcome: Outcome::Success,
                source_ip: ip,
                metadata: json!({ "during": during, "codes_left": codes_left }),
            },
        )
        .await
    }

    /// Checks a second factor of `user` (acted as in `tx`).
    pub(crate) async fn second_factor(
        &self,
        tx: &TenantTx<'_>,
        user: &StoredUser,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
    ) -> Result<SecondFactor, ServiceError> {
        let Some(sealed) = &user.totp_secret else {
            // A passkey is proved through its own ceremony
            // (`passkeys::Passkeys::finish_login`), never here.
            return Ok(if rows::has_passkey(tx, user.id).await? {
                SecondFactor::Missing
            } else {
                SecondFactor::NotEnrolled
            });
        };
        if let Some(code) = totp_code {
            let secret = self
                .sealer
                .open(user.id.as_bytes(), sealed)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Ok(match matching_step(&secret, code, self.clock.now())? {
                Some(step) if rows::use_totp_step(tx, user.id, step).await? => SecondFactor::Passed,
                _ => SecondFactor::Failed,
            });
        }
        if let Some(code) = recovery_code {
            let used =
                rows::use_recovery_code(tx, user.id, &recovery_code_hash(code), self.clock.now())
                    .await?;
            return Ok(if used {
                SecondFactor::RecoveryCode
            } else {
                SecondFactor::Failed
            });
        }
        Ok(SecondFactor::Missing)
    }

    /// Authenticates a request by its session cookie. State-changing
    /// requests must also carry the session's anti-CSRF token.
    pub async fn authenticate(
        &self,
        token: &str,
        csrf: Option<&str>,
        state_changing: bool,
    ) -> Result<Principal, ServiceError> {
        let now = self.clock.now();
        let session = {
            let mut conn = self.store.conn().await?;
            let tx = conn.lookup().await?;
            let session = rows::session_by_token(&tx, &token_hash(token)).await?;
            tx.commit().await?;
            session
        };
        let Some(session) = session else {
            return Err(ServiceError::Unauthenticated);
        };
        if session.revoked_at.is_some()
            || now >= session.expires_at
            || now - session.last_seen_at > self.limits.idle
        {
            return Err(ServiceError::Unauthenticated);
        }
        if state_changing {
            let ok = csrf.is_some_and(|csrf| token_matches(csrf, &session.csrf_hash));
            if !ok {
                return Err(ServiceError::CsrfRejected);
            }
        }
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(session.tenant_id).await?;
        tx.act_as(session.user_id).await?;
        let membership = rows::membership(&tx, session.user_id).await?;
        let Some(role) = membership
            .filter(|m| m.status == "active")
            .and_then(|m| Role::parse(&m.role))
        else {
            return Err(ServiceError::Unauthenticated);
        };
        let user = rows::user(&tx, session.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let must_enroll_mfa = role.mfa_applies()
            && !has_second_factor(&tx, &user).await?
            && rows::mfa_required(&tx).await?;
        if now - session.last_seen_at > TOUCH_EVERY {
            rows::touch_session(&tx, session.id, now).await?;
        }
        tx.commit().await?;
        Ok(Principal::person(
            session.tenant_id,
            SessionCaller {
                user_id: session.user_id,
                session_id: session.id,
                role,
                authenticated_at: session.authenticated_at,
                now,
                must_enroll_mfa,
            },
        ))
    }

    /// Who the caller is.
    pub async fn me(&self, who: &Authorized<OwnAccount>) -> Result<Me, ServiceError> {
        let caller = person(who.principal())?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = rows::user(&tx, caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let session = rows::session(&tx, caller.session_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let mfa_enrolled = has_second_factor(&tx, &user).await?;
        tx.commit().await?;
        Ok(Me {
            user_id: user.id,
            email: user.email,
            organization_id: who.tenant().as_uuid(),
            role: caller.role,
            mfa_enrolled,
            must_enroll_mfa: caller.must_enroll_mfa,
            session: view(&session, Some(caller.session_id)),
        })
    }

    /// Ends the caller's session.
    pub async fn logout(&self, who: &Authorized<OwnAccount>) -> Result<(), ServiceError> {
        let caller = person(who.principal())?;
        self.end_session(who.principal(), caller.session_id, "logout")
            .await
    }

    /// The caller's own live sessions in this organisation.
    pub async fn own_sessions(
        &self,
        who: &Authorized<OwnAccount>,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let caller = person(who.principal())?;
        self.list(who.tenant(), Some(caller.user_id), Some(caller.session_id))
            .await
    }

    /// Every live session in the organisation (of one member, or all).
    pub async fn org_sessions(
        &self,
        who: &Authorized<ManageSessions>,
        user: Option<Uuid>,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let current = who.principal().session().map(|s| s.session_id);
        self.list(who.tenant(), user, current).await
    }

    async fn list(
        &self,
        tenant: TenantId,
        user: Option<Uuid>,
        current: Option<Uuid>,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        let sessions = rows::sessions(&tx, user, self.clock.now()).await?;
        tx.commit().await?;
        Ok(sessions.iter().map(|s| view(s, current)).collect())
    }

    /// Ends one of the caller's own sessions.
    pub async fn revoke_own(
        &self,
        who: &Authorized<OwnAccount>,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        let caller = person(who.principal())?;
        let owned = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let found = rows::session(&tx, id).await?;
            tx.commit().await?;
            found.is_some_and(|s| s.user_id == caller.user_id)
        };
        if !owned {
            return Err(ServiceError::NotFound("session"));
        }
        self.end_session(who.principal(), id, "revoked by its user")
            .await
    }

    /// Ends any session of the organisation.
    pub async fn revoke_any(
        &self,
        who: &Authorized<ManageSessions>,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        self.end_session(who.principal(), id, "revoked by an administrator")
            .await
    }

    async fn end_session(
        &self,
        who: &Principal,
        id: Uuid,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let ended = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let ended = rows::revoke_session(&tx, id, reason, self.clock.now()).await?;
            tx.commit().await?;
            ended
        };
        if !ended {
            return Err(ServiceError::NotFound("session"));
        }
        self.record(
            who.tenant(),
            AccessEvent {
                action: "access.session_ended",
                actor: who.actor(),
                resource: session_resource(id),
                outcome: Outcome::Success,
                source_ip: None,
                metadata: json!({ "reason": reason }),
            },
        )
        .await
    }

    /// Proves the password (and TOTP, when enrolled) again: sensitive
    /// operations need this within the last five minutes.
    pub async fn reauthenticate(
        &self,
        who: &Authorized<OwnAccount>,
        input: ReauthInput,
        ip: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        let caller = person(who.principal())?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = rows::user(&tx, caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        self.limiter.check(&user.email, ip)?;
        let password_ok = verify_password(user.password_hash.as_deref(), &input.password);
        let second = if password_ok {
            self.second_factor(
                &tx,
                &user,
                input.totp_code.as_deref(),
                input.recovery_code.as_deref(),
            )
            .await?
        } else {
            SecondFactor::Failed
        };
        let mfa = match second {
            SecondFactor::Passed | SecondFactor::RecoveryCode => true,
            SecondFactor::NotEnrolled => false,
            SecondFactor::Missing => {
                tx.commit().await?;
                return Err(ServiceError::MfaRequired);
            }
            SecondFactor::Failed => {
                tx.commit().await?;
                drop(conn);
                self.record_reauthentication(who, Outcome::Failure, ip, json!({}))
                    .await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        rows::reauthenticate(&tx, caller.session_id, self.clock.now(), mfa).await?;
        let codes_left = recovery_codes_left(&tx, user.id, second).await?;
        tx.commit().await?;
        drop(conn);
        if let Some(left) = codes_left {
            self.record_recovery_code_used(
                who.tenant(),
                user.id,
                caller.session_id,
                ip,
                "reauthentication",
                left,
            )
            .await?;
        }
        self.record_reauthentication(who, Outcome::Success, ip, json!({ "mfa": mfa }))
            .await
    }

    /// The first step of a re-authentication with a passkey: the caller's
    /// password, limited as at login; a wrong one is recorded as a failed
    /// re-authentication.
    pub(crate) async fn check_own_password(
        &self,
        who: &Authorized<OwnAccount>,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<StoredUser, ServiceError> {
        let caller = person(who.principal())?;
        let user = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            tx.act_as(caller.user_id).await?;
            let user = rows::user(&tx, caller.user_id).await?;
            tx.commit().await?;
            user.ok_or(ServiceError::Unauthenticated)?
        };
        self.limiter.check(&user.email, ip)?;
        if !verify_password(user.password_hash.as_deref(), password) {
            self.record_reauthentication(who, Outcome::Failure, ip, json!({}))
                .await?;
            return Err(ServiceError::InvalidCredentials);
        }
        Ok(user)
    }

    /// Records a re-authentication of the caller's session, or its failure.
    pub(crate) async fn record_reauthentication(
        &self,
        who: &Authorized<OwnAccount>,
        outcome: Outcome,
        ip: Option<IpAddr>,
        metadata: Value,
    ) -> Result<(), ServiceError> {
        let caller = person(who.principal())?;
        let action = match outcome {
            Outcome::Success => "access.reauthenticated",
            Outcome::Failure => "access.reauthentication_failed",
        };
        self.record(
            who.tenant(),
            AccessEvent {
                action,
                actor: who.principal().actor(),
                resource: session_resource(caller.session_id),
                outcome,
                source_ip: ip,
                metadata,
            },
        )
        .await
    }

    /// Creates a user with a password as an active member of `tenant` in
    /// `role`: the first owner of an organisation, from the command line.
    /// Recorded in the organisation's log with `operator` as the actor.
    pub async fn create_member(
        &self,
        operator: &str,
        tenant: TenantId,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<Uuid, ServiceError> {
        let email = normalise_email(email)?;
        let hash = hash_password(password).map_err(|e| ServiceError::Invalid {
            code: "invalid_password",
            message: e.to_string(),
        })?;
        if tenant == SYSTEM {
            return Err(ServiceError::NotFound("tenant"));
        }
        let id = Uuid::new_v4();
        let now = self.clock.now();
        {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(tenant).await?;
            if !tenants::exists(&tx).await? {
                return Err(ServiceError::NotFound("tenant"));
            }
            rows::insert_user(&tx, id, &email, Some(&hash), now)
                .await
                .map_err(|e| match e.sqlstate() {
                    Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                        ServiceError::Invalid {
                            code: "email_taken",
                            message: "a user with this email exists already".into(),
                        }
                    }
                    _ => e.into(),
                })?;
            rows::insert_membership(&tx, id, role.as_str(), None, now).await?;
            tx.commit().await?;
        }
        self.record(
            tenant,
            AccessEvent {
                action: "access.member_added",
                actor: Actor {
                    id: operator.to_owned(),
                    kind: "operator".into(),
                    name: None,
                    email: None,
                },
                resource: Resource {
                    kind: "member".into(),
                    id: id.to_string(),
                },
                outcome: Outcome::Success,
                source_ip: None,
                metadata: json!({ "role": role.as_str() }),
            },
        )
        .await?;
        Ok(id)
    }
}

/// The outcome of a second-factor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondFactor {
    /// The user has no TOTP.
    NotEnrolled,
    /// A valid, unused TOTP code was given.
    Passed,
    /// A valid, unused recovery code was given (and is used up now).
    RecoveryCode,
    /// The user has TOTP but no code was given.
    Missing,
    /// A wrong, reused or expired code.
    Failed,
}

/// Whether `user` (acted as in `tx`) has a second factor: TOTP or a
/// passkey. Either satisfies the organisation's MFA requirement.
pub(crate) async fn has_second_factor(
    tx: &TenantTx<'_>,
    user: &StoredUser,
) -> Result<bool, ServiceError> {
    Ok(user.totp_secret.is_some() || rows::has_passkey(tx, user.id).await?)
}

/// A login's first step passed: the user, and the organisation and role
/// they log in to.
pub(crate) struct PasswordChecked {
    /// The user whose password it was.
    pub user: StoredUser,
    /// Their email, normalised.
    pub email: String,
    /// All their memberships (for recording a failure where it belongs).
    pub memberships: Vec<rows::StoredMembership>,
    /// The organisation of the login.
    pub tenant: TenantId,
    /// Their role there.
    pub role: Role,
}

/// A session opened and not yet handed out.
pub(crate) struct OpenedSession {
    token: Token,
    csrf: Token,
    stored: StoredSession,
    mfa_enrolled: bool,
    must_enroll_mfa: bool,
}

/// After a recovery code was used: how many the user has left.
async fn recovery_codes_left(
    tx: &TenantTx<'_>,
    user: Uuid,
    second: SecondFactor,
) -> Result<Option<i64>, ServiceError> {
    if second != SecondFactor::RecoveryCode {
        return Ok(None);
    }
    Ok(Some(rows::recovery_codes_left(tx, user).await?))
}

fn person(who: &Principal) -> Result<&SessionCaller, ServiceError> {
    who.session().ok_or(ServiceError::Forbidden("account"))
}

/// The TOTP generator of a secret.
pub(crate) fn totp(secret: &[u8], account: &str) -> Result<TOTP, ServiceError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP,
        secret.to_vec(),
        Some("Annal".into()),
        account.into(),
    )
    .map_err(|e| ServiceError::Internal(anyhow::anyhow!("TOTP: {e}")))
}

/// The time step whose code `code` is, within one step of `now`, if any.
/// Compared in constant time.
pub(crate) fn matching_step(
    secret: &[u8],
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, ServiceError> {
    let generator = totp(secret, "-")?;
    let code = code.trim();
    let now = u64::try_from(now.timestamp()).unwrap_or(0);
    let mut found = None;
    for offset in [-1i64, 0, 1] {
        let Some(time) = now.checked_add_signed(offset * TOTP_STEP as i64) else {
            continue;
        };
        let expected = generator.generate(time);
        if expected.as_bytes().ct_eq(code.as_bytes()).into() {
            found = i64::try_from(time / TOTP_STEP).ok();
        }
    }
    Ok(found)
}
