//! Passkeys (WebAuthn, through webauthn-rs): a person registers and removes
//! them, and logs in with password + passkey as their second factor.
//!
//! A ceremony's state (the challenge Annal issued) is kept in PostgreSQL
//! between its two requests and never handed to the client; it lives five
//! minutes and is taken by the request that finishes it, so each challenge
//! is answered at most once. After each use the stored passkey is rewritten
//! with the authenticator's counter, so that a cloned authenticator whose
//! counter falls behind is refused. Every registration, removal and login,
//! failed or not, is recorded in the organisation's log, never with key
//! material in it.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::accounts::{AccessEvent, Accounts, LoggedIn, PasswordChecked, has_second_factor};
use super::auth::{Authorized, OwnAccount, OwnMfa, Permission, Role, SessionCaller};
use super::{ServiceError, SharedClock};
use crate::ledger::{Outcome, Resource};
use crate::store::identity::{self as rows, NewCeremony, NewPasskey, StoredPasskey};
use crate::store::{Store, StoreError, TenantTx};

/// How long a ceremony may take between its two requests.
const CEREMONY_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// The longest passkey name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// The relying party Annal is to authenticators: the domain passkeys are
/// bound to and the origin browsers call from.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    /// The effective domain, e.g. `annal.example.com` (or `localhost`).
    pub id: String,
    /// The origin of the web client, e.g. `https://annal.example.com`.
    pub origin: Url,
}

/// Begins registering a passkey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRegistrationInput {
    /// A name for it, to tell it apart in the list (1 to 100 characters).
    pub name: String,
}

/// The first step of a login with a passkey: the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginStartInput {
    /// The user's email.
    pub email: String,
    /// Their password.
    pub password: String,
    /// The organisation to log in to, when the user belongs to several.
    pub organization_id: Option<Uuid>,
}

impl std::fmt::Debug for PasskeyLoginStartInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasskeyLoginStartInput(..)")
    }
}

/// The challenge for the authenticator, and the ceremony to finish.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyLoginChallenge {
    /// Send it back with the authenticator's answer, within 5 minutes.
    pub ceremony_id: Uuid,
    /// WebAuthn `PublicKeyCredentialRequestOptions` (as
    /// `{"publicKey": ...}`), for `navigator.credentials.get`.
    #[schema(value_type = Object)]
    pub challenge: RequestChallengeResponse,
}

/// The first step of a re-authentication with a passkey.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyReauthStartInput {
    /// The caller's password.
    pub password: String,
}

impl std::fmt::Debug for PasskeyReauthStartInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasskeyReauthStartInput(..)")
    }
}

/// The second step of a login (or re-authentication) with a passkey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginFinishInput {
    /// From the first step.
    pub ceremony_id: Uuid,
    /// The authenticator's assertion (`PublicKeyCredential`).
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

/// A passkey as shown to its user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PasskeyView {
    /// Id, for removing it.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last used to log in.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&StoredPasskey> for PasskeyView {
    fn from(stored: &StoredPasskey) -> PasskeyView {
        PasskeyView {
            id: stored.id,
            name: stored.name.clone(),
            created_at: stored.created_at,
            last_used_at: stored.last_used_at,
        }
    }
}

/// People's passkeys.
#[derive(Clone)]
pub struct Passkeys {
    store: Store,
    webauthn: Arc<Webauthn>,
    clock: SharedClock,
    accounts: Accounts,
}

impl Passkeys {
    /// Passkeys over `store` for the relying party `rp`; logins and changes
    /// through `accounts`. Fails when the origin does not fit the id.
    pub fn new(
        store: Store,
        rp: &RelyingParty,
        clock: SharedClock,
        accounts: Accounts,
    ) -> Result<Passkeys, WebauthnError> {
        let webauthn = WebauthnBuilder::new(&rp.id, &rp.origin)?
            .rp_name("Annal")
            .build()?;
        Ok(Passkeys {
            store,
            webauthn: Arc::new(webauthn),
            clock,
            accounts,
        })
    }

