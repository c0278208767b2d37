//! Who is calling and what they may do: the permission matrix of
//! `docs/ACCESS.md`, in code.
//!
//! An [`Authorized<P>`] can only be made by [`Principal::authorize`], which
//! checks permission `P` for the caller: an API key by its scopes, a person
//! by the role of their membership (and, for sensitive operations, a recent
//! re-authentication; in an organisation that requires MFA, an enrolled
//! second factor). Service methods that need `P` take one, so the check
//! cannot be skipped.

use std::marker::PhantomData;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::ServiceError;
use crate::crypto::ApiKeyId;
use crate::ledger::{Actor, TenantId};

/// How recent a password (and TOTP) check must be for a sensitive
/// operation.
pub const REAUTH_WINDOW: TimeDelta = TimeDelta::minutes(5);

/// What an API key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Append events.
    EventsWrite,
    /// Query the trail, its checkpoints and proofs.
    EventsRead,
    /// Export bundles.
    Export,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::EventsWrite, Scope::EventsRead, Scope::Export];

    /// The scope's name, e.g. `events:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::Export => "export",
        }
    }

    /// Parses a scope name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A member's role in an organisation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including other owners.
    Owner,
    /// Everything but making or changing owners.
    Admin,
    /// Reads and exports the trail.
    HrLead,
    /// Reads the trail.
    Analyst,
    /// Reads the trail.
    Viewer,
    /// Reads, proves and exports the trail.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::HrLead,
        Role::Analyst,
        Role::Viewer,
        Role::Auditor,
    ];

    /// The stored name, e.g. `hr_lead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::HrLead => "hr_lead",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the organisation's MFA requirement applies to this role.
    pub fn mfa_applies(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An application's API key.
    ApiKey {
        /// The key.
        key_id: ApiKeyId,
        /// Its scopes.
        scopes: Vec<Scope>,
    },
    /// A person's session.
    Session(SessionCaller),
}

/// A person calling through a session.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    /// The user.
    pub user_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// Their role in the session's organisation.
    pub role: Role,
    /// Their last password (and TOTP) check.
    pub authenticated_at: DateTime<Utc>,
    /// The time the request was authenticated at.
    pub now: DateTime<Utc>,
    /// The organisation requires MFA of this role and the user has none:
    /// they may only enroll.
    pub must_enroll_mfa: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    tenant: TenantId,
    credential: Credential,
}

impl Principal {
    pub(crate) fn api_key(tenant: TenantId, key_id: ApiKeyId, scopes: Vec<Scope>) -> Principal {
        Principal {
            tenant,
            credential: Credential::ApiKey { key_id, scopes },
        }
    }

    pub(crate) fn person(tenant: TenantId, caller: SessionCaller) -> Principal {
        Principal {
            tenant,
            credential: Credential::Session(caller),
        }
    }

    /// The only tenant this caller can act for.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// How the caller authenticated.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The API key the caller used, if it used one.
    pub fn key_id(&self) -> Option<ApiKeyId> {
        match &self.credential {
            Credential::ApiKey { key_id, .. } => Some(*key_id),
            Credential::Session(_) => None,
        }
    }

    /// The person calling, if a person is.
    pub fn session(&self) -> Option<&SessionCaller> {
        match &self.credential {
            Credential::Session(caller) => Some(caller),
            Credential::ApiKey { .. } => None,
        }
    }

    /// The caller as the actor of an event Annal records about it.
    pub fn actor(&self) -> Actor {
        let (id, kind) = match &self.credential {
            Credential::ApiKey { key_id, .. } => (key_id.to_string(), "api_key"),
            Credential::Session(caller) => (caller.user_id.to_string(), "user"),
        };
        Actor {
            id,
            kind: kind.into(),
            name: None,
            email: None,
        }
    }

    /// Decides whether this caller holds permission `P`.
    pub fn authorize<P: Permission>(&self) -> Result<Authorized<P>, ServiceError> {
        match &self.credential {
            Credential::ApiKey { scopes, .. } => {
                if !P::SCOPE.is_some_and(|scope| scopes.contains(&scope)) {
                    return Err(ServiceError::Forbidden(P::NAME));
                }
            }
            Credential::Session(caller) => {
                if caller.must_enroll_mfa && !P::BEFORE_MFA {
                    return Err(ServiceError::MfaEnrollmentRequired);
                }
                if !P::ROLES.contains(&caller.role) {
                    return Err(ServiceError::Forbidden(P::NAME));
                }
                if P::REAUTH && caller.now - caller.authenticated_at > REAUTH_WINDOW {
                    return Err(ServiceError::ReauthenticationRequired);
                }
            }
        }
        Ok(Authorized {
            principal: self.clone(),
            permission: PhantomData,
        })
    }
}

