//! The one place errors become HTTP responses.
//!
//! Every error answer has the shape `{"error": {"code", "message"}}` with a
//! stable `code`. 4xx messages say what was wrong; 5xx messages say nothing
//! internal, and the cause is logged (with the request id) instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `missing_field`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// From the service layer.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The request itself was refused before reaching a service (bad body,
    /// media type, size, path or route).
    #[error("{message}")]
    Rejected {
        /// HTTP status.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Rejected { code, .. } => code,
            ApiError::Service(e) => match e {
                ServiceError::Invalid { code, .. } => code,
                ServiceError::Unauthenticated => "unauthenticated",
                ServiceError::InvalidCredentials => "invalid_credentials",
                ServiceError::MfaRequired => "mfa_required",
                ServiceError::CsrfRejected => "csrf_rejected",
                ServiceError::Forbidden(_) => "forbidden",
                ServiceError::ReauthenticationRequired => "reauthentication_required",
                ServiceError::MfaEnrollmentRequired => "mfa_enrollment_required",
                ServiceError::Refused { code, .. } => code,
                ServiceError::NotFound(_) => "not_found",
                ServiceError::Conflict { code, .. } => code,
                ServiceError::Purged(_) => "purged",
                ServiceError::IdempotencyConflict(_) => "idempotency_conflict",
                ServiceError::Unavailable(_) => "unavailable",
                ServiceError::RateLimited { .. } => "rate_limited",
                ServiceError::Internal(_) => "internal",
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Rejected { status, .. } => *status,
            ApiError::Service(e) => match e {
                ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
                ServiceError::Unauthenticated => StatusCode::UNAUTHORIZED,
                ServiceError::InvalidCredentials => StatusCode::UNAUTHORIZED,
                ServiceError::MfaRequired => StatusCode::UNAUTHORIZED,
                ServiceError::CsrfRejected => StatusCode::FORBIDDEN,
                ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
                ServiceError::ReauthenticationRequired => StatusCode::FORBIDDEN,
                ServiceError::MfaEnrollmentRequired => StatusCode::FORBIDDEN,
                ServiceError::Refused { .. } => StatusCode::FORBIDDEN,
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::Conflict { .. } => StatusCode::CONFLICT,
                ServiceError::Purged(_) => StatusCode::GONE,
                ServiceError::IdempotencyConflict(_) => StatusCode::CONFLICT,
                ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, http.status = status.as_u16(), "request failed");
            match self {
                ApiError::Service(ServiceError::Unavailable(_)) => {
                    "temporarily unavailable; retry shortly".to_owned()
                }
                _ => "internal error; the cause is logged under this request id".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut response = HttpResponse::build(status);
        match status {
            StatusCode::UNAUTHORIZED => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                // Whole seconds, rounded up: never "0".
                let seconds = match self {
                    ApiError::Service(ServiceError::RateLimited { retry_after }) => {
                        retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
                    }
                    _ => 1,
                };
                response.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        })
    }
}
