//! An organisation administered by its owners and admins: its members
//! (invitations, roles, removal, Last-Owner protection) and its API keys
//! (creation, rotation, revocation). Every change is recorded in the
//! organisation's own log as an `access.*` event.
//!
//! It must never tell one organisation anything about another: inviting a
//! user of another organisation answers exactly like inviting a new one,
//! and a member or key of another organisation is "not found" like one
//! that does not exist. It never records or logs a token or a password.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use uuid::Uuid;

use super::accounts::{AccessEvent, Accounts, SecondFactor, normalise_email};
use super::auth::{
    Authorized, ManageApiKeys, ManageMembers, Permission, Role, Scope, SessionCaller, ViewMembers,
};
use super::keys::{CreatedKey, Keys};
use super::limits::LoginLimiter;
use super::{ServiceError, SharedClock};
use crate::crypto::ApiKeyId;
use crate::crypto::identity::{
    MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Token, hash_password, token_hash, verify_password,
};
use crate::ledger::{Actor, Outcome, Resource, TenantId};
use crate::store::identity::{self as rows, Member};
use crate::store::{Store, StoreError};

/// How long an invitation can be accepted.
pub const INVITATION_LIFETIME: TimeDelta = TimeDelta::days(7);

fn last_owner() -> ServiceError {
    ServiceError::Conflict {
        code: "last_owner",
        message: "this is the organisation's last active owner: make another member owner first"
            .into(),
    }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("member")
}

/// Whether a member has accepted their invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Invited; cannot log in to this organisation yet.
    Invited,
    /// Accepted; logs in.
    Active,
}

/// A member as the organisation's admins see them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their role here.
    pub role: Role,
    /// Invited or active.
    pub status: MemberStatus,
    /// Whether they have TOTP. Always false while invited: whether an
    /// invited user already had an account elsewhere is not this
    /// organisation's to know.
    pub mfa_enrolled: bool,
    /// Until when the invitation can be accepted, while invited.
    pub invitation_expires_at: Option<DateTime<Utc>>,
    /// When they were invited or added.
    pub created_at: DateTime<Utc>,
    /// When their membership last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<Member> for MemberView {
    type Error = StoreError;

    fn try_from(member: Member) -> Result<MemberView, StoreError> {
        let m = member.membership;
        let role = parse_role(&m.role)?;
        let status = match m.status.as_str() {
            "active" => MemberStatus::Active,
            "invited" => MemberStatus::Invited,
            other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
        };
        Ok(MemberView {
            user_id: m.user_id,
            email: member.email,
            role,
            status,
            mfa_enrolled: member.mfa && status == MemberStatus::Active,
            invitation_expires_at: m.invite_expires_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

fn parse_role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("unknown role {name:?}")))
}

/// `POST /v1/members`: whom to invite, in which role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteInput {
    /// Their email.
    pub email: String,
    /// Their role once they accept.
    pub role: Role,
}

/// An invitation, with its token: the only copy.
#[derive(Serialize, ToSchema)]
pub struct Invitation {
    /// The invited user.
    pub user_id: Uuid,
    /// Their email (trimmed, lower-cased).
    pub email: String,
    /// Their role once they accept.
    pub role: Role,
    /// Always `invited`.
    pub status: MemberStatus,
    /// Hand it to the invitee: `POST /v1/auth/invitations/accept`. Not
    /// retrievable later.
    pub invitation_token: String,
    /// Until when it can be accepted.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/invitations/accept`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInput {
    /// The invitation token.
    pub token: String,
    /// A new password (12 to 1024 bytes) for a new account; for an
    /// existing account, its password.
    pub password: String,
    /// An existing account with TOTP: a current code.
    pub totp_code: Option<String>,
    /// Or one of its recovery codes.
    pub recovery_code: Option<String>,
}

impl std::fmt::Debug for AcceptInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptInput(..)")
    }
}

/// An accepted invitation: the membership is active; log in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The user.
    pub user_id: Uuid,
    /// The organisation joined (send it as `organization_id` at login when
    /// you belong to several).
    pub organization_id: Uuid,
    /// Your role there.
    pub role: Role,
    /// Always `active`.
    pub status: MemberStatus,
}

/// `PATCH /v1/members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// The new role.
    pub role: Role,
}

/// `POST /v1/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// At least one of `events:write`, `events:read`, `export`.
    pub scopes: Vec<String>,
}

/// A new API key, with its token: the only copy.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    /// Key id.
    pub id: Uuid,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The bearer token; not retrievable later.
    pub api_key: String,
    /// The key it replaces (now revoked), for a rotation.
    pub replaces: Option<Uuid>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    fn from_created(created: CreatedKey, replaces: Option<ApiKeyId>) -> NewKey {
        NewKey {
            id: created.id.as_uuid(),
            scopes: created.scopes.iter().map(|s| (*s).to_owned()).collect(),
            api_key: created.api_key,
            replaces: replaces.map(|id| id.as_uuid()),
        }
    }
}

