//! The auditor's endpoints: checkpoints, proofs, keys and export bundles.
//! Handlers extract, authorize, call the service and map; nothing more.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, get, web};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use crate::ledger::Seq;
use crate::service::auth::{Export, ReadEvents};
use crate::service::export::ExportInput;
use crate::service::proofs::{ConsistencyProof, InclusionProof};

const NOTE_TYPE: &str = "text/plain; charset=utf-8";

fn note(text: String) -> HttpResponse {
    HttpResponse::Ok().content_type(NOTE_TYPE).body(text)
}

fn parse_u64(name: &'static str, text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_path",
            format!("{name} must be a non-negative integer"),
        )
    })
}

/// The latest signed checkpoint of the caller's tenant.
///
/// A C2SP checkpoint in a C2SP signed note, byte for byte; signed on the
/// spot if committed events are not covered yet, unless the latest was
/// signed less than a checkpoint interval ago (then the background signer
/// covers them within the interval).
#[utoipa::path(get, path = "/v1/checkpoint", tag = "proofs",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The signed note", content_type = "text/plain", body = String),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 404, description = "The trail is empty", body = ErrorBody),
    ))]
#[get("/v1/checkpoint")]
pub async fn latest(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let checkpoint = state.proofs.latest_checkpoint(&who).await?;
    Ok(note(checkpoint.note))
}

/// The checkpoint signed at a tree size.
#[utoipa::path(get, path = "/v1/checkpoints/{size}", tag = "proofs",
    params(("size" = u64, Path, description = "Tree size")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The signed note", content_type = "text/plain", body = String),
        (status = 400, description = "size is not a number", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 404, description = "No checkpoint was signed at this size", body = ErrorBody),
    ))]
#[get("/v1/checkpoints/{size}")]
pub async fn at_size(
    state: web::Data<AppState>,
    caller: Caller,
    size: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let size = parse_u64("size", &size)?;
    let checkpoint = state.proofs.checkpoint(&who, size).await?;
    Ok(note(checkpoint.note))
}

/// Query of `GET /v1/proofs/inclusion`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The record's seq.
    pub seq: u64,
    /// A tree size with a signed checkpoint [default: the latest].
    pub tree_size: Option<u64>,
}

/// Inclusion proof of one record in a checkpointed tree.
#[utoipa::path(get, path = "/v1/proofs/inclusion", tag = "proofs", params(InclusionQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The proof and its checkpoint", body = InclusionProof),
        (status = 400, description = "Bad query or seq outside the tree", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 404, description = "No checkpoint at tree_size, or no such event", body = ErrorBody),
        (status = 410, description = "The event was purged by the tenant's retention policy", body = ErrorBody),
    ))]
#[get("/v1/proofs/inclusion")]
pub async fn inclusion(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<InclusionQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let proof = state
        .proofs
        .inclusion(&who, Seq::new(query.seq), query.tree_size)
        .await?;
    Ok(HttpResponse::Ok().json(proof))
}

/// Query of `GET /v1/proofs/consistency`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The smaller tree size (at least 1).
    pub from: u64,
    /// The larger tree size (at most the number of records).
    pub to: u64,
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/proofs/consistency", tag = "proofs", params(ConsistencyQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "Sizes out of range", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 410, description = "`from` is below the purge boundary: those records were purged by the retention policy", body = ErrorBody),
    ))]
#[get("/v1/proofs/consistency")]
pub async fn consistency(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let proof = state.proofs.consistency(&who, query.from, query.to).await?;
    Ok(HttpResponse::Ok().json(proof))
}

/// A C2SP tlog-proof file for one record against the latest checkpoint.
///
/// Its `extra` line is the hashed record (tenant, event id, receive time,
/// action), so the request is recorded in the trail as `audit.read`.
#[utoipa::path(get, path = "/v1/events/{seq}/proof", tag = "proofs",
    params(("seq" = u64, Path, description = "The record's seq")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The .tlog-proof file; `extra` holds the hashed record", content_type = "text/plain", body = String),
        (status = 400, description = "seq is not a number", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 410, description = "The event was purged by the tenant's retention policy", body = ErrorBody),
        (status = 503, description = "The event is not covered by a signed checkpoint yet; retry shortly", body = ErrorBody),
    ))]
#[get("/v1/events/{seq}/proof")]
pub async fn event_proof(
    state: web::Data<AppState>,
    caller: Caller,
    seq: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<ReadEvents>()?;
    let seq = parse_u64("seq", &seq)?;
    let proof = state.proofs.event_proof(&who, Seq::new(seq)).await?;
    Ok(HttpResponse::Ok()
        .content_type(NOTE_TYPE)
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(format!("{seq}.tlog-proof"))],
        })
        .body(proof))
}

/// The deployment's checkpoint keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct Keys {
    /// C2SP vkeys, newest first. The newest signs new checkpoints; older
    /// ones verify checkpoints signed before a rotation.
    pub vkeys: Vec<String>,
}

/// The C2SP vkeys that sign this deployment's checkpoints.
#[utoipa::path(get, path = "/v1/keys", tag = "proofs",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Newest first", body = Keys),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "Key lacks events:read", body = ErrorBody),
    ))]
#[get("/v1/keys")]
pub async fn keys(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.0.authorize::<ReadEvents>()?;
    Ok(HttpResponse::Ok().json(Keys {
        vkeys: state.proofs.vkeys(),
    }))
}

/// Export a range of the trail as a bundle for `annal-verify`.
///
/// Streamed JSON Lines (format in docs/FORMAT.md). The bundle ends at a
/// signed checkpoint. The export is recorded in the trail as `audit.export`.
#[utoipa::path(get, path = "/v1/export", tag = "proofs", params(ExportInput),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The bundle", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 401, description = "Missing, malformed or revoked key", body = ErrorBody),
        (status = 403, description = "The key lacks the export scope, or the member's role may not export or must re-authenticate", body = ErrorBody),
        (status = 404, description = "Nothing signed yet", body = ErrorBody),
        (status = 410, description = "trusted_size is below the purge boundary: it can no longer be linked", body = ErrorBody),
    ))]
#[get("/v1/export")]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ExportInput>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.0.authorize::<Export>()?;
    let (range, chunks) = state.exporter.export(&who, &query).await?;
    let body = stream::unfold(chunks, |mut chunks| async move {
        chunks
            .recv()
            .await
            .map(|chunk| (chunk.map(web::Bytes::from), chunks))
    });
    let filename = format!(
        "annal-{}-{}-{}.jsonl",
        range.tenant,
        range.from_seq,
        range.end_size - 1
    );
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .streaming(body))
}
