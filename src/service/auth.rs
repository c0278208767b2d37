//! Who is calling and what they may do.
//!
//! An [`Authorized<P>`] can only be made by [`Principal::authorize`], which
//! checks the permission; service methods that need `P` take one, so the
//! check cannot be skipped.

use std::marker::PhantomData;

use super::ServiceError;
use crate::crypto::ApiKeyId;
use crate::ledger::TenantId;

/// What an API key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Append events.
    EventsWrite,
    /// Query the trail.
    EventsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 2] = [Scope::EventsWrite, Scope::EventsRead];

    /// The scope's name, e.g. `events:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
        }
    }

    /// Parses a scope name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    tenant: TenantId,
    key_id: ApiKeyId,
    scopes: Vec<Scope>,
}

impl Principal {
    pub(crate) fn api_key(tenant: TenantId, key_id: ApiKeyId, scopes: Vec<Scope>) -> Principal {
        Principal {
            tenant,
            key_id,
            scopes,
        }
    }

    /// The only tenant this caller can act for.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The API key the caller used.
    pub fn key_id(&self) -> ApiKeyId {
        self.key_id
    }

    /// Decides whether this caller holds permission `P`.
    pub fn authorize<P: Permission>(&self) -> Result<Authorized<P>, ServiceError> {
        if self.scopes.contains(&P::SCOPE) {
            Ok(Authorized {
                principal: self.clone(),
                permission: PhantomData,
            })
        } else {
            Err(ServiceError::Forbidden(P::SCOPE.as_str()))
        }
    }
}

/// A permission a service method can require.
pub trait Permission {
    /// The API key scope that grants it.
    const SCOPE: Scope;
}

/// Append events to the caller's tenant.
#[derive(Debug)]
pub struct WriteEvents;
impl Permission for WriteEvents {
    const SCOPE: Scope = Scope::EventsWrite;
}

/// Read the caller's tenant's trail.
#[derive(Debug)]
pub struct ReadEvents;
impl Permission for ReadEvents {
    const SCOPE: Scope = Scope::EventsRead;
}

/// Proof that a principal holds permission `P`.
#[derive(Debug)]
pub struct Authorized<P: Permission> {
    principal: Principal,
    permission: PhantomData<P>,
}

impl<P: Permission> Authorized<P> {
    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The caller's tenant.
    pub fn tenant(&self) -> TenantId {
        self.principal.tenant
    }
}