/// The administration of organisations by their owners and admins.
#[derive(Clone)]
pub struct Members {
    store: Store,
    clock: SharedClock,
    keys: Keys,
    accounts: Accounts,
    limiter: LoginLimiter,
}

/// The person behind a permission only people hold.
fn person<P: Permission>(who: &Authorized<P>) -> Result<&SessionCaller, ServiceError> {
    who.principal()
        .session()
        .ok_or(ServiceError::Forbidden(P::NAME))
}

fn member_resource(user: Uuid) -> Resource {
    Resource {
        kind: "member".into(),
        id: user.to_string(),
    }
}

fn key_resource(id: Uuid) -> Resource {
    Resource {
        kind: "api_key".into(),
        id: id.to_string(),
    }
}

/// Only owners make, change or remove owners.
fn owners_only(caller: &SessionCaller) -> Result<(), ServiceError> {
    if caller.role == Role::Owner {
        Ok(())
    } else {
        Err(ServiceError::Forbidden("members:owners"))
    }
}

impl Members {
    /// Administration over `store`; keys made by `keys`; changes recorded
    /// through `accounts`; invitation acceptances limited by `limiter`.
    pub fn new(
        store: Store,
        clock: SharedClock,
        keys: Keys,
        accounts: Accounts,
        limiter: LoginLimiter,
    ) -> Members {
        Members {
            store,
            clock,
            keys,
            accounts,
            limiter,
        }
    }

    /// Every member of the caller's organisation, invited or active.
    pub async fn list(
        &self,
        who: &Authorized<ViewMembers>,
    ) -> Result<Vec<MemberView>, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let members = rows::members(&tx).await?;
        tx.commit().await?;
        Ok(members
            .into_iter()
            .map(MemberView::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Invites `input.email` in `input.role`: a new user without a
    /// password, or the existing user of that email, with nothing in the
    /// answer to tell which. Only owners invite owners.
    pub async fn invite(
        &self,
        who: &Authorized<ManageMembers>,
        input: InviteInput,
    ) -> Result<Invitation, ServiceError> {
        let caller = person(who)?;
        if input.role == Role::Owner {
            owners_only(caller)?;
        }
        let email = normalise_email(&input.email)?;
        let token = Token::generate();
        let now = self.clock.now();
        let expires_at = now + INVITATION_LIFETIME;
        let user_id = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let user_id = rows::invitee(&tx, Uuid::new_v4(), &email, now).await?;
            let hash = token.hash();
            let invite = Some((hash.as_slice(), expires_at));
            match rows::insert_membership(&tx, user_id, input.role.as_str(), invite, now).await {
                Err(e) if e.sqlstate() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(ServiceError::Conflict {
                        code: "already_a_member",
                        message: "this email is already a member (or invited): remove the \
                                  membership first to invite it again"
                            .into(),
                    });
                }
                other => other?,
            }
            tx.commit().await?;
            user_id
        };
        self.accounts
            .record(
                who.tenant(),
                AccessEvent {
                    action: "access.member_invited",
                    actor: who.principal().actor(),
                    resource: member_resource(user_id),
                    outcome: Outcome::Success,
                    source_ip: None,
                    metadata: json!({
                        "email": email,
                        "role": input.role.as_str(),
                        "expires_at": expires_at.to_rfc3339(),
                    }),
                },
            )
            .await?;
        Ok(Invitation {
            user_id,
            email,
            role: input.role,
            status: MemberStatus::Invited,
            invitation_token: token.expose().to_owned(),
            expires_at,
        })
    }

