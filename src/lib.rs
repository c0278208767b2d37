//! Annal: an append-only, tamper-evident audit ledger.
//!
//! Layers, each importing only those above it (see `ARCHITECTURE.md`):
//! `ledger` (pure) → `verify` (offline) → `store` (PostgreSQL) → `service`
//! (use cases) → `http` (actix-web) → binaries. Everything that needs a
//! database or a network sits behind the `server` feature, so the offline
//! verifier builds without either.
#![forbid(unsafe_code)]

pub mod ledger;
pub mod verify;

#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod crypto;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod pg;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
