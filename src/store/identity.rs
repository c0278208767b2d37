//! Identity (schema V4): users, their memberships of organisations
//! (tenants), sessions, recovery codes and each organisation's settings.
//!
//! Lookups that run before a tenant is known take a [`LookupTx`] and set
//! the one transaction-local key that shows their row (`annal.login_email`,
//! `annal.session_hash`, `annal.invite_hash`, `annal.user_id`); everything
//! else runs in the organisation's [`TenantTx`].

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{LookupTx, StoreError, TenantTx};
use crate::ledger::TenantId;

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// Id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// Argon2id PHC string; `None` until set.
    pub password_hash: Option<String>,
    /// Sealed TOTP secret, when enrolled.
    pub totp_secret: Option<Vec<u8>>,
    /// Sealed TOTP secret offered during enrollment.
    pub totp_pending: Option<Vec<u8>>,
    /// Time step of the last accepted code.
    pub totp_last_step: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredUser {
    // Neither the hash nor the sealed secret belongs in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id)
            .field("totp", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

const USER_COLUMNS: &str =
    "id, email, password_hash, totp_secret, totp_pending, totp_last_step, created_at";

impl TryFrom<&Row> for StoredUser {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(StoredUser {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            totp_secret: row.try_get("totp_secret")?,
            totp_pending: row.try_get("totp_pending")?,
            totp_last_step: row.try_get("totp_last_step")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The user with this (lower-cased) email, before any tenant is known.
pub async fn user_by_email(
    tx: &LookupTx<'_>,
    email: &str,
) -> Result<Option<StoredUser>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.login_email', $1, true)",
            &[&email],
        )
        .await?;
    let row = tx
        .inner()
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM annal.users WHERE email = $1"),
            &[&email],
        )
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.login_email', '', true)", &[])
        .await?;
    row.as_ref().map(StoredUser::try_from).transpose()
}

/// A user visible in `tx`: a member of its tenant, or the user it acts as.
pub async fn user(tx: &TenantTx<'_>, id: Uuid) -> Result<Option<StoredUser>, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM annal.users WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(StoredUser::try_from).transpose()
}

/// Creates a user. Fails with a unique violation when the email is taken.
pub async fn insert_user(
    tx: &TenantTx<'_>,
    id: Uuid,
    email: &str,
    password_hash: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "INSERT INTO annal.users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            &[&id, &email, &password_hash, &at],
        )
        .await?;
    Ok(())
}

/// The id of the user with this email, if any, without showing the row:
/// for adding a member by email (the answer is never shown to the caller).
pub async fn user_id_by_email(tx: &TenantTx<'_>, email: &str) -> Result<Option<Uuid>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.login_email', $1, true)",
            &[&email],
        )
        .await?;
    let row = tx
        .inner()
        .query_opt("SELECT id FROM annal.users WHERE email = $1", &[&email])
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.login_email', '', true)", &[])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// The id of the user with this (lower-cased) email, created without a
/// password if there is none: whom an invitation is for. Both cases take
/// the same path and say nothing about which it was. A concurrent creation
/// of the same email is waited for and its user returned.
pub async fn invitee(
    tx: &TenantTx<'_>,
    new_id: Uuid,
    email: &str,
    at: DateTime<Utc>,
) -> Result<Uuid, StoreError> {
    const SHOW: &str = "SELECT set_config('annal.login_email', $1, true)";
    const INSERT: &str = "INSERT INTO annal.users (id, email, password_hash, created_at) \
                          VALUES ($1, $2, NULL, $3) ON CONFLICT (email) DO NOTHING";
    const FIND: &str = "SELECT id FROM annal.users WHERE email = $1";
    const HIDE: &str = "SELECT set_config('annal.login_email', '', true)";
    tx.inner().execute(SHOW, &[&email]).await?;
    tx.inner().execute(INSERT, &[&new_id, &email, &at]).await?;
    let id = tx.inner().query_one(FIND, &[&email]).await?.try_get(0)?;
    tx.inner().execute(HIDE, &[]).await?;
    Ok(id)
}

/// Sets the password of a user who has none; false when they have one
/// (set meanwhile by a concurrent acceptance, which this waits for).
pub async fn set_first_password(
    tx: &TenantTx<'_>,
    user: Uuid,
    hash: &str,
) -> Result<bool, StoreError> {
    const SET: &str =
        "UPDATE annal.users SET password_hash = $2 WHERE id = $1 AND password_hash IS NULL";
    Ok(tx.inner().execute(SET, &[&user, &hash]).await? == 1)
}

