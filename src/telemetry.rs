//! Structured logs: JSON lines on stdout, one per event, carrying the fields
//! of the current span (the request id while serving a request). Levels come
//! from `RUST_LOG` (default `info`).
//!
//! Some dependencies log values that may be personal data at debug level
//! (tokio-postgres prints statement parameters). Those targets are held at
//! `info` whatever `RUST_LOG` says, so no setting puts payloads in the logs.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Targets that must never log below `info`, because they print data.
const DATA_PRINTING_TARGETS: [&str; 2] = ["tokio_postgres", "postgres"];

/// Installs the JSON log subscriber for the process.
pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in DATA_PRINTING_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .try_init();
}
