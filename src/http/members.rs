//! `/v1/members`: an organisation's owners and admins see, invite, change
//! and remove its members; `/v1/auth/invitations/accept`: an invitee joins.
//! Answers carrying a token are marked `no-store`.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::service::auth::{ManageMembers, ViewMembers};
use crate::service::members::{
    AcceptInput, Accepted, Invitation, InviteInput, MemberView, RoleInput,
};

/// The client's address as the connection shows it.
fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
}

/// An answer with a secret in it: no cache may keep it.
pub(super) fn secret_answer(status: StatusCode, body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

/// The organisation's members, invited or active (owners and admins).
#[utoipa::path(get, path = "/v1/members", tag = "members",
    responses(
        (status = 200, description = "Members, oldest first", body = [MemberView]),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden: not an owner or admin, or an API key", body = ErrorBody),
    ))]
#[get("/v1/members")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ViewMembers>()?;
    Ok(HttpResponse::Ok().json(state.members.list(&who).await?))
}

/// Invite someone by email: a new account, or an existing one (the answer
/// does not say which). The invitation token is shown once and is valid
/// for 7 days. Only owners invite owners. Needs a login or
/// re-authentication in the last 5 minutes.
#[utoipa::path(post, path = "/v1/members", tag = "members", request_body = InviteInput,
    responses(
        (status = 201, description = "Invited; the token, shown once", body = Invitation),
        (status = 400, description = "invalid_email, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin; an admin inviting an owner; an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 409, description = "already_a_member: this email is a member or invited already", body = ErrorBody),
    ))]
#[post("/v1/members")]
pub async fn invite(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageMembers>()?;
    let input: InviteInput = json_body(&req, body, state.body_limit).await?;
    let invitation = state.members.invite(&who, input).await?;
    Ok(secret_answer(StatusCode::CREATED, invitation))
}

/// Accept an invitation (no session needed). A new account sets its
/// password; an existing account gives its password (and TOTP code when
/// enrolled). Then log in as usual.
#[utoipa::path(post, path = "/v1/auth/invitations/accept", tag = "members",
    request_body = AcceptInput,
    responses(
        (status = 200, description = "The membership is active", body = Accepted),
        (status = 400, description = "invalid_password (12 to 1024 bytes), or a malformed body", body = ErrorBody),
        (status = 401, description = "invalid_credentials: not the existing account's password or code; mfa_required", body = ErrorBody),
        (status = 404, description = "No such invitation, or it expired or was used", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/auth/invitations/accept")]
pub async fn accept(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: AcceptInput = json_body(&req, body, state.body_limit).await?;
    let accepted = state.members.accept(input, client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(accepted))
}

/// Change a member's role; their sessions in this organisation end. Only
/// owners make or change owners, and the last active owner stays one.
/// Needs a login or re-authentication in the last 5 minutes.
#[utoipa::path(patch, path = "/v1/members/{user_id}", tag = "members", request_body = RoleInput,
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 200, description = "The member as they are now", body = MemberView),
        (status = 400, description = "Malformed body or path", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin; an admin and an owner involved; an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 404, description = "No such member of your organisation", body = ErrorBody),
        (status = 409, description = "last_owner: make another member owner first", body = ErrorBody),
    ))]
#[patch("/v1/members/{user_id}")]
pub async fn change_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageMembers>()?;
    let input: RoleInput = json_body(&req, body, state.body_limit).await?;
    let member = state
        .members
        .change_role(&who, path.into_inner(), input.role)
        .await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Remove a member (or withdraw an invitation); their sessions in this
/// organisation end. Only owners remove owners, and the last active owner
/// stays. Needs a login or re-authentication in the last 5 minutes.
#[utoipa::path(delete, path = "/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin; an admin removing an owner; an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 404, description = "No such member of your organisation", body = ErrorBody),
        (status = 409, description = "last_owner: make another member owner first", body = ErrorBody),
    ))]
#[delete("/v1/members/{user_id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageMembers>()?;
    state.members.remove(&who, path.into_inner()).await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}
