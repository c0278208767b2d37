//! Extractors: the authenticated caller and a strictly parsed JSON body.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt as _;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::error::Category;

use super::AppState;
use super::error::ApiError;
use crate::service::ServiceError;
use crate::service::accounts::{CSRF_HEADER, SESSION_COOKIE};
use crate::service::auth::Principal;

/// The caller: an application by `Authorization: Bearer <API key>`, or a
/// person by the session cookie (with the anti-CSRF header on every request
/// that may change something).
#[derive(Debug)]
pub struct Caller(pub Principal);

/// The value of the session cookie, if the request has one.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let session = session_cookie(req);
        let csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::Service(ServiceError::Internal(anyhow::anyhow!("app state missing")))
            })?;
            let principal = match (bearer, session) {
                (Some(token), _) => state.keys.authenticate(&token).await?,
                (None, Some(token)) => {
                    state
                        .accounts
                        .authenticate(&token, csrf.as_deref(), state_changing)
                        .await?
                }
                (None, None) => return Err(ApiError::Service(ServiceError::Unauthenticated)),
            };
            tracing::Span::current()
                .record("tenant_id", tracing::field::display(principal.tenant()));
            Ok(Caller(principal))
        })
    }
}

/// Reads a JSON body of at most `limit` bytes into `T`, mapping each way it
/// can be wrong to its own error code.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        let ok = content_type
            .to_str()
            .map(|ct| {
                let essence = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::Rejected {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "the body must be application/json".into(),
            });
        }
    }
    let too_large = || ApiError::Rejected {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_too_large",
        message: format!("the body exceeds the limit of {limit} bytes"),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("malformed_body", e.to_string()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("invalid_utf8", "the body is not valid UTF-8"))?;
    // Syntax (and duplicate keys) first, so a body that is not JSON at all
    // says so rather than naming the first field it happened to miss.
    serde_json::from_str::<UniqueKeys>(text).map_err(|e| {
        let code = match e.classify() {
            Category::Data => "duplicate_key",
            _ => "malformed_json",
        };
        ApiError::bad_request(code, e.to_string())
    })?;
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let code = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => "malformed_json",
            Category::Data if message.starts_with("unknown field") => "unknown_field",
            Category::Data if message.starts_with("missing field") => "missing_field",
            Category::Data if message.starts_with("invalid type") => "invalid_type",
            Category::Data => "invalid_field",
        };
        ApiError::bad_request(code, message)
    })
}

/// Any JSON value in which no object repeats a key. JSON parsers disagree on
/// which of two equal keys wins; a ledger must not pick one silently.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}
