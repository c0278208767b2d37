//! A person's second factor and their organisation's MFA policy: enrolling
//! TOTP (a pending secret, confirmed by a first code), removing it,
//! replacing recovery codes; and the switch that requires MFA of owners
//! and admins.
//!
//! The TOTP secret is shown once, at enrollment, and stored only sealed
//! (the user's id as associated data); recovery codes are shown once and
//! stored only as hashes. Every change is recorded in the organisation's
//! log with the person as actor, and never with a secret or a code in it.
//! Checking codes at login and re-authentication is `accounts`'s.

use std::net::IpAddr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::accounts::{AccessEvent, Accounts, matching_step, totp};
use super::auth::{Authorized, ManageMfaPolicy, OwnAccount, OwnMfa, Permission, SessionCaller};
use super::{ServiceError, SharedClock};
use crate::crypto::Pepper;
use crate::crypto::identity::{Sealer, recovery_code_hash, recovery_codes};
use crate::ledger::{Outcome, Resource, TenantId};
use crate::store::identity::{self as rows, StoredUser};
use crate::store::{Store, StoreError};

/// Bytes of a TOTP secret: 160 bits, the size RFC 4226 recommends for
/// HMAC-SHA-1.
const SECRET_BYTES: usize = 20;

/// A TOTP enrollment begun: the secret for the authenticator app, shown
/// this once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrollment {
    /// The secret, base32 without padding, for typing in by hand.
    pub secret: String,
    /// The same as an `otpauth://totp/...` URI, for a QR code.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment(..)")
    }
}

/// The first code from the authenticator app, confirming an enrollment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotpInput {
    /// The 6-digit code the app shows now.
    pub code: String,
}

impl std::fmt::Debug for ConfirmTotpInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmTotpInput(..)")
    }
}

/// Fresh recovery codes, shown this once; any earlier ones are void.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten codes; each logs in (or re-authenticates) once instead of a
    /// TOTP code.
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCodes(..)")
    }
}

/// An organisation's settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrgSettings {
    /// The organisation.
    pub organization_id: Uuid,
    /// Whether owners and admins must use TOTP: until they enroll, they
    /// can do nothing else.
    pub mfa_required: bool,
}

/// A change of an organisation's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgSettingsInput {
    /// Require TOTP of owners and admins, or not.
    pub mfa_required: bool,
}

/// Second factors and the organisation's MFA policy.
#[derive(Clone)]
pub struct Mfa {
    store: Store,
    sealer: Sealer,
    clock: SharedClock,
    accounts: Accounts,
}

impl Mfa {
    /// Second factors over `store`, sealed under `pepper` (as `accounts`
    /// opens them at login); changes recorded through `accounts`.
    pub fn new(store: Store, pepper: &Pepper, clock: SharedClock, accounts: Accounts) -> Mfa {
        Mfa {
            store,
            sealer: Sealer::new(pepper),
            clock,
            accounts,
        }
    }

    /// Begins TOTP enrollment: a new random secret, pending until a code
    /// confirms it (beginning again replaces it). Refused while TOTP is
    /// enrolled: remove it first.
    pub async fn start_totp(
        &self,
        who: &Authorized<OwnMfa>,
        ip: Option<IpAddr>,
    ) -> Result<TotpEnrollment, ServiceError> {
        let caller = person(who)?;
        let mut secret = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = own_user(&tx, caller).await?;
        if user.totp_secret.is_some() {
            return Err(ServiceError::Conflict {
                code: "mfa_already_enrolled",
                message:
                    "you have TOTP already: remove it (DELETE /v1/auth/mfa/totp) to enroll again"
                        .into(),
            });
        }
        let sealed = self.sealer.seal(user.id.as_bytes(), &secret);
        rows::set_totp_pending(&tx, user.id, Some(&sealed)).await?;
        let mut generator = totp(&secret, "-")?;
        // The label only names the account in the app; TOTP::new refuses
        // a ':' in it, the URI encodes one.
        generator.account_name = user.email;
        // get_url leaves out the parameters that have their default
        // values; some apps want them spelt out.
        let enrollment = TotpEnrollment {
            secret: generator.get_secret_base32(),
            otpauth_uri: format!("{}&algorithm=SHA1&digits=6&period=30", generator.get_url()),
        };
        tx.commit().await?;
        drop(conn);
        self.record(
            who,
            "access.mfa_enrollment_started",
            ip,
            json!({ "method": "totp" }),
        )
        .await?;
        Ok(enrollment)
    }

