//! `/v1/events`: append and read a tenant's trail. Handlers extract,
//! authorize, call the service and map; nothing more.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, json_body};
use crate::ledger::Seq;
use crate::service::ServiceError;
use crate::service::auth::{ReadEvents, WriteEvents};
use crate::service::events::{
    BatchInput, EventInput, EventView, MAX_BATCH, Page, QueryInput, Receipt, ReceiptStatus, prepare,
};

/// Receipts of a batch, in the order posted.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchReceipt {
    /// One receipt per posted event.
    pub events: Vec<Receipt>,
}

fn created_or_ok(receipts: &[Receipt]) -> StatusCode {
    if receipts.iter().any(|r| r.status == ReceiptStatus::Created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Append one event.
///
/// Answers only after the event is durable. Repeating an `event_id` with the
/// same content answers 200 with the original record.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventInput,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Stored", body = Receipt),
        (status = 200, description = "Already stored under this event_id", body = Receipt),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:write", body = ErrorBody),
        (status = 409, description = "event_id reused for a different event", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 429, description = "The key is over its ingest limit; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/events")]
pub async fn append_one(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<WriteEvents>()?;
    let input: EventInput = json_body(&req, body, state.body_limit).await?;
    let pending = prepare(input)?;
    let receipts = state.ledger.append(&who, vec![pending]).await?;
    let status = created_or_ok(&receipts);
    let receipt = receipts
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("append returned no receipt")))?;
    Ok(HttpResponse::build(status).json(receipt))
}

/// Append up to 1,000 events, all or nothing.
#[utoipa::path(post, path = "/v1/events/batch", tag = "events", request_body = BatchInput,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Stored (receipts in posted order)", body = BatchReceipt),
        (status = 200, description = "Every event was already stored", body = BatchReceipt),
        (status = 400, description = "Invalid input; nothing stored", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:write", body = ErrorBody),
        (status = 409, description = "An event_id was reused for a different event; nothing stored", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 429, description = "The key is over its ingest limit; see Retry-After", body = ErrorBody),
    ))]
#[post("/v1/events/batch")]
pub async fn append_batch(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<WriteEvents>()?;
    let input: BatchInput = json_body(&req, body, state.body_limit).await?;
    if input.events.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "events must hold at least one event",
        ));
    }
    if input.events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "a batch holds at most {MAX_BATCH} events, this one has {}",
                input.events.len()
            ),
        ));
    }
    let pending = input
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            prepare(event).map_err(|e| match e {
                ServiceError::Invalid { code, message } => ServiceError::Invalid {
                    code,
                    message: format!("events[{i}]: {message}"),
                },
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let receipts = state.ledger.append(&who, pending).await?;
    Ok(HttpResponse::build(created_or_ok(&receipts)).json(BatchReceipt { events: receipts }))
}

/// Search the trail, newest first, with keyset pagination.
///
/// The read is itself recorded in the trail as an `audit.read` event.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(QueryInput),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One page", body = Page),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
    ))]
#[get("/v1/events")]
pub async fn search(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<QueryInput>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let page = state.ledger.query(&who, &query).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One event by seq.
///
/// The read is itself recorded in the trail as an `audit.read` event.
#[utoipa::path(get, path = "/v1/events/{seq}", tag = "events",
    params(("seq" = u64, Path, description = "Position in the tenant's chain")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 400, description = "seq is not a number", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 404, description = "No event at this seq", body = ErrorBody),
        (status = 410, description = "The event was purged by the tenant's retention policy", body = ErrorBody),
    ))]
#[get("/v1/events/{seq}")]
pub async fn by_seq(
    state: web::Data<AppState>,
    caller: Caller,
    seq: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let seq = seq
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("invalid_seq", "seq must be a non-negative integer"))?;
    let event = state.ledger.event(&who, Seq::new(seq)).await?;
    Ok(HttpResponse::Ok().json(event))
}