    /// Begins registering a passkey for the caller: the options for
    /// `navigator.credentials.create`. Their passkeys are excluded, so an
    /// authenticator registers once. Beginning again replaces the ceremony.
    pub async fn start_registration(
        &self,
        who: &Authorized<OwnMfa>,
        input: StartRegistrationInput,
    ) -> Result<CreationChallengeResponse, ServiceError> {
        let caller = person(who)?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ServiceError::Invalid {
                code: "invalid_name",
                message: format!("a passkey's name has 1 to {MAX_NAME_CHARS} characters"),
            });
        }
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = rows::user(&tx, caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let existing = rows::passkeys(&tx, user.id).await?;
        let exclude = existing
            .iter()
            .map(|stored| parse_passkey(stored).map(|p| p.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (challenge, state) = self
            .webauthn
            .start_passkey_registration(user.id, &user.email, &user.email, Some(exclude))
            .map_err(internal)?;
        let state = serde_json::to_value(&state).map_err(internal)?;
        rows::insert_ceremony(
            &tx,
            &NewCeremony {
                id: Uuid::new_v4(),
                user_id: user.id,
                kind: "register",
                state: &state,
                name: Some(name),
                expires_at: now + CEREMONY_LIFETIME,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(challenge)
    }

    /// Finishes the caller's registration with the authenticator's answer
    /// and stores the passkey.
    pub async fn finish_registration(
        &self,
        who: &Authorized<OwnMfa>,
        credential: RegisterPublicKeyCredential,
        ip: Option<IpAddr>,
    ) -> Result<PasskeyView, ServiceError> {
        let caller = person(who)?;
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let ceremony = rows::take_registration(&tx, caller.user_id)
            .await?
            .filter(|c| c.expires_at > now);
        let Some(ceremony) = ceremony else {
            tx.commit().await?;
            return Err(ServiceError::Conflict {
                code: "no_registration_pending",
                message: "begin with POST /v1/auth/passkeys/register/start (a registration lasts 5 minutes)"
                    .into(),
            });
        };
        let state: PasskeyRegistration = serde_json::from_value(ceremony.state)
            .map_err(|e| StoreError::Corrupt(format!("passkey registration state: {e}")))?;
        let passkey = match self
            .webauthn
            .finish_passkey_registration(&credential, &state)
        {
            Ok(passkey) => passkey,
            Err(error) => {
                // The ceremony is used up either way: a new attempt begins
                // with a new challenge.
                tx.commit().await?;
                drop(conn);
                tracing::info!(error = %error, "a passkey registration was refused");
                self.record(
                    who,
                    "access.passkey_registration_failed",
                    Outcome::Failure,
                    ip,
                    json!({}),
                )
                .await?;
                return Err(ServiceError::Invalid {
                    code: "invalid_passkey",
                    message: "the authenticator's answer does not match the registration".into(),
                });
            }
        };
        let stored = NewPasskey {
            id: Uuid::new_v4(),
            user_id: caller.user_id,
            credential_id: passkey.cred_id().as_ref(),
            passkey: &serde_json::to_value(&passkey).map_err(internal)?,
            name: ceremony.name.as_deref().unwrap_or("passkey"),
            at: now,
        };
        if !rows::insert_passkey(&tx, &stored).await? {
            tx.commit().await?;
            return Err(ServiceError::Conflict {
                code: "passkey_already_registered",
                message: "this authenticator is registered already".into(),
            });
        }
        let view = PasskeyView {
            id: stored.id,
            name: stored.name.to_owned(),
            created_at: now,
            last_used_at: None,
        };
        tx.commit().await?;
        drop(conn);
        self.record(
            who,
            "access.passkey_registered",
            Outcome::Success,
            ip,
            json!({ "passkey_id": view.id }),
        )
        .await?;
        Ok(view)
    }

    /// The caller's passkeys, oldest first.
    pub async fn list(
        &self,
        who: &Authorized<OwnAccount>,
    ) -> Result<Vec<PasskeyView>, ServiceError> {
        let caller = who
            .principal()
            .session()
            .ok_or(ServiceError::Forbidden(OwnAccount::NAME))?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let passkeys = rows::passkeys(&tx, caller.user_id).await?;
        tx.commit().await?;
        Ok(passkeys.iter().map(PasskeyView::from).collect())
    }

    /// Removes one of the caller's passkeys. Refused when it is the last
    /// second factor of an owner or admin of an organisation that requires
    /// MFA.
    pub async fn remove(
        &self,
        who: &Authorized<OwnMfa>,
        id: Uuid,
        ip: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        let caller = person(who)?;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let user = rows::user(&tx, caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        if !rows::delete_passkey(&tx, user.id, id).await? {
            return Err(ServiceError::NotFound("passkey"));
        }
        if caller.role.mfa_applies()
            && !has_second_factor(&tx, &user).await?
            && rows::mfa_required(&tx).await?
        {
            // Rolled back: the passkey stays.
            return Err(ServiceError::Refused {
                code: "mfa_required_by_organization",
                message: format!(
                    "your organisation requires MFA of its {}s: this is your last second factor",
                    caller.role.as_str()
                ),
            });
        }
        tx.commit().await?;
        drop(conn);
        self.record(
            who,
            "access.passkey_removed",
            Outcome::Success,
            ip,
            json!({ "passkey_id": id }),
        )
        .await
    }

    /// The first step of a login with password + passkey: checks the
    /// password as a login does (same limits, same answers, same records)
    /// and issues a challenge for the user's passkeys.
    pub async fn start_login(
        &self,
        input: PasskeyLoginStartInput,
        ip: Option<IpAddr>,
    ) -> Result<PasskeyLoginChallenge, ServiceError> {
        let known = self
            .accounts
            .check_password(&input.email, &input.password, input.organization_id, ip)
            .await?;
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(known.tenant).await?;
        tx.act_as(known.user.id).await?;
        let challenge = self.challenge(&tx, known.user.id, "login", now).await?;
        tx.commit().await?;
        Ok(challenge)
    }

    /// The second step: the authenticator's assertion for the ceremony's
    /// challenge. On success a session opens exactly as at login, with
    /// `mfa` true.
    pub async fn finish_login(
        &self,
        input: PasskeyLoginFinishInput,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, ServiceError> {
        let now = self.clock.now();
        let ceremony = {
            let mut conn = self.store.conn().await?;
            let tx = conn.lookup().await?;
            let ceremony = rows::take_login_ceremony(&tx, input.ceremony_id).await?;
            tx.commit().await?;
            ceremony
        };
        // Unknown, used or expired: the same answer as a wrong password.
        let Some(ceremony) = ceremony.filter(|c| c.expires_at > now) else {
            return Err(ServiceError::InvalidCredentials);
        };
        let state: PasskeyAuthentication = serde_json::from_value(ceremony.state)
            .map_err(|e| StoreError::Corrupt(format!("passkey authentication state: {e}")))?;
        let tenant = ceremony.tenant_id;
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(tenant).await?;
        tx.act_as(ceremony.user_id).await?;
        let user = rows::user(&tx, ceremony.user_id).await?;
        let membership = rows::membership(&tx, ceremony.user_id).await?;
        let (Some(user), Some(membership)) = (user, membership.filter(|m| m.status == "active"))
        else {
            return Err(ServiceError::InvalidCredentials);
        };
        let role = Role::parse(&membership.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {:?}", membership.role)))?;
        let memberships = vec![membership];
        if !self
            .prove(&tx, user.id, &state, &input.credential, now)
            .await?
        {
            tx.commit().await?;
            drop(conn);
            self.accounts
                .record_failed_login(
                    &user.email,
                    Some(user.id),
                    &memberships,
                    Some(tenant.as_uuid()),
                    ip,
                    "passkey",
                )
                .await;
            return Err(ServiceError::InvalidCredentials);
        }
        let known = PasswordChecked {
            email: user.email.clone(),
            user,
            memberships,
            tenant,
            role,
        };
        let opened = self.accounts.open_session(&tx, &known, true).await?;
        tx.commit().await?;
        drop(conn);
        self.accounts
            .record_login(&known, opened, Some("passkey"), ip)
            .await
    }

    /// Re-authenticates with password + passkey, step 1: the caller's
    /// password (limited and recorded as at re-authentication), and a
    /// challenge for their passkeys.
    pub async fn start_reauth(
        &self,
        who: &Authorized<OwnAccount>,
        input: PasskeyReauthStartInput,
        ip: Option<IpAddr>,
    ) -> Result<PasskeyLoginChallenge, ServiceError> {
        let user = self
            .accounts
            .check_own_password(who, &input.password, ip)
            .await?;
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(user.id).await?;
        let challenge = self.challenge(&tx, user.id, "reauth", now).await?;
        tx.commit().await?;
        Ok(challenge)
    }

    /// Step 2: the authenticator's assertion. The caller's session counts as
    /// freshly authenticated, with MFA.
    pub async fn finish_reauth(
        &self,
        who: &Authorized<OwnAccount>,
        input: PasskeyLoginFinishInput,
        ip: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        let caller = who
            .principal()
            .session()
            .ok_or(ServiceError::Forbidden(OwnAccount::NAME))?;
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let tx = conn.tenant(who.tenant()).await?;
        tx.act_as(caller.user_id).await?;
        let ceremony = rows::take_reauth_ceremony(&tx, caller.user_id, input.ceremony_id)
            .await?
            .filter(|c| c.expires_at > now);
        let proved = match ceremony {
            Some(ceremony) => {
                let state: PasskeyAuthentication =
                    serde_json::from_value(ceremony.state).map_err(|e| {
                        StoreError::Corrupt(format!("passkey authentication state: {e}"))
                    })?;
                self.prove(&tx, caller.user_id, &state, &input.credential, now)
                    .await?
            }
            None => false,
        };
        if proved {
            rows::reauthenticate(&tx, caller.session_id, now, true).await?;
        }
        tx.commit().await?;
        drop(conn);
        if !proved {
            self.accounts
                .record_reauthentication(who, Outcome::Failure, ip, json!({ "method": "passkey" }))
                .await?;
            return Err(ServiceError::InvalidCredentials);
        }
        self.accounts
            .record_reauthentication(
                who,
                Outcome::Success,
                ip,
                json!({ "mfa": true, "method": "passkey" }),
            )
            .await
    }

    /// Issues a challenge for the passkeys of `user` (acted as in `tx`)
    /// and keeps its state as a ceremony of `kind`.
    async fn challenge(
        &self,
        tx: &TenantTx<'_>,
        user: Uuid,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<PasskeyLoginChallenge, ServiceError> {
        let keys: Vec<Passkey> = user_passkeys(tx, user)
            .await?
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        if keys.is_empty() {
            return Err(ServiceError::Conflict {
                code: "no_passkey",
                message: "you have no passkey: register one, or use your password (and TOTP)"
                    .into(),
            });
        }
        let (challenge, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(internal)?;
        let state = serde_json::to_value(&state).map_err(internal)?;
        let ceremony_id = Uuid::new_v4();
        rows::insert_ceremony(
            tx,
            &NewCeremony {
                id: ceremony_id,
                user_id: user,
                kind,
                state: &state,
                name: None,
                expires_at: now + CEREMONY_LIFETIME,
            },
            now,
        )
        .await?;
        Ok(PasskeyLoginChallenge {
            ceremony_id,
            challenge,
        })
    }

    /// Checks `credential` against the challenge of `state` and the
    /// passkeys of `user` (acted as in `tx`); when it holds, the passkey
    /// that answered is rewritten with its new counter and backup state
    /// and marked used. False for a wrong, replayed or cloned answer.
    async fn prove(
        &self,
        tx: &TenantTx<'_>,
        user: Uuid,
        state: &PasskeyAuthentication,
        credential: &PublicKeyCredential,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let result = match self
            .webauthn
            .finish_passkey_authentication(credential, state)
        {
            Ok(result) => result,
            Err(error) => {
                tracing::info!(error = %error, "a passkey assertion was refused");
                return Ok(false);
            }
        };
        for (stored, mut key) in user_passkeys(tx, user).await? {
            if key.cred_id() == result.cred_id() {
                key.update_credential(&result);
                let key = serde_json::to_value(&key).map_err(internal)?;
                rows::use_passkey(tx, stored.id, &key, now).await?;
                return Ok(true);
            }
        }
        // Removed since the challenge was issued.
        Ok(false)
    }

    /// Records a change of the caller's passkeys.
    async fn record(
        &self,
        who: &Authorized<OwnMfa>,
        action: &str,
        outcome: Outcome,
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
                    outcome,
                    source_ip: ip,
                    metadata,
                },
            )
            .await
    }
}

/// The person calling: only a session holds passkeys.
fn person(who: &Authorized<OwnMfa>) -> Result<&SessionCaller, ServiceError> {
    who.principal()
        .session()
        .ok_or(ServiceError::Forbidden(OwnMfa::NAME))
}

fn parse_passkey(stored: &StoredPasskey) -> Result<Passkey, StoreError> {
    serde_json::from_value(stored.passkey.clone())
        .map_err(|e| StoreError::Corrupt(format!("passkey {}: {e}", stored.id)))
}

/// The passkeys of the user `tx` acts as, parsed.
async fn user_passkeys(
    tx: &TenantTx<'_>,
    user: Uuid,
) -> Result<Vec<(StoredPasskey, Passkey)>, ServiceError> {
    let mut parsed = Vec::new();
    for stored in rows::passkeys(tx, user).await? {
        let key = parse_passkey(&stored)?;
        parsed.push((stored, key));
    }
    Ok(parsed)
}

/// webauthn-rs failing to begin a ceremony, or its state not serialising:
/// neither is the client's doing.
fn internal(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(anyhow::anyhow!("webauthn: {error}"))
}
