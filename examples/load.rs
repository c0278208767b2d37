//! Ingest load generator: Annal against plain PostgreSQL, in one run.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example load -- all --duration 10 --warmup 2 --rounds 2
//! ```
//!
//! It builds everything it needs and removes it at the end: a throwaway
//! PostgreSQL cluster under the temp directory (through `annal::pg`), the
//! roles and database, the migrations, tenants with keys, a
//! `target/release/annal serve` process on a loopback port, and a
//! `bench.events` table (same columns, constraints and indexes as
//! `annal.events`; no row-level security, no triggers) for the baselines.
//!
//! Scenarios (each pair runs back to back, `--rounds` times, alternating
//! which side goes first):
//! - `a`: single-event POSTs on `--connections` connections to one tenant,
//!   against the same number of connections each doing a single-row
//!   autocommit INSERT (one INSERT, one COMMIT) into `bench.events`;
//! - `b`: batches of `--batch-size` events on `--batch-clients`
//!   connections, against binary `COPY` of as many rows per statement on as
//!   many connections;
//! - `c`: single-event POSTs on `--connections` connections, all to one
//!   tenant, against the same spread evenly over `--tenants` tenants.
//!
//! Scenario `d` (verifiability; not part of `all`, runs once) holds the
//! batch load of `b` on one tenant for `--duration` seconds and then measures
//! what an auditor gets from it, each against a baseline of the same run:
//! - coverage: for every acknowledged event, the time from its batch's
//!   acknowledgement to the `signed_at` of the first checkpoint covering it
//!   (p50/p99/max, share within 1 s), overall and per minute, with events/s,
//!   CPU per event and PostgreSQL's buffer misses per minute (first against
//!   last minute);
//! - signing cost: checkpoints signed during the phase times the mean wall
//!   time of `Checkpointer::sign_now` at the final tree size, as a share of
//!   the CPU `annal` and PostgreSQL spent on the phase;
//! - inclusion proofs at the latest checkpoint and at the first one of at
//!   least 1M events (topped up with batches if the phase left fewer):
//!   2,000 `GET /v1/proofs/inclusion` for random seqs, each verified,
//!   interleaved with 2,000 `GET /v1/checkpoints/{size}`; timed by the
//!   client and, from its request log, by the server;
//! - exports of 1M and 100k records (`GET /v1/export`; the server's RSS
//!   sampled meanwhile), verified by `annal-verify` (the binary next to
//!   `--annal`; wall time and peak RSS), against one SHA-256 per record over
//!   the same record bytes and against every SHA-256 verification needs,
//!   both over bytes decoded into memory beforehand.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/load d --duration 600 --warmup 2
//! ```
//!
//! Scenario `e` (retention; not part of `all`) measures the purge of
//! expired records and what it costs the ingest running beside it. For each
//! purge setting (every `--purge-batch` with every `--purge-pause`):
//! - purge alone: a new tenant gets `--purge-rows` events received eight
//!   years ago (appended in process, through the ledger with its clock set
//!   back, so they are expired under the default seven-year period; a
//!   checkpoint signed every `--purge-checkpoint-every` events), then a few
//!   current ones, and a checkpoint covering them all; then
//!   `annal retention run --tenant … --batch … --pause … --json` (the
//!   binary at `--annal`, as the retention role) purges them with nothing
//!   else running: rows purged ÷ the process's wall time, and where the CPU
//!   went;
//! - `--rounds` times, alternating which goes first: the batch load of `b`
//!   on the first tenant while the same purge runs on another preloaded
//!   tenant (the ingest warms up, the purge starts as the measured window
//!   opens, and the window closes when the purge process exits), against
//!   the same load for as long with no purge. Reported: the purge rate, and ingest events/s
//!   and p99 with the purge as ratios of the same round's baseline.
//!
//! After every purge the generator runs `VACUUM annal.events` (timed, not
//! measured), as autovacuum would, so the next preload reuses the space.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/load e --warmup 2 --rounds 2 \
//!     --purge-rows 1000000 --purge-batch 10000,2000 --purge-pause 0ms,20ms
//! ```
//!
//! Every phase runs `--warmup` seconds unmeasured, then `--duration`
//! seconds measured (in `e`, as long as the purge): a request counts if it
//! completes inside the measured window (its latency too). Workers stop
//! starting requests at the end of the window; every request has a timeout,
//! so the run always ends.
//!
//! Besides events/s and latency, each phase reports where the CPU went
//! (this process, `annal`, PostgreSQL, idle; from `/proc`), and from
//! PostgreSQL's statistics the transactions committed and WAL flushes
//! (`pg_stat_database.xact_commit`, `pg_stat_wal.wal_sync`) per event,
//! which shows the group commit at work.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal::crypto::Pepper;
use annal::crypto::signing::NoteSigner;
use annal::ledger::{SignedCheckpoint, TenantId, TreeHash, VerifierKey, verify_inclusion};
use annal::pg::{self, Cluster};
use annal::service::auth::{Authorized, Scope, WriteEvents};
use annal::service::checkpoints::{Checkpointer, DEFAULT_INTERVAL, Keyring, Signed};
use annal::service::events::Ledger;
use annal::service::keys::Keys;
use annal::service::{Clock, SharedClock, SystemClock, tenants};
use annal::store::Store;
use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{SignalKind, signal};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Single events, group commit vs. one INSERT+COMMIT per row.
    A,
    /// Batches vs. COPY.
    B,
    /// One hot tenant vs. many tenants.
    C,
    /// Verifiability: checkpoint coverage under held batch load, signing
    /// cost, inclusion proofs and offline verification at 1M events.
    D,
    /// Retention: the purge rate of `annal retention run`, and batch ingest
    /// while it purges against the same ingest without it.
    E,
    /// A, B and C.
    All,
}

/// Measures Annal's ingest against plain PostgreSQL on a throwaway cluster.
#[derive(Debug, Parser)]
struct Args {
    /// Which scenario to run.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// How many times each pair of phases runs (alternating the order).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent connections of the single-event phases (A, C) and of the
    /// INSERT baseline.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Concurrent connections of the batch phase and of the COPY baseline.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    /// Events per batch request (and rows per COPY).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Tenants of the spread phase of C.
    #[arg(long, default_value_t = 64)]
    tenants: usize,
    /// The server binary.
    #[arg(long, default_value = "target/release/annal")]
    annal: PathBuf,
    /// Extra environment for the server, `KEY=VALUE` (repeatable), e.g.
    /// `--server-env ANNAL_DB_POOL_SIZE=32`.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Expired events preloaded for each purge (scenario E).
    #[arg(long, default_value_t = 1_000_000)]
    purge_rows: u64,
    /// Rows per purge transaction, comma-separated: each is tried with
    /// each `--purge-pause` (scenario E).
    #[arg(long, value_delimiter = ',', default_value = "10000,2000")]
    purge_batch: Vec<u32>,
    /// Rest between two purge transactions, e.g. `0ms,20ms` (scenario E).
    #[arg(long, value_delimiter = ',', default_value = "0ms,20ms")]
    purge_pause: Vec<String>,
    /// A checkpoint is signed after every this many expired events
    /// preloaded, as the server would for a tenant writing that many events
    /// a second; 0: only one, after the current events (scenario E).
    #[arg(long, default_value_t = 10_000)]
    purge_checkpoint_every: u64,
}

/// Owns the cluster directory and the server process; cleans both up.
struct Teardown {
    cluster: Cluster,
    root: PathBuf,
    server: Option<Child>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.cluster.stop() {
            eprintln!("stopping PostgreSQL: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One row of `bench.events` minus its key columns.
#[derive(Clone)]
struct Template {
    received_at: DateTime<Utc>,
    action: String,
    record: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
    payload: Vec<u8>,
    salt: Vec<u8>,
    actor_id: String,
    resource_type: String,
    resource_id: String,
    request_id: Option<String>,
}

impl Template {
    /// The parameters of one `bench.events` row, in [`COLUMNS`] order.
    fn row<'a>(
        &'a self,
        tenant: &'a Uuid,
        seq: &'a i64,
        id: &'a Uuid,
    ) -> [&'a (dyn ToSql + Sync); 14] {
        [
            tenant,
            seq,
            id,
            &self.received_at,
            &self.action,
            &self.record,
            &self.leaf_hash,
            &self.chain_hash,
            &self.payload,
            &self.salt,
            &self.actor_id,
            &self.resource_type,
            &self.resource_id,
            &self.request_id,
        ]
    }
}

const COLUMNS: &str = "tenant_id, seq, event_id, received_at, action, record, leaf_hash, \
                       chain_hash, payload, salt, actor_id, resource_type, resource_id, request_id";

/// CPU time (clock ticks) and PostgreSQL counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    me: u64,
    /// Children of this process that ended (the purge runs of scenario E).
    children: u64,
    annal: u64,
    postgres: u64,
    busy: u64,
    total: u64,
    commits: i64,
    wal_syncs: i64,
    /// Blocks PostgreSQL had to read from outside its shared buffers for
    /// `annal.events` (heap and indexes) and for `annal.tree_nodes`.
    events_reads: i64,
    tree_reads: i64,
    /// WAL written, bytes (`pg_stat_wal.wal_bytes`).
    wal_bytes: i64,
    /// Autovacuums of `annal.events` so far.
    autovacuums: i64,
}

/// One acknowledged batch (scenario D): when its answer arrived, by the
/// monotonic and by the wall clock, and the largest seq among its receipts.
#[derive(Debug, Clone, Copy)]
struct Ack {
    at: Instant,
    wall: DateTime<Utc>,
    max_seq: u64,
    events: u64,
}

/// What one phase measured.
#[derive(Debug, Clone)]
struct Phase {
    name: String,
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latencies: Vec<Duration>,
    /// Shares of the machine (all cores = 100): this process, annal,
    /// PostgreSQL, anything else, idle.
    cpu: [f64; 5],
    /// Share of the machine used by children of this process that ended
    /// during the window (scenario E's purge run), and their CPU seconds.
    children_cpu: f64,
    children_seconds: f64,
    /// CPU microseconds per event: annal, PostgreSQL.
    cpu_per_event: [f64; 2],
    /// CPU seconds over the measured window: annal, PostgreSQL.
    cpu_seconds: [f64; 2],
    commits_per_event: f64,
    syncs_per_event: f64,
    /// WAL bytes written, and autovacuums of `annal.events`, in the window.
    wal_bytes: i64,
    autovacuums: i64,
    /// The measured window, by the monotonic and by the wall clock.
    window: (Instant, Instant),
    wall: (DateTime<Utc>, DateTime<Utc>),
    /// Acknowledged batches, in order of arrival (only when asked for).
    acks: Vec<Ack>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied()
    }

    fn print(&self) {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
        };
        println!(
            "  {:<34} {:>9.0} ev/s  {:>7} req  p50 {:>7} ms  p99 {:>7} ms  err {:>4}  \
             cpu% gen/annal/pg/other/idle {:>2.0}/{:>2.0}/{:>2.0}/{:>2.0}/{:>2.0}  \
             cpu-us/ev annal {:>3.0} pg {:>3.0}  xact/ev {:.3}  walsync/ev {:.4}",
            self.name,
            self.rate(),
            self.requests,
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            self.errors,
            self.cpu[0],
            self.cpu[1],
            self.cpu[2],
            self.cpu[3],
            self.cpu[4],
            self.cpu_per_event[0],
            self.cpu_per_event[1],
            self.commits_per_event,
            self.syncs_per_event,
        );
        if let Some(e) = &self.first_error {
            println!("    first error: {e}");
        }
    }
}

/// The durations the server logs for completed requests (whole
/// milliseconds, rounded down), kept while `collecting`.
#[derive(Default)]
struct RequestLog {
    collecting: AtomicBool,
    /// Route pattern and `duration_ms` of each request.
    durations: Mutex<Vec<(String, u64)>>,
}

impl RequestLog {
    /// Keeps the request of one log line, if collecting and it is one.
    fn note(&self, line: &serde_json::Value) {
        if !self.collecting.load(Ordering::Relaxed)
            || line["fields"]["message"] != "request completed"
        {
            return;
        }
        let route = line["span"]["http.route"].as_str();
        let ms = line["fields"]["duration_ms"].as_u64();
        if let (Some(route), Some(ms), Ok(mut durations)) = (route, ms, self.durations.lock()) {
            durations.push((route.to_owned(), ms));
        }
    }

    /// Sorted durations of `route`, and forgets them all.
    fn take(&self, route: &str) -> Vec<u64> {
        let Ok(mut durations) = self.durations.lock() else {
            return Vec::new();
        };
        let mut of_route: Vec<u64> = durations
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, ms)| *ms)
            .collect();
        durations.retain(|(r, _)| r != route);
        of_route.sort_unstable();
        of_route
    }
}

