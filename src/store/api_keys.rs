//! The `annal.api_keys` table: keyed hashes of API key secrets, their tenant
//! and scopes. Secrets themselves are never stored.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Conn, StoreError, TenantTx};
use crate::crypto::ApiKeyId;
use crate::ledger::TenantId;

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (the public half of the token).
    pub id: ApiKeyId,
    /// The only tenant the key can act for.
    pub tenant_id: TenantId,
    /// HMAC-SHA-256 of the secret under the deployment's pepper.
    pub secret_mac: Vec<u8>,
    /// Granted scopes, e.g. `events:write`.
    pub scopes: Vec<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Finds a key by id, before any tenant is known. `annal.find_api_key`
/// sets the key id transaction-locally so row-level security shows exactly
/// that row, in a single round trip.
pub async fn find(conn: &Conn, id: ApiKeyId) -> Result<Option<StoredKey>, StoreError> {
    const FIND: &str =
        "SELECT id, tenant_id, secret_mac, scopes, revoked_at FROM annal.find_api_key($1)";
    let client = conn.client();
    let stmt = client.prepare_cached(FIND).await?;
    let row = client.query_opt(&stmt, &[&id.as_uuid()]).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(StoredKey {
        id: ApiKeyId::from_uuid(row.try_get("id")?),
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
        secret_mac: row.try_get("secret_mac")?,
        scopes: row.try_get("scopes")?,
        revoked_at: row.try_get("revoked_at")?,
    }))
}

/// Stores a new key for the tenant of `tx`.
pub async fn insert(
    tx: &TenantTx<'_>,
    id: ApiKeyId,
    secret_mac: &[u8],
    scopes: &[String],
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO annal.api_keys (id, tenant_id, secret_mac, scopes, created_at) \
                          VALUES ($1, $2, $3, $4, $5)";
    let stmt = tx.inner().prepare_cached(INSERT).await?;
    tx.inner()
        .execute(
            &stmt,
            &[
                &id.as_uuid(),
                &tx.tenant().as_uuid(),
                &secret_mac,
                &scopes,
                &created_at,
            ],
        )
        .await?;
    Ok(())
}

/// Revokes a live key of the tenant of `tx`; returns whether one was revoked
/// (false when it does not exist or was already revoked).
pub async fn revoke(
    tx: &TenantTx<'_>,
    id: ApiKeyId,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    const REVOKE: &str = "UPDATE annal.api_keys SET revoked_at = $3 \
                          WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL";
    let stmt = tx.inner().prepare_cached(REVOKE).await?;
    let n = tx
        .inner()
        .execute(&stmt, &[&id.as_uuid(), &tx.tenant().as_uuid(), &at])
        .await?;
    Ok(n == 1)
}

/// A key as its organisation's admins see it: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// Key id.
    pub id: ApiKeyId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<&Row> for ListedKey {
    type Error = StoreError;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(ListedKey {
            id: ApiKeyId::from_uuid(row.try_get("id")?),
            scopes: row.try_get("scopes")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// Every key of the tenant of `tx`, newest first.
pub async fn list(tx: &TenantTx<'_>) -> Result<Vec<ListedKey>, StoreError> {
    const LIST: &str = "SELECT id, scopes, created_at, revoked_at FROM annal.api_keys \
                        WHERE tenant_id = $1 ORDER BY created_at DESC, id";
    let rows = tx.inner().query(LIST, &[&tx.tenant().as_uuid()]).await?;
    rows.iter().map(ListedKey::try_from).collect()
}

/// One key of the tenant of `tx`.
pub async fn key(tx: &TenantTx<'_>, id: ApiKeyId) -> Result<Option<ListedKey>, StoreError> {
    const KEY: &str = "SELECT id, scopes, created_at, revoked_at FROM annal.api_keys \
                       WHERE id = $1 AND tenant_id = $2";
    let row = tx
        .inner()
        .query_opt(KEY, &[&id.as_uuid(), &tx.tenant().as_uuid()])
        .await?;
    row.as_ref().map(ListedKey::try_from).transpose()
}

/// Revokes a live key of the tenant of `tx` and returns its scopes; `None`
/// when there is no such live key. Of two concurrent calls, one gets them.
pub async fn revoke_live(
    tx: &TenantTx<'_>,
    id: ApiKeyId,
    at: DateTime<Utc>,
) -> Result<Option<Vec<String>>, StoreError> {
    const REVOKE: &str = "UPDATE annal.api_keys SET revoked_at = $3 \
                          WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING scopes";
    let row = tx
        .inner()
        .query_opt(REVOKE, &[&id.as_uuid(), &tx.tenant().as_uuid(), &at])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
