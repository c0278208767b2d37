//! `/v1/auth/mfa`: a person enrolls, confirms and removes TOTP and
//! replaces their recovery codes; `/v1/org/settings`: the organisation's
//! MFA requirement. Answers carrying a secret are marked `no-store`.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::service::auth::{ManageMfaPolicy, OwnAccount, OwnMfa};
use crate::service::mfa::{
    ConfirmTotpInput, OrgSettings, OrgSettingsInput, RecoveryCodes, TotpEnrollment,
};

/// The client's address as the connection shows it.
fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
}

/// A 200 with a secret in it: no cache may keep it.
fn secret_answer(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

/// Begin TOTP enrollment: a new secret, shown once, pending until
/// confirmed with a code (beginning again replaces it). Needs a login or
/// re-authentication in the last 5 minutes.
#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "auth",
    responses(
        (status = 200, description = "The pending secret, as base32 and as an otpauth:// URI", body = TotpEnrollment),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "mfa_already_enrolled: remove TOTP first", body = ErrorBody),
    ))]
#[post("/v1/auth/mfa/totp")]
pub async fn start_totp(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    let enrollment = state.mfa.start_totp(&who, client_ip(&req)).await?;
    Ok(secret_answer(enrollment))
}

/// Confirm TOTP enrollment with the app's current code: TOTP is on, this
/// session counts as MFA-verified, and ten recovery codes are shown once.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "auth",
    request_body = ConfirmTotpInput,
    responses(
        (status = 200, description = "Enrolled; the recovery codes, shown once", body = RecoveryCodes),
        (status = 400, description = "invalid_code, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "no_enrollment_pending, or mfa_already_enrolled", body = ErrorBody),
    ))]
#[post("/v1/auth/mfa/totp/confirm")]
pub async fn confirm_totp(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    let input: ConfirmTotpInput = json_body(&req, body, state.body_limit).await?;
    let codes = state.mfa.confirm_totp(&who, input, client_ip(&req)).await?;
    Ok(secret_answer(codes))
}

/// Remove your TOTP and recovery codes. Owners and admins of an
/// organisation that requires MFA may not.
#[utoipa::path(delete, path = "/v1/auth/mfa/totp", tag = "auth",
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "mfa_required_by_organization, forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "mfa_not_enrolled", body = ErrorBody),
    ))]
#[delete("/v1/auth/mfa/totp")]
pub async fn remove_totp(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    state.mfa.remove_totp(&who, client_ip(&req)).await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}

/// Replace your recovery codes: ten new ones, shown once; the old ones
/// stop working.
#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "auth",
    responses(
        (status = 200, description = "The new codes, shown once", body = RecoveryCodes),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "mfa_not_enrolled", body = ErrorBody),
    ))]
#[post("/v1/auth/mfa/recovery-codes")]
pub async fn replace_recovery_codes(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnMfa>()?;
    let codes = state
        .mfa
        .replace_recovery_codes(&who, client_ip(&req))
        .await?;
    Ok(secret_answer(codes))
}

/// The organisation's settings; any member may read them.
#[utoipa::path(get, path = "/v1/org/settings", tag = "auth",
    responses(
        (status = 200, description = "The settings", body = OrgSettings),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (an API key)", body = ErrorBody),
    ))]
#[get("/v1/org/settings")]
pub async fn org_settings(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    Ok(HttpResponse::Ok().json(state.mfa.settings(&who).await?))
}

/// Require TOTP of the organisation's owners and admins, or stop. Owners
/// and admins, within 5 minutes of a login or re-authentication.
#[utoipa::path(put, path = "/v1/org/settings", tag = "auth", request_body = OrgSettingsInput,
    responses(
        (status = 200, description = "The settings now", body = OrgSettings),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (role or API key), csrf_rejected, reauthentication_required, or mfa_enrollment_required", body = ErrorBody),
    ))]
#[put("/v1/org/settings")]
pub async fn set_org_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageMfaPolicy>()?;
    let input: OrgSettingsInput = json_body(&req, body, state.body_limit).await?;
    let settings = state.mfa.set_settings(&who, input, client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(settings))
}