/// What the connections of an HTTP phase post.
struct Posts {
    path: &'static str,
    bodies: Arc<Vec<&'static [u8]>>,
    /// Events in each body.
    per_request: u64,
    /// Keep every acknowledged request's time and largest seq ([`Ack`]).
    acks: bool,
}

/// The part of a batch's answer that scenario D reads.
#[derive(Deserialize)]
struct Receipts {
    events: Vec<Receipt>,
}

/// A receipt's seq (single-event answers are one receipt).
#[derive(Deserialize)]
struct Receipt {
    seq: u64,
}

/// The largest seq among a batch answer's receipts.
fn largest_seq(body: &[u8]) -> Option<u64> {
    let receipts: Receipts = serde_json::from_slice(body).ok()?;
    receipts.events.iter().map(|r| r.seq).max()
}

/// A phase's measured window. It opens at `from` and closes after a set
/// time or, when the phase measures something that runs meanwhile (scenario
/// E's purge), when that ends; workers learn of it as it happens.
#[derive(Debug, Clone)]
struct Window {
    from: Instant,
    /// Nanoseconds after `from` at which the window closed (`u64::MAX`
    /// while it is open).
    until: Arc<AtomicU64>,
}

impl Window {
    fn open(from: Instant) -> Window {
        Window {
            from,
            until: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    fn close(&self, at: Instant) {
        self.until
            .store(self.nanos(at).unwrap_or(0), Ordering::Release);
    }

    /// Nanoseconds from the opening to `at`; `None` before it.
    fn nanos(&self, at: Instant) -> Option<u64> {
        let since = at.checked_duration_since(self.from)?;
        Some(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    fn contains(&self, at: Instant) -> bool {
        self.nanos(at)
            .is_some_and(|n| n <= self.until.load(Ordering::Acquire))
    }

    /// Whether the window has closed by `at` (workers start nothing more).
    fn is_over(&self, at: Instant) -> bool {
        self.nanos(at)
            .is_some_and(|n| n >= self.until.load(Ordering::Acquire))
    }
}

/// Closes a measured window `length` after it opened.
fn lasting(length: Duration) -> impl FnOnce(Instant) -> tokio::time::Sleep {
    move |from| tokio::time::sleep_until((from + length).into())
}

/// What every worker of a phase reports.
#[derive(Default)]
struct Tally {
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    acks: Vec<Ack>,
}

impl Tally {
    /// Counts a request that completed now, if now is inside `window`;
    /// says whether it counted.
    fn record(&mut self, window: &Window, started: Instant, events: u64) -> bool {
        let done = Instant::now();
        let counted = window.contains(done);
        if counted {
            self.events += events;
            self.requests += 1;
            self.latencies.push(done - started);
        }
        counted
    }

    fn fail(&mut self, error: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }
}

struct Bench {
    args: Args,
    cluster: Cluster,
    /// A directory removed at the end (export bundles go here).
    scratch: PathBuf,
    app_url: String,
    /// The cluster's postmaster: it and its children are PostgreSQL's CPU.
    postmaster_pid: u32,
    /// The retention role's connection string (scenario E's purges).
    retention_url: String,
    /// The server's API key pepper (scenario E's purges and preloads).
    pepper: Pepper,
    server_pid: u32,
    base_url: String,
    keys: Vec<String>,
    /// The tenant of each key.
    tenant_ids: Vec<TenantId>,
    /// The server's checkpoint signing key, and its public half.
    keyring: Arc<Keyring>,
    vkey: VerifierKey,
    /// What the server logged about requests.
    requests: Arc<RequestLog>,
    single_bodies: Arc<Vec<&'static [u8]>>,
    batch_bodies: Arc<Vec<&'static [u8]>>,
    templates: Arc<Vec<Template>>,
    bench_seq: Arc<AtomicI64>,
    stats: Client,
}

fn event(n: usize) -> serde_json::Value {
    json!({
        "action": "salary.update",
        "actor": {"id": "u-1", "type": "user"},
        "resource": {"type": "employee", "id": format!("e-{n}")},
        "before": {"salary": 100000},
        "after": {"salary": 110000},
    })
}

fn leak(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

/// A process as `/proc/<pid>/stat` shows it.
struct ProcTicks {
    comm: String,
    parent: u32,
    /// utime+stime, and that of its children it has reaped, in clock ticks.
    own: u64,
    reaped: u64,
}

fn proc_ticks(pid: &str) -> Option<ProcTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // Fields after the name start at field 3 (state): ppid is field 4,
    // utime field 14, cutime field 16.
    let sum = |at: std::ops::Range<usize>| -> u64 {
        at.filter_map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
    };
    Some(ProcTicks {
        comm,
        parent: fields.get(1)?.parse().ok()?,
        own: sum(11..13),
        reaped: sum(13..15),
    })
}

/// Busy and total ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

impl Bench {
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let (me, children) = proc_ticks("self").map_or((0, 0), |p| (p.own, p.reaped));
        let annal = proc_ticks(&self.server_pid.to_string()).map_or(0, |p| p.own + p.reaped);
        // Our cluster only: other PostgreSQL servers on the machine (other
        // people's tests) are "other".
        let mut postgres = 0;
        let postmaster = self.postmaster_pid.to_string();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str() else { continue };
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some(p) = proc_ticks(pid) {
                let ours = pid == postmaster || p.parent == self.postmaster_pid;
                if p.comm == "postgres" && ours {
                    postgres += p.own + p.reaped;
                }
            }
        }
        let (busy, total) = machine_ticks();
        let row = self
            .stats
            .query_one(
                "SELECT (SELECT sum(xact_commit)::int8 FROM pg_stat_database), \
                        (SELECT wal_sync FROM pg_stat_wal), \
                        (SELECT coalesce(sum(heap_blks_read + coalesce(idx_blks_read, 0)), 0)::int8 \
                           FROM pg_statio_all_tables WHERE schemaname = 'annal' AND relname = 'events'), \
                        (SELECT coalesce(sum(heap_blks_read + coalesce(idx_blks_read, 0)), 0)::int8 \
                           FROM pg_statio_all_tables WHERE schemaname = 'annal' AND relname = 'tree_nodes'), \
                        (SELECT wal_bytes::int8 FROM pg_stat_wal), \
                        (SELECT coalesce(sum(autovacuum_count), 0)::int8 \
                           FROM pg_stat_all_tables WHERE schemaname = 'annal' AND relname = 'events')",
                &[],
            )
            .await?;
        Ok(Snapshot {
            me,
            children,
            annal,
            postgres,
            busy,
            total,
            commits: row.get(0),
            wal_syncs: row.get(1),
            events_reads: row.get(2),
            tree_reads: row.get(3),
            wal_bytes: row.get(4),
            autovacuums: row.get(5),
        })
    }

    /// Runs `workers` for `--duration` seconds after `--warmup` and
    /// collects the phase.
    async fn run_phase<F, Fut>(&self, name: &str, workers: usize, work: F) -> anyhow::Result<Phase>
    where
        F: Fn(usize, Window) -> Fut,
        Fut: Future<Output = Tally> + Send + 'static,
    {
        let length = Duration::from_secs(self.args.duration);
        let (phase, ()) = self
            .run_window(name, workers, work, lasting(length))
            .await?;
        Ok(phase)
    }

    /// Runs `workers` (each given the measured window) and collects the
    /// phase, printed if it has workers. The window opens after `--warmup`
    /// seconds (at once without workers: nothing to warm up); then `close`
    /// runs, given the opening instant, and the window closes when it
    /// returns. Returns the phase and what `close` returned.
    async fn run_window<F, Fut, C, CFut, T>(
        &self,
        name: &str,
        workers: usize,
        work: F,
        close: C,
    ) -> anyhow::Result<(Phase, T)>
    where
        F: Fn(usize, Window) -> Fut,
        Fut: Future<Output = Tally> + Send + 'static,
        C: FnOnce(Instant) -> CFut,
        CFut: Future<Output = T>,
    {
        let warmup = if workers == 0 { 0 } else { self.args.warmup };
        let from = Instant::now() + Duration::from_secs(warmup);
        let window = Window::open(from);
        let handles: Vec<_> = (0..workers)
            .map(|i| tokio::spawn(work(i, window.clone())))
            .collect();
        tokio::time::sleep_until(from.into()).await;
        let wall_from = SystemClock.now();
        // PostgreSQL publishes its statistics at most once a second.
        let before = match self.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                window.close(Instant::now());
                return Err(e);
            }
        };
        let output = close(from).await;
        let until = Instant::now();
        window.close(until);
        let wall_until = SystemClock.now();
        let after = self.snapshot().await?;
        let mut total = Tally::default();
        let grace = Duration::from_secs(self.args.timeout + 10);
        for handle in handles {
            let tally = tokio::time::timeout(grace, handle)
                .await
                .map_err(|_| anyhow!("{name}: a worker did not stop"))??;
            total.events += tally.events;
            total.requests += tally.requests;
            total.errors += tally.errors;
            if total.first_error.is_none() {
                total.first_error = tally.first_error;
            }
            total.latencies.extend(tally.latencies);
            total.acks.extend(tally.acks);
        }
        total.latencies.sort_unstable();
        total.acks.sort_unstable_by_key(|a| a.at);
        let pct = |d: u64| {
            let machine = (after.total - before.total).max(1) as f64;
            100.0 * d as f64 / machine
        };
        let idle = (after.total - before.total) - (after.busy - before.busy);
        let (me, children, annal, postgres) = (
            after.me - before.me,
            after.children - before.children,
            after.annal - before.annal,
            after.postgres.saturating_sub(before.postgres),
        );
        let other = (after.busy - before.busy).saturating_sub(me + children + annal + postgres);
        let events = total.events.max(1) as f64;
        // /proc counts in units of 1/100 s.
        let us_per_event = |ticks: u64| ticks as f64 * 1e4 / events;
        let phase = Phase {
            name: name.to_owned(),
            events: total.events,
            requests: total.requests,
            errors: total.errors,
            first_error: total.first_error,
            seconds: (until - from).as_secs_f64(),
            latencies: total.latencies,
            cpu: [pct(me), pct(annal), pct(postgres), pct(other), pct(idle)],
            children_cpu: pct(children),
            children_seconds: children as f64 / 100.0,
            cpu_per_event: [us_per_event(annal), us_per_event(postgres)],
            cpu_seconds: [annal as f64 / 100.0, postgres as f64 / 100.0],
            commits_per_event: (after.commits - before.commits) as f64 / events,
            syncs_per_event: (after.wal_syncs - before.wal_syncs) as f64 / events,
            wal_bytes: after.wal_bytes - before.wal_bytes,
            autovacuums: after.autovacuums - before.autovacuums,
            window: (from, until),
            wall: (wall_from, wall_until),
            acks: total.acks,
        };
        if workers > 0 {
            phase.print();
        }
        Ok((phase, output))
    }

