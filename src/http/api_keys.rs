//! `/v1/api-keys`: an organisation's owners and admins list, create, rotate
//! and revoke its applications' keys. Answers carrying a key are marked
//! `no-store`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use super::members::secret_answer;
use crate::crypto::ApiKeyId;
use crate::service::auth::{ManageApiKeys, ViewApiKeys};
use crate::service::keys::KeyView;
use crate::service::members::{KeyInput, NewKey};

/// The organisation's API keys, live and revoked, newest first; never
/// their secrets.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api_keys",
    responses(
        (status = 200, description = "Keys, newest first", body = [KeyView]),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden: not an owner or admin, or an API key", body = ErrorBody),
    ))]
#[get("/v1/api-keys")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ViewApiKeys>()?;
    Ok(HttpResponse::Ok().json(state.keys.list(&who).await?))
}

/// Create a key with scopes from `events:write`, `events:read`, `export`.
/// The token is shown once. Needs a login or re-authentication in the last
/// 5 minutes.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api_keys", request_body = KeyInput,
    responses(
        (status = 201, description = "Created; the token, shown once", body = NewKey),
        (status = 400, description = "invalid_scope, no scope, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin, or an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
    ))]
#[post("/v1/api-keys")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageApiKeys>()?;
    let input: KeyInput = json_body(&req, body, state.body_limit).await?;
    let key = state.members.create_key(&who, input).await?;
    Ok(secret_answer(StatusCode::CREATED, key))
}

/// Replace a live key by a new one with the same scopes, in one step: the
/// old key stops working at once. The new token is shown once. Needs a
/// login or re-authentication in the last 5 minutes.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api_keys",
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 201, description = "The new key; the token, shown once", body = NewKey),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin, or an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 404, description = "No such live key in your organisation", body = ErrorBody),
    ))]
#[post("/v1/api-keys/{id}/rotate")]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageApiKeys>()?;
    let id = ApiKeyId::from_uuid(path.into_inner());
    let key = state.members.rotate_key(&who, id).await?;
    Ok(secret_answer(StatusCode::CREATED, key))
}

/// Revoke a key: its next request is refused. Revoking a revoked key is
/// not an error. Needs a login or re-authentication in the last 5 minutes.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api_keys",
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin, or an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
        (status = 404, description = "No such key in your organisation", body = ErrorBody),
    ))]
#[delete("/v1/api-keys/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageApiKeys>()?;
    let id = ApiKeyId::from_uuid(path.into_inner());
    state.members.revoke_key(&who, id).await?;
    Ok(HttpResponse::new(StatusCode::NO_CONTENT))
}
