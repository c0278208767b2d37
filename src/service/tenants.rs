//! Tenants (organisations): creation by operators.

use serde::Serialize;
use uuid::Uuid;

use super::{ServiceError, SharedClock};
use crate::ledger::TenantId;
use crate::store::{Store, tenants};

/// The system log's tenant (schema V4): events that belong to no
/// organisation, such as a failed login for an unknown email. It has no
/// members and no keys.
pub const SYSTEM: TenantId = TenantId::from_uuid(Uuid::nil());

/// A newly created tenant.
#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    /// Its id: the `tenant_id` of everything it owns.
    pub tenant_id: TenantId,
    /// Its name.
    pub name: String,
}

/// Creates a tenant named `name` (1–200 bytes).
pub async fn create(
    store: &Store,
    clock: &SharedClock,
    name: &str,
) -> Result<CreatedTenant, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid {
            code: "invalid_field",
            message: "a tenant name must be 1 to 200 bytes, without control characters".into(),
        });
    }
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let mut conn = store.conn().await?;
    let tx = conn.tenant(tenant).await?;
    tenants::insert(&tx, name, clock.now()).await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant_id: tenant,
        name: name.to_owned(),
    })
}
