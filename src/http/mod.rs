//! HTTP: actix-web routes, extractors and the mapping of errors. Handlers
//! stay thin: extract, authorize, call the service, map the answer.

pub mod api_keys;
pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod members;
pub mod mfa;
pub mod openapi;
pub mod passkeys;
pub mod proofs;
pub mod request_id;
pub mod retention;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::service::accounts::Accounts;
use crate::service::events::Ledger;
use crate::service::export::Exporter;
use crate::service::keys::Keys;
use crate::service::members::Members;
use crate::service::mfa::Mfa;
use crate::service::passkeys::Passkeys;
use crate::service::proofs::Proofs;
use crate::service::retention::Retention;
use crate::store::Store;
use error::ApiError;

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Appending and reading trails.
    pub ledger: Ledger,
    /// Authentication of applications.
    pub keys: Keys,
    /// People: logins and sessions.
    pub accounts: Accounts,
    /// Second factors and the organisation's MFA policy.
    pub mfa: Mfa,
    /// Passkeys: registration and login.
    pub passkeys: Passkeys,
    /// Members, invitations and API keys, by owners and admins.
    pub members: Members,
    /// Retention periods and legal holds.
    pub retention: Retention,
    /// Checkpoints, proofs and keys.
    pub proofs: Proofs,
    /// Export bundles.
    pub exporter: Exporter,
    /// The database, for readiness.
    pub store: Store,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

/// Registers every route of the API.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::bad_request("invalid_query", error.to_string()).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|error, _| {
            ApiError::bad_request("invalid_path", error.to_string()).into()
        }))
        .service(health::healthz)
        .service(health::readyz)
        .service(openapi::document)
        .service(events::append_batch)
        .service(events::append_one)
        .service(events::search)
        .service(events::by_seq)
        .service(proofs::latest)
        .service(proofs::at_size)
        .service(proofs::inclusion)
        .service(proofs::consistency)
        .service(proofs::event_proof)
        .service(proofs::keys)
        .service(proofs::export)
        .service(auth::login)
        .service(auth::logout)
        .service(auth::me)
        .service(auth::reauthenticate)
        .service(auth::sessions)
        .service(auth::end_session)
        .service(members::list)
        .service(members::invite)
        .service(members::accept)
        .service(members::change_role)
        .service(members::remove)
        .service(api_keys::list)
        .service(api_keys::create)
        .service(api_keys::rotate)
        .service(api_keys::revoke)
        .service(retention::show)
        .service(retention::set_period)
        .service(retention::set_hold)
        .service(mfa::start_totp)
        .service(mfa::confirm_totp)
        .service(mfa::remove_totp)
        .service(mfa::replace_recovery_codes)
        .service(mfa::org_settings)
        .service(mfa::set_org_settings)
        .service(passkeys::start_registration)
        .service(passkeys::finish_registration)
        .service(passkeys::list)
        .service(passkeys::remove)
        .service(passkeys::start_login)
        .service(passkeys::finish_login)
        .service(passkeys::start_reauth)
        .service(passkeys::finish_reauth)
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError::Rejected {
                status: actix_web::http::StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such endpoint".into(),
            })
        }));
}

/// Starts serving on `listener` with `workers` threads.
pub fn serve(listener: TcpListener, state: AppState, workers: usize) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(request_id::assign))
            .app_data(data.clone())
            .configure(routes)
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
