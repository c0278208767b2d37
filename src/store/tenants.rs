//! The `annal.tenants` table: one row per organisation whose trail Annal keeps.

use chrono::{DateTime, Utc};

use super::{StoreError, TenantTx};

/// Inserts the tenant of `tx` under `name`.
pub async fn insert(
    tx: &TenantTx<'_>,
    name: &str,
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO annal.tenants (id, name, created_at) VALUES ($1, $2, $3)";
    let stmt = tx.inner().prepare_cached(INSERT).await?;
    tx.inner()
        .execute(&stmt, &[&tx.tenant().as_uuid(), &name, &created_at])
        .await?;
    Ok(())
}

/// Whether the tenant of `tx` exists.
pub async fn exists(tx: &TenantTx<'_>) -> Result<bool, StoreError> {
    const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM annal.tenants WHERE id = $1)";
    let stmt = tx.inner().prepare_cached(EXISTS).await?;
    Ok(tx
        .inner()
        .query_one(&stmt, &[&tx.tenant().as_uuid()])
        .await?
        .get(0))
}
