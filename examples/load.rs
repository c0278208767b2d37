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
//! Every phase runs `--warmup` seconds unmeasured, then `--duration`
//! seconds measured: a request counts if it completes inside the measured
//! window (its latency too). Workers stop starting requests at the end of
//! the window; every request has a timeout, so the run always ends.
//!
//! Besides events/s and latency, each phase reports where the CPU went
//! (this process, `annal`, PostgreSQL, idle; from `/proc`), and from
//! PostgreSQL's statistics the transactions committed and WAL flushes
//! (`pg_stat_database.xact_commit`, `pg_stat_wal.wal_sync`) per event,
//! which shows the group commit at work.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use annal::crypto::Pepper;
use annal::pg::{self, Cluster};
use annal::service::auth::Scope;
use annal::service::keys::Keys;
use annal::service::{SharedClock, SystemClock, tenants};
use annal::store::Store;
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use serde_json::json;
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

const COLUMNS: &str = "tenant_id, seq, event_id, received_at, action, record, leaf_hash, \
                       chain_hash, payload, salt, actor_id, resource_type, resource_id, request_id";

/// CPU time (clock ticks) and PostgreSQL counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    me: u64,
    annal: u64,
    postgres: u64,
    busy: u64,
    total: u64,
    commits: i64,
    wal_syncs: i64,
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
    /// CPU microseconds per event: annal, PostgreSQL.
    cpu_per_event: [f64; 2],
    commits_per_event: f64,
    syncs_per_event: f64,
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

