//! `annal-verify`: checks Annal exports offline, with no database and no
//! network.
//!
//! Three kinds of input, told apart by their first line:
//! - an export bundle (`{"annal_export":1,…}`), verified with
//!   [`annal::verify::bundle::verify_bundle`] against the `--vkey` keys and
//!   `--trusted-checkpoint`, and with `--complete` required to account for
//!   every record from seq 0;
//! - a `.tlog-proof` file (`c2sp.org/tlog-proof@v1`), verified with
//!   [`annal::verify::proof::verify_tlog_proof`];
//! - exported events (JSON Lines, arrays or pages of `GET /v1/events`): every
//!   FILE is pooled into one run of a tenant's log and verified with
//!   [`annal::verify::verify_chain_with`].
//!
//! Exit status: 0 when everything verifies, 1 when something fails
//! verification, 2 when the input cannot be read or the command line is
//! wrong.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use annal::ledger::{TLOG_PROOF_HEADER, TenantId, VerifierKey};
use annal::verify::bundle::{
    BundleFailure, BundleOptions, BundleReport, TrustedCheckpointStatus, verify_bundle,
};
use annal::verify::proof::{ProofFailure, ProofReport, verify_tlog_proof};
use annal::verify::{
    ChainRecord, ChainReport, VerifyError, VerifyOptions, parse_events, verify_chain_with,
};

/// Verify Annal exports offline.
///
/// An export bundle or a .tlog-proof file is checked against the log's
/// public keys (--vkey) and/or a checkpoint you saved earlier
/// (--trusted-checkpoint): records, payloads, the hash chain, every signed
/// checkpoint, and the proofs between them. Exported events are checked for
/// contiguous seqs, canonical records, leaf hashes, payload commitments, the
/// hash chain, and that every displayed field matches the verified bytes.
#[derive(Debug, Parser)]
#[command(name = "annal-verify", version)]
struct Args {
    /// One export bundle, one .tlog-proof file, or exported events: JSON
    /// Lines (one event per line), JSON arrays of events, or saved
    /// `GET /v1/events` pages (`{"events": [...]}`). Events from all files
    /// together must form one contiguous run of one tenant's log.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,

    /// A public key of the log you trust, as a C2SP vkey
    /// (`<name>+<key id>+<key>`), or a file holding one vkey per line. Repeat
    /// for several keys. Every checkpoint must be signed by one of them.
    #[arg(long = "vkey", value_name = "VKEY|FILE")]
    vkeys: Vec<String>,

    /// A signed checkpoint you saved earlier. The export must agree with it;
    /// without --vkey it is the only anchor of trust.
    #[arg(long, value_name = "FILE")]
    trusted_checkpoint: Option<PathBuf>,

    /// Require an export bundle to account for every record from seq 0: one
    /// that starts later must say that the records before it were purged by
    /// the retention policy. Without it, a bundle that starts later is a
    /// partial export, and the records before it are not verified.
    #[arg(long)]
    complete: bool,

    /// The tenant (UUID) every record must belong to. Without it, exported
    /// events take the first record's tenant on trust.
    #[arg(long, value_name = "UUID")]
    tenant: Option<TenantId>,

    /// Print a machine-readable JSON report on stdout, on success and failure.
    #[arg(long)]
    json: bool,
}

/// What the first file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bundle,
    Proof,
    Events,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bundle => "bundle",
            Kind::Proof => "tlog_proof",
            Kind::Events => "events",
        }
    }
}

/// The input or the command line cannot be used (exit 2).
struct InputError(String);

/// The longest first line read to tell the kind of input; a bundle header
/// is far shorter.
const SNIFF_LEN: u64 = 64 * 1024;

