//! `annal-verify`: checks exported Annal events offline, with no database and
//! no network.
//!
//! Reads every FILE, pools their events into one run of a tenant's log and
//! verifies it with [`annal::verify::verify_chain_with`]. Exit status: 0 when
//! everything verifies, 1 when a record fails, 2 when the input cannot be
//! read (or the command line is wrong).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use annal::ledger::TenantId;
use annal::verify::{
    ChainRecord, ChainReport, VerifyError, VerifyOptions, parse_events, verify_chain_with,
};

/// Verify exported Annal events offline: contiguous seqs, canonical records,
/// leaf hashes, payload commitments, the hash chain, and that every displayed
/// field (actor, action, …) matches the verified bytes.
#[derive(Debug, Parser)]
#[command(name = "annal-verify", version)]
struct Args {
    /// Exported events: JSON Lines (one event per line), a JSON array of
    /// events, or saved `GET /v1/events` pages (`{"events": [...]}`). All
    /// files together must form one contiguous run of one tenant's log.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,

    /// The tenant (UUID) every record must belong to. Without it, the first
    /// record's tenant is taken on trust.
    #[arg(long, value_name = "UUID")]
    tenant: Option<TenantId>,

    /// Print a machine-readable JSON report on stdout, on success and failure.
    #[arg(long)]
    json: bool,
}

/// The input could not be read as events.
struct InputError {
    file: PathBuf,
    message: String,
}

fn read_all(files: &[PathBuf]) -> Result<Vec<ChainRecord>, InputError> {
    let mut records = Vec::new();
    for file in files {
        let input_error = |message: String| InputError {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| input_error(e.to_string()))?;
        records.extend(parse_events(&text).map_err(|e| input_error(e.to_string()))?);
    }
    Ok(records)
}

fn report_success(report: &ChainReport, as_json: bool) {
    if as_json {
        println!("{}", json!({ "ok": true, "report": report }));
        return;
    }
    let anchor = if report.anchored_at_genesis {
        "linked to the tenant's genesis".to_owned()
    } else {
        format!(
            "anchored on the stated chain hash of seq {} (not checked: compare it with a checkpoint)",
            report.first_seq
        )
    };
    let pinned = if report.tenant_pinned {
        " (as expected)"
    } else {
        " (not pinned: pass --tenant to require it)"
    };
    println!(
        "OK: {} records, seq {}..={}, tenant {}{}, {} payloads checked; {}; head chain hash {}",
        report.records_checked,
        report.first_seq,
        report.last_seq,
        report.tenant_id,
        pinned,
        report.payloads_checked,
        anchor,
        report.head_chain_hash,
    );
    if report.displays_unchecked > 0 {
        eprintln!(
            "warning: {} records show payload fields (actor, resource, ...) without payload_bytes and salt; those fields are NOT verified",
            report.displays_unchecked
        );
    }
}

fn report_failure(error: &VerifyError, as_json: bool) {
    if as_json {
        let body = json!({
            "ok": false,
            "error": {
                "code": error.code(),
                "seq": error.seq(),
                "message": error.to_string(),
            }
        });
        println!("{body}");
    } else {
        eprintln!("FAILED: {error}");
    }
}

fn report_input_error(error: &InputError, as_json: bool) {
    let message = format!("{}: {}", error.file.display(), error.message);
    if as_json {
        let body = json!({
            "ok": false,
            "error": { "code": "invalid_input", "seq": null, "message": message }
        });
        println!("{body}");
    } else {
        eprintln!("error: {message}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let records = match read_all(&args.files) {
        Ok(records) => records,
        Err(error) => {
            report_input_error(&error, args.json);
            return ExitCode::from(2);
        }
    };
    let mut options = VerifyOptions::default();
    if let Some(tenant) = args.tenant {
        options = options.with_tenant(tenant);
    }
    match verify_chain_with(records, &options) {
        Ok(report) => {
            report_success(&report, args.json);
            ExitCode::SUCCESS
        }
        Err(error) => {
            report_failure(&error, args.json);
            ExitCode::from(1)
        }
    }
}