/// Sets a user's password hash (the transaction acts as the user or shows
/// them through an invitation).
pub async fn set_password(tx: &TenantTx<'_>, user: Uuid, hash: &str) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.users SET password_hash = $2 WHERE id = $1",
            &[&user, &hash],
        )
        .await?;
    Ok(())
}

/// Stores the sealed secret offered during TOTP enrollment.
pub async fn set_totp_pending(
    tx: &TenantTx<'_>,
    user: Uuid,
    sealed: Option<&[u8]>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.users SET totp_pending = $2 WHERE id = $1",
            &[&user, &sealed],
        )
        .await?;
    Ok(())
}

/// Makes the pending secret the enrolled one (or, with `None`, removes
/// TOTP), accepting codes from after `step` only.
pub async fn set_totp(
    tx: &TenantTx<'_>,
    user: Uuid,
    sealed: Option<&[u8]>,
    step: Option<i64>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.users SET totp_secret = $2, totp_pending = NULL, totp_last_step = $3 \
             WHERE id = $1",
            &[&user, &sealed, &step],
        )
        .await?;
    Ok(())
}

/// Records `step` as used if it is newer than the last used one; false
/// when it is not (a replayed or older code). Atomic: of two concurrent
/// logins with one code, one wins.
pub async fn use_totp_step(tx: &TenantTx<'_>, user: Uuid, step: i64) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "UPDATE annal.users SET totp_last_step = $2 WHERE id = $1 \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
            &[&user, &step],
        )
        .await?;
    Ok(n == 1)
}

/// A user's roles: what an organisation member may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMembership {
    /// The organisation.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: Uuid,
    /// `owner`, `admin`, `hr_lead`, `analyst`, `viewer` or `auditor`.
    pub role: String,
    /// `invited` or `active`.
    pub status: String,
    /// Until when an invitation can be accepted.
    pub invite_expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const MEMBERSHIP_COLUMNS: &str =
    "tenant_id, user_id, role, status, invite_expires_at, created_at, updated_at";

impl TryFrom<&Row> for StoredMembership {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(StoredMembership {
            tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
            user_id: row.try_get("user_id")?,
            role: row.try_get("role")?,
            status: row.try_get("status")?,
            invite_expires_at: row.try_get("invite_expires_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// A user's active memberships, before a tenant is known (at login).
pub async fn memberships_of(
    tx: &LookupTx<'_>,
    user: Uuid,
) -> Result<Vec<StoredMembership>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.user_id', $1, true)",
            &[&user.to_string()],
        )
        .await?;
    let rows = tx
        .inner()
        .query(
            &format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM annal.memberships \
                 WHERE user_id = $1 AND status = 'active' ORDER BY created_at, tenant_id"
            ),
            &[&user],
        )
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.user_id', '', true)", &[])
        .await?;
    rows.iter().map(StoredMembership::try_from).collect()
}

/// The membership of `user` in the tenant of `tx`.
pub async fn membership(
    tx: &TenantTx<'_>,
    user: Uuid,
) -> Result<Option<StoredMembership>, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            &format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM annal.memberships \
                 WHERE tenant_id = $1 AND user_id = $2"
            ),
            &[&tx.tenant().as_uuid(), &user],
        )
        .await?;
    row.as_ref().map(StoredMembership::try_from).transpose()
}

/// A member with their email, for listing.
#[derive(Debug, Clone)]
pub struct Member {
    /// The membership.
    pub membership: StoredMembership,
    /// The user's email.
    pub email: String,
    /// Whether they have TOTP.
    pub mfa: bool,
}

/// Every member of the tenant of `tx`.
pub async fn members(tx: &TenantTx<'_>) -> Result<Vec<Member>, StoreError> {
    let rows = tx
        .inner()
        .query(
            "SELECT m.tenant_id, m.user_id, m.role, m.status, m.invite_expires_at, m.created_at, \
             m.updated_at, u.email, u.totp_secret IS NOT NULL AS mfa \
             FROM annal.memberships m JOIN annal.users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 ORDER BY m.created_at, m.user_id",
            &[&tx.tenant().as_uuid()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Member {
                membership: StoredMembership::try_from(row)?,
                email: row.try_get("email")?,
                mfa: row.try_get("mfa")?,
            })
        })
        .collect()
}