/// Tells the kind of input from its first line.
fn sniff(path: &Path) -> Result<Kind, InputError> {
    let file = File::open(path).map_err(|e| input_error(path, &e))?;
    let mut first = Vec::new();
    BufReader::new(file)
        .take(SNIFF_LEN)
        .read_until(b'\n', &mut first)
        .map_err(|e| input_error(path, &e))?;
    let first = String::from_utf8_lossy(&first);
    let first = first.trim_end_matches(['\n', '\r']);
    // Any version of the proof format is a proof: the parser then names an
    // unsupported one.
    let proof_format = TLOG_PROOF_HEADER
        .split('@')
        .next()
        .unwrap_or(TLOG_PROOF_HEADER);
    Ok(if first.starts_with(proof_format) {
        Kind::Proof
    } else if first.trim_start().starts_with('{') && first.contains("\"annal_export\"") {
        Kind::Bundle
    } else {
        Kind::Events
    })
}

fn input_error(path: &Path, error: &dyn std::fmt::Display) -> InputError {
    InputError(format!("{}: {error}", path.display()))
}

/// Reads each `--vkey`: a vkey itself, or a file of vkeys (one per line;
/// blank lines and lines starting with `#` are skipped).
fn load_vkeys(values: &[String]) -> Result<Vec<VerifierKey>, InputError> {
    let mut keys = Vec::new();
    for value in values {
        let parse_error = match VerifierKey::parse(value) {
            Ok(key) => {
                keys.push(key);
                continue;
            }
            Err(e) => e,
        };
        let path = Path::new(value);
        if !path.is_file() {
            return Err(InputError(format!(
                "--vkey {value}: neither a vkey ({parse_error}) nor a readable file"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| input_error(path, &e))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = VerifierKey::parse(line)
                .map_err(|e| InputError(format!("{}:{}: {e}", path.display(), number + 1)))?;
            keys.push(key);
        }
    }
    Ok(keys)
}

fn trust_options(args: &Args) -> Result<BundleOptions, InputError> {
    let vkeys = load_vkeys(&args.vkeys)?;
    let trusted_checkpoint = match &args.trusted_checkpoint {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| input_error(path, &e))?),
        None => None,
    };
    if vkeys.is_empty() && trusted_checkpoint.is_none() {
        return Err(InputError(
            "bundles and proofs need at least one --vkey or a --trusted-checkpoint to trust"
                .to_owned(),
        ));
    }
    Ok(BundleOptions {
        vkeys,
        trusted_checkpoint,
        require_complete: args.complete,
    })
}

/// A failure to print: code, seq, line (bundles only) and message.
struct Failed {
    code: &'static str,
    seq: Option<u64>,
    line: Option<u64>,
    message: String,
    input_error: bool,
}

impl From<BundleFailure> for Failed {
    fn from(failure: BundleFailure) -> Failed {
        Failed {
            code: failure.code(),
            seq: failure.seq.map(|seq| seq.value()),
            line: Some(failure.line).filter(|line| *line > 0),
            input_error: failure.is_input_error(),
            message: failure.to_string(),
        }
    }
}

impl From<ProofFailure> for Failed {
    fn from(failure: ProofFailure) -> Failed {
        Failed {
            code: failure.code(),
            seq: failure.seq().map(|seq| seq.value()),
            line: None,
            input_error: failure.is_input_error(),
            message: failure.to_string(),
        }
    }
}

impl From<InputError> for Failed {
    fn from(error: InputError) -> Failed {
        Failed {
            code: "invalid_input",
            seq: None,
            line: None,
            message: error.0,
            input_error: true,
        }
    }
}

/// Prints a failure and returns the exit status: 2 for unusable input, 1
/// otherwise.
fn report_failed(failed: &Failed, kind: Option<Kind>, as_json: bool) -> ExitCode {
    if as_json {
        let mut error = json!({
            "code": failed.code,
            "seq": failed.seq,
            "message": failed.message,
        });
        if let Some(line) = failed.line {
            error["line"] = json!(line);
        }
        let mut body = json!({ "ok": false, "error": error });
        if let Some(kind) = kind {
            body["kind"] = json!(kind.name());
        }
        println!("{body}");
    } else if failed.input_error {
        eprintln!("error: {}", failed.message);
    } else {
        eprintln!("FAILED: {}", failed.message);
    }
    ExitCode::from(if failed.input_error { 2 } else { 1 })
}

