//! `/v1/retention`: an organisation's owners and admins see and set its
//! retention period and legal hold. The retention service records each
//! change in the organisation's log, with the person's user id as its
//! actor.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::service::auth::{
    Authorized, ManageLegalHold, ManageRetention, Permission, ViewRetention,
};
use crate::service::retention::{Operator, PolicyView};

/// The organisation's retention policy as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPolicy {
    /// The organisation.
    pub tenant_id: Uuid,
    /// Months records are kept after they were received.
    pub period_months: u32,
    /// The deployment's floor: no period is shorter.
    pub floor_months: u32,
    /// Whether a legal hold blocks every purge.
    pub legal_hold: bool,
    /// The reason given for the hold (or its release).
    pub hold_reason: Option<String>,
    /// Policy version (0: never changed).
    pub version: i32,
    /// When it last changed.
    pub changed_at: Option<DateTime<Utc>>,
    /// Records `0..purged_before` are purged (0: none).
    pub purged_before: u64,
}

impl From<PolicyView> for RetentionPolicy {
    fn from(view: PolicyView) -> RetentionPolicy {
        RetentionPolicy {
            tenant_id: view.tenant_id.as_uuid(),
            period_months: view.period_months,
            floor_months: view.floor_months,
            legal_hold: view.legal_hold,
            hold_reason: view.hold_reason,
            version: view.version,
            changed_at: view.changed_at,
            purged_before: view.purged_before,
        }
    }
}

/// `PUT /v1/retention`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodInput {
    /// Months to keep records, from the deployment's floor to 1200.
    pub period_months: u32,
}

/// `PUT /v1/retention/hold`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldInput {
    /// Place (`true`) or lift (`false`) the hold.
    pub on: bool,
    /// Why, 1 to 500 bytes; recorded in the log.
    pub reason: String,
}

/// The person changing the policy, as the retention service records them.
fn operator<P: Permission>(who: &Authorized<P>) -> Operator {
    Operator {
        name: who.principal().actor().id,
    }
}

/// The retention policy (owners and admins).
#[utoipa::path(get, path = "/v1/retention", tag = "retention",
    responses(
        (status = 200, description = "The policy in force", body = RetentionPolicy),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden: not an owner or admin, or an API key", body = ErrorBody),
    ))]
#[get("/v1/retention")]
pub async fn show(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ViewRetention>()?;
    let view = state.retention.show(who.tenant()).await?;
    Ok(HttpResponse::Ok().json(RetentionPolicy::from(view)))
}

/// Set the retention period (never below the deployment's floor);
/// recorded as `retention.policy_changed`.
#[utoipa::path(put, path = "/v1/retention", tag = "retention", request_body = PeriodInput,
    responses(
        (status = 200, description = "The policy in force now", body = RetentionPolicy),
        (status = 400, description = "invalid_period, below_floor, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin, or an API key), reauthentication_required, or csrf_rejected", body = ErrorBody),
    ))]
#[put("/v1/retention")]
pub async fn set_period(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageRetention>()?;
    let input: PeriodInput = json_body(&req, body, state.body_limit).await?;
    let view = state
        .retention
        .set_period(&operator(&who), who.tenant(), input.period_months)
        .await?;
    Ok(HttpResponse::Ok().json(RetentionPolicy::from(view)))
}

/// Place or lift a legal hold, with a reason: while it is on, nothing is
/// purged. Recorded as `retention.legal_hold_placed` or
/// `retention.legal_hold_lifted`. Needs a login or re-authentication in the
/// last 5 minutes.
#[utoipa::path(put, path = "/v1/retention/hold", tag = "retention", request_body = HoldInput,
    responses(
        (status = 200, description = "The policy in force now", body = RetentionPolicy),
        (status = 400, description = "invalid_reason, or a malformed body", body = ErrorBody),
        (status = 401, description = "No live session", body = ErrorBody),
        (status = 403, description = "forbidden (not an owner or admin, or an API key), csrf_rejected, or reauthentication_required", body = ErrorBody),
    ))]
#[put("/v1/retention/hold")]
pub async fn set_hold(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ManageLegalHold>()?;
    let input: HoldInput = json_body(&req, body, state.body_limit).await?;
    let view = state
        .retention
        .set_hold(&operator(&who), who.tenant(), input.on, &input.reason)
        .await?;
    Ok(HttpResponse::Ok().json(RetentionPolicy::from(view)))
}