/// One member of the tenant of `tx`, with their email.
pub async fn member(tx: &TenantTx<'_>, user: Uuid) -> Result<Option<Member>, StoreError> {
    const MEMBER: &str = "SELECT m.tenant_id, m.user_id, m.role, m.status, m.invite_expires_at, \
         m.created_at, m.updated_at, u.email, u.totp_secret IS NOT NULL AS mfa \
         FROM annal.memberships m JOIN annal.users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2";
    let row = tx
        .inner()
        .query_opt(MEMBER, &[&tx.tenant().as_uuid(), &user])
        .await?;
    row.map(|row| {
        Ok(Member {
            membership: StoredMembership::try_from(&row)?,
            email: row.try_get("email")?,
            mfa: row.try_get("mfa")?,
        })
    })
    .transpose()
}

/// Adds a membership (active, or invited with the hash of its token).
pub async fn insert_membership(
    tx: &TenantTx<'_>,
    user: Uuid,
    role: &str,
    invite: Option<(&[u8], DateTime<Utc>)>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let status = if invite.is_some() {
        "invited"
    } else {
        "active"
    };
    let (hash, expires) = invite.map_or((None, None), |(h, e)| (Some(h), Some(e)));
    tx.inner()
        .execute(
            "INSERT INTO annal.memberships (tenant_id, user_id, role, status, invite_hash, \
             invite_expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            &[
                &tx.tenant().as_uuid(),
                &user,
                &role,
                &status,
                &hash,
                &expires,
                &at,
            ],
        )
        .await?;
    Ok(())
}

/// The active owners of the tenant of `tx`, locked until the transaction
/// ends: a demotion or removal checks, under this lock, that another owner
/// remains, so two concurrent ones cannot both pass.
pub async fn lock_owners(tx: &TenantTx<'_>) -> Result<Vec<Uuid>, StoreError> {
    let rows = tx
        .inner()
        .query(
            "SELECT user_id FROM annal.memberships WHERE tenant_id = $1 AND role = 'owner' \
             AND status = 'active' ORDER BY user_id FOR UPDATE",
            &[&tx.tenant().as_uuid()],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Changes a member's role; false when there is no such member.
pub async fn set_role(
    tx: &TenantTx<'_>,
    user: Uuid,
    role: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "UPDATE annal.memberships SET role = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2",
            &[&tx.tenant().as_uuid(), &user, &role, &at],
        )
        .await?;
    Ok(n == 1)
}

/// Removes a membership; false when there is none.
pub async fn delete_membership(tx: &TenantTx<'_>, user: Uuid) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "DELETE FROM annal.memberships WHERE tenant_id = $1 AND user_id = $2",
            &[&tx.tenant().as_uuid(), &user],
        )
        .await?;
    Ok(n == 1)
}

/// The invited membership whose token hashes to `hash`, with its user's
/// row, before a tenant is known.
pub async fn invitation(
    tx: &LookupTx<'_>,
    hash: &[u8],
) -> Result<Option<StoredMembership>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.invite_hash', $1, true)",
            &[&hex::encode(hash)],
        )
        .await?;
    let row = tx
        .inner()
        .query_opt(
            &format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM annal.memberships \
                 WHERE invite_hash = $1 AND status = 'invited'"
            ),
            &[&hash],
        )
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.invite_hash', '', true)", &[])
        .await?;
    row.as_ref().map(StoredMembership::try_from).transpose()
}

/// Turns the tenant's invited membership of `user` active.
pub async fn activate(
    tx: &TenantTx<'_>,
    user: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "UPDATE annal.memberships SET status = 'active', invite_hash = NULL, \
             invite_expires_at = NULL, updated_at = $3 \
             WHERE tenant_id = $1 AND user_id = $2 AND status = 'invited'",
            &[&tx.tenant().as_uuid(), &user, &at],
        )
        .await?;
    Ok(n == 1)
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Id (shown to the user; not a credential).
    pub id: Uuid,
    /// Organisation.
    pub tenant_id: TenantId,
    /// User.
    pub user_id: Uuid,
    /// SHA-256 of the anti-CSRF token.
    pub csrf_hash: Vec<u8>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last request.
    pub last_seen_at: DateTime<Utc>,
    /// Absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Last password (and TOTP) check.
    pub authenticated_at: DateTime<Utc>,
    /// Whether TOTP was verified then.
    pub mfa: bool,
    /// When it was ended.
    pub revoked_at: Option<DateTime<Utc>>,
}