    /// Accepts an invitation: a user without a password sets one; a user
    /// with one proves it (and their TOTP, when enrolled), so an invitation
    /// never takes over an existing account. An unknown, used or expired
    /// token is "not found", all alike.
    pub async fn accept(
        &self,
        input: AcceptInput,
        ip: Option<IpAddr>,
    ) -> Result<Accepted, ServiceError> {
        // Checked first, whatever the account: the answer must not depend
        // on whether it has a password already.
        if input.password.len() < MIN_PASSWORD_LEN || input.password.len() > MAX_PASSWORD_LEN {
            return Err(ServiceError::Invalid {
                code: "invalid_password",
                message: format!("a password is {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes"),
            });
        }
        let hash = token_hash(input.token.trim());
        // Per token and per address, like logins: a stolen token gives a
        // guesser no more tries at an existing account's password.
        self.limiter
            .check(&format!("invitation:{}", hex::encode(hash)), ip)?;
        let now = self.clock.now();
        let invitation = {
            let mut conn = self.store.conn().await?;
            let tx = conn.lookup().await?;
            let found = rows::invitation(&tx, &hash).await?;
            tx.commit().await?;
            found
        };
        let Some(invitation) =
            invitation.filter(|m| m.invite_expires_at.is_some_and(|expiry| now < expiry))
        else {
            return Err(ServiceError::NotFound("invitation"));
        };
        let (tenant, user_id) = (invitation.tenant_id, invitation.user_id);
        let role = parse_role(&invitation.role)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        tx.act_as(user_id).await?;
        let mut user = rows::user(&tx, user_id)
            .await?
            .ok_or(ServiceError::NotFound("invitation"))?;
        let mut new_password = false;
        let mut recovery_code = false;
        if user.password_hash.is_none() {
            let hashed = hash_password(&input.password).map_err(|e| ServiceError::Invalid {
                code: "invalid_password",
                message: e.to_string(),
            })?;
            new_password = rows::set_first_password(&tx, user_id, &hashed).await?;
            if !new_password {
                // Set meanwhile by another acceptance: prove it like any
                // existing password.
                user = rows::user(&tx, user_id)
                    .await?
                    .ok_or(ServiceError::NotFound("invitation"))?;
            }
        }
        if !new_password {
            let second = if verify_password(user.password_hash.as_deref(), &input.password) {
                self.accounts
                    .second_factor(
                        &tx,
                        &user,
                        input.totp_code.as_deref(),
                        input.recovery_code.as_deref(),
                    )
                    .await?
            } else {
                SecondFactor::Failed
            };
            match second {
                SecondFactor::NotEnrolled | SecondFactor::Passed => {}
                SecondFactor::RecoveryCode => recovery_code = true,
                SecondFactor::Missing => return Err(ServiceError::MfaRequired),
                SecondFactor::Failed => {
                    drop(tx);
                    drop(conn);
                    self.record_acceptance(tenant, user_id, role, ip, None)
                        .await?;
                    return Err(ServiceError::InvalidCredentials);
                }
            }
        }
        if !rows::activate(&tx, user_id, now).await? {
            // Accepted meanwhile by a concurrent request.
            return Err(ServiceError::NotFound("invitation"));
        }
        tx.commit().await?;
        drop(conn);
        self.record_acceptance(tenant, user_id, role, ip, Some(recovery_code))
            .await?;
        Ok(Accepted {
            user_id,
            organization_id: tenant.as_uuid(),
            role,
            status: MemberStatus::Active,
        })
    }

    /// Records an acceptance (`Some`: whether a recovery code stood in for
    /// TOTP) or a refused one (`None`: wrong password or code).
    async fn record_acceptance(
        &self,
        tenant: TenantId,
        user: Uuid,
        role: Role,
        ip: Option<IpAddr>,
        accepted: Option<bool>,
    ) -> Result<(), ServiceError> {
        let (action, outcome, metadata) = match accepted {
            Some(recovery_code) => (
                "access.invitation_accepted",
                Outcome::Success,
                json!({ "role": role.as_str(), "recovery_code_used": recovery_code }),
            ),
            None => (
                "access.invitation_refused",
                Outcome::Failure,
                json!({ "role": role.as_str(), "reason": "credentials" }),
            ),
        };
        self.accounts
            .record(
                tenant,
                AccessEvent {
                    action,
                    actor: Actor {
                        id: user.to_string(),
                        kind: "user".into(),
                        name: None,
                        email: None,
                    },
                    resource: member_resource(user),
                    outcome,
                    source_ip: ip,
                    metadata,
                },
            )
            .await
    }