    /// Confirms the pending secret with a current code (one step of drift
    /// either way): it becomes the user's TOTP, that code's step is used
    /// up, ten recovery codes replace any earlier ones, and this session
    /// counts as MFA-verified.
    pub async fn confirm_totp(
        &self,
        who: &Authorized<OwnMfa>,
        input: ConfirmTotpInput,
        ip: Option<IpAddr>,
    ) -> Result<RecoveryCodes, ServiceError> {
        let caller = person(who)?;
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = own_user(&tx, caller).await?;
        if user.totp_secret.is_some() {
            return Err(ServiceError::Conflict {
                code: "mfa_already_enrolled",
                message: "you have TOTP already".into(),
            });
        }
        let Some(sealed) = user.totp_pending else {
            return Err(ServiceError::Conflict {
                code: "no_enrollment_pending",
                message: "begin with POST /v1/auth/mfa/totp".into(),
            });
        };
        let secret = self
            .sealer
            .open(user.id.as_bytes(), &sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Using the step takes the user's row lock, so of two confirmations
        // with one code only the first passes.
        let step = match matching_step(&secret, &input.code, now)? {
            Some(step) if rows::use_totp_step(&tx, user.id, step).await? => step,
            _ => {
                return Err(ServiceError::Invalid {
                    code: "invalid_code",
                    message: "the code does not match the pending secret now: check the app's clock and try the current code"
                        .into(),
                });
            }
        };
        rows::set_totp(&tx, user.id, Some(sealed.as_slice()), Some(step)).await?;
        let codes = recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| recovery_code_hash(c)).collect();
        rows::replace_recovery_codes(&tx, user.id, &hashes).await?;
        rows::reauthenticate(&tx, caller.session_id, now, true).await?;
        tx.commit().await?;
        drop(conn);
        self.record(
            who,
            "access.mfa_enrolled",
            ip,
            json!({ "method": "totp", "recovery_codes": codes.len() }),
        )
        .await?;
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// Removes the caller's TOTP and recovery codes; refused to an owner or
    /// admin of an organisation that requires MFA.
    pub async fn remove_totp(
        &self,
        who: &Authorized<OwnMfa>,
        ip: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        let caller = person(who)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = own_user(&tx, caller).await?;
        if user.totp_secret.is_none() {
            return Err(not_enrolled());
        }
        if caller.role.mfa_applies() && rows::mfa_required(&tx).await? {
            return Err(ServiceError::Refused {
                code: "mfa_required_by_organization",
                message: format!(
                    "your organisation requires MFA of its {}s: TOTP cannot be removed",
                    caller.role.as_str()
                ),
            });
        }
        rows::set_totp(&tx, user.id, None, None).await?;
        rows::replace_recovery_codes(&tx, user.id, &[]).await?;
        tx.commit().await?;
        drop(conn);
        self.record(who, "access.mfa_removed", ip, json!({ "method": "totp" }))
            .await
    }

    /// New recovery codes for a user with TOTP; the old ones stop working.
    pub async fn replace_recovery_codes(
        &self,
        who: &Authorized<OwnMfa>,
        ip: Option<IpAddr>,
    ) -> Result<RecoveryCodes, ServiceError> {
        let caller = person(who)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = own_user(&tx, caller).await?;
        if user.totp_secret.is_none() {
            return Err(not_enrolled());
        }
        let codes = recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| recovery_code_hash(c)).collect();
        rows::replace_recovery_codes(&tx, user.id, &hashes).await?;
        tx.commit().await?;
        drop(conn);
        self.record(
            who,
            "access.recovery_codes_replaced",
            ip,
            json!({ "recovery_codes": codes.len() }),
        )
        .await?;
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// The caller's organisation's settings.
    pub async fn settings(
        &self,
        who: &Authorized<OwnAccount>,
    ) -> Result<OrgSettings, ServiceError> {
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        let mfa_required = rows::mfa_required(&tx).await?;
        tx.commit().await?;
        Ok(OrgSettings {
            organization_id: who.tenant().as_uuid(),
            mfa_required,
        })
    }

    /// Requires MFA of the organisation's owners and admins, or stops
    /// requiring it. Those without TOTP can then only enroll until they
    /// have it.
    pub async fn set_settings(
        &self,
        who: &Authorized<ManageMfaPolicy>,
        input: OrgSettingsInput,
        ip: Option<IpAddr>,
    ) -> Result<OrgSettings, ServiceError> {
        let tenant = who.tenant();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        let previous = rows::mfa_required(&tx).await?;
        rows::set_mfa_required(&tx, input.mfa_required, self.clock.now()).await?;
        tx.commit().await?;
        drop(conn);
        self.accounts
            .record(
                tenant,
                AccessEvent {
                    action: "access.mfa_policy_changed",
                    actor: who.principal().actor(),
                    resource: organization(tenant),
                    outcome: Outcome::Success,
                    source_ip: ip,
                    metadata: json!({
                        "mfa_required": input.mfa_required,
                        "previous": previous,
                    }),
                },
            )
            .await?;
        Ok(OrgSettings {
            organization_id: tenant.as_uuid(),
            mfa_required: input.mfa_required,
        })
    }

    /// Records a change of the caller's own second factor.
    async fn record(
        &self,
        who: &Authorized<OwnMfa>,
        action: &str,
        ip: Option<IpAddr>,
        metadata: Value,
    ) -> Result<(), ServiceError> {
        let user = person(who)?.user_id;
        self.accounts
            .record(
                who.tenant(),
                AccessEvent {
                    action,
                    actor: who.principal().actor(),
                    resource: Resource {
                        kind: "member".into(),
                        id: user.to_string(),
                    },
                    outcome: Outcome::Success,
                    source_ip: ip,
                    metadata,
                },
            )
            .await
    }
}

/// The person calling: only a session holds a second factor.
fn person(who: &Authorized<OwnMfa>) -> Result<&SessionCaller, ServiceError> {
    who.principal()
        .session()
        .ok_or(ServiceError::Forbidden(OwnMfa::NAME))
}

/// The caller's own user row, in a transaction acting as them.
async fn own_user(
    tx: &crate::store::TenantTx<'_>,
    caller: &SessionCaller,
) -> Result<StoredUser, ServiceError> {
    rows::user(tx, caller.user_id)
        .await?
        .ok_or(ServiceError::Unauthenticated)
}

fn not_enrolled() -> ServiceError {
    ServiceError::Conflict {
        code: "mfa_not_enrolled",
        message: "you have no TOTP: enroll with POST /v1/auth/mfa/totp".into(),
    }
}

fn organization(tenant: TenantId) -> Resource {
    Resource {
        kind: "organization".into(),
        id: tenant.to_string(),
    }
}
