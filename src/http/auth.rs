//! `/v1/auth`: people log in, see and end their sessions, and
//! re-authenticate before sensitive operations.

use std::net::IpAddr;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::service::ServiceError;
use crate::service::accounts::{
    LoginAnswer, LoginInput, Me, ReauthInput, SESSION_COOKIE, SessionView,
};
use crate::service::auth::{ManageSessions, OwnAccount};

/// The client's address as the connection shows it (a proxy in front of
/// Annal is one address for all its clients).
fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
}

/// The session cookie, as every login sets it (a passkey login too).
pub(super) fn session_cookie(value: String, max_age_seconds: i64) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_seconds))
        .finish()
}

/// Log in with email and password (and TOTP or a recovery code when
/// enrolled). Sets the `__Host-annal_session` cookie (Secure, HttpOnly,
/// SameSite=Strict); the body carries the anti-CSRF token to send as
/// `X-Annal-CSRF` on every state-changing request.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = LoginAnswer),
        (status = 400, description = "Malformed input, or organization_id needed", body = ErrorBody),
        (status = 401, description = "invalid_credentials, or mfa_required: send totp_code", body = ErrorBody),
        (status = 429, description = "Too many attempts for this account or address; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: LoginInput = json_body(&req, body, state.body_limit).await?;
    let logged_in = state.accounts.login(input, client_ip(&req)).await?;
    let max_age =
        (logged_in.answer.session.expires_at - logged_in.answer.session.created_at).num_seconds();
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(logged_in.token.expose().to_owned(), max_age))
        .json(logged_in.answer))
}

/// End the current session and clear its cookie.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "Missing anti-CSRF header, or not a session", body = ErrorBody),
    ))]
#[post("/v1/auth/logout")]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    state.accounts.logout(&who).await?;
    let mut gone = session_cookie(String::new(), 0);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who is logged in: user, organisation, role, MFA status, this session.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "Not a session (an API key)", body = ErrorBody),
    ))]
#[get("/v1/auth/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    Ok(HttpResponse::Ok().json(state.accounts.me(&who).await?))
}

/// Prove the password (and TOTP) again: exports, API key changes, role
/// changes, MFA changes and legal holds need it within 5 minutes.
#[utoipa::path(post, path = "/v1/auth/reauthenticate", tag = "auth", request_body = ReauthInput,
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "invalid_credentials or mfa_required", body = ErrorBody),
        (status = 403, description = "Missing anti-CSRF header", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/auth/reauthenticate")]
pub async fn reauthenticate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<OwnAccount>()?;
    let input: ReauthInput = json_body(&req, body, state.body_limit).await?;
    state
        .accounts
        .reauthenticate(&who, input, client_ip(&req))
        .await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}

/// Query of `GET /v1/auth/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    /// Every member's sessions (owners and admins), not only yours.
    pub all: Option<bool>,
    /// Only this member's sessions (owners and admins).
    pub user_id: Option<Uuid>,
}

/// Live sessions: yours, or (owners and admins) every member's.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", params(SessionsQuery),
    responses(
        (status = 200, description = "Sessions, newest first", body = [SessionView]),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "Asked for others' sessions without the role", body = ErrorBody),
    ))]
#[get("/v1/auth/sessions")]
pub async fn sessions(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<SessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let list = if query.all == Some(true) || query.user_id.is_some() {
        let who = caller.0.authorize::<ManageSessions>()?;
        state.accounts.org_sessions(&who, query.user_id).await?
    } else {
        let who = caller.0.authorize::<OwnAccount>()?;
        state.accounts.own_sessions(&who).await?
    };
    Ok(HttpResponse::Ok().json(list))
}

/// End a session: your own, or (owners and admins) any member's.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "auth",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "Missing anti-CSRF header", body = ErrorBody),
        (status = 404, description = "No such live session (in your organisation)", body = ErrorBody),
    ))]
#[delete("/v1/auth/sessions/{id}")]
pub async fn end_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match caller.0.authorize::<ManageSessions>() {
        Ok(who) => state.accounts.revoke_any(&who, id).await?,
        // Not a manager, or one who must enroll MFA first: ending one's
        // own session is still allowed.
        Err(ServiceError::Forbidden(_) | ServiceError::MfaEnrollmentRequired) => {
            let who = caller.0.authorize::<OwnAccount>()?;
            state.accounts.revoke_own(&who, id).await?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}