/// Fails when `--tenant` was given and the verified tenant is another.
fn check_tenant(expected: Option<TenantId>, found: TenantId) -> Result<(), Failed> {
    match expected {
        Some(expected) if expected != found => Err(Failed {
            code: "wrong_tenant",
            seq: None,
            line: None,
            message: format!("the export is of tenant {found}, not the expected {expected}"),
            input_error: false,
        }),
        _ => Ok(()),
    }
}

fn trusted_text(status: TrustedCheckpointStatus) -> String {
    match status {
        TrustedCheckpointStatus::NotGiven => "no trusted checkpoint given".to_owned(),
        TrustedCheckpointStatus::Matched { size } => {
            format!("agrees with the trusted checkpoint of size {size}")
        }
        TrustedCheckpointStatus::Linked { size } => {
            format!("consistent with the trusted checkpoint of size {size}")
        }
        TrustedCheckpointStatus::PredatesPurge { size } => {
            format!("NOT linked to the trusted checkpoint of size {size}, which predates the purge")
        }
    }
}

fn purge_record_text(recorded_at: Option<u64>) -> String {
    match recorded_at {
        Some(seq) => format!("recorded in the log at seq {seq}"),
        None => {
            "not recorded in this bundle (that it was by policy is the server's statement alone)"
                .to_owned()
        }
    }
}

fn signers_text(keys: &[String]) -> String {
    if keys.is_empty() {
        "no key checked: trust rests on the trusted checkpoint alone".to_owned()
    } else {
        format!("signed by {}", keys.join(", "))
    }
}

/// A progress bar over the file's bytes, on stderr, only when stderr is a
/// terminal (never in logs or captured output).
fn progress_bar(len: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    Some(ProgressBar::new(len).with_style(style))
}

fn run_bundle(path: &Path, args: &Args) -> Result<BundleReport, Failed> {
    let options = trust_options(args)?;
    let file = File::open(path).map_err(|e| input_error(path, &e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(len);
    let mut progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    };
    let result = verify_bundle(
        BufReader::with_capacity(1 << 20, file),
        &options,
        &mut progress,
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    check_tenant(args.tenant, report.tenant_id)?;
    Ok(report)
}

fn print_bundle(report: &BundleReport, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({ "ok": true, "kind": Kind::Bundle.name(), "report": report })
        );
        return;
    }
    println!(
        "OK: bundle of {}, seq {}..={}: {} records, {} payloads checked, {} withheld; {} checkpoints, {}; last checkpoint size {}, root {}; {}",
        report.origin,
        report.from_seq,
        report.to_seq,
        report.records_checked,
        report.payloads_checked,
        report.payloads_withheld,
        report.checkpoints_verified,
        signers_text(&report.signing_keys),
        report.last_checkpoint_size,
        report.last_checkpoint_root.to_base64(),
        trusted_text(report.trusted_checkpoint),
    );
    match report.purged {
        Some(purged) => println!(
            "records 0..={}: purged by retention policy, attested by checkpoint {}; {}",
            purged.size - 1,
            purged.attested_by,
            purge_record_text(purged.recorded_at)
        ),
        None if report.from_seq.value() > 0 => eprintln!(
            "note: records 0..={} are not in this export and were not verified (pass --complete to require them)",
            report.from_seq.value() - 1
        ),
        None => {}
    }
    if let (TrustedCheckpointStatus::PredatesPurge { size }, Some(purged)) =
        (report.trusted_checkpoint, report.purged)
    {
        eprintln!(
            "warning: the trusted checkpoint (size {size}) predates the purge boundary {} and could not be linked to this bundle: save a newer checkpoint (e.g. this bundle's last, size {}) and pass that one",
            purged.size, report.last_checkpoint_size
        );
    }
    if report.payloads_withheld > 0 {
        eprintln!(
            "note: {} records came without payload and salt (withheld or erased); their headers are verified, their payloads are not",
            report.payloads_withheld
        );
    }
    if let Some(size) = report.unverified_link_from {
        eprintln!(
            "note: the bundle links from a checkpoint of size {size}, which was not checked: pass that checkpoint with --trusted-checkpoint"
        );
    }
}