const SESSION_COLUMNS: &str = "id, tenant_id, user_id, csrf_hash, created_at, last_seen_at, \
    expires_at, authenticated_at, mfa, revoked_at";

impl TryFrom<&Row> for StoredSession {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(StoredSession {
            id: row.try_get("id")?,
            tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
            user_id: row.try_get("user_id")?,
            csrf_hash: row.try_get("csrf_hash")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            expires_at: row.try_get("expires_at")?,
            authenticated_at: row.try_get("authenticated_at")?,
            mfa: row.try_get("mfa")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// Id.
    pub id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// SHA-256 of the anti-CSRF token.
    pub csrf_hash: &'a [u8],
    /// Now.
    pub at: DateTime<Utc>,
    /// Absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Whether TOTP was verified.
    pub mfa: bool,
}

/// Stores a session of the tenant of `tx`.
pub async fn insert_session(tx: &TenantTx<'_>, new: &NewSession<'_>) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "INSERT INTO annal.sessions (id, tenant_id, user_id, token_hash, csrf_hash, created_at, \
             last_seen_at, expires_at, authenticated_at, mfa) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $6, $8)",
            &[
                &new.id,
                &tx.tenant().as_uuid(),
                &new.user_id,
                &new.token_hash,
                &new.csrf_hash,
                &new.at,
                &new.expires_at,
                &new.mfa,
            ],
        )
        .await?;
    Ok(())
}

/// The session whose token hashes to `hash`, before a tenant is known.
pub async fn session_by_token(
    tx: &LookupTx<'_>,
    hash: &[u8],
) -> Result<Option<StoredSession>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.session_hash', $1, true)",
            &[&hex::encode(hash)],
        )
        .await?;
    let row = tx
        .inner()
        .query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM annal.sessions WHERE token_hash = $1"),
            &[&hash],
        )
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.session_hash', '', true)", &[])
        .await?;
    row.as_ref().map(StoredSession::try_from).transpose()
}

/// Marks a session used at `at`.
pub async fn touch_session(
    tx: &TenantTx<'_>,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
            &[&id, &at],
        )
        .await?;
    Ok(())
}

/// Records a fresh password (and TOTP) check on a session.
pub async fn reauthenticate(
    tx: &TenantTx<'_>,
    id: Uuid,
    at: DateTime<Utc>,
    mfa: bool,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.sessions SET authenticated_at = $2, last_seen_at = $2, mfa = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &at, &mfa],
        )
        .await?;
    Ok(())
}

/// The live sessions of the tenant of `tx` (of one user, or all).
pub async fn sessions(
    tx: &TenantTx<'_>,
    user: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<StoredSession>, StoreError> {
    let rows = tx
        .inner()
        .query(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM annal.sessions WHERE tenant_id = $1 \
                 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL AND expires_at > $3 \
                 ORDER BY created_at DESC, id"
            ),
            &[&tx.tenant().as_uuid(), &user, &now],
        )
        .await?;
    rows.iter().map(StoredSession::try_from).collect()
}

/// One session of the tenant of `tx`.
pub async fn session(tx: &TenantTx<'_>, id: Uuid) -> Result<Option<StoredSession>, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM annal.sessions WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tx.tenant().as_uuid(), &id],
        )
        .await?;
    row.as_ref().map(StoredSession::try_from).transpose()
}

/// Ends one live session; false when it was not live.
pub async fn revoke_session(
    tx: &TenantTx<'_>,
    id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "UPDATE annal.sessions SET revoked_at = $3, revoked_reason = $4 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
            &[&tx.tenant().as_uuid(), &id, &at, &reason],
        )
        .await?;
    Ok(n == 1)
}

/// Ends every live session of `user` in the tenant of `tx`; returns how many.
pub async fn revoke_user_sessions(
    tx: &TenantTx<'_>,
    user: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(tx
        .inner()
        .execute(
            "UPDATE annal.sessions SET revoked_at = $3, revoked_reason = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&tx.tenant().as_uuid(), &user, &at, &reason],
        )
        .await?)
}

/// Whether the organisation requires MFA of its owners and admins.
pub async fn mfa_required(tx: &TenantTx<'_>) -> Result<bool, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            "SELECT mfa_required FROM annal.org_settings WHERE tenant_id = $1",
            &[&tx.tenant().as_uuid()],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(false))
}

