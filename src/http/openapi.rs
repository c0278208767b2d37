//! The OpenAPI 3.1 description, generated from the handlers and types so it
//! cannot drift from them.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Annal", description = "Append-only, tamper-evident audit ledger."),
    paths(
        super::events::append_one,
        super::events::append_batch,
        super::events::search,
        super::events::by_seq,
        super::proofs::latest,
        super::proofs::at_size,
        super::proofs::inclusion,
        super::proofs::consistency,
        super::proofs::event_proof,
        super::proofs::keys,
        super::proofs::export,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::auth::reauthenticate,
        super::auth::sessions,
        super::auth::end_session,
        super::mfa::start_totp,
        super::mfa::confirm_totp,
        super::mfa::remove_totp,
        super::mfa::replace_recovery_codes,
        super::mfa::org_settings,
        super::mfa::set_org_settings,
        super::passkeys::start_registration,
        super::passkeys::finish_registration,
        super::passkeys::list,
        super::passkeys::remove,
        super::passkeys::start_login,
        super::passkeys::finish_login,
        super::passkeys::start_reauth,
        super::passkeys::finish_reauth,
        super::members::list,
        super::members::invite,
        super::members::accept,
        super::members::change_role,
        super::members::remove,
        super::api_keys::list,
        super::api_keys::create,
        super::api_keys::rotate,
        super::api_keys::revoke,
        super::retention::show,
        super::retention::set_period,
        super::retention::set_hold,
        super::health::healthz,
        super::health::readyz,
        document,
    ),
    modifiers(&BearerKey),
    tags(
        (name = "events", description = "Append and read a tenant's audit trail"),
        (name = "proofs", description = "Signed checkpoints, Merkle proofs, keys and export bundles for auditors"),
        (name = "auth", description = "People: logins, sessions, second factors and the organisation's MFA policy"),
        (name = "members", description = "An organisation's members: invitations, roles, removal (owners and admins)"),
        (name = "api_keys", description = "An organisation's API keys: list, create, rotate, revoke (owners and admins)"),
        (name = "retention", description = "An organisation's retention period and legal hold (owners and admins)"),
        (name = "operations", description = "Health and API description"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/v1/openapi.json")]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
