//! The use cases: append, query, manage tenants and keys.
//!
//! Each public operation that touches a tenant's data takes an
//! [`auth::Authorized`] value for the permission it needs, so a call without
//! an authorization decision does not compile. This layer owns the rules
//! (limits, idempotency, what gets audited); it never speaks HTTP.

pub mod accounts;
pub mod append;
pub mod auth;
pub mod checkpoints;
pub mod events;
pub mod export;
pub mod keys;
pub mod limits;
pub mod members;
pub mod mfa;
pub mod passkeys;
pub mod proofs;
pub mod retention;
pub mod tenants;

/// The error for a request about `what` (e.g. "seq 12"), which needs
/// records below `boundary`: purged by the retention policy.
pub(crate) fn purged(what: &str, boundary: u64) -> ServiceError {
    ServiceError::Purged(format!(
        "{what} needs records 0..={} which were purged by the tenant's retention policy; \
         the first retained record is seq {boundary}",
        boundary.saturating_sub(1)
    ))
}

/// Records `0..` this value are purged (0: none).
pub(crate) async fn purged_before(tx: &crate::store::TenantTx<'_>) -> Result<u64, ServiceError> {
    Ok(crate::store::retention::latest_boundary(tx)
        .await?
        .map_or(0, |b| b.size))
}

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::store::StoreError;

/// The source of the current time. Injected everywhere so tests can move it.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the real clock
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// Why a use case did not happen. Mapped to HTTP in exactly one place
/// (`http::error`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input broke a documented rule; `code` is stable and machine-readable.
    #[error("{message}")]
    Invalid {
        /// Stable error code, e.g. `field_too_long`.
        code: &'static str,
        /// What was wrong, for humans.
        message: String,
    },
    /// No valid credentials.
    #[error("missing, malformed, unknown, expired or revoked credentials")]
    Unauthenticated,
    /// A login or re-authentication with a wrong email, password or code.
    #[error("invalid email, password or code")]
    InvalidCredentials,
    /// The password was right; the user's TOTP code (or a recovery code)
    /// must come with it, or a passkey must answer a challenge.
    #[error(
        "this account has a second factor: send totp_code (or recovery_code) with the password, or use a passkey (/v1/auth/passkeys/login/start, /v1/auth/passkeys/reauth/start)"
    )]
    MfaRequired,
    /// A state-changing request with the session cookie but without its
    /// anti-CSRF token.
    #[error("send the session's csrf_token as the X-Annal-CSRF header")]
    CsrfRejected,
    /// Valid credentials without the needed permission.
    #[error("the caller lacks the {0} permission")]
    Forbidden(&'static str),
    /// A sensitive operation needs a password (and TOTP) check in the last
    /// five minutes: `POST /v1/auth/reauthenticate`.
    #[error(
        "re-authenticate first: this operation needs your password (and TOTP code) in the last 5 minutes"
    )]
    ReauthenticationRequired,
    /// The organisation requires MFA of this role: enroll TOTP first.
    #[error("your organisation requires multi-factor authentication: enroll TOTP first")]
    MfaEnrollmentRequired,
    /// A rule that holds whoever asks forbids it (an organisation's policy,
    /// not a missing permission); `code` is stable.
    #[error("{message}")]
    Refused {
        /// Stable error code, e.g. `mfa_required_by_organization`.
        code: &'static str,
        /// Why, for humans.
        message: String,
    },
    /// Nothing there (or nothing the caller may know about).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is valid but the current state does not allow it (e.g.
    /// enrolling TOTP while enrolled); `code` is stable.
    #[error("{message}")]
    Conflict {
        /// Stable error code, e.g. `mfa_already_enrolled`.
        code: &'static str,
        /// What to do instead, for humans.
        message: String,
    },
    /// An event id was reused for a different event.
    #[error(
        "event_id {0} was already used for a different event; an event_id may only be retried with the same content"
    )]
    IdempotencyConflict(uuid::Uuid),
    /// What was asked for was deleted by the tenant's retention policy.
    #[error("{0}")]
    Purged(String),
    /// Temporarily unable to serve; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The caller went over its rate limit; nothing was done.
    #[error("rate limit exceeded; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// How long until the request would fit.
        retry_after: std::time::Duration,
    },
    /// Anything else; details are logged, never returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Pool(e) => ServiceError::Unavailable(format!("database unavailable: {e}")),
            other => ServiceError::Internal(other.into()),
        }
    }
}