/// Sets the organisation's MFA requirement.
pub async fn set_mfa_required(
    tx: &TenantTx<'_>,
    required: bool,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "INSERT INTO annal.org_settings (tenant_id, mfa_required, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET mfa_required = $2, updated_at = $3",
            &[&tx.tenant().as_uuid(), &required, &at],
        )
        .await?;
    Ok(())
}

/// Replaces the recovery codes of the user `tx` acts as.
pub async fn replace_recovery_codes(
    tx: &TenantTx<'_>,
    user: Uuid,
    hashes: &[[u8; 32]],
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "DELETE FROM annal.recovery_codes WHERE user_id = $1",
            &[&user],
        )
        .await?;
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
    tx.inner()
        .execute(
            "INSERT INTO annal.recovery_codes (user_id, code_hash) SELECT $1, * FROM UNNEST($2::bytea[])",
            &[&user, &hashes],
        )
        .await?;
    Ok(())
}

/// Uses a recovery code of the user `tx` acts as; false when it is not one
/// of theirs or was used already.
pub async fn use_recovery_code(
    tx: &TenantTx<'_>,
    user: Uuid,
    hash: &[u8],
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "UPDATE annal.recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            &[&user, &hash, &at],
        )
        .await?;
    Ok(n == 1)
}

/// How many unused recovery codes the user `tx` acts as has left.
pub async fn recovery_codes_left(tx: &TenantTx<'_>, user: Uuid) -> Result<i64, StoreError> {
    let row = tx
        .inner()
        .query_one(
            "SELECT count(*) FROM annal.recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            &[&user],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// A passkey as stored (schema V5).
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// Id (not the credential id).
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// webauthn-rs's `Passkey` as JSON: public key and signature counter.
    pub passkey: serde_json::Value,
    /// The name its user gave it.
    pub name: String,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last used to log in.
    pub last_used_at: Option<DateTime<Utc>>,
}

const PASSKEY_COLUMNS: &str = "id, user_id, passkey, name, created_at, last_used_at";

impl TryFrom<&Row> for StoredPasskey {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(StoredPasskey {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            passkey: row.try_get("passkey")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }
}

/// The passkeys of the user `tx` acts as, oldest first.
pub async fn passkeys(tx: &TenantTx<'_>, user: Uuid) -> Result<Vec<StoredPasskey>, StoreError> {
    let rows = tx
        .inner()
        .query(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM annal.passkeys WHERE user_id = $1 \
                 ORDER BY created_at, id"
            ),
            &[&user],
        )
        .await?;
    rows.iter().map(StoredPasskey::try_from).collect()
}

/// Whether the user `tx` acts as has a passkey.
pub async fn has_passkey(tx: &TenantTx<'_>, user: Uuid) -> Result<bool, StoreError> {
    let row = tx
        .inner()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM annal.passkeys WHERE user_id = $1)",
            &[&user],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// A passkey to store.
pub struct NewPasskey<'a> {
    /// Id.
    pub id: Uuid,
    /// Its user (the one `tx` acts as).
    pub user_id: Uuid,
    /// The authenticator's credential id.
    pub credential_id: &'a [u8],
    /// webauthn-rs's `Passkey` as JSON.
    pub passkey: &'a serde_json::Value,
    /// Its name.
    pub name: &'a str,
    /// Registered.
    pub at: DateTime<Utc>,
}

/// Stores a passkey; false when its credential is registered already.
pub async fn insert_passkey(tx: &TenantTx<'_>, new: &NewPasskey<'_>) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "INSERT INTO annal.passkeys (id, user_id, credential_id, passkey, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING",
            &[
                &new.id,
                &new.user_id,
                &new.credential_id,
                new.passkey,
                &new.name,
                &new.at,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Rewrites a passkey after a use (its counter and backup state) and marks
/// it used at `at`.
pub async fn use_passkey(
    tx: &TenantTx<'_>,
    id: Uuid,
    passkey: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "UPDATE annal.passkeys SET passkey = $2, last_used_at = $3 WHERE id = $1",
            &[&id, passkey, &at],
        )
        .await?;
    Ok(())
}