    /// Changes a member's role and ends their sessions here (the same role
    /// again changes nothing). Only owners make or change owners; the last
    /// active owner stays one.
    pub async fn change_role(
        &self,
        who: &Authorized<ManageMembers>,
        user: Uuid,
        role: Role,
    ) -> Result<MemberView, ServiceError> {
        let caller = person(who)?;
        if role == Role::Owner {
            owners_only(caller)?;
        }
        let now = self.clock.now();
        let (before, after, sessions_ended) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            // Locked before anything is read: of two concurrent demotions
            // of the last two owners, the second sees the first's result.
            let owners = rows::lock_owners(&tx).await?;
            let member = rows::member(&tx, user).await?.ok_or_else(not_found)?;
            let before = MemberView::try_from(member)?;
            if before.role == Role::Owner {
                owners_only(caller)?;
            }
            if before.role == role {
                tx.commit().await?;
                return Ok(before);
            }
            if owners == [user] {
                return Err(last_owner());
            }
            if !rows::set_role(&tx, user, role.as_str(), now).await? {
                return Err(not_found());
            }
            let ended = rows::revoke_user_sessions(&tx, user, "role changed", now).await?;
            let after = rows::member(&tx, user).await?.ok_or_else(not_found)?;
            tx.commit().await?;
            (before, MemberView::try_from(after)?, ended)
        };
        self.accounts
            .record(
                who.tenant(),
                AccessEvent {
                    action: "access.member_role_changed",
                    actor: who.principal().actor(),
                    resource: member_resource(user),
                    outcome: Outcome::Success,
                    source_ip: None,
                    metadata: json!({
                        "before": { "role": before.role.as_str() },
                        "after": { "role": after.role.as_str() },
                        "sessions_ended": sessions_ended,
                    }),
                },
            )
            .await?;
        Ok(after)
    }

    /// Removes a member (or an invitation) and ends their sessions here.
    /// Only owners remove owners; the last active owner stays.
    pub async fn remove(
        &self,
        who: &Authorized<ManageMembers>,
        user: Uuid,
    ) -> Result<(), ServiceError> {
        let caller = person(who)?;
        let now = self.clock.now();
        let (before, sessions_ended) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let owners = rows::lock_owners(&tx).await?;
            let member = rows::member(&tx, user).await?.ok_or_else(not_found)?;
            let before = MemberView::try_from(member)?;
            if before.role == Role::Owner {
                owners_only(caller)?;
            }
            if owners == [user] {
                return Err(last_owner());
            }
            let ended = rows::revoke_user_sessions(&tx, user, "membership ended", now).await?;
            if !rows::delete_membership(&tx, user).await? {
                return Err(not_found());
            }
            tx.commit().await?;
            (before, ended)
        };
        self.accounts
            .record(
                who.tenant(),
                AccessEvent {
                    action: "access.member_removed",
                    actor: who.principal().actor(),
                    resource: member_resource(user),
                    outcome: Outcome::Success,
                    source_ip: None,
                    metadata: json!({
                        "before": {
                            "role": before.role.as_str(),
                            "status": match before.status {
                                MemberStatus::Active => "active",
                                MemberStatus::Invited => "invited",
                            },
                        },
                        "sessions_ended": sessions_ended,
                    }),
                },
            )
            .await?;
        Ok(())
    }

    /// Creates an API key of the caller's organisation.
    pub async fn create_key(
        &self,
        who: &Authorized<ManageApiKeys>,
        input: KeyInput,
    ) -> Result<NewKey, ServiceError> {
        let scopes = input
            .scopes
            .iter()
            .map(|name| {
                Scope::parse(name).ok_or_else(|| ServiceError::Invalid {
                    code: "invalid_scope",
                    message: format!(
                        "unknown scope {name:?}: one of events:write, events:read, export"
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut unique = Vec::new();
        for scope in scopes {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        let created = self.keys.issue(who, &unique).await?;
        let key = NewKey::from_created(created, None);
        self.record_key(
            who,
            "access.api_key_created",
            key.id,
            json!({ "scopes": key.scopes }),
        )
        .await?;
        Ok(key)
    }

    /// Replaces a live key by a new one with the same scopes; the old one
    /// stops working at once.
    pub async fn rotate_key(
        &self,
        who: &Authorized<ManageApiKeys>,
        id: ApiKeyId,
    ) -> Result<NewKey, ServiceError> {
        let created = self.keys.rotate(who, id).await?;
        let key = NewKey::from_created(created, Some(id));
        self.record_key(
            who,
            "access.api_key_rotated",
            id.as_uuid(),
            json!({ "replaced_by": key.id.to_string(), "scopes": key.scopes }),
        )
        .await?;
        Ok(key)
    }

    /// Revokes a key; its next request is refused. Revoking twice is not
    /// an error (and is recorded once).
    pub async fn revoke_key(
        &self,
        who: &Authorized<ManageApiKeys>,
        id: ApiKeyId,
    ) -> Result<(), ServiceError> {
        let revoked = self.keys.revoke_in(who, id).await?;
        if revoked.newly_revoked {
            self.record_key(who, "access.api_key_revoked", id.as_uuid(), json!({}))
                .await?;
        }
        Ok(())
    }

    async fn record_key(
        &self,
        who: &Authorized<ManageApiKeys>,
        action: &str,
        key: Uuid,
        metadata: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.accounts
            .record(
                who.tenant(),
                AccessEvent {
                    action,
                    actor: who.principal().actor(),
                    resource: key_resource(key),
                    outcome: Outcome::Success,
                    source_ip: None,
                    metadata,
                },
            )
            .await
    }
}