/// What every worker of a phase reports.
#[derive(Default)]
struct Tally {
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn record(&mut self, window: (Instant, Instant), started: Instant, events: u64) {
        let done = Instant::now();
        if done >= window.0 && done <= window.1 {
            self.events += events;
            self.requests += 1;
            self.latencies.push(done - started);
        }
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
    server_pid: u32,
    base_url: String,
    keys: Vec<String>,
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

/// utime+stime (+ reaped children) of a process, in clock ticks, and its name.
fn proc_ticks(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // Fields after the name start at field 3 (state); utime is field 14.
    let ticks = (11..15)
        .filter_map(|i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Some((comm, ticks))
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
        let me = proc_ticks("self").map_or(0, |(_, t)| t);
        let annal = proc_ticks(&self.server_pid.to_string()).map_or(0, |(_, t)| t);
        let mut postgres = 0;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str() else { continue };
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some((comm, ticks)) = proc_ticks(pid) {
                if comm == "postgres" {
                    postgres += ticks;
                }
            }
        }
        let (busy, total) = machine_ticks();
        let row = self
            .stats
            .query_one(
                "SELECT (SELECT sum(xact_commit)::int8 FROM pg_stat_database), \
                        (SELECT wal_sync FROM pg_stat_wal)",
                &[],
            )
            .await?;
        Ok(Snapshot {
            me,
            annal,
            postgres,
            busy,
            total,
            commits: row.get(0),
            wal_syncs: row.get(1),
        })
    }

    /// Runs `workers` (each given the measured window) and collects the phase.
    async fn run_phase<F, Fut>(&self, name: &str, workers: usize, work: F) -> anyhow::Result<Phase>
    where
        F: Fn(usize, (Instant, Instant)) -> Fut,
        Fut: std::future::Future<Output = Tally> + Send + 'static,
    {
        let start = Instant::now();
        let from = start + Duration::from_secs(self.args.warmup);
        let until = from + Duration::from_secs(self.args.duration);
        let handles: Vec<_> = (0..workers)
            .map(|i| tokio::spawn(work(i, (from, until))))
            .collect();
        tokio::time::sleep_until(from.into()).await;
        // PostgreSQL publishes its statistics at most once a second.
        let before = self.snapshot().await?;
        tokio::time::sleep_until(until.into()).await;
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
        }
        total.latencies.sort_unstable();
        let pct = |d: u64| {
            let machine = (after.total - before.total).max(1) as f64;
            100.0 * d as f64 / machine
        };
        let idle = (after.total - before.total) - (after.busy - before.busy);
        let (me, annal, postgres) = (
            after.me - before.me,
            after.annal - before.annal,
            after.postgres.saturating_sub(before.postgres),
        );
        let other = (after.busy - before.busy).saturating_sub(me + annal + postgres);
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
            cpu_per_event: [us_per_event(annal), us_per_event(postgres)],
            commits_per_event: (after.commits - before.commits) as f64 / events,
            syncs_per_event: (after.wal_syncs - before.wal_syncs) as f64 / events,
        };
        phase.print();
        Ok(phase)
    }

    /// `connections` HTTP/1.1 keep-alive connections posting `bodies` (each
    /// worth `per_request` events) to `path`; worker `i` uses `key_of(i)`.
    async fn http(
        &self,
        name: &str,
        path: &str,
        connections: usize,
        bodies: Arc<Vec<&'static [u8]>>,
        per_request: u64,
        key_of: impl Fn(usize) -> String,
    ) -> anyhow::Result<Phase> {
        let url = format!("{}{}", self.base_url, path);
        let timeout = Duration::from_secs(self.args.timeout);
        self.run_phase(name, connections, |i, window| {
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
                while Instant::now() < window.1 {
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
                            if status.as_u16() == 201 && text.is_ok() {
                                tally.record(window, started, per_request);
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
        })
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
                    while Instant::now() < window.1 {
                        n = n.wrapping_add(1);
                        let t = &templates[n % templates.len()];
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        let id = Uuid::new_v4();
                        let started = Instant::now();
                        let done = client
                            .execute(
                                &stmt,
                                &[
                                    &tenant,
                                    &s,
                                    &id,
                                    &t.received_at,
                                    &t.action,
                                    &t.record,
                                    &t.leaf_hash,
                                    &t.chain_hash,
                                    &t.payload,
                                    &t.salt,
                                    &t.actor_id,
                                    &t.resource_type,
                                    &t.resource_id,
                                    &t.request_id,
                                ],
                            )
                            .await;
                        match done {
                            Ok(_) => tally.record(window, started, 1),
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
                    while Instant::now() < window.1 {
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
                                let row: [&(dyn ToSql + Sync); 14] = [
                                    &tenant,
                                    &s,
                                    &id,
                                    &t.received_at,
                                    &t.action,
                                    &t.record,
                                    &t.leaf_hash,
                                    &t.chain_hash,
                                    &t.payload,
                                    &t.salt,
                                    &t.actor_id,
                                    &t.resource_type,
                                    &t.resource_id,
                                    &t.request_id,
                                ];
                                writer.as_mut().write(&row).await?;
                            }
                            writer.finish().await
                        }
                        .await;
                        match result {
                            Ok(rows) => tally.record(window, started, rows),
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
        self.http(
            name,
            "/v1/events",
            self.args.connections,
            self.single_bodies.clone(),
            1,
            move |i| keys[i % tenants].clone(),
        )
        .await
    }

    async fn batches(&self, name: &str) -> anyhow::Result<Phase> {
        let key = self.keys[0].clone();
        self.http(
            name,
            "/v1/events/batch",
            self.args.batch_clients,
            self.batch_bodies.clone(),
            self.args.batch_size as u64,
            move |_| key.clone(),
        )
        .await
    }
}

/// Starts `annal serve` and waits for its "listening" line; returns the
/// child and the address. Its output is drained (and warnings echoed) by
/// two threads.
fn spawn_server(args: &Args, app_url: &str, pepper: &Pepper) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(&args.annal);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", app_url)
        .env("ANNAL_API_KEY_PEPPER", pepper.to_hex())
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
        std::thread::spawn(move || {
            let mut echoed = 0;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    let _ = tx.send(Err(line));
                    continue;
                };
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

    let app_url = cluster.connection_string(pg::APP_ROLE, pg::DATABASE);
    let store = Store::connect(&app_url, 4)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let pepper = Pepper::generate();
    let key_store = Keys::new(store.clone(), pepper.clone(), clock.clone());
    let mut keys = Vec::new();
    for i in 0..args.tenants.max(1) {
        let tenant = tenants::create(&store, &clock, &format!("load-{i}"))
            .await
            .map_err(|e| anyhow!("creating a tenant: {e}"))?;
        let key = key_store
            .create(tenant.tenant_id, &Scope::ALL)
            .await
            .map_err(|e| anyhow!("creating a key: {e}"))?;
        keys.push(key.api_key);
    }
    drop(key_store);
    drop(store);

    let (child, addr) = spawn_server(&args, &app_url, &pepper)?;
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
    println!(
        "run:        scenario {:?}, {} s measured + {} s warm-up per phase, {} round(s), \
         {} connections, {} batch clients x {} events, {} tenants",
        args.scenario,
        args.duration,
        args.warmup,
        args.rounds,
        args.connections,
        args.batch_clients,
        args.batch_size,
        args.tenants
    );

    let bench = Bench {
        cluster: cluster.clone(),
        server_pid,
        base_url,
        keys,
        single_bodies: Arc::new(single_bodies),
        batch_bodies: Arc::new(batch_bodies),
        templates: Arc::new(templates),
        bench_seq: Arc::new(AtomicI64::new(0)),
        stats,
        args,
    };

    let mut ratios: HashMap<&str, Vec<f64>> = HashMap::new();
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
                (bench.batches("B annal: batch POSTs").await?, one, many)
            } else {
                let annal = bench.batches("B annal: batch POSTs").await?;
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