/// Deletes one of the passkeys of the user `tx` acts as; false when there
/// is no such passkey of theirs.
pub async fn delete_passkey(tx: &TenantTx<'_>, user: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let n = tx
        .inner()
        .execute(
            "DELETE FROM annal.passkeys WHERE id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?;
    Ok(n == 1)
}

/// A passkey ceremony begun.
#[derive(Debug, Clone)]
pub struct StoredCeremony {
    /// Its user.
    pub user_id: Uuid,
    /// The organisation a login is for.
    pub tenant_id: TenantId,
    /// webauthn-rs's ceremony state as JSON.
    pub state: serde_json::Value,
    /// A registration's passkey name.
    pub name: Option<String>,
    /// It is void from then on.
    pub expires_at: DateTime<Utc>,
}

impl TryFrom<&Row> for StoredCeremony {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(StoredCeremony {
            user_id: row.try_get("user_id")?,
            tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
            state: row.try_get("state")?,
            name: row.try_get("name")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// A passkey ceremony to begin.
pub struct NewCeremony<'a> {
    /// Id: a login's client names it to finish.
    pub id: Uuid,
    /// Its user (the one `tx` acts as).
    pub user_id: Uuid,
    /// `register`, `login` or `reauth`.
    pub kind: &'a str,
    /// webauthn-rs's ceremony state as JSON.
    pub state: &'a serde_json::Value,
    /// A registration's passkey name.
    pub name: Option<&'a str>,
    /// It is void from then on.
    pub expires_at: DateTime<Utc>,
}

/// Begins a ceremony in `tx`'s organisation. The user's expired ceremonies
/// are dropped first, and so is a registration in progress when this is
/// one: one registration at a time.
pub async fn insert_ceremony(
    tx: &TenantTx<'_>,
    new: &NewCeremony<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.inner()
        .execute(
            "DELETE FROM annal.passkey_ceremonies WHERE user_id = $1 \
             AND (expires_at <= $3 OR (kind = 'register' AND $2 = 'register'))",
            &[&new.user_id, &new.kind, &now],
        )
        .await?;
    tx.inner()
        .execute(
            "INSERT INTO annal.passkey_ceremonies (id, user_id, tenant_id, kind, state, name, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &new.id,
                &new.user_id,
                &tx.tenant().as_uuid(),
                &new.kind,
                new.state,
                &new.name,
                &new.expires_at,
            ],
        )
        .await?;
    Ok(())
}

/// Takes (deletes and returns) the registration in progress of the user
/// `tx` acts as, in `tx`'s organisation: the latest, should two starts
/// have raced (both are taken).
pub async fn take_registration(
    tx: &TenantTx<'_>,
    user: Uuid,
) -> Result<Option<StoredCeremony>, StoreError> {
    let rows = tx
        .inner()
        .query(
            "DELETE FROM annal.passkey_ceremonies \
             WHERE user_id = $1 AND tenant_id = $2 AND kind = 'register' \
             RETURNING user_id, tenant_id, state, name, expires_at",
            &[&user, &tx.tenant().as_uuid()],
        )
        .await?;
    let taken = rows
        .iter()
        .map(StoredCeremony::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(taken.into_iter().max_by_key(|c| c.expires_at))
}

/// Takes (deletes and returns) the re-authentication ceremony `id` of the
/// user `tx` acts as, in `tx`'s organisation.
pub async fn take_reauth_ceremony(
    tx: &TenantTx<'_>,
    user: Uuid,
    id: Uuid,
) -> Result<Option<StoredCeremony>, StoreError> {
    let row = tx
        .inner()
        .query_opt(
            "DELETE FROM annal.passkey_ceremonies \
             WHERE id = $1 AND user_id = $2 AND tenant_id = $3 AND kind = 'reauth' \
             RETURNING user_id, tenant_id, state, name, expires_at",
            &[&id, &user, &tx.tenant().as_uuid()],
        )
        .await?;
    row.as_ref().map(StoredCeremony::try_from).transpose()
}

/// Takes (deletes and returns) the login ceremony `id`, before its user
/// or organisation is known.
pub async fn take_login_ceremony(
    tx: &LookupTx<'_>,
    id: Uuid,
) -> Result<Option<StoredCeremony>, StoreError> {
    tx.inner()
        .execute(
            "SELECT set_config('annal.ceremony_id', $1, true)",
            &[&id.to_string()],
        )
        .await?;
    let row = tx
        .inner()
        .query_opt(
            "DELETE FROM annal.passkey_ceremonies WHERE id = $1 AND kind = 'login' \
             RETURNING user_id, tenant_id, state, name, expires_at",
            &[&id],
        )
        .await?;
    tx.inner()
        .execute("SELECT set_config('annal.ceremony_id', '', true)", &[])
        .await?;
    row.as_ref().map(StoredCeremony::try_from).transpose()
}