fn run_proof(path: &Path, args: &Args) -> Result<ProofReport, Failed> {
    if args.complete {
        return Err(InputError(
            "--complete applies to export bundles; this is a .tlog-proof file".to_owned(),
        )
        .into());
    }
    let options = trust_options(args)?;
    let text = std::fs::read_to_string(path).map_err(|e| input_error(path, &e))?;
    let report = verify_tlog_proof(&text, &options)?;
    check_tenant(args.tenant, report.tenant_id)?;
    Ok(report)
}

fn print_proof(report: &ProofReport, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({ "ok": true, "kind": Kind::Proof.name(), "report": report })
        );
        return;
    }
    println!(
        "OK: seq {} of tenant {} is in the log {} at checkpoint size {} (root {}); {}; {}",
        report.seq,
        report.tenant_id,
        report.origin,
        report.checkpoint_size,
        report.checkpoint_root.to_base64(),
        signers_text(&report.signing_keys),
        trusted_text(report.trusted_checkpoint),
    );
}

fn read_events(files: &[PathBuf]) -> Result<Vec<ChainRecord>, InputError> {
    let mut records = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| input_error(file, &e))?;
        records.extend(parse_events(&text).map_err(|e| input_error(file, &e))?);
    }
    Ok(records)
}

fn print_events(report: &ChainReport, as_json: bool) {
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

fn events_failed(error: &VerifyError) -> Failed {
    Failed {
        code: error.code(),
        seq: error.seq().map(|seq| seq.value()),
        line: None,
        message: error.to_string(),
        input_error: false,
    }
}

fn run_events(args: &Args) -> ExitCode {
    if !args.vkeys.is_empty() || args.trusted_checkpoint.is_some() || args.complete {
        let error = InputError(
            "--vkey, --trusted-checkpoint and --complete apply to export bundles (--vkey and --trusted-checkpoint also to .tlog-proof files); this is a list of events"
                .to_owned(),
        );
        return report_failed(&error.into(), None, args.json);
    }
    let records = match read_events(&args.files) {
        Ok(records) => records,
        Err(error) => return report_failed(&error.into(), None, args.json),
    };
    let mut options = VerifyOptions::default();
    if let Some(tenant) = args.tenant {
        options = options.with_tenant(tenant);
    }
    match verify_chain_with(records, &options) {
        Ok(report) => {
            print_events(&report, args.json);
            ExitCode::SUCCESS
        }
        Err(error) => report_failed(&events_failed(&error), None, args.json),
    }
}

/// The one file a bundle or proof is read from.
fn single_file(args: &Args, kind: Kind) -> Result<&Path, Failed> {
    match args.files.as_slice() {
        [path] => Ok(path),
        _ => Err(InputError(format!(
            "a {} is verified on its own: give exactly one FILE",
            kind.name()
        ))
        .into()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let first = args
        .files
        .first()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new(""));
    let kind = match sniff(first) {
        Ok(kind) => kind,
        Err(error) => return report_failed(&error.into(), None, args.json),
    };
    let outcome = match kind {
        Kind::Events => return run_events(&args),
        Kind::Bundle => single_file(&args, kind)
            .and_then(|path| run_bundle(path, &args))
            .map(|report| print_bundle(&report, args.json)),
        Kind::Proof => single_file(&args, kind)
            .and_then(|path| run_proof(path, &args))
            .map(|report| print_proof(&report, args.json)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => report_failed(&failed, Some(kind), args.json),
    }
}