    /// `connections` HTTP/1.1 keep-alive connections posting `posts`;
    /// worker `i` uses `key_of(i)`. The window closes as `close` says
    /// ([`Bench::run_window`]).
    async fn http<C, CFut, T>(
        &self,
        name: &str,
        connections: usize,
        posts: Posts,
        key_of: impl Fn(usize) -> String,
        close: C,
    ) -> anyhow::Result<(Phase, T)>
    where
        C: FnOnce(Instant) -> CFut,
        CFut: Future<Output = T>,
    {
        let url = format!("{}{}", self.base_url, posts.path);
        let timeout = Duration::from_secs(self.args.timeout);
        let Posts {
            bodies,
            per_request,
            acks,
            ..
        } = posts;
        self.run_window(
            name,
            connections,
            |i, window| {
                let url = url.clone();
                let key = format!("Bearer {}", key_of(i));
                let bodies = bodies.clone();
                async move {
                    let mut tally = Tally::default();
                    let client = match reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .tcp_nodelay(true)
                        .timeout(timeout)
                        .build()
                    {
                        Ok(c) => c,
                        Err(e) => {
                            tally.fail(e.to_string());
                            return tally;
                        }
                    };
                    let mut n = i;
                    while !window.is_over(Instant::now()) {
                        n = n.wrapping_add(connections);
                        let body = bodies[n % bodies.len()];
                        let started = Instant::now();
                        let sent = client
                            .post(&url)
                            .header("authorization", &key)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        match sent {
                            Ok(resp) => {
                                let status = resp.status();
                                let text = resp.bytes().await;
                                let acked = acks.then(|| (Instant::now(), SystemClock.now()));
                                if status.as_u16() == 201 && text.is_ok() {
                                    let counted = tally.record(&window, started, per_request);
                                    if let (true, Some((at, wall)), Ok(body)) =
                                        (counted, acked, &text)
                                    {
                                        match largest_seq(body) {
                                            Some(max_seq) => tally.acks.push(Ack {
                                                at,
                                                wall,
                                                max_seq,
                                                events: per_request,
                                            }),
                                            None => tally.fail("an answer without receipts".into()),
                                        }
                                    }
                                } else {
                                    let text = text.map_or_else(
                                        |e| e.to_string(),
                                        |b| String::from_utf8_lossy(&b).into_owned(),
                                    );
                                    tally.fail(format!("{status}: {text}"));
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                            }
                            Err(e) => {
                                tally.fail(e.to_string());
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    tally
                }
            },
            close,
        )
        .await
    }

    async fn connect_bench(&self, count: usize) -> anyhow::Result<Vec<Client>> {
        let url = self.cluster.connection_string(pg::SUPERUSER, pg::DATABASE);
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(connection);
            clients.push(client);
        }
        Ok(clients)
    }

    /// Baseline of A: each connection INSERTs one row per statement, in
    /// autocommit (one transaction, one COMMIT per row).
    async fn inserts(&self, name: &str) -> anyhow::Result<Phase> {
        let clients = self.connect_bench(self.args.connections).await?;
        let clients: Vec<_> = clients.into_iter().map(Arc::new).collect();
        let tenant = Uuid::new_v4();
        let insert = format!(
            "INSERT INTO bench.events ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let phase = self
            .run_phase(name, clients.len(), |i, window| {
                let client = clients[i].clone();
                let templates = self.templates.clone();
                let seq = self.bench_seq.clone();
                let insert = insert.clone();
                async move {
                    let mut tally = Tally::default();
                    let stmt = match client.prepare(&insert).await {
                        Ok(s) => s,
                        Err(e) => {
                            tally.fail(e.to_string());
                            return tally;
                        }
                    };
                    let mut n = i;
                    while !window.is_over(Instant::now()) {
                        n = n.wrapping_add(1);
                        let t = &templates[n % templates.len()];
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        let id = Uuid::new_v4();
                        let started = Instant::now();
                        let done = client.execute(&stmt, &t.row(&tenant, &s, &id)).await;
                        match done {
                            Ok(_) => {
                                tally.record(&window, started, 1);
                            }
                            Err(e) => tally.fail(e.to_string()),
                        }
                    }
                    tally
                }
            })
            .await;
        drop(clients);
        phase
    }

    /// Baseline of B: `streams` connections each COPY `batch_size` rows per
    /// statement (binary format, autocommit: one COMMIT per COPY).
    async fn copies(&self, name: &str, streams: usize) -> anyhow::Result<Phase> {
        let clients = self.connect_bench(streams).await?;
        let clients: Vec<_> = clients.into_iter().map(Arc::new).collect();
        let tenant = Uuid::new_v4();
        let copy = format!("COPY bench.events ({COLUMNS}) FROM STDIN (FORMAT binary)");
        let batch = self.args.batch_size;
        let phase = self
            .run_phase(name, clients.len(), |i, window| {
                let client = clients[i].clone();
                let templates = self.templates.clone();
                let seq = self.bench_seq.clone();
                let copy = copy.clone();
                async move {
                    let mut tally = Tally::default();
                    let mut n = i;
                    while !window.is_over(Instant::now()) {
                        let started = Instant::now();
                        let result: Result<u64, tokio_postgres::Error> = async {
                            let sink = client.copy_in(&copy).await?;
                            let writer = BinaryCopyInWriter::new(
                                sink,
                                &[
                                    Type::UUID,
                                    Type::INT8,
                                    Type::UUID,
                                    Type::TIMESTAMPTZ,
                                    Type::TEXT,
                                    Type::BYTEA,
                                    Type::BYTEA,
                                    Type::BYTEA,
                                    Type::BYTEA,
                                    Type::BYTEA,
                                    Type::TEXT,
                                    Type::TEXT,
                                    Type::TEXT,
                                    Type::TEXT,
                                ],
                            );
                            let mut writer = pin!(writer);
                            for _ in 0..batch {
                                n = n.wrapping_add(1);
                                let t = &templates[n % templates.len()];
                                let s = seq.fetch_add(1, Ordering::Relaxed);
                                let id = Uuid::new_v4();
                                writer.as_mut().write(&t.row(&tenant, &s, &id)).await?;
                            }
                            writer.finish().await
                        }
                        .await;
                        match result {
                            Ok(rows) => {
                                tally.record(&window, started, rows);
                            }
                            Err(e) => tally.fail(e.to_string()),
                        }
                    }
                    tally
                }
            })
            .await;
        drop(clients);
        phase
    }

    async fn singles(&self, name: &str, tenants: usize) -> anyhow::Result<Phase> {
        let keys = self.keys.clone();
        let posts = Posts {
            path: "/v1/events",
            bodies: self.single_bodies.clone(),
            per_request: 1,
            acks: false,
        };
        let length = Duration::from_secs(self.args.duration);
        let key_of = move |i: usize| keys[i % tenants].clone();
        let (phase, ()) = self
            .http(name, self.args.connections, posts, key_of, lasting(length))
            .await?;
        Ok(phase)
    }

    /// Batches on `--batch-clients` connections to the first tenant; with
    /// `acks`, every acknowledged batch is kept (scenario D).
    async fn batches(&self, name: &str, acks: bool) -> anyhow::Result<Phase> {
        let length = Duration::from_secs(self.args.duration);
        let (phase, ()) = self.batches_until(name, acks, lasting(length)).await?;
        Ok(phase)
    }

    /// [`Bench::batches`], the window closing as `close` says.
    async fn batches_until<C, CFut, T>(
        &self,
        name: &str,
        acks: bool,
        close: C,
    ) -> anyhow::Result<(Phase, T)>
    where
        C: FnOnce(Instant) -> CFut,
        CFut: Future<Output = T>,
    {
        let key = self.keys[0].clone();
        let posts = Posts {
            path: "/v1/events/batch",
            bodies: self.batch_bodies.clone(),
            per_request: self.args.batch_size as u64,
            acks,
        };
        self.http(
            name,
            self.args.batch_clients,
            posts,
            move |_| key.clone(),
            close,
        )
        .await
    }
}

/// Starts `annal serve` (signing checkpoints with `signer`) and waits for
/// its "listening" line; returns the child and the address. Its output is
/// drained (and warnings echoed) by two threads.
fn spawn_server(
    args: &Args,
    app_url: &str,
    pepper: &Pepper,
    signer: &NoteSigner,
    requests: &Arc<RequestLog>,
) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(&args.annal);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", app_url)
        .env("ANNAL_API_KEY_PEPPER", pepper.to_hex())
        .env("ANNAL_SIGNING_KEY", signer.to_skey().as_str())
        // Throughput is what is measured: no per-key abuse limit.
        .env("ANNAL_INGEST_LIMIT", "0")
        .env("RUST_LOG", "info");
    for kv in &args.server_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--server-env wants KEY=VALUE, got {kv}"))?;
        command.env(k, v);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (run `cargo build --release`)",
                args.annal.display()
            )
        })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?),
        Box::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?),
    ];
    for stream in streams {
        let tx = tx.clone();
        let requests = requests.clone();
        std::thread::spawn(move || {
            let mut echoed = 0;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    let _ = tx.send(Err(line));
                    continue;
                };
                requests.note(&v);
                if v["fields"]["message"] == "listening" {
                    if let Some(addr) = v["fields"]["http.addr"].as_str() {
                        let _ = tx.send(Ok(addr.to_owned()));
                    }
                } else if v["level"] != "INFO" && echoed < 20 {
                    echoed += 1;
                    eprintln!("annal: {line}");
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(addr)) => return Ok((child, addr)),
            Ok(Err(line)) => eprintln!("annal: {line}"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("annal serve did not start within 60 s");
            }
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or("?".to_owned(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1048576.0)
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} RAM")
}

fn ratio(a: &Phase, b: &Phase) -> f64 {
    a.rate() / b.rate().max(f64::MIN_POSITIVE)
}

/// Events that scenario D's inclusion proofs and first export need.
const MILLION: u64 = 1_000_000;
/// Records of the export whose verifier memory is compared with the 1M one.
const SMALL_EXPORT: u64 = 100_000;
/// Inclusion proofs requested (and as many checkpoint fetches).
const PROOF_GETS: usize = 2000;
/// New checkpoints signed to time `Checkpointer::sign_now`.
const SIGN_ROUNDS: usize = 200;
/// An acknowledged event should be covered by a signed checkpoint within
/// this many seconds.
const COVERAGE_TARGET_S: f64 = 1.0;
/// Passes of the raw SHA-256 loop; the fastest one is the baseline.
const RAW_PASSES: usize = 3;

/// Coverage latencies of a set of events: acknowledgement to the
/// `signed_at` of the first checkpoint that covers them.
#[derive(Debug, Clone, Copy)]
struct Coverage {
    events: u64,
    /// Events that no checkpoint covered by the end of the run.
    uncovered: u64,
    p50: f64,
    p99: f64,
    max: f64,
    /// Share of events covered within [`COVERAGE_TARGET_S`].
    within: f64,
}

impl Coverage {
    /// From `(seconds, events)` pairs, `f64::INFINITY` meaning never.
    fn of(mut samples: Vec<(f64, u64)>) -> Coverage {
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let events: u64 = samples.iter().map(|s| s.1).sum();
        let quantile = |p: f64| {
            let rank = ((events as f64 * p).ceil() as u64).max(1);
            let mut seen = 0;
            for (seconds, n) in &samples {
                seen += n;
                if seen >= rank {
                    return *seconds;
                }
            }
            f64::NAN
        };
        let sum = |keep: &dyn Fn(f64) -> bool| -> u64 {
            samples.iter().filter(|s| keep(s.0)).map(|s| s.1).sum()
        };
        Coverage {
            events,
            uncovered: sum(&|s| s.is_infinite()),
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: samples.last().map_or(f64::NAN, |s| s.0),
            within: sum(&|s| s <= COVERAGE_TARGET_S) as f64 / events.max(1) as f64,
        }
    }

    fn text(&self) -> String {
        let ms = |s: f64| {
            if s.is_finite() {
                format!("{:.0}", s * 1e3)
            } else {
                "never".to_owned()
            }
        };
        format!(
            "p50 {} ms  p99 {} ms  max {} ms  within {COVERAGE_TARGET_S} s {:.2}%  uncovered {}",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.within * 100.0,
            self.uncovered
        )
    }
}

/// One minute of the held phase.
#[derive(Debug, Clone, Copy)]
struct Minute {
    seconds: f64,
    coverage: Coverage,
    checkpoints: usize,
    /// CPU microseconds per event: annal, PostgreSQL.
    cpu_per_event: [f64; 2],
    /// Shares of the machine (all cores = 100): anything but this process,
    /// annal and PostgreSQL; idle.
    other_idle: [f64; 2],
    /// Blocks read from outside PostgreSQL's shared buffers per 1,000
    /// events: `annal.events`, `annal.tree_nodes`.
    reads_per_k: [f64; 2],
}

impl Minute {
    fn rate(&self) -> f64 {
        self.coverage.events as f64 / self.seconds
    }
}

/// Timings of `Checkpointer::sign_now`, each signing a new checkpoint.
#[derive(Debug, Clone, Copy)]
struct SignTimes {
    /// Tree size of the last checkpoint signed.
    size: u64,
    signed: usize,
    /// Rounds where the server's own checkpointer signed the size first
    /// (left out of the timings).
    lost: usize,
    mean: Duration,
    median: Duration,
}

impl SignTimes {
    fn text(&self) -> String {
        format!(
            "sign_now at size {}: mean {:.2} ms, median {:.2} ms over {} new checkpoints ({} signed first by the server, left out)",
            self.size,
            self.mean.as_secs_f64() * 1e3,
            self.median.as_secs_f64() * 1e3,
            self.signed,
            self.lost
        )
    }
}

/// One `GET /v1/export` streamed to a file.
#[derive(Debug, Clone, Copy)]
struct Export {
    bytes: u64,
    seconds: f64,
    /// The server's VmRSS before, and the largest seen while streaming.
    rss_before_kb: u64,
    rss_max_kb: u64,
}

/// One run of `annal-verify FILE --vkey VKEY --json`.
#[derive(Debug, Clone, Copy)]
struct VerifyRun {
    seconds: f64,
    /// Largest VmHWM read from `/proc` while it ran.
    peak_rss_kb: u64,
    records: u64,
    checkpoints: u64,
}

impl VerifyRun {
    fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Inclusion proofs at one tree size against checkpoint fetches, as the
/// client timed them and as the server logged them.
#[derive(Debug, Clone)]
struct InclusionRun {
    size: u64,
    /// Client round trips, sorted.
    proofs: Vec<Duration>,
    fetches: Vec<Duration>,
    /// The server's `duration_ms` (whole milliseconds rounded down), sorted.
    logged_proofs: Vec<u64>,
    logged_fetches: Vec<u64>,
}

impl InclusionRun {
    fn logged(sorted: &[u64], p: f64) -> u64 {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or(0)
    }

    /// Server-side p99 under 5 ms: logged in whole milliseconds rounded
    /// down, that is at most 4.
    fn met(&self) -> bool {
        self.logged_proofs.len() == PROOF_GETS
            && InclusionRun::logged(&self.logged_proofs, 0.99) < 5
    }

    fn ratio(&self, p: f64) -> f64 {
        ms(quantile(&self.proofs, p)) / ms(quantile(&self.fetches, p)).max(f64::MIN_POSITIVE)
    }

    fn summary(&self) -> String {
        format!(
            "server-side p99 {} ms as logged (i.e. < {} ms), client round trip p99 {:.2} ms, \
             vs checkpoint fetch p50 {:.2}x p99 {:.2}x",
            InclusionRun::logged(&self.logged_proofs, 0.99),
            InclusionRun::logged(&self.logged_proofs, 0.99) + 1,
            ms(quantile(&self.proofs, 0.99)),
            self.ratio(0.5),
            self.ratio(0.99),
        )
    }

    fn print(&self) {
        let max = |sorted: &[Duration]| ms(sorted.last().copied().unwrap_or_default());
        println!(
            "  {PROOF_GETS} inclusion proofs at size {} (all verified): p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
             {PROOF_GETS} checkpoint fetches: p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.size,
            ms(quantile(&self.proofs, 0.5)),
            ms(quantile(&self.proofs, 0.99)),
            max(&self.proofs),
            ms(quantile(&self.fetches, 0.5)),
            ms(quantile(&self.fetches, 0.99)),
            max(&self.fetches),
        );
        let logged = |sorted: &[u64]| {
            format!(
                "{} p50 {} p99 {} max {} ms",
                sorted.len(),
                InclusionRun::logged(sorted, 0.5),
                InclusionRun::logged(sorted, 0.99),
                sorted.last().copied().unwrap_or(0)
            )
        };
        println!(
            "    server-side (its duration_ms, whole ms rounded down): inclusion proofs {}; checkpoint fetches {}",
            logged(&self.logged_proofs),
            logged(&self.logged_fetches),
        );
    }
}

/// The baselines of `annal-verify`, over bytes already decoded in memory:
/// one SHA-256 per record over the record bytes (the target's baseline),
/// and every SHA-256 a verifier cannot skip (the hashing floor).
#[derive(Debug, Clone)]
struct RawHash {
    records: u64,
    /// Every pass of one SHA-256 per record, in order.
    passes: Vec<Duration>,
    /// Every pass of the hashing floor, in order.
    floor_passes: Vec<Duration>,
}

impl RawHash {
    fn best(passes: &[Duration]) -> Duration {
        passes.iter().min().copied().unwrap_or(Duration::MAX)
    }

    fn rate(&self) -> f64 {
        self.records as f64 / RawHash::best(&self.passes).as_secs_f64()
    }

    fn floor_rate(&self) -> f64 {
        self.records as f64 / RawHash::best(&self.floor_passes).as_secs_f64()
    }
}

/// Record bytes, payloads and salts of a bundle, decoded, and the bundle.
struct Decoded {
    file: Vec<u8>,
    records: Vec<u8>,
    record_ends: Vec<usize>,
    payloads: Vec<u8>,
    payload_ends: Vec<usize>,
    salts: Vec<[u8; 32]>,
}

impl Decoded {
    fn read(bundle: &Path) -> anyhow::Result<Decoded> {
        let file = std::fs::read(bundle)?;
        let mut decoded = Decoded {
            file: Vec::new(),
            records: Vec::new(),
            record_ends: vec![0],
            payloads: Vec::new(),
            payload_ends: vec![0],
            salts: Vec::new(),
        };
        for line in file.split(|b| *b == b'\n') {
            if !line.starts_with(b"{\"seq\":") {
                continue;
            }
            let line: RecordLine = serde_json::from_slice(line)?;
            STANDARD.decode_vec(line.record.as_bytes(), &mut decoded.records)?;
            decoded.record_ends.push(decoded.records.len());
            let mut salt = [0; 32];
            if let (Some(payload), Some(hex_salt)) = (line.payload, line.salt) {
                STANDARD.decode_vec(payload.as_bytes(), &mut decoded.payloads)?;
                hex::decode_to_slice(hex_salt, &mut salt)?;
            }
            decoded.payload_ends.push(decoded.payloads.len());
            decoded.salts.push(salt);
        }
        decoded.file = file;
        Ok(decoded)
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        spans(&self.records, &self.record_ends)
    }

    /// One SHA-256 per record.
    fn hash_records(&self) -> u8 {
        let mut folded = 0u8;
        for record in self.records() {
            folded ^= Sha256::digest(record)[0];
        }
        folded
    }

    /// The SHA-256 work of verification alone (docs/FORMAT.md): the
    /// bundle's digest, and per record its leaf, payload commitment and chain
    /// link, and the Merkle tree's interior nodes (one per record, amortised).
    fn hash_floor(&self) -> u8 {
        let mut folded = Sha256::digest(&self.file)[0];
        let mut chain = [0u8; 32];
        let mut stack: Vec<[u8; 32]> = Vec::with_capacity(64);
        let payloads = spans(&self.payloads, &self.payload_ends);
        for (index, ((record, payload), salt)) in
            self.records().zip(payloads).zip(&self.salts).enumerate()
        {
            let leaf: [u8; 32] = Sha256::new()
                .chain_update([0u8])
                .chain_update(record)
                .finalize()
                .into();
            if !payload.is_empty() {
                folded ^= Sha256::new()
                    .chain_update(salt)
                    .chain_update(payload)
                    .finalize()[0];
            }
            chain = Sha256::new()
                .chain_update([2u8])
                .chain_update(chain)
                .chain_update(leaf)
                .finalize()
                .into();
            stack.push(leaf);
            let mut merged = index;
            while merged & 1 == 1 {
                if let (Some(right), Some(left)) = (stack.pop(), stack.pop()) {
                    stack.push(
                        Sha256::new()
                            .chain_update([1u8])
                            .chain_update(left)
                            .chain_update(right)
                            .finalize()
                            .into(),
                    );
                }
                merged >>= 1;
            }
        }
        folded ^ chain[0] ^ stack.first().map_or(0, |h| h[0])
    }
}

/// The slices `bytes[ends[i]..ends[i + 1]]`.
fn spans<'a>(bytes: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    ends.iter()
        .zip(ends.iter().skip(1))
        .filter_map(|(start, end)| bytes.get(*start..*end))
}

/// An answer of `GET /v1/proofs/inclusion`.
#[derive(Deserialize)]
struct InclusionAnswer {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
    checkpoint: String,
}

/// A record line of an export bundle (the part the baseline reads).
#[derive(Deserialize)]
struct RecordLine {
    record: String,
    payload: Option<String>,
    salt: Option<String>,
}

/// A number in kB from `/proc/<pid>/status`, e.g. `VmRSS:` or `VmHWM:`.
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The value at quantile `p` of sorted durations (nearest rank).
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Runs `annal-verify BUNDLE --vkey VKEY --json`, polling its peak RSS
/// (VmHWM) every 5 ms; fails unless it exits 0.
fn run_verifier(verifier: &Path, bundle: &Path, vkey: &str) -> anyhow::Result<VerifyRun> {
    let started = Instant::now();
    let mut child = Command::new(verifier)
        .arg(bundle)
        .args(["--vkey", vkey, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", verifier.display()))?;
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pid = child.id().to_string();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = status_kb(&pid, "VmHWM:") {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "annal-verify {}: {status}: {stdout} {stderr}",
            bundle.display()
        );
    }
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("annal-verify's report: {stdout}"))?;
    if report["ok"] != true {
        bail!("annal-verify did not say ok: {stdout}");
    }
    let count = |key: &str| report["report"][key].as_u64().unwrap_or(0);
    Ok(VerifyRun {
        seconds,
        peak_rss_kb: peak,
        records: count("records_checked"),
        checkpoints: count("checkpoints_verified"),
    })
}

/// Decodes every record of `bundle` into memory, then times passes of one
/// SHA-256 per record and of the hashing floor, alternately.
fn raw_sha256(bundle: &Path) -> anyhow::Result<RawHash> {
    let decoded = Decoded::read(bundle)?;
    let time = |pass: &dyn Fn() -> u8| {
        let started = Instant::now();
        std::hint::black_box(pass());
        started.elapsed()
    };
    let mut raw = RawHash {
        records: decoded.salts.len() as u64,
        passes: Vec::with_capacity(RAW_PASSES),
        floor_passes: Vec::with_capacity(RAW_PASSES),
    };
    for _ in 0..RAW_PASSES {
        raw.passes.push(time(&|| decoded.hash_records()));
        raw.floor_passes.push(time(&|| decoded.hash_floor()));
    }
    Ok(raw)
}

/// Coverage of every acknowledged batch of `held` by the checkpoints
/// `signed` (size, signed_at; sorted by size): overall, and per minute of
/// the window with the CPU between the minute's `snapshots`.
fn coverage(
    held: &Phase,
    signed: &[(u64, DateTime<Utc>)],
    snapshots: &[Snapshot],
) -> (Coverage, Vec<Minute>) {
    let latency = |ack: &Ack| {
        // The first checkpoint whose tree holds the batch's largest seq; a
        // batch commits in one transaction, so it covers the whole batch.
        let first = signed.partition_point(|(size, _)| *size <= ack.max_seq);
        signed.get(first).map_or(f64::INFINITY, |(_, at)| {
            (*at - ack.wall).to_std().map_or(0.0, |d| d.as_secs_f64())
        })
    };
    let overall = Coverage::of(held.acks.iter().map(|a| (latency(a), a.events)).collect());
    let length = (held.window.1 - held.window.0).as_secs_f64();
    let count = (length / 60.0).ceil().max(1.0) as usize;
    let minutes = (0..count)
        .map(|m| {
            let start = 60.0 * m as f64;
            let seconds = (length - start).min(60.0);
            let in_minute = |offset: f64| offset >= start && offset < start + 60.0;
            let samples = held
                .acks
                .iter()
                .filter(|a| in_minute((a.at - held.window.0).as_secs_f64()))
                .map(|a| (latency(a), a.events))
                .collect();
            let coverage = Coverage::of(samples);
            let checkpoints = signed
                .iter()
                .filter(|(_, at)| {
                    (*at - held.wall.0)
                        .to_std()
                        .is_ok_and(|d| d.as_secs_f64() <= length && in_minute(d.as_secs_f64()))
                })
                .count();
            let per_event = |ticks: Option<u64>| {
                ticks.map_or(f64::NAN, |t| t as f64 * 1e4 / coverage.events.max(1) as f64)
            };
            let (from, to) = (snapshots.get(m), snapshots.get(m + 1));
            let delta = |pick: fn(&Snapshot) -> u64| {
                from.zip(to).map(|(a, b)| pick(b).saturating_sub(pick(a)))
            };
            let cpu = |pick: fn(&Snapshot) -> u64| per_event(delta(pick));
            let share = |ticks: Option<u64>| {
                ticks
                    .zip(delta(|s| s.total))
                    .map_or(f64::NAN, |(t, total)| {
                        100.0 * t as f64 / total.max(1) as f64
                    })
            };
            let busy = delta(|s| s.busy);
            let ours = delta(|s| s.me + s.children + s.annal + s.postgres);
            let other = busy.zip(ours).map(|(b, o)| b.saturating_sub(o));
            let idle = delta(|s| s.total)
                .zip(busy)
                .map(|(t, b)| t.saturating_sub(b));
            let reads = |pick: fn(&Snapshot) -> i64| {
                from.zip(to).map_or(f64::NAN, |(a, b)| {
                    (pick(b) - pick(a)) as f64 * 1e3 / coverage.events.max(1) as f64
                })
            };
            Minute {
                seconds,
                coverage,
                checkpoints,
                cpu_per_event: [cpu(|s| s.annal), cpu(|s| s.postgres)],
                other_idle: [share(other), share(idle)],
                reads_per_k: [reads(|s| s.events_reads), reads(|s| s.tree_reads)],
            }
        })
        .collect();
    (overall, minutes)
}

impl Bench {
    /// Scenario D: what an auditor gets from a ledger under held load.
    async fn verifiability(&self) -> anyhow::Result<()> {
        let tenant = *self
            .tenant_ids
            .first()
            .ok_or_else(|| anyhow!("no tenant"))?;
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        // The same signing code and key as the server's, on a pool of its own.
        let checkpointer = Checkpointer::new(
            Store::connect(&self.app_url, 2)?,
            self.keyring.clone(),
            Arc::new(SystemClock),
            DEFAULT_INTERVAL,
        );

        println!("D0 signing at a small tree");
        let sign_small = self.time_signing(&checkpointer, &http, tenant).await?;
        println!("  {}", sign_small.text());

        println!("D1 held batch ingest");
        let minutes = self.args.duration.div_ceil(60);
        let from = Instant::now() + Duration::from_secs(self.args.warmup);
        let (held, snapshots) = tokio::join!(
            self.batches("D1 annal: batch POSTs, held", true),
            self.minute_snapshots(from, minutes)
        );
        let held = held?;
        // The events acknowledged last wait up to an interval for their checkpoint.
        tokio::time::sleep(DEFAULT_INTERVAL * 3).await;
        let signed = self.checkpoints(tenant).await?;
        let in_window = signed
            .iter()
            .filter(|(_, at)| *at >= held.wall.0 && *at <= held.wall.1)
            .count();
        let (overall, per_minute) = coverage(&held, &signed, &snapshots);
        let size_after_d1 = self.log_size(tenant).await?;
        println!(
            "  coverage of {} acknowledged events: {}",
            overall.events,
            overall.text()
        );
        println!(
            "  {in_window} checkpoints signed in the window; log size after the phase {size_after_d1}; \
             CPU s annal {:.1} pg {:.1}",
            held.cpu_seconds[0], held.cpu_seconds[1]
        );
        println!(
            "  minute  events/s  cpu-us/ev annal    pg  cpu% other idle  blocks read/1k ev events tree  checkpoints  coverage"
        );
        for (m, minute) in per_minute.iter().enumerate() {
            println!(
                "  {:>6}  {:>8.0}  {:>15.1}  {:>4.1}  {:>10.0} {:>4.0}  {:>24.1} {:>4.2}  {:>11}  {}",
                m + 1,
                minute.rate(),
                minute.cpu_per_event[0],
                minute.cpu_per_event[1],
                minute.other_idle[0],
                minute.other_idle[1],
                minute.reads_per_k[0],
                minute.reads_per_k[1],
                minute.checkpoints,
                minute.coverage.text()
            );
        }

        println!("D2 signing at the large tree");
        let sign_large = self.time_signing(&checkpointer, &http, tenant).await?;
        println!("  {}", sign_large.text());
        let ingest_cpu = held.cpu_seconds[0] + held.cpu_seconds[1];
        let signing = in_window as f64 * sign_large.mean.as_secs_f64();
        let share = signing / ingest_cpu.max(f64::MIN_POSITIVE);

        println!("D3 inclusion proofs");
        let size = self.top_up(tenant, MILLION).await?;
        println!("  log size {size} (topped up from {size_after_d1})");
        let (note, checkpoint) = self
            .latest_checkpoint(&http, &self.keys[0], MILLION)
            .await?;
        let at_latest = self.inclusion(&http, &note, &checkpoint).await?;
        at_latest.print();
        // The target names 1M events: the same at the first checkpoint of at
        // least that size, when the log has grown past it.
        let at_million = match self.signed_at_least(&http, tenant, MILLION).await? {
            Some((note, checkpoint)) if checkpoint.size < at_latest.size => {
                let run = self.inclusion(&http, &note, &checkpoint).await?;
                run.print();
                run
            }
            _ => at_latest.clone(),
        };

        println!("D4 export and offline verification");
        let verifier = self.args.annal.with_file_name("annal-verify");
        let vkey = self.vkey.to_vkey();
        let big_file = self.scratch.join("export-1m.jsonl");
        let big_export = self.export(&http, MILLION - 1, &big_file).await?;
        let big = {
            let (verifier, file, vkey) = (verifier.clone(), big_file.clone(), vkey.clone());
            tokio::task::spawn_blocking(move || run_verifier(&verifier, &file, &vkey)).await??
        };
        let raw = {
            let file = big_file.clone();
            tokio::task::spawn_blocking(move || raw_sha256(&file)).await??
        };
        let _ = std::fs::remove_file(&big_file);
        if raw.records != big.records {
            bail!(
                "the baseline read {} records, annal-verify checked {}",
                raw.records,
                big.records
            );
        }
        let small_file = self.scratch.join("export-100k.jsonl");
        let small_export = self.export(&http, SMALL_EXPORT - 1, &small_file).await?;
        let small = {
            let (verifier, file) = (verifier.clone(), small_file.clone());
            tokio::task::spawn_blocking(move || run_verifier(&verifier, &file, &vkey)).await??
        };
        let _ = std::fs::remove_file(&small_file);
        for (export, run) in [(&big_export, &big), (&small_export, &small)] {
            println!(
                "  export of {} records: {:.1} MB in {:.2} s ({:.0} records/s); server VmRSS {:.1} MiB before, max {:.1} MiB during; \
                 annal-verify: {:.2} s ({:.0} records/s, {} checkpoints), peak RSS {:.1} MiB, exit 0",
                run.records,
                export.bytes as f64 / 1e6,
                export.seconds,
                run.records as f64 / export.seconds,
                mib(export.rss_before_kb),
                mib(export.rss_max_kb),
                run.seconds,
                run.rate(),
                run.checkpoints,
                mib(run.peak_rss_kb),
            );
        }
        let seconds = |passes: &[Duration]| {
            let texts: Vec<String> = passes
                .iter()
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .collect();
            texts.join(", ")
        };
        println!(
            "  raw SHA-256, one per record over the same {} records: passes {} s; best {:.0} records/s",
            raw.records,
            seconds(&raw.passes),
            raw.rate()
        );
        println!(
            "  hashing floor (bundle digest + leaf, commitment, chain link, Merkle node per record): \
             passes {} s; best {:.0} records/s ({:.2}x of one SHA-256 per record)",
            seconds(&raw.floor_passes),
            raw.floor_rate(),
            raw.floor_rate() / raw.rate()
        );

        let verify_ratio = big.rate() / raw.rate();
        let memory_ratio = big.peak_rss_kb as f64 / small.peak_rss_kb.max(1) as f64;
        let (first, last) = (per_minute.first(), per_minute.last());
        let rate_ratio = first.zip(last).map_or(f64::NAN, |(f, l)| {
            l.rate() / f.rate().max(f64::MIN_POSITIVE)
        });
        let sign_ratio = [
            sign_large.mean.as_secs_f64() / sign_small.mean.as_secs_f64(),
            sign_large.median.as_secs_f64() / sign_small.median.as_secs_f64(),
        ];
        let database_bytes = self
            .stats
            .query_one("SELECT pg_database_size(current_database())::int8", &[])
            .await?
            .try_get::<_, i64>(0)?;

        println!("summary (scenario D)");
        println!(
            "  1. annal-verify {:.0} records/s vs raw SHA-256 {:.0} records/s: ratio {verify_ratio:.3} (target >= 0.5): {} \
             (vs the hashing floor {:.0} records/s: {:.2}); \
             peak RSS {:.1} MiB at {} records vs {:.1} MiB at {} ({memory_ratio:.2}x; flat if <= 1.25x): {}",
            big.rate(),
            raw.rate(),
            verdict(verify_ratio >= 0.5),
            raw.floor_rate(),
            big.rate() / raw.floor_rate(),
            mib(big.peak_rss_kb),
            big.records,
            mib(small.peak_rss_kb),
            small.records,
            verdict(memory_ratio <= 1.25),
        );
        println!(
            "  2. inclusion proof at size {}: {} (target < 5 ms): {}; at size {}: {}",
            at_million.size,
            at_million.summary(),
            verdict(at_million.met()),
            at_latest.size,
            at_latest.summary(),
        );
        println!(
            "  3. signing: {in_window} checkpoints x {:.2} ms = {signing:.2} s of {ingest_cpu:.1} CPU s (annal + pg) = {:.3}% (target < 1%): {}",
            ms(sign_large.mean),
            share * 100.0,
            verdict(share < 0.01),
        );
        println!(
            "  4. coverage p99 {:.0} ms, {:.2}% within 1 s (target p99 <= 1 s): {}; events/s last/first minute {rate_ratio:.2}; \
             sign_now at size {} / at size {}: mean {:.2}x, median {:.2}x",
            overall.p99 * 1e3,
            overall.within * 100.0,
            verdict(overall.p99 <= COVERAGE_TARGET_S && overall.uncovered == 0),
            sign_large.size,
            sign_small.size,
            sign_ratio[0],
            sign_ratio[1],
        );
        println!(
            "  database size at the end: {:.2} GB; annal.events of the tenant: {}",
            database_bytes as f64 / 1e9,
            self.log_size(tenant).await?
        );
        Ok(())
    }

    /// A [`Snapshot`] at `from` and at the end of each of `minutes` minutes
    /// after it (the last one at the end of the measured window).
    async fn minute_snapshots(&self, from: Instant, minutes: u64) -> Vec<Snapshot> {
        let mut snapshots = Vec::new();
        for m in 0..=minutes {
            let at = from + Duration::from_secs((60 * m).min(self.args.duration));
            tokio::time::sleep_until(at.into()).await;
            match self.snapshot().await {
                Ok(s) => snapshots.push(s),
                Err(_) => break,
            }
        }
        snapshots
    }

    /// Appends one event and times `checkpointer.sign_now`, [`SIGN_ROUNDS`]
    /// times.
    async fn time_signing(
        &self,
        checkpointer: &Checkpointer,
        http: &reqwest::Client,
        tenant: TenantId,
    ) -> anyhow::Result<SignTimes> {
        let url = format!("{}/v1/events", self.base_url);
        let mut times = Vec::with_capacity(SIGN_ROUNDS);
        let mut lost = 0;
        let mut size = 0;
        for n in 0..SIGN_ROUNDS {
            let body = self.single_bodies[n % self.single_bodies.len()];
            let posted = http
                .post(&url)
                .bearer_auth(&self.keys[0])
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            if posted.status().as_u16() != 201 {
                bail!("posting an event: {}", posted.status());
            }
            let started = Instant::now();
            let signed = checkpointer
                .sign_now(tenant)
                .await
                .map_err(|e| anyhow!("signing a checkpoint: {e}"))?;
            let took = started.elapsed();
            match signed {
                Signed::New(checkpoint) => {
                    size = checkpoint.size;
                    times.push(took);
                }
                Signed::Current(_) => lost += 1,
            }
        }
        if times.is_empty() {
            bail!("no checkpoint was signed by the example");
        }
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        times.sort_unstable();
        Ok(SignTimes {
            size,
            signed: times.len(),
            lost,
            mean,
            median: quantile(&times, 0.5),
        })
    }

    /// Every checkpoint of `tenant`: size and signed_at, by size.
    async fn checkpoints(&self, tenant: TenantId) -> anyhow::Result<Vec<(u64, DateTime<Utc>)>> {
        let rows = self
            .stats
            .query(
                "SELECT size, signed_at FROM annal.checkpoints WHERE tenant_id = $1 ORDER BY size",
                &[&tenant.as_uuid()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((u64::try_from(r.try_get::<_, i64>(0)?)?, r.try_get(1)?)))
            .collect()
    }

    /// The number of events of `tenant`.
    async fn log_size(&self, tenant: TenantId) -> anyhow::Result<u64> {
        let size: i64 = self
            .stats
            .query_one(
                "SELECT coalesce(max(seq) + 1, 0)::int8 FROM annal.events WHERE tenant_id = $1",
                &[&tenant.as_uuid()],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(size)?)
    }

    /// Posts batches on `--batch-clients` connections until `tenant` has at
    /// least `target` events; returns the log size.
    async fn top_up(&self, tenant: TenantId, target: u64) -> anyhow::Result<u64> {
        let size = Arc::new(AtomicU64::new(self.log_size(tenant).await?));
        let url = format!("{}/v1/events/batch", self.base_url);
        let workers: Vec<_> = (0..self.args.batch_clients.max(1))
            .map(|i| {
                let (size, url, bodies) = (size.clone(), url.clone(), self.batch_bodies.clone());
                let key = self.keys[0].clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
                    let mut n = i;
                    while size.load(Ordering::Relaxed) < target {
                        n = n.wrapping_add(1);
                        let resp = http
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .body(bodies[n % bodies.len()])
                            .send()
                            .await?;
                        let status = resp.status();
                        let body = resp.bytes().await?;
                        if status.as_u16() != 201 {
                            bail!("topping up: {status}: {}", String::from_utf8_lossy(&body));
                        }
                        let seq = largest_seq(&body)
                            .ok_or_else(|| anyhow!("an answer without receipts"))?;
                        size.fetch_max(seq + 1, Ordering::Relaxed);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
        self.log_size(tenant).await
    }

    /// `GET /v1/checkpoint` with `key`, once it answers a checkpoint of at
    /// least `size` (the server signs on demand at most once per interval,
    /// so the newest events may wait for the background signer), its
    /// signature verified with the server's public key.
    async fn latest_checkpoint(
        &self,
        http: &reqwest::Client,
        key: &str,
        size: u64,
    ) -> anyhow::Result<(String, annal::ledger::Checkpoint)> {
        let deadline = Instant::now() + DEFAULT_INTERVAL * 30;
        loop {
            let resp = http
                .get(format!("{}/v1/checkpoint", self.base_url))
                .bearer_auth(key)
                .send()
                .await?;
            if resp.status().as_u16() != 200 {
                bail!("GET /v1/checkpoint: {}", resp.status());
            }
            let note = resp.text().await?;
            let signed = SignedCheckpoint::parse(&note)
                .map_err(|e| anyhow!("the latest checkpoint: {e}"))?;
            signed
                .verify(std::slice::from_ref(&self.vkey))
                .map_err(|e| anyhow!("the latest checkpoint's signature: {e}"))?;
            if signed.checkpoint().size >= size {
                return Ok((note, signed.checkpoint().clone()));
            }
            if Instant::now() > deadline {
                bail!(
                    "no checkpoint of at least {size} events after {} s",
                    (DEFAULT_INTERVAL * 30).as_secs()
                );
            }
            tokio::time::sleep(DEFAULT_INTERVAL / 4).await;
        }
    }

    /// A timed GET of `url` that must answer 200; the body after the clock
    /// stops.
    async fn get_timed(
        &self,
        http: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<(Duration, Vec<u8>)> {
        let started = Instant::now();
        let resp = http.get(url).bearer_auth(&self.keys[0]).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = started.elapsed();
        if status.as_u16() != 200 {
            bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok((took, body.to_vec()))
    }

    /// [`Bench::prove`] with the server's log of the requests.
    async fn inclusion(
        &self,
        http: &reqwest::Client,
        note: &str,
        checkpoint: &annal::ledger::Checkpoint,
    ) -> anyhow::Result<InclusionRun> {
        self.requests.collecting.store(true, Ordering::Relaxed);
        let proved = self.prove(http, note, checkpoint).await;
        // The last log lines are still on their way through the pipe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.requests.collecting.store(false, Ordering::Relaxed);
        let (proofs, fetches) = proved?;
        Ok(InclusionRun {
            size: checkpoint.size,
            proofs,
            fetches,
            logged_proofs: self.requests.take("/v1/proofs/inclusion"),
            logged_fetches: self.requests.take("/v1/checkpoints/{size}"),
        })
    }

    /// The first checkpoint of `tenant` of at least `size`, fetched through
    /// `GET /v1/checkpoints/{size}` and its signature verified.
    async fn signed_at_least(
        &self,
        http: &reqwest::Client,
        tenant: TenantId,
        size: u64,
    ) -> anyhow::Result<Option<(String, annal::ledger::Checkpoint)>> {
        let signed = self.checkpoints(tenant).await?;
        let Some((size, _)) = signed.iter().find(|(s, _)| *s >= size) else {
            return Ok(None);
        };
        let url = format!("{}/v1/checkpoints/{size}", self.base_url);
        let (_, body) = self.get_timed(http, &url).await?;
        let note = String::from_utf8(body)?;
        let parsed =
            SignedCheckpoint::parse(&note).map_err(|e| anyhow!("checkpoint {size}: {e}"))?;
        parsed
            .verify(std::slice::from_ref(&self.vkey))
            .map_err(|e| anyhow!("checkpoint {size}'s signature: {e}"))?;
        Ok(Some((note, parsed.checkpoint().clone())))
    }

    /// [`PROOF_GETS`] inclusion proofs of random seqs at `checkpoint`, each
    /// verified against its root after the clock stops, interleaved with as
    /// many fetches of the checkpoint itself (one primary-key lookup
    /// through the same HTTP and auth stack). Both sorted.
    async fn prove(
        &self,
        http: &reqwest::Client,
        note: &str,
        checkpoint: &annal::ledger::Checkpoint,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let size = checkpoint.size;
        let fetch_url = format!("{}/v1/checkpoints/{size}", self.base_url);
        let mut rng = StdRng::seed_from_u64(size);
        let mut proofs = Vec::with_capacity(PROOF_GETS);
        let mut fetches = Vec::with_capacity(PROOF_GETS);
        for i in 0..PROOF_GETS {
            let seq = rng.gen_range(0..size);
            let proof_url = format!(
                "{}/v1/proofs/inclusion?seq={seq}&tree_size={size}",
                self.base_url
            );
            let fetch_first = i % 2 == 0;
            if fetch_first {
                fetches.push(self.fetch_checkpoint(http, &fetch_url, note).await?);
            }
            let (took, body) = self.get_timed(http, &proof_url).await?;
            proofs.push(took);
            if !fetch_first {
                fetches.push(self.fetch_checkpoint(http, &fetch_url, note).await?);
            }
            let answer: InclusionAnswer = serde_json::from_slice(&body)?;
            if answer.leaf_index != seq || answer.tree_size != size || answer.checkpoint != note {
                bail!("the inclusion proof of seq {seq} is for another leaf, size or checkpoint");
            }
            let leaf = TreeHash::from_base64(&answer.leaf_hash)?;
            let path = answer
                .audit_path
                .iter()
                .map(|h| TreeHash::from_base64(h))
                .collect::<Result<Vec<_>, _>>()?;
            verify_inclusion(seq, size, &leaf, &path, &checkpoint.root)
                .map_err(|e| anyhow!("the inclusion proof of seq {seq}: {e}"))?;
        }
        proofs.sort_unstable();
        fetches.sort_unstable();
        Ok((proofs, fetches))
    }

    async fn fetch_checkpoint(
        &self,
        http: &reqwest::Client,
        url: &str,
        note: &str,
    ) -> anyhow::Result<Duration> {
        let (took, body) = self.get_timed(http, url).await?;
        if body != note.as_bytes() {
            bail!("GET {url} answered another checkpoint");
        }
        Ok(took)
    }

    /// Streams `GET /v1/export?to_seq=…` into `file`, sampling the server's
    /// VmRSS every 100 ms meanwhile.
    async fn export(
        &self,
        http: &reqwest::Client,
        to_seq: u64,
        file: &Path,
    ) -> anyhow::Result<Export> {
        let pid = self.server_pid.to_string();
        let rss_before_kb = status_kb(&pid, "VmRSS:").unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn({
            let (stop, pid) = (stop.clone(), pid.clone());
            async move {
                let mut max = 0;
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(status_kb(&pid, "VmRSS:").unwrap_or(0));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                max
            }
        });
        let started = Instant::now();
        let streamed: anyhow::Result<u64> = async {
            let mut resp = http
                .get(format!("{}/v1/export?to_seq={to_seq}", self.base_url))
                .bearer_auth(&self.keys[0])
                .send()
                .await?;
            if resp.status().as_u16() != 200 {
                bail!("GET /v1/export: {}", resp.status());
            }
            let mut out = BufWriter::new(File::create(file)?);
            let mut bytes = 0;
            while let Some(chunk) = resp.chunk().await? {
                bytes += chunk.len() as u64;
                out.write_all(&chunk)?;
            }
            out.flush()?;
            Ok(bytes)
        }
        .await;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let rss_max_kb = sampler.await?.max(status_kb(&pid, "VmRSS:").unwrap_or(0));
        Ok(Export {
            bytes: streamed?,
            seconds,
            rss_before_kb,
            rss_max_kb,
        })
    }
}

/// How long ago scenario E's expired events were received: eight years, a
/// year past the default retention period.
const EXPIRED_AGE_MONTHS: u32 = 96;
/// Current events appended after the expired ones, so that the purged
/// tenant's head is young, as in a real log (a purge never takes the head).
const YOUNG_EVENTS: u64 = 10;
/// Events per in-process append while preloading, and appends in flight
/// (the appender groups them into one transaction, as the server's does).
const PRELOAD_CHUNK: u64 = 1000;
const PRELOAD_APPENDS: usize = 4;
/// Scenario E's targets: rows purged per second; ingest while purging
/// against ingest without: events/s at least, p99 latency at most.
const PURGE_RATE_TARGET: f64 = 50_000.0;
const INGEST_RATIO_TARGET: f64 = 0.7;
const P99_RATIO_TARGET: f64 = 2.0;

/// A clock stopped at one instant: scenario E dates its expired events
/// with it.
struct StoppedClock(DateTime<Utc>);

impl Clock for StoppedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// One purge setting of scenario E.
#[derive(Debug, Clone)]
struct PurgeSetting {
    batch: u32,
    /// As `annal retention run --pause` takes it, e.g. `20ms`.
    pause: String,
}

impl PurgeSetting {
    fn text(&self) -> String {
        format!("batch {} pause {}", self.batch, self.pause)
    }
}

/// The fields of an `annal retention run --json` line read here.
#[derive(Deserialize)]
struct RunLine {
    status: String,
    purged: u64,
    boundary_from: u64,
    batches: u64,
}

/// One `annal retention run`, timed from outside, with the batches'
/// start times from the boundaries it recorded (`purged_at`, the start
/// of each batch's transaction).
#[derive(Debug, Clone)]
struct PurgeRun {
    purged: u64,
    batches: u64,
    /// Wall time of the process, from spawning it to its exit.
    seconds: f64,
    /// From spawning the process to its first batch, and from its last
    /// batch's start to its exit (the last batch, the `retention.purged`
    /// event and the checkpoint after it).
    lead: f64,
    tail: f64,
    /// Rows per second over every batch but the last: their rows over the
    /// time from the first batch's start to the last's (pauses included).
    loop_rate: f64,
    /// Seconds between the starts of consecutive batches, in order.
    gaps: Vec<f64>,
}

impl PurgeRun {
    fn rate(&self) -> f64 {
        self.purged as f64 / self.seconds
    }
}

/// One purge measured in scenario E: the run, the window around it, and
/// the seconds of the `VACUUM annal.events` after it.
#[derive(Debug, Clone)]
struct Purge {
    run: PurgeRun,
    phase: Phase,
    vacuum: f64,
}

impl Purge {
    fn print(&self, name: &str) {
        let run = &self.run;
        let phase = &self.phase;
        let mut sorted = run.gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let gap = |p: f64| {
            let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted.get(i).map_or(f64::NAN, |g| g * 1e3)
        };
        // Whether a batch costs more the more has been purged before it.
        let tenth = (run.gaps.len() / 10).max(1);
        let mean_ms = |gaps: &[f64]| gaps.iter().sum::<f64>() * 1e3 / gaps.len().max(1) as f64;
        let first = mean_ms(run.gaps.get(..tenth).unwrap_or_default());
        let last = mean_ms(
            run.gaps
                .get(run.gaps.len().saturating_sub(tenth)..)
                .unwrap_or_default(),
        );
        println!(
            "  {name}: purged {} rows in {:.2} s = {:.0} rows/s ({} batches; over the batches {:.0} rows/s; \
             spawn to first batch {:.2} s, last batch start to exit {:.2} s; between batch starts p50 {:.1} ms max {:.1} ms, \
             mean over the first tenth {first:.1} ms, the last tenth {last:.1} ms)",
            run.purged,
            run.seconds,
            run.rate(),
            run.batches,
            run.loop_rate,
            run.lead,
            run.tail,
            gap(0.5),
            gap(1.0),
        );
        // Alone, all of PostgreSQL's work and WAL in the window is the
        // purge's; beside ingest, see [`PurgeRound::purge_pg_seconds`].
        let per_row = if phase.events == 0 {
            format!(
                " = {:.1} us/row; WAL {:.0} bytes/row",
                phase.cpu_seconds[1] * 1e6 / run.purged.max(1) as f64,
                phase.wal_bytes as f64 / run.purged.max(1) as f64
            )
        } else {
            format!(
                " with the ingest's; WAL {:.0} MB with the ingest's",
                phase.wal_bytes as f64 / 1e6
            )
        };
        println!(
            "    cpu% gen/annal/pg/purge-process/other/idle {:.0}/{:.0}/{:.0}/{:.0}/{:.0}/{:.0}; \
             CPU s purge process {:.2}, pg {:.1}{per_row}; \
             autovacuums of annal.events in the window {}; VACUUM afterwards {:.1} s",
            phase.cpu[0],
            phase.cpu[1],
            phase.cpu[2],
            phase.children_cpu,
            phase.cpu[3],
            phase.cpu[4],
            phase.children_seconds,
            phase.cpu_seconds[1],
            phase.autovacuums,
            self.vacuum,
        );
    }
}

/// One round of scenario E: ingest while a purge runs, and without.
#[derive(Debug, Clone)]
struct PurgeRound {
    baseline: Phase,
    purging: Purge,
}

impl PurgeRound {
    fn throughput_ratio(&self) -> f64 {
        ratio(&self.purging.phase, &self.baseline)
    }

    fn p99_ratio(&self) -> f64 {
        let p99 = |phase: &Phase| phase.percentile(0.99).map_or(f64::NAN, ms);
        p99(&self.purging.phase) / p99(&self.baseline)
    }

    /// PostgreSQL's CPU seconds in the purge's window beyond what its
    /// ingest cost at the baseline's CPU per event: the purge's share, and
    /// anything the purge made the ingest cost extra.
    fn purge_pg_seconds(&self) -> f64 {
        let phase = &self.purging.phase;
        phase.cpu_seconds[1] - self.baseline.cpu_per_event[1] * phase.events as f64 / 1e6
    }
}

/// What preloads scenario E's expired tenants: the app role's pool and
/// keys, a ledger and a checkpoint signer whose clock stands
/// [`EXPIRED_AGE_MONTHS`] back, and a ledger on the real clock for the
/// current events.
struct Preload {
    store: Store,
    keys: Keys,
    expired: Ledger,
    signer: Checkpointer,
    current: Ledger,
    made: AtomicU64,
}

impl Bench {
    /// Scenario E: the purge of expired records alone, and the batch load
    /// of B while it runs against the same load without it.
    async fn retention(&self) -> anyhow::Result<()> {
        let now = SystemClock.now();
        let then = now
            .checked_sub_months(chrono::Months::new(EXPIRED_AGE_MONTHS))
            .ok_or_else(|| anyhow!("no date {EXPIRED_AGE_MONTHS} months back"))?;
        let store = Store::connect(&self.app_url, 2 * PRELOAD_APPENDS)?;
        let real: SharedClock = Arc::new(SystemClock);
        let stopped: SharedClock = Arc::new(StoppedClock(then));
        let preload = Preload {
            keys: Keys::new(store.clone(), self.pepper.clone(), real.clone()),
            expired: Ledger::new(
                store.clone(),
                stopped.clone(),
                2 * PRELOAD_CHUNK as usize,
                None,
            ),
            signer: Checkpointer::new(
                store.clone(),
                self.keyring.clone(),
                stopped,
                DEFAULT_INTERVAL,
            ),
            current: Ledger::new(store.clone(), real, 2 * PRELOAD_CHUNK as usize, None),
            store,
            made: AtomicU64::new(0),
        };
        let settings: Vec<PurgeSetting> = self
            .args
            .purge_batch
            .iter()
            .flat_map(|batch| {
                self.args.purge_pause.iter().map(|pause| PurgeSetting {
                    batch: *batch,
                    pause: pause.clone(),
                })
            })
            .collect();
        for setting in &settings {
            annal::config::parse_duration(&setting.pause)?;
        }
        println!(
            "E: {} expired events per purge (received {EXPIRED_AGE_MONTHS} months ago, a checkpoint every {}) \
             + {YOUNG_EVENTS} current; ingest: {} batch clients x {} events to another tenant",
            self.args.purge_rows,
            self.args.purge_checkpoint_every,
            self.args.batch_clients,
            self.args.batch_size
        );

        let mut results = Vec::new();
        for setting in &settings {
            println!("E {}", setting.text());
            let tenant = self.expired_tenant(&preload).await?;
            let (phase, run) = self
                .run_window(
                    "E purge alone",
                    0,
                    |_, _| async { Tally::default() },
                    |_| self.purge(tenant, setting),
                )
                .await?;
            let alone = Purge {
                run: run?,
                phase,
                vacuum: self.vacuum().await?,
            };
            alone.print("purge alone");
            let mut rounds: Vec<PurgeRound> = Vec::new();
            for round in 1..=self.args.rounds {
                println!(" round {round}");
                let tenant = self.expired_tenant(&preload).await?;
                let flip = round % 2 == 0;
                let (baseline, purging) = if flip {
                    // As long as the last purge of this setting took.
                    let length = rounds
                        .last()
                        .map_or(alone.run.seconds, |r| r.purging.phase.seconds);
                    let baseline = self.ingest_for(Duration::from_secs_f64(length)).await?;
                    (baseline, self.ingest_purging(tenant, setting).await?)
                } else {
                    let purging = self.ingest_purging(tenant, setting).await?;
                    let length = Duration::from_secs_f64(purging.phase.seconds);
                    (self.ingest_for(length).await?, purging)
                };
                let round = PurgeRound { baseline, purging };
                println!(
                    "  => ingest while purging / without: events/s {:.2} (target >= {INGEST_RATIO_TARGET}), \
                     p99 {:.2} (target <= {P99_RATIO_TARGET}); purge {:.0} rows/s (target >= {PURGE_RATE_TARGET:.0}); \
                     pg CPU beyond the ingest's {:.1} s = {:.1} us/purged row; \
                     autovacuums of annal.events while purging {}, without {}",
                    round.throughput_ratio(),
                    round.p99_ratio(),
                    round.purging.run.rate(),
                    round.purge_pg_seconds(),
                    round.purge_pg_seconds() * 1e6 / round.purging.run.purged.max(1) as f64,
                    round.purging.phase.autovacuums,
                    round.baseline.autovacuums,
                );
                rounds.push(round);
            }
            let size: i64 = self
                .stats
                .query_one("SELECT pg_database_size(current_database())::int8", &[])
                .await?
                .try_get(0)?;
            println!("  database size now {:.2} GB", size as f64 / 1e9);
            results.push((setting, alone, rounds));
        }

        println!("summary (scenario E)");
        println!(
            "  {:<22} {:>12} {:>5} {:>12} {:>20} {:>6} {:>16} {:>6} {:>18}",
            "setting",
            "alone rows/s",
            "round",
            "purge rows/s",
            "ingest ev/s with/w-o",
            "ratio",
            "p99 ms with/w-o",
            "ratio",
            "other% with/w-o"
        );
        for (setting, alone, rounds) in &results {
            for (i, round) in rounds.iter().enumerate() {
                let p99 = |phase: &Phase| phase.percentile(0.99).map_or(f64::NAN, ms);
                println!(
                    "  {:<22} {:>12} {:>5} {:>12.0} {:>20} {:>6.2} {:>16} {:>6.2} {:>18}",
                    if i == 0 {
                        setting.text()
                    } else {
                        String::new()
                    },
                    if i == 0 {
                        format!("{:.0}", alone.run.rate())
                    } else {
                        String::new()
                    },
                    i + 1,
                    round.purging.run.rate(),
                    format!(
                        "{:.0} / {:.0}",
                        round.purging.phase.rate(),
                        round.baseline.rate()
                    ),
                    round.throughput_ratio(),
                    format!(
                        "{:.1} / {:.1}",
                        p99(&round.purging.phase),
                        p99(&round.baseline)
                    ),
                    round.p99_ratio(),
                    format!(
                        "{:.0} / {:.0}",
                        round.purging.phase.cpu[3], round.baseline.cpu[3]
                    ),
                );
            }
            let all = |met: &dyn Fn(&PurgeRound) -> bool| {
                let n = rounds.iter().filter(|r| met(r)).count();
                match n {
                    _ if rounds.is_empty() => "-".to_owned(),
                    n if n == rounds.len() => "met".to_owned(),
                    0 => "MISSED".to_owned(),
                    n => format!("met in {n} of {} rounds", rounds.len()),
                }
            };
            println!(
                "    {}: purge >= {PURGE_RATE_TARGET:.0} rows/s alone: {}, while ingesting: {}; \
                 ingest >= {INGEST_RATIO_TARGET}x: {}; p99 <= {P99_RATIO_TARGET}x: {}",
                setting.text(),
                verdict(alone.run.rate() >= PURGE_RATE_TARGET),
                all(&|r| r.purging.run.rate() >= PURGE_RATE_TARGET),
                all(&|r| r.throughput_ratio() >= INGEST_RATIO_TARGET),
                all(&|r| r.p99_ratio() <= P99_RATIO_TARGET),
            );
        }
        Ok(())
    }

    /// A new tenant with `--purge-rows` events received
    /// [`EXPIRED_AGE_MONTHS`] ago, appended in process (the server never
    /// appends to it first: receive times never go back), then
    /// [`YOUNG_EVENTS`] current ones, and a checkpoint signed over all.
    async fn expired_tenant(&self, preload: &Preload) -> anyhow::Result<TenantId> {
        let started = Instant::now();
        let n = preload.made.fetch_add(1, Ordering::Relaxed);
        let clock: SharedClock = Arc::new(SystemClock);
        let tenant = tenants::create(&preload.store, &clock, &format!("expired-{n}"))
            .await
            .map_err(|e| anyhow!("creating a tenant: {e}"))?;
        let key = preload
            .keys
            .create(tenant.tenant_id, &Scope::ALL)
            .await
            .map_err(|e| anyhow!("creating a key: {e}"))?;
        let who = preload
            .keys
            .authenticate(&key.api_key)
            .await
            .and_then(|p| p.authorize::<WriteEvents>())
            .map_err(|e| anyhow!("authenticating the preload: {e}"))?;
        let who = Arc::new(who);
        let rows = self.args.purge_rows;
        let every = match self.args.purge_checkpoint_every {
            0 => rows,
            n => n,
        };
        let mut loaded = 0;
        let mut checkpoints = 0;
        while loaded < rows {
            let upto = rows.min(loaded + every);
            self.append_expired(preload, &who, loaded..upto).await?;
            loaded = upto;
            if loaded < rows {
                preload
                    .signer
                    .sign_now(tenant.tenant_id)
                    .await
                    .map_err(|e| anyhow!("signing a preload checkpoint: {e}"))?;
                checkpoints += 1;
            }
        }
        preload
            .current
            .append(&who, prepared(rows..rows + YOUNG_EVENTS)?)
            .await
            .map_err(|e| anyhow!("appending current events: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        self.latest_checkpoint(&http, &key.api_key, rows + YOUNG_EVENTS)
            .await?;
        println!(
            "  preloaded tenant {}: {rows} expired + {YOUNG_EVENTS} current events, {} checkpoints, \
             in {seconds:.1} s ({:.0} events/s)",
            tenant.tenant_id,
            checkpoints + 1,
            rows as f64 / seconds
        );
        Ok(tenant.tenant_id)
    }

    /// Appends the expired events `range` in chunks, [`PRELOAD_APPENDS`]
    /// at a time.
    async fn append_expired(
        &self,
        preload: &Preload,
        who: &Arc<Authorized<WriteEvents>>,
        range: std::ops::Range<u64>,
    ) -> anyhow::Result<()> {
        let next = Arc::new(AtomicU64::new(range.start));
        let appends: Vec<_> = (0..PRELOAD_APPENDS)
            .map(|_| {
                let (ledger, who, next) = (preload.expired.clone(), who.clone(), next.clone());
                let end = range.end;
                tokio::spawn(async move {
                    loop {
                        let first = next.fetch_add(PRELOAD_CHUNK, Ordering::Relaxed);
                        if first >= end {
                            return anyhow::Ok(());
                        }
                        let events = prepared(first..end.min(first + PRELOAD_CHUNK))?;
                        ledger
                            .append(&who, events)
                            .await
                            .map_err(|e| anyhow!("appending expired events: {e}"))?;
                    }
                })
            })
            .collect();
        for append in appends {
            append.await??;
        }
        Ok(())
    }

    /// The batch load of B for `length` after `--warmup`, no purge.
    async fn ingest_for(&self, length: Duration) -> anyhow::Result<Phase> {
        let name = "E baseline: batch POSTs, no purge";
        let (phase, ()) = self.batches_until(name, false, lasting(length)).await?;
        Ok(phase)
    }

    /// The batch load of B while `tenant` is purged: the purge starts when
    /// the window opens, and the window closes when it exits.
    async fn ingest_purging(
        &self,
        tenant: TenantId,
        setting: &PurgeSetting,
    ) -> anyhow::Result<Purge> {
        let name = "E batch POSTs while purging";
        let (phase, run) = self
            .batches_until(name, false, |_| self.purge(tenant, setting))
            .await?;
        let purge = Purge {
            run: run?,
            phase,
            vacuum: self.vacuum().await?,
        };
        purge.print("purge");
        Ok(purge)
    }

    /// Runs `annal retention run` for `tenant` as an operator would, as the
    /// retention role, and reads what it purged and when its batches ran.
    async fn purge(&self, tenant: TenantId, setting: &PurgeSetting) -> anyhow::Result<PurgeRun> {
        let mut command = Command::new(&self.args.annal);
        command
            .args(["retention", "run", "--json", "--tenant"])
            .arg(tenant.as_uuid().to_string())
            .args(["--batch", &setting.batch.to_string()])
            .args(["--pause", &setting.pause])
            .env("DATABASE_URL", &self.app_url)
            .env("ANNAL_RETENTION_DATABASE_URL", &self.retention_url)
            .env("ANNAL_API_KEY_PEPPER", self.pepper.to_hex())
            .env(
                "ANNAL_SIGNING_KEY",
                self.keyring.signer().to_skey().as_str(),
            )
            .stdin(Stdio::null());
        let spawned = SystemClock.now();
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("starting {}", self.args.annal.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        let exited = SystemClock.now();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "annal retention run: {}: {} {}",
                output.status,
                stdout.trim(),
                stderr.trim()
            );
        }
        let line: RunLine = serde_json::from_str(stdout.trim())
            .with_context(|| format!("annal retention run's report: {stdout}"))?;
        if line.status != "purged" || line.purged != self.args.purge_rows {
            bail!(
                "annal retention run purged {} of {} expired rows ({}): {stdout}",
                line.purged,
                self.args.purge_rows,
                line.status
            );
        }
        let starts: Vec<(u64, DateTime<Utc>)> = self
            .stats
            .query(
                "SELECT size, purged_at FROM annal.purge_boundaries WHERE tenant_id = $1 ORDER BY size",
                &[&tenant.as_uuid()],
            )
            .await?
            .iter()
            .map(|r| Ok((u64::try_from(r.try_get::<_, i64>(0)?)?, r.try_get(1)?)))
            .collect::<anyhow::Result<_>>()?;
        let seconds_between = |a: DateTime<Utc>, b: DateTime<Utc>| {
            (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6
        };
        let (Some(first), Some(last)) = (starts.first(), starts.last()) else {
            bail!("annal retention run recorded no boundary");
        };
        let loop_rate = match starts.len().checked_sub(2).and_then(|i| starts.get(i)) {
            Some((before_last, _)) => {
                (before_last - line.boundary_from) as f64 / seconds_between(first.1, last.1)
            }
            None => f64::NAN,
        };
        let gaps: Vec<f64> = starts
            .windows(2)
            .map(|w| seconds_between(w[0].1, w[1].1))
            .collect();
        Ok(PurgeRun {
            purged: line.purged,
            batches: line.batches,
            seconds,
            lead: seconds_between(spawned, first.1),
            tail: seconds_between(last.1, exited),
            loop_rate,
            gaps,
        })
    }

    /// `VACUUM annal.events`, as autovacuum would after a purge, so that
    /// the next preload reuses the space; its seconds.
    async fn vacuum(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        self.stats.batch_execute("VACUUM annal.events").await?;
        Ok(started.elapsed().as_secs_f64())
    }
}

/// The events `event(n)` for `n` in `range`, prepared for the ledger.
fn prepared(range: std::ops::Range<u64>) -> anyhow::Result<Vec<annal::service::append::Pending>> {
    range
        .map(|n| {
            let input = serde_json::from_value(event(n as usize))?;
            annal::service::events::prepare(input).map_err(|e| anyhow!("preparing an event: {e}"))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = std::env::temp_dir().join(format!("annal-load-{}", Uuid::new_v4().simple()));
    let cluster = Cluster::at(&root)?;
    let mut teardown = Teardown {
        cluster: cluster.clone(),
        root,
        server: None,
    };
    // Registered before any work, so an interrupt still tears down.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let result = tokio::select! {
        result = run(args, cluster, &mut teardown) => result,
        _ = interrupt.recv() => Err(anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow!("terminated")),
    };
    drop(teardown);
    result
}

async fn run(args: Args, cluster: Cluster, teardown: &mut Teardown) -> anyhow::Result<()> {
    cluster.init()?;
    cluster.start()?;
    cluster.create_roles()?;
    cluster.create_database(pg::DATABASE)?;
    annal::store::migrate(&cluster.connection_string(pg::MIGRATOR_ROLE, pg::DATABASE)).await?;
    cluster.psql(
        pg::DATABASE,
        "CREATE SCHEMA bench; CREATE TABLE bench.events (LIKE annal.events INCLUDING ALL);",
    )?;
    let settings = cluster.psql(
        pg::DATABASE,
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) \
         FROM pg_settings WHERE name IN ('server_version', 'max_connections', 'shared_buffers', \
         'fsync', 'synchronous_commit', 'wal_sync_method', 'commit_delay', 'wal_buffers', \
         'max_wal_size')",
    )?;

    let postmaster_pid: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))?
        .lines()
        .next()
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| anyhow!("no pid in postmaster.pid"))?;

    let app_url = cluster.connection_string(pg::APP_ROLE, pg::DATABASE);
    let store = Store::connect(&app_url, 4)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let pepper = Pepper::generate();
    let key_store = Keys::new(store.clone(), pepper.clone(), clock.clone());
    let mut keys = Vec::new();
    let mut tenant_ids = Vec::new();
    for i in 0..args.tenants.max(1) {
        let tenant = tenants::create(&store, &clock, &format!("load-{i}"))
            .await
            .map_err(|e| anyhow!("creating a tenant: {e}"))?;
        let key = key_store
            .create(tenant.tenant_id, &Scope::ALL)
            .await
            .map_err(|e| anyhow!("creating a key: {e}"))?;
        keys.push(key.api_key);
        tenant_ids.push(tenant.tenant_id);
    }
    drop(key_store);
    drop(store);

    // Scenario D signs and verifies with the server's own key.
    let signer = NoteSigner::generate("annal.load")?;
    let vkey = signer.verifier_key();
    let keyring = Arc::new(Keyring::new(vec![signer])?);
    let requests = Arc::new(RequestLog::default());
    let (child, addr) = spawn_server(&args, &app_url, &pepper, keyring.signer(), &requests)?;
    let server_pid = child.id();
    teardown.server = Some(child);
    let base_url = format!("http://{addr}");

    let single_bodies: Vec<&'static [u8]> = (0..1024)
        .map(|n| serde_json::to_vec(&event(n)).map(leak))
        .collect::<Result<_, _>>()?;
    let batch_bodies: Vec<&'static [u8]> = (0..8)
        .map(|b| {
            let events: Vec<_> = (0..args.batch_size)
                .map(|n| event(b * args.batch_size + n))
                .collect();
            serde_json::to_vec(&json!({ "events": events })).map(leak)
        })
        .collect::<Result<_, _>>()?;

    // Seed: one batch through the server, whose sealed rows become the
    // byte values the baselines insert.
    let http = reqwest::Client::new();
    let seeded = http
        .post(format!("{base_url}/v1/events/batch"))
        .bearer_auth(&keys[0])
        .header("content-type", "application/json")
        .body(batch_bodies[0])
        .send()
        .await?;
    if seeded.status().as_u16() != 201 {
        bail!(
            "seeding failed: {} {}",
            seeded.status(),
            seeded.text().await.unwrap_or_default()
        );
    }
    let superuser = cluster.connection_string(pg::SUPERUSER, pg::DATABASE);
    let (stats, connection) = tokio_postgres::connect(&superuser, NoTls).await?;
    tokio::spawn(connection);
    let templates: Vec<Template> = stats
        .query(
            "SELECT received_at, action, record, leaf_hash, chain_hash, payload, salt, actor_id, \
             resource_type, resource_id, request_id FROM annal.events ORDER BY seq LIMIT 1000",
            &[],
        )
        .await?
        .iter()
        .map(|r| Template {
            received_at: r.get(0),
            action: r.get(1),
            record: r.get(2),
            leaf_hash: r.get(3),
            chain_hash: r.get(4),
            payload: r.get(5),
            salt: r.get(6),
            actor_id: r.get(7),
            resource_type: r.get(8),
            resource_id: r.get(9),
            request_id: r.get(10),
        })
        .collect();
    if templates.is_empty() {
        bail!("no seeded rows");
    }

    let version = String::from_utf8_lossy(
        &Command::new(&args.annal)
            .arg("--version")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .trim()
    .to_owned();
    println!("machine:    {}", machine());
    println!("postgres:   {}", settings.trim());
    println!(
        "annal:      {} ({version}), server env {:?}",
        args.annal.display(),
        args.server_env
    );
    let measured = if args.scenario == Scenario::E {
        "as long as each purge".to_owned()
    } else {
        format!("{} s measured", args.duration)
    };
    println!(
        "run:        scenario {:?}, {measured} + {} s warm-up per phase, {} round(s), \
         {} connections, {} batch clients x {} events, {} tenants",
        args.scenario,
        args.warmup,
        args.rounds,
        args.connections,
        args.batch_clients,
        args.batch_size,
        args.tenants
    );

    let bench = Bench {
        cluster: cluster.clone(),
        scratch: teardown.root.clone(),
        app_url,
        postmaster_pid,
        retention_url: cluster.connection_string(pg::RETENTION_ROLE, pg::DATABASE),
        pepper,
        server_pid,
        base_url,
        keys,
        tenant_ids,
        keyring,
        vkey,
        requests,
        single_bodies: Arc::new(single_bodies),
        batch_bodies: Arc::new(batch_bodies),
        templates: Arc::new(templates),
        bench_seq: Arc::new(AtomicI64::new(0)),
        stats,
        args,
    };

    let mut ratios: HashMap<&str, Vec<f64>> = HashMap::new();
    if bench.args.scenario == Scenario::D {
        return bench.verifiability().await;
    }
    if bench.args.scenario == Scenario::E {
        return bench.retention().await;
    }
    let run = |s: Scenario| bench.args.scenario == s || bench.args.scenario == Scenario::All;
    for round in 1..=bench.args.rounds {
        let flip = round % 2 == 0;
        println!("round {round}");
        if run(Scenario::A) {
            let (annal, base) = if flip {
                let base = bench.inserts("A baseline: INSERT+COMMIT per row").await?;
                (bench.singles("A annal: single-event POSTs", 1).await?, base)
            } else {
                let annal = bench.singles("A annal: single-event POSTs", 1).await?;
                (
                    annal,
                    bench.inserts("A baseline: INSERT+COMMIT per row").await?,
                )
            };
            let r = ratio(&annal, &base);
            println!("  => A ratio annal/baseline = {r:.2} (target >= 5)");
            ratios
                .entry("A annal / INSERT+COMMIT (target >= 5)")
                .or_default()
                .push(r);
        }
        if run(Scenario::B) {
            // Two baselines: one COPY stream (a plain bulk load of the same
            // rows) and as many streams as Annal has clients. A tenant's
            // chain has exactly one writer, so Annal's side is one stream of
            // inserts however many clients post to it.
            let streams = bench.args.batch_clients;
            let one_name = "B baseline: COPY, 1 stream";
            let many_name = format!("B baseline: COPY, {streams} streams");
            let (annal, one, many) = if flip {
                let one = bench.copies(one_name, 1).await?;
                let many = bench.copies(&many_name, streams).await?;
                (
                    bench.batches("B annal: batch POSTs", false).await?,
                    one,
                    many,
                )
            } else {
                let annal = bench.batches("B annal: batch POSTs", false).await?;
                let one = bench.copies(one_name, 1).await?;
                (annal, one, bench.copies(&many_name, streams).await?)
            };
            let r1 = ratio(&annal, &one);
            let rn = ratio(&annal, &many);
            println!(
                "  => B ratio annal/COPY(1 stream) = {r1:.2}, annal/COPY({streams} streams) = {rn:.2} (target >= 0.5)"
            );
            ratios
                .entry("B annal / COPY, 1 stream (target >= 0.5)")
                .or_default()
                .push(r1);
            ratios
                .entry("B annal / COPY, N streams (target >= 0.5)")
                .or_default()
                .push(rn);
        }
        if run(Scenario::C) {
            let tenants = bench.args.tenants.max(1);
            let spread_name = format!("C spread: {tenants} tenants");
            let (hot, spread) = if flip {
                let spread = bench.singles(&spread_name, tenants).await?;
                (bench.singles("C hot: 1 tenant", 1).await?, spread)
            } else {
                let hot = bench.singles("C hot: 1 tenant", 1).await?;
                (hot, bench.singles(&spread_name, tenants).await?)
            };
            let r = ratio(&hot, &spread);
            println!("  => C ratio hot/spread = {r:.2} (target >= 0.8)");
            ratios
                .entry("C hot / spread (target >= 0.8)")
                .or_default()
                .push(r);
        }
    }
    println!("summary");
    let mut names: Vec<_> = ratios.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        let list: Vec<String> = ratios[name].iter().map(|r| format!("{r:.2}")).collect();
        println!("  {name}: {}", list.join(", "));
    }
    let events = bench
        .stats
        .query_one("SELECT count(*) FROM annal.events", &[])
        .await?
        .get::<_, i64>(0);
    println!("  annal.events rows at the end: {events}");
    Ok(())
}
