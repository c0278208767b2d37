//! `/v1/auth/passkeys`: a person registers, lists and removes passkeys,
//! and logs in (or re-authenticates) with password + passkey. Challenges are marked `no-store`.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use uuid::Uuid;
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use super::AppState;
use super::auth::session_cookie;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::service::accounts::LoginAnswer;
use crate::service::auth::{OwnAccount, OwnMfa};
use crate::service::passkeys::{
    PasskeyLoginChallenge, PasskeyLoginFinishInput, PasskeyLoginStartInput,
    PasskeyReauthStartInput, PasskeyView, StartRegistrationInput,
};

/// The client's address as the connection shows it.
fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
}

/// A 200 with a challenge in it: no cache may keep it.
fn challenge_answer(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

/// Begin registering a passkey: the options for
/// `navigator.credentials.create` (valid 5 minutes). Needs a login or
/// re-authentication in the last 5 minutes.
#[utoipa::path(post, path = "/v1/auth/passkeys/register/start", tag = "auth",
    request_body = StartRegistrationInput,
    responses(
        (status = 200, description = "WebAuthn CreationChallengeResponse (`{\"publicKey\": ...}`)", body = Object),
        (status = 400, description = "invalid_name, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/register/start")]
pub async fn start_registration(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    let input: StartRegistrationInput = json_body(&req, body, state.body_limit).await?;
    let challenge = state.passkeys.start_registration(&who, input).await?;
    Ok(challenge_answer(challenge))
}

/// Finish registering a passkey with the authenticator's answer
/// (`RegisterPublicKeyCredential`).
#[utoipa::path(post, path = "/v1/auth/passkeys/register/finish", tag = "auth",
    request_body(content = Object, description = "WebAuthn RegisterPublicKeyCredential"),
    responses(
        (status = 201, description = "Registered", body = PasskeyView),
        (status = 400, description = "invalid_passkey, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "no_registration_pending, or passkey_already_registered", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/register/finish")]
pub async fn finish_registration(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    let credential: RegisterPublicKeyCredential = json_body(&req, body, state.body_limit).await?;
    let view = state
        .passkeys
        .finish_registration(&who, credential, client_ip(&req))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// Your passkeys.
#[utoipa::path(get, path = "/v1/auth/passkeys", tag = "auth",
    responses(
        (status = 200, description = "Oldest first", body = [PasskeyView]),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key)", body = ErrorBody),
    ))]
#[get("/v1/auth/passkeys")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    Ok(HttpResponse::Ok().json(state.passkeys.list(&who).await?))
}

/// Remove one of your passkeys. Owners and admins of an organisation that
/// requires MFA may not remove their last second factor.
#[utoipa::path(delete, path = "/v1/auth/passkeys/{id}", tag = "auth",
    params(("id" = Uuid, Path, description = "The passkey")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "mfa_required_by_organization, forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 404, description = "No such passkey of yours", body = ErrorBody),
    ))]
#[delete("/v1/auth/passkeys/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    state
        .passkeys
        .remove(&who, path.into_inner(), client_ip(&req))
        .await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}

/// Log in with a passkey, step 1: email and password (limited and recorded
/// as at `/v1/auth/login`); the challenge for the authenticator.
#[utoipa::path(post, path = "/v1/auth/passkeys/login/start", tag = "auth",
    request_body = PasskeyLoginStartInput,
    responses(
        (status = 200, description = "The ceremony id and the WebAuthn RequestChallengeResponse", body = PasskeyLoginChallenge),
        (status = 400, description = "Malformed input, or organization_id needed", body = ErrorBody),
        (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 409, description = "no_passkey: log in with /v1/auth/login", body = ErrorBody),
        (status = 429, description = "Too many attempts for this account or address; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/login/start")]
pub async fn start_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: PasskeyLoginStartInput = json_body(&req, body, state.body_limit).await?;
    let challenge = state.passkeys.start_login(input, client_ip(&req)).await?;
    Ok(challenge_answer(challenge))
}

/// Log in with a passkey, step 2: the authenticator's assertion. Sets the
/// session cookie and answers as `/v1/auth/login` does, with `mfa` true.
#[utoipa::path(post, path = "/v1/auth/passkeys/login/finish", tag = "auth",
    request_body = PasskeyLoginFinishInput,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = LoginAnswer),
        (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 401, description = "invalid_credentials: a wrong or replayed assertion, or an unknown or expired ceremony", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/login/finish")]
pub async fn finish_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: PasskeyLoginFinishInput = json_body(&req, body, state.body_limit).await?;
    let logged_in = state.passkeys.finish_login(input, client_ip(&req)).await?;
    let max_age =
        (logged_in.answer.session.expires_at - logged_in.answer.session.created_at).num_seconds();
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(logged_in.token.expose().to_owned(), max_age))
        .json(logged_in.answer))
}

/// Re-authenticate with a passkey, step 1: your password (limited and
/// recorded as at `/v1/auth/reauthenticate`); the challenge for your
/// authenticator.
#[utoipa::path(post, path = "/v1/auth/passkeys/reauth/start", tag = "auth",
    request_body = PasskeyReauthStartInput,
    responses(
        (status = 200, description = "The ceremony id and the WebAuthn RequestChallengeResponse", body = PasskeyLoginChallenge),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "invalid_credentials, or no live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), or csrf_rejected", body = ErrorBody),
        (status = 409, description = "no_passkey", body = ErrorBody),
        (status = 429, description = "Too many attempts for this account or address; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/reauth/start")]
pub async fn start_reauth(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    let input: PasskeyReauthStartInput = json_body(&req, body, state.body_limit).await?;
    let challenge = state
        .passkeys
        .start_reauth(&who, input, client_ip(&req))
        .await?;
    Ok(challenge_answer(challenge))
}

/// Re-authenticate with a passkey, step 2: the authenticator's assertion.
/// The session may then do sensitive operations for 5 minutes.
#[utoipa::path(post, path = "/v1/auth/passkeys/reauth/finish", tag = "auth",
    request_body = PasskeyLoginFinishInput,
    responses(
        (status = 204, description = "Re-authenticated, with MFA"),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "invalid_credentials (a wrong or replayed assertion, an unknown or expired ceremony), or no live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), or csrf_rejected", body = ErrorBody),
    ))]
#[post("/v1/auth/passkeys/reauth/finish")]
pub async fn finish_reauth(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    let input: PasskeyLoginFinishInput = json_body(&req, body, state.body_limit).await?;
    state
        .passkeys
        .finish_reauth(&who, input, client_ip(&req))
        .await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}