/// A permission a service method can require: one row of the matrix in
/// `docs/ACCESS.md`.
pub trait Permission {
    /// Its name in errors, e.g. `events:read`.
    const NAME: &'static str;
    /// The API key scope that grants it (`None`: people only).
    const SCOPE: Option<Scope>;
    /// The roles that hold it.
    const ROLES: &'static [Role];
    /// Whether a person needs a password (and TOTP) check in the last
    /// [`REAUTH_WINDOW`].
    const REAUTH: bool = false;
    /// Whether a person who must enroll MFA first may use it already.
    const BEFORE_MFA: bool = false;
}

const READERS: &[Role] = &[
    Role::Owner,
    Role::Admin,
    Role::HrLead,
    Role::Analyst,
    Role::Viewer,
    Role::Auditor,
];
const MANAGERS: &[Role] = &[Role::Owner, Role::Admin];

macro_rules! permission {
    ($(#[$doc:meta])* $name:ident, $text:literal, $scope:expr, $roles:expr $(, $flag:ident)*) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl Permission for $name {
            const NAME: &'static str = $text;
            const SCOPE: Option<Scope> = $scope;
            const ROLES: &'static [Role] = $roles;
            $(const $flag: bool = true;)*
        }
    };
}

permission!(
    /// Append events (applications only).
    WriteEvents, "events:write", Some(Scope::EventsWrite), &[]
);
permission!(
    /// Read the trail, its checkpoints and proofs.
    ReadEvents, "events:read", Some(Scope::EventsRead), READERS
);
permission!(
    /// Export bundles of the trail.
    Export, "export", Some(Scope::Export),
    &[Role::Owner, Role::Admin, Role::HrLead, Role::Auditor], REAUTH
);
permission!(
    /// See the members of the organisation.
    ViewMembers, "members:read", None, MANAGERS
);
permission!(
    /// Invite, remove members and change their roles.
    ManageMembers, "members:write", None, MANAGERS, REAUTH
);
permission!(
    /// See the organisation's API keys.
    ViewApiKeys, "api_keys:read", None, MANAGERS
);
permission!(
    /// Create, rotate and revoke API keys.
    ManageApiKeys, "api_keys:write", None, MANAGERS, REAUTH
);
permission!(
    /// See the retention period and legal hold.
    ViewRetention, "retention:read", None, MANAGERS
);
permission!(
    /// Set the retention period (a shorter one makes records purgeable
    /// sooner, so it needs a fresh password check).
    ManageRetention, "retention:write", None, MANAGERS, REAUTH
);
permission!(
    /// Place or lift a legal hold.
    ManageLegalHold, "legal_hold:write", None, MANAGERS, REAUTH
);
permission!(
    /// Require MFA of owners and admins, or not.
    ManageMfaPolicy, "mfa_policy:write", None, MANAGERS, REAUTH
);
permission!(
    /// See and end other members' sessions.
    ManageSessions, "sessions:write", None, MANAGERS
);
permission!(
    /// Your own account: log out, your sessions, re-authenticate.
    OwnAccount, "account", None, READERS, BEFORE_MFA
);
permission!(
    /// Enroll, replace or remove your own second factor.
    OwnMfa, "account:mfa", None, READERS, REAUTH, BEFORE_MFA
);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: Role, minutes_since_login: i64, must_enroll_mfa: bool) -> Principal {
        let now = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(1);
        Principal::person(
            TenantId::from_uuid(Uuid::nil()),
            SessionCaller {
                user_id: Uuid::nil(),
                session_id: Uuid::nil(),
                role,
                authenticated_at: now - TimeDelta::minutes(minutes_since_login),
                now,
                must_enroll_mfa,
            },
        )
    }

    #[test]
    fn keys_hold_what_their_scopes_say() {
        let key = Principal::api_key(
            TenantId::from_uuid(Uuid::nil()),
            ApiKeyId::from_uuid(Uuid::nil()),
            vec![Scope::EventsRead],
        );
        assert!(key.authorize::<ReadEvents>().is_ok());
        assert!(key.authorize::<WriteEvents>().is_err());
        assert!(key.authorize::<Export>().is_err());
        assert!(key.authorize::<ManageMembers>().is_err());
        assert!(key.authorize::<OwnAccount>().is_err());
    }

    #[test]
    fn roles_reauthentication_and_mfa_enrollment() {
        assert!(
            person(Role::Viewer, 0, false)
                .authorize::<ReadEvents>()
                .is_ok()
        );
        assert!(
            person(Role::Viewer, 0, false)
                .authorize::<Export>()
                .is_err()
        );
        assert!(
            person(Role::Owner, 0, false)
                .authorize::<WriteEvents>()
                .is_err()
        );
        assert!(
            person(Role::Auditor, 4, false)
                .authorize::<Export>()
                .is_ok()
        );
        assert!(matches!(
            person(Role::Auditor, 6, false).authorize::<Export>(),
            Err(ServiceError::ReauthenticationRequired)
        ));
        assert!(matches!(
            person(Role::Admin, 0, true).authorize::<ReadEvents>(),
            Err(ServiceError::MfaEnrollmentRequired)
        ));
        assert!(person(Role::Admin, 0, true).authorize::<OwnMfa>().is_ok());
    }
}
