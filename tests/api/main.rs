//! API and storage tests against a real PostgreSQL: one throwaway cluster
//! per run of this binary, a fresh database per test, and the real `annal`
//! binary serving each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod helpers;

mod access;
mod auth;
mod bad_input;
mod durability;
mod ingest;
mod logs;
mod matrix;
mod members;
mod mfa;
mod operators;
mod passkeys;
mod proofs;
mod purge_tree;
mod read;
mod retention;
mod schema;
mod tamper;
mod upgrade;
