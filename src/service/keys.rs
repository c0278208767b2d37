//! API keys: authenticate a bearer token; create, list, rotate and revoke
//! keys (by an operator, or by an organisation's admins through
//! `service::members`, which records each change).
//!
//! Secrets are shown once at creation and stored only as a keyed hash.
//! Authentication spends the same work whether or not the key exists, and
//! says the same thing for every failure.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Authorized, ManageApiKeys, Principal, Scope, ViewApiKeys};
use super::{ServiceError, SharedClock};
use crate::crypto::{ApiKeyId, ApiKeyToken, Pepper};
use crate::ledger::TenantId;
use crate::store::api_keys::ListedKey;
use crate::store::{Store, TenantTx, api_keys, tenants};

/// A newly created key. `api_key` is the only copy of the secret.
#[derive(Serialize)]
pub struct CreatedKey {
    /// Key id.
    pub id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its scopes.
    pub scopes: Vec<&'static str>,
    /// The bearer token; not retrievable later.
    pub api_key: String,
}

impl std::fmt::Debug for CreatedKey {
    /// Without the token: `{:?}` must never put a secret in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A revoked key.
#[derive(Debug, Serialize)]
pub struct RevokedKey {
    /// Key id.
    pub id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// False when it had been revoked before.
    pub newly_revoked: bool,
}

/// A key as its organisation's admins see it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    /// Key id (the public half of the token).
    pub id: Uuid,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ListedKey> for KeyView {
    fn from(key: ListedKey) -> KeyView {
        KeyView {
            id: key.id.as_uuid(),
            scopes: key.scopes,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

fn at_least_one(scopes: &[Scope]) -> Result<(), ServiceError> {
    if scopes.is_empty() {
        return Err(ServiceError::Invalid {
            code: "invalid_field",
            message: "a key needs at least one scope".into(),
        });
    }
    Ok(())
}

/// Key management and authentication.
#[derive(Clone)]
pub struct Keys {
    store: Store,
    pepper: Pepper,
    clock: SharedClock,
}

impl Keys {
    /// Keys stored in `store`, hashed under `pepper`.
    pub fn new(store: Store, pepper: Pepper, clock: SharedClock) -> Keys {
        Keys {
            store,
            pepper,
            clock,
        }
    }

    /// The principal behind a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ServiceError> {
        let token = ApiKeyToken::parse(token).map_err(|_| ServiceError::Unauthenticated)?;
        let conn = self.store.conn().await?;
        let stored = api_keys::find(&conn, token.id).await?;
        let Some(stored) = stored else {
            // Same work as for a real key, so timing does not tell.
            let _ = self.pepper.verify(&token.secret, &[0u8; 32]);
            return Err(ServiceError::Unauthenticated);
        };
        if !self.pepper.verify(&token.secret, &stored.secret_mac) || stored.revoked_at.is_some() {
            return Err(ServiceError::Unauthenticated);
        }
        let scopes = stored
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect();
        Ok(Principal::api_key(stored.tenant_id, stored.id, scopes))
    }

    /// Creates a key for `tenant` with `scopes` (operator action).
    pub async fn create(
        &self,
        tenant: TenantId,
        scopes: &[Scope],
    ) -> Result<CreatedKey, ServiceError> {
        at_least_one(scopes)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        if tenant == super::tenants::SYSTEM || !tenants::exists(&tx).await? {
            return Err(ServiceError::NotFound("tenant"));
        }
        let created = self.insert(&tx, scopes).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Stores a new key with `scopes` in the tenant of `tx`.
    async fn insert(
        &self,
        tx: &TenantTx<'_>,
        scopes: &[Scope],
    ) -> Result<CreatedKey, ServiceError> {
        let token = ApiKeyToken::generate();
        let mac = self.pepper.mac(&token.secret);
        let names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        api_keys::insert(tx, token.id, &mac, &names, self.clock.now()).await?;
        Ok(CreatedKey {
            id: token.id,
            tenant_id: tx.tenant(),
            scopes: scopes.iter().map(|s| s.as_str()).collect(),
            api_key: token.reveal(),
        })
    }

    /// The organisation's keys, newest first.
    pub async fn list(&self, who: &Authorized<ViewApiKeys>) -> Result<Vec<KeyView>, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let keys = api_keys::list(&tx).await?;
        tx.commit().await?;
        Ok(keys.into_iter().map(KeyView::from).collect())
    }

    /// Creates a key of the caller's organisation. Not recorded here:
    /// `service::members` calls this and records it.
    pub(super) async fn issue(
        &self,
        who: &Authorized<ManageApiKeys>,
        scopes: &[Scope],
    ) -> Result<CreatedKey, ServiceError> {
        at_least_one(scopes)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let created = self.insert(&tx, scopes).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Replaces live key `id` of the caller's organisation by a new key
    /// with the same scopes, in one transaction: both happen or neither.
    /// Not recorded here (see [`Keys::issue`]).
    pub(super) async fn rotate(
        &self,
        who: &Authorized<ManageApiKeys>,
        id: ApiKeyId,
    ) -> Result<CreatedKey, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let scopes = api_keys::revoke_live(&tx, id, self.clock.now())
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        // Scopes this build no longer knows are dropped, as authentication
        // would ignore them anyway.
        let scopes: Vec<Scope> = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
        let created = self.insert(&tx, &scopes).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Revokes key `id` of the caller's organisation; revoking twice is
    /// not an error (`newly_revoked` says which). Not recorded here (see
    /// [`Keys::issue`]).
    pub(super) async fn revoke_in(
        &self,
        who: &Authorized<ManageApiKeys>,
        id: ApiKeyId,
    ) -> Result<RevokedKey, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        if api_keys::key(&tx, id).await?.is_none() {
            return Err(ServiceError::NotFound("API key"));
        }
        let newly_revoked = api_keys::revoke(&tx, id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(RevokedKey {
            id,
            tenant_id: who.tenant(),
            newly_revoked,
        })
    }

    /// Revokes key `id` (operator action); revoking twice is not an error.
    pub async fn revoke(&self, id: ApiKeyId) -> Result<RevokedKey, ServiceError> {
        let mut conn = self.store.conn().await?;
        let stored = api_keys::find(&conn, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        let tx = conn.tenant(stored.tenant_id).await?;
        let newly_revoked = api_keys::revoke(&tx, id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(RevokedKey {
            id,
            tenant_id: stored.tenant_id,
            newly_revoked,
        })
    }
}
