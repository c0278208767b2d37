//! Structured logs: JSON lines, one per event, carrying the fields of the
//! current span (the request id while serving a request). `serve` logs to
//! stdout; operator commands log to stderr so their stdout (`--json`) stays
//! machine-readable, and only warnings by default, so the terminal shows
//! their answer rather than migration chatter. `RUST_LOG` overrides both.
//!
//! Some dependencies log values that may be personal data at debug level
//! (tokio-postgres prints statement parameters). Those targets are held at
//! `info` whatever `RUST_LOG` says, so no setting puts payloads in the logs.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Targets that must never log below `info`, because they print data.
const DATA_PRINTING_TARGETS: [&str; 2] = ["tokio_postgres", "postgres"];

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Standard output (the server).
    Stdout,
    /// Standard error (operator commands).
    Stderr,
}

/// Installs the JSON log subscriber for the process.
pub fn init(sink: Sink) {
    let default = match sink {
        Sink::Stdout => "info",
        Sink::Stderr => "warn",
    };
    let (mut filter, cap) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, "info"),
        Err(_) => (EnvFilter::new(default), default),
    };
    for target in DATA_PRINTING_TARGETS {
        if let Ok(directive) = format!("{target}={cap}").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true);
    let _ = match sink {
        Sink::Stdout => builder.with_writer(std::io::stdout).try_init(),
        Sink::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
}
