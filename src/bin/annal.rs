//! `annal`: the server and its operator commands. Wiring only: parse the
//! configuration, set up logs, reach the database, call the library.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use annal::config::{FileConfig, Settings, write_secret};
use annal::crypto::ApiKeyId;
use annal::crypto::identity::Token;
use annal::crypto::signing::NoteSigner;
use annal::http::{self, AppState};
use annal::ledger::TenantId;
use annal::service::accounts::{Accounts, SessionLimits};
use annal::service::auth::{Role, Scope};
use annal::service::checkpoints::{self, Checkpointer, Keyring};
use annal::service::events::Ledger;
use annal::service::export::{Chunk, ExportInput, Exporter};
use annal::service::keys::Keys;
use annal::service::limits::{self, IngestLimit, IngestLimiter, LoginLimit, LoginLimiter};
use annal::service::proofs::Proofs;
use annal::service::retention::{
    self, Operator as RetentionOperator, PolicyView, Retention, TenantRun,
};
use annal::service::{ServiceError, SharedClock, SystemClock, tenants};
use annal::store::{self, Store};
use annal::telemetry::Sink;
use annal::verify::bundle::{BundleFailure, BundleOptions, BundleReport, verify_bundle};

/// Append-only, tamper-evident audit ledger.
#[derive(Parser)]
#[command(name = "annal", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// TOML configuration file; environment variables and flags override it.
    #[arg(long, env = "ANNAL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory of the embedded PostgreSQL, used when DATABASE_URL is unset [default: ./annal-data].
    #[arg(long, env = "ANNAL_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Connection string of the app role (URL or key=value). Unset: run an embedded cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Connection string of the migrator role, for `annal migrate` with DATABASE_URL.
    #[arg(
        long,
        env = "ANNAL_MIGRATOR_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    migrator_database_url: Option<String>,
    /// Connection string of the retention role, which alone may purge expired records.
    #[arg(
        long,
        env = "ANNAL_RETENTION_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    retention_database_url: Option<String>,
    /// Database connections per process [default: 16].
    #[arg(long, env = "ANNAL_DB_POOL_SIZE", global = true)]
    pool_size: Option<usize>,
    /// Checkpoint signing key file; repeat for older keys, newest first (comma-separated in the environment).
    #[arg(
        long = "signing-key",
        env = "ANNAL_SIGNING_KEY_FILES",
        value_delimiter = ',',
        global = true
    )]
    signing_key_files: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    #[command(flatten)]
    Operator(Operator),
}

/// One-shot commands against the same database `serve` uses.
#[derive(Subcommand)]
enum Operator {
    /// Apply database migrations (as the migrator role).
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys and checkpoint signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Purge records past their tenant's retention period.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Manage people.
    #[command(subcommand)]
    User(UserCommand),
    /// Verify a tenant's whole trail in the database: every record, hash,
    /// checkpoint signature and proof, as `annal-verify` does offline.
    Verify {
        /// Tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ANNAL_BIND")]
    bind: Option<String>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "ANNAL_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "ANNAL_WORKERS")]
    workers: Option<usize>,
    /// Most events sealed in one group-commit transaction [default: 2000].
    #[arg(long, env = "ANNAL_MAX_GROUP")]
    max_group: Option<usize>,
    /// Time between two checkpoints of a tenant, e.g. 1s or 250ms [default: 1s].
    #[arg(long, env = "ANNAL_CHECKPOINT_INTERVAL")]
    checkpoint_interval: Option<String>,
    /// Events per second one API key may append, sustained; 0 turns the limit off [default: 10000].
    #[arg(long, env = "ANNAL_INGEST_LIMIT")]
    ingest_limit: Option<u32>,
    /// Events one API key may append at once after a pause (at least 1000) [default: 20000].
    #[arg(long, env = "ANNAL_INGEST_BURST")]
    ingest_burst: Option<u32>,
    /// Time between two purges of expired records, e.g. 24h or 30m; "off" never purges [default: 24h].
    #[arg(long, env = "ANNAL_RETENTION_INTERVAL")]
    retention_interval: Option<String>,
    /// Records deleted per purge transaction, 1 to 100000 [default: 10000].
    #[arg(long, env = "ANNAL_RETENTION_BATCH")]
    retention_batch: Option<u32>,
    /// Rest between two purge transactions, e.g. 0ms or 50ms [default: 20ms].
    #[arg(long, env = "ANNAL_RETENTION_PAUSE")]
    retention_pause: Option<String>,
    /// A session ends after this long without a request [default: 30m].
    #[arg(long, env = "ANNAL_SESSION_IDLE")]
    session_idle: Option<String>,
    /// A session ends this long after login [default: 12h].
    #[arg(long, env = "ANNAL_SESSION_LIFETIME")]
    session_lifetime: Option<String>,
    /// Login attempts per minute for one account; 0 turns the limit off [default: 10].
    #[arg(long, env = "ANNAL_LOGIN_LIMIT_ACCOUNT")]
    login_limit_account: Option<u32>,
    /// Login attempts per minute from one IP address; 0 turns the limit off [default: 60].
    #[arg(long, env = "ANNAL_LOGIN_LIMIT_IP")]
    login_limit_ip: Option<u32>,
    /// The WebAuthn relying party id: the domain passkeys are bound to.
    #[arg(long, env = "ANNAL_WEBAUTHN_RP_ID", default_value = "localhost")]
    webauthn_rp_id: String,
    /// The origin of the web client that registers and uses passkeys.
    #[arg(
        long,
        env = "ANNAL_WEBAUTHN_ORIGIN",
        default_value = "http://localhost:8080"
    )]
    webauthn_origin: String,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant (an organisation with its own trail).
    Create {
        /// Display name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's retention period, or set it (never below the
    /// deployment's floor, 7 years by default). Recorded in its log.
    Retention {
        /// Tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// New period in years.
        #[arg(long, conflicts_with = "months")]
        years: Option<u32>,
        /// New period in months.
        #[arg(long)]
        months: Option<u32>,
        /// Who makes the change, recorded as its actor [default: cli:$USER].
        #[arg(long)]
        by: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Place or lift a legal hold: while on, nothing of the tenant is
    /// purged. Recorded in its log with the reason.
    Hold {
        /// on or off.
        #[arg(value_enum)]
        state: HoldState,
        /// Tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// Why (kept in the tenant's log).
        #[arg(long)]
        reason: String,
        /// Who makes the change [default: cli:$USER].
        #[arg(long)]
        by: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user as an active member of an organisation, e.g. its
    /// first owner. The password comes from --password-file, or is
    /// generated and shown once.
    Create {
        /// Their email (their login).
        #[arg(long)]
        email: String,
        /// The organisation (tenant id).
        #[arg(long)]
        org: Uuid,
        /// owner, admin, hr_lead, analyst, viewer or auditor.
        #[arg(long)]
        role: String,
        /// A file holding the password (at least 12 bytes; a trailing
        /// newline is ignored).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HoldState {
    On,
    Off,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Purge every expired record now (of one tenant, or all), in batches;
    /// prints what was purged.
    Run {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Print what would be purged; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Records deleted per transaction, 1 to 100000 [default: 10000].
        #[arg(long)]
        batch: Option<u32>,
        /// Rest between two transactions, e.g. 0ms or 50ms [default: 20ms].
        #[arg(long)]
        pause: Option<String>,
        /// Print JSON Lines, one object per tenant.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key; its secret is shown once.
    Create {
        /// Tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// Comma-separated scopes: events:write, events:read, export.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key; it stops working on the next request.
    Revoke {
        /// Key id.
        id: Uuid,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage checkpoint signing keys (no database needed).
    #[command(subcommand)]
    Signing(SigningCommand),
}

#[derive(Subcommand)]
enum SigningCommand {
    /// Create an Ed25519 checkpoint signing key in a new file (mode 0600)
    /// and print its public C2SP vkey.
    Generate {
        /// The deployment's origin, e.g. audit.example.com: names the key
        /// and prefixes every checkpoint origin.
        #[arg(long)]
        origin: String,
        /// The key file to create; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    annal::telemetry::init(match cli.command {
        Command::Serve(_) => Sink::Stdout,
        Command::Operator(_) => Sink::Stderr,
    });
    let result = actix_web::rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("annal: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Settings resolved from flags, environment, file and defaults.
struct Resolved {
    settings: Settings,
    pool_size: usize,
    file: FileConfig,
}

fn resolve(global: &Global) -> anyhow::Result<Resolved> {
    let file = match &global.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let settings = Settings {
        data_dir: global
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./annal-data")),
        database_url: global
            .database_url
            .clone()
            .or_else(|| file.database_url.clone()),
        migrator_database_url: global
            .migrator_database_url
            .clone()
            .or_else(|| file.migrator_database_url.clone()),
        retention_database_url: global
            .retention_database_url
            .clone()
            .or_else(|| file.retention_database_url.clone()),
        api_key_pepper: std::env::var("ANNAL_API_KEY_PEPPER").ok(),
        api_key_pepper_file: file.api_key_pepper_file.clone(),
        signing_key: std::env::var("ANNAL_SIGNING_KEY").ok(),
        signing_key_files: if global.signing_key_files.is_empty() {
            file.signing_key_files.clone().unwrap_or_default()
        } else {
            global.signing_key_files.clone()
        },
    };
    let pool_size = global.pool_size.or(file.pool_size).unwrap_or(16);
    for (name, value) in [
        ("pool_size", Some(pool_size)),
        ("body_limit", file.body_limit),
        ("workers", file.workers),
        ("max_group", file.max_group),
    ] {
        at_least_one(name, value)?;
    }
    Ok(Resolved {
        settings,
        pool_size,
        file,
    })
}

fn at_least_one(name: &str, value: Option<usize>) -> anyhow::Result<()> {
    if value == Some(0) {
        bail!("{name} must be at least 1");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let resolved = resolve(&cli.global)?;
    let settings = &resolved.settings;
    match cli.command {
        Command::Serve(args) => serve(&resolved, args).await,
        Command::Operator(Operator::Keys(KeysCommand::Signing(command))) => signing(command),
        Command::Operator(command) => {
            let deployment = settings.open().await?;
            let outcome = operate(settings, &deployment, command).await;
            if let Some(embedded) = &deployment.embedded {
                embedded.release()?;
            }
            outcome
        }
    }
}

async fn operate(
    settings: &Settings,
    deployment: &annal::config::Deployment,
    command: Operator,
) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::connect(&deployment.app_url, 2)?;
    match command {
        Operator::Migrate => {
            if deployment.embedded.is_none() {
                let url = settings.migrator_database_url.as_deref().context(
                    "ANNAL_MIGRATOR_DATABASE_URL is not set: migrations run as the migrator role, \
                     not the app role of DATABASE_URL",
                )?;
                let applied = store::migrate(url).await?;
                println!(
                    "applied {applied} migration(s); schema at version {}",
                    store::expected_schema_version()
                );
            } else {
                println!(
                    "embedded database migrated; schema at version {}",
                    store::expected_schema_version()
                );
            }
            Ok(())
        }
        Operator::Tenant(TenantCommand::Create { name, json }) => {
            let created = tenants::create(&store, &clock, &name)
                .await
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!(
                    "created tenant {:?} with id {}",
                    created.name, created.tenant_id
                );
            }
            Ok(())
        }
        Operator::Keys(KeysCommand::Create {
            tenant,
            scopes,
            json,
        }) => {
            let scopes = parse_scopes(&scopes)?;
            let keys = Keys::new(store, settings.pepper()?, clock);
            let created = keys
                .create(TenantId::from_uuid(tenant), &scopes)
                .await
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!(
                    "created API key {} for tenant {} with scopes {}\n\n    {}\n\nThis is the only time the key is shown: store it now.",
                    created.id,
                    created.tenant_id,
                    created.scopes.join(","),
                    created.api_key
                );
            }
            Ok(())
        }
        Operator::Verify { tenant, json } => {
            verify_trail(settings, store, clock, TenantId::from_uuid(tenant), json).await
        }
        Operator::Tenant(TenantCommand::Retention {
            tenant,
            years,
            months,
            by,
            json,
        }) => {
            let retention = retention_service(settings, deployment, store, clock, None).await?;
            let tenant = TenantId::from_uuid(tenant);
            let months = match (years, months) {
                (Some(years), _) => Some(years.checked_mul(12).context("--years is too large")?),
                (None, months) => months,
            };
            let view = match months {
                Some(months) => retention.set_period(&operator(by), tenant, months).await,
                None => retention.show(tenant).await,
            }
            .map_err(explain)?;
            print_policy(&view, json)
        }
        Operator::Tenant(TenantCommand::Hold {
            state,
            tenant,
            reason,
            by,
            json,
        }) => {
            let retention = retention_service(settings, deployment, store, clock, None).await?;
            let on = matches!(state, HoldState::On);
            let view = retention
                .set_hold(&operator(by), TenantId::from_uuid(tenant), on, &reason)
                .await
                .map_err(explain)?;
            print_policy(&view, json)
        }
        Operator::User(UserCommand::Create {
            email,
            org,
            role,
            password_file,
            json,
        }) => {
            let role = Role::parse(&role).with_context(|| {
                format!(
                    "unknown role {role:?}; roles are owner, admin, hr_lead, analyst, viewer, auditor"
                )
            })?;
            let (password, generated) = match password_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    (text.trim_end_matches(['\n', '\r']).to_owned(), false)
                }
                None => (Token::generate().expose().to_owned(), true),
            };
            let accounts = accounts_service(settings, &store, clock)?;
            let operator = operator(None).name;
            let user = accounts
                .create_member(&operator, TenantId::from_uuid(org), &email, &password, role)
                .await
                .map_err(explain)?;
            if json {
                let mut out = serde_json::json!({
                    "user_id": user, "organization_id": org, "email": email, "role": role,
                });
                if generated {
                    out["password"] = serde_json::json!(password);
                }
                println!("{out}");
            } else if generated {
                println!(
                    "created user {user} ({email}) as {} of {org}\n\n    password: {password}\n\nThis is the only time the password is shown: store it now.",
                    role.as_str()
                );
            } else {
                println!(
                    "created user {user} ({email}) as {} of {org}",
                    role.as_str()
                );
            }
            Ok(())
        }
        Operator::Retention(RetentionCommand::Run {
            tenant,
            dry_run,
            batch,
            pause,
            json,
        }) => {
            let mut retention =
                retention_service(settings, deployment, store, clock, batch).await?;
            if let Some(pause) = pause {
                retention = retention.with_pause(annal::config::parse_duration(&pause)?);
            }
            let deployment_settings = retention.deployment().await.map_err(explain)?;
            if deployment_settings.clock_offset {
                eprintln!(
                    "annal: warning: annal.deployment_settings.clock_offset is not zero: this run decides \
                     what is expired as if it were {} (tests only)",
                    deployment_settings.now.to_rfc3339()
                );
            }
            let runs = retention
                .run(tenant.map(TenantId::from_uuid), dry_run)
                .await
                .map_err(explain)?;
            print_runs(&runs, json)
        }
        Operator::Keys(KeysCommand::Signing(command)) => signing(command),
        Operator::Keys(KeysCommand::Revoke { id, json }) => {
            let keys = Keys::new(store, settings.pepper()?, clock);
            let revoked = keys
                .revoke(ApiKeyId::from_uuid(id))
                .await
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string(&revoked)?);
            } else if revoked.newly_revoked {
                println!("revoked API key {}", revoked.id);
            } else {
                println!("API key {} was already revoked", revoked.id);
            }
            Ok(())
        }
    }
}

fn signing(command: SigningCommand) -> anyhow::Result<()> {
    let SigningCommand::Generate { origin, out, json } = command;
    let signer = NoteSigner::generate(&origin)?;
    signer.save_new(&out)?;
    let vkey = signer.verifier_key().to_vkey();
    if json {
        println!(
            "{}",
            serde_json::json!({ "origin": origin, "file": out, "vkey": vkey })
        );
    } else {
        println!(
            "created checkpoint signing key {} (keep it secret; serve it with --signing-key)\n\n    {vkey}\n\nPublish this vkey: auditors verify checkpoints and exports with it.",
            out.display()
        );
    }
    Ok(())
}

/// What an operator command that writes to a tenant's log needs: the
/// signing keys, a signer and a ledger whose appends it hears of.
fn ledger_services(
    settings: &Settings,
    store: &Store,
    clock: SharedClock,
) -> anyhow::Result<(Arc<Keyring>, Checkpointer, Ledger)> {
    let keyring = Arc::new(Keyring::new(settings.signers()?)?);
    let checkpointer = Checkpointer::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        checkpoints::DEFAULT_INTERVAL,
    );
    let ledger = Ledger::new(store.clone(), clock, 1, Some(checkpointer.clone()));
    Ok((keyring, checkpointer, ledger))
}

/// The accounts service of an operator command.
fn accounts_service(
    settings: &Settings,
    store: &Store,
    clock: SharedClock,
) -> anyhow::Result<Accounts> {
    let (_, _, ledger) = ledger_services(settings, store, clock.clone())?;
    Ok(Accounts::new(
        store.clone(),
        &settings.pepper()?,
        clock,
        ledger,
        SessionLimits::default(),
        LoginLimiter::new(LoginLimit::default()),
    ))
}

/// The retention service of an operator command; it can purge when the
/// retention role's connection string is known.
async fn retention_service(
    settings: &Settings,
    deployment: &annal::config::Deployment,
    store: Store,
    clock: SharedClock,
    batch: Option<u32>,
) -> anyhow::Result<Retention> {
    let (_, checkpointer, ledger) = ledger_services(settings, &store, clock)?;
    let purger = purger(deployment).await?;
    let retention = Retention::new(store, purger, ledger, checkpointer);
    Ok(match batch {
        Some(batch) => retention.with_batch(batch).map_err(explain)?,
        None => retention,
    })
}

/// A pool of the retention role, checked like the server's role: it must
/// not be able to get around the ledger's protections either.
async fn purger(deployment: &annal::config::Deployment) -> anyhow::Result<Option<Store>> {
    let Some(url) = &deployment.retention_url else {
        return Ok(None);
    };
    let purger = Store::connect(url, 2)?;
    purger
        .check_server_role()
        .await
        .context("checking the retention role (ANNAL_RETENTION_DATABASE_URL)")?;
    Ok(Some(purger))
}

fn operator(by: Option<String>) -> RetentionOperator {
    RetentionOperator {
        name: by.unwrap_or_else(|| {
            format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            )
        }),
    }
}

fn print_policy(view: &PolicyView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(view)?);
        return Ok(());
    }
    let months = view.period_months;
    let period = if months % 12 == 0 {
        format!("{} years", months / 12)
    } else {
        format!("{months} months")
    };
    println!(
        "tenant {}: records are kept {period} after they were received (deployment floor: {} months)",
        view.tenant_id, view.floor_months
    );
    match (&view.legal_hold, &view.hold_reason) {
        (true, Some(reason)) => println!("legal hold: ON ({reason}): nothing is purged"),
        (true, None) => println!("legal hold: ON: nothing is purged"),
        (false, _) => println!("legal hold: off"),
    }
    if view.purged_before > 0 {
        println!(
            "records 0..={} have been purged by this policy",
            view.purged_before - 1
        );
    }
    Ok(())
}

fn print_runs(
    runs: &[Result<TenantRun, (TenantId, ServiceError)>],
    json: bool,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for run in runs {
        match run {
            Ok(run) if json => println!("{}", serde_json::to_string(run)?),
            Ok(run) => println!("{}", describe_run(run)),
            Err((tenant, error)) => {
                failed += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "tenant_id": tenant, "error": error.to_string() })
                    );
                } else {
                    println!("tenant {tenant}: FAILED: {error}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("the retention run failed for {failed} tenant(s)");
    }
    Ok(())
}

fn describe_run(run: &TenantRun) -> String {
    let policy = format!(
        "period {} months, expired if received at or before {}",
        run.period_months,
        run.cutoff
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let range = |verb: &str| {
        format!(
            "{verb} {} records (seq {}..={})",
            run.purged,
            run.boundary_from,
            run.boundary_to.saturating_sub(1)
        )
    };
    match run.status {
        "legal_hold" => format!("tenant {}: legal hold: nothing purged", run.tenant_id),
        "export_in_progress" => format!(
            "tenant {}: deferred: an export is reading the expired records; the next run purges them",
            run.tenant_id
        ),
        "would_purge" => format!(
            "tenant {}: would purge {}; {policy}",
            run.tenant_id,
            range("")
        ),
        "purged" => format!(
            "tenant {}: {} in {} batch(es); attested by checkpoint {}; recorded at seq {}; {policy}",
            run.tenant_id,
            range("purged"),
            run.batches,
            run.attested_by.map_or("-".into(), |c| c.to_string()),
            run.recorded_at_seq.map_or("-".into(), |s| s.to_string()),
        ),
        _ => format!("tenant {}: nothing expired; {policy}", run.tenant_id),
    }
}

async fn verify_trail(
    settings: &Settings,
    store: Store,
    clock: SharedClock,
    tenant: TenantId,
    json: bool,
) -> anyhow::Result<()> {
    let (keyring, checkpointer, ledger) = ledger_services(settings, &store, clock)?;
    // An operator's verification covers everything committed.
    let signed = checkpointer.sign_now(tenant).await;
    let exporter = Exporter::new(store, checkpointer, ledger);
    let range = exporter
        .plan(tenant, &ExportInput::default(), signed)
        .await
        .map_err(explain)?;
    let chunks = exporter.stream(range);
    let options = BundleOptions {
        vkeys: keyring.verifier_keys(),
        trusted_checkpoint: None,
        require_complete: true,
    };
    let verdict = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::new(ChunkReader::new(chunks));
        verify_bundle(reader, &options, &mut |_| {})
    })
    .await?;
    report_verdict(verdict, json)
}

fn report_verdict(verdict: Result<BundleReport, BundleFailure>, json: bool) -> anyhow::Result<()> {
    match verdict {
        Ok(report) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "report": report }));
            } else {
                println!(
                    "OK: tenant {} records {}..={} ({} records, {} payloads, {} checkpoints verified; last checkpoint size {}, signed by {})",
                    report.tenant_id,
                    report.from_seq,
                    report.to_seq,
                    report.records_checked,
                    report.payloads_checked,
                    report.checkpoints_verified,
                    report.last_checkpoint_size,
                    report.signing_keys.join(", ")
                );
            }
            Ok(())
        }
        Err(failure) => {
            if json {
                // The shape `annal-verify --json` prints.
                let mut error = serde_json::json!({
                    "code": failure.code(),
                    "seq": failure.seq.map(|seq| seq.value()),
                    "message": failure.to_string(),
                });
                if failure.line > 0 {
                    error["line"] = serde_json::json!(failure.line);
                }
                println!("{}", serde_json::json!({ "ok": false, "error": error }));
            }
            bail!("verification failed: {failure}")
        }
    }
}

/// Reads a bundle from the exporter's channel, for the blocking verifier.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    offset: usize,
}

impl ChunkReader {
    fn new(chunks: tokio::sync::mpsc::Receiver<Chunk>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk?;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let available = &self.current[self.offset..];
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.offset += n;
        Ok(n)
    }
}

fn parse_scopes(names: &[String]) -> anyhow::Result<Vec<Scope>> {
    names
        .iter()
        .map(|n| {
            Scope::parse(n.trim()).with_context(|| {
                format!("unknown scope {n:?}; scopes are events:write, events:read and export")
            })
        })
        .collect()
}

fn explain(error: ServiceError) -> anyhow::Error {
    anyhow::anyhow!(error)
}

async fn serve(resolved: &Resolved, args: ServeArgs) -> anyhow::Result<()> {
    // Before anything touches the cluster: a serve that may not run must
    // not adopt (and on exit stop) another serve's PostgreSQL.
    let _serve_lock = resolved.settings.lock_for_serve()?;
    let deployment = resolved.settings.open().await?;
    let outcome = serve_on(resolved, args, &deployment).await;
    if let Some(embedded) = &deployment.embedded {
        tracing::info!("stopping the embedded PostgreSQL");
        embedded.stop()?;
    }
    outcome
}

async fn serve_on(
    resolved: &Resolved,
    args: ServeArgs,
    deployment: &annal::config::Deployment,
) -> anyhow::Result<()> {
    let (settings, file) = (&resolved.settings, &resolved.file);
    let bind = args
        .bind
        .or_else(|| file.bind.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let body_limit = args
        .body_limit
        .or(file.body_limit)
        .unwrap_or(http::DEFAULT_BODY_LIMIT);
    let max_group = args.max_group.or(file.max_group).unwrap_or(2000);
    at_least_one("body_limit", Some(body_limit))?;
    if body_limit > MAX_BODY_LIMIT {
        // An event must fit one line of an export bundle, which verifiers
        // read up to 64 MiB (its payload is base64 there, 4/3 larger).
        bail!("body_limit must be at most {MAX_BODY_LIMIT} bytes (32 MiB)");
    }
    at_least_one("max_group", Some(max_group))?;
    at_least_one("workers", args.workers)?;
    let store = Store::connect(&deployment.app_url, resolved.pool_size)?;
    store.check_server_role().await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let interval = match args
        .checkpoint_interval
        .as_deref()
        .or(file.checkpoint_interval.as_deref())
    {
        Some(text) => annal::config::parse_interval(text)?,
        None => checkpoints::DEFAULT_INTERVAL,
    };
    let keyring = Arc::new(Keyring::new(settings.signers()?)?);
    let keys = Keys::new(store.clone(), settings.pepper()?, clock.clone());
    let checkpointer = Checkpointer::new(store.clone(), keyring.clone(), clock.clone(), interval);
    actix_web::rt::spawn(checkpointer.clone().run());
    let limit = IngestLimit {
        per_second: args
            .ingest_limit
            .or(file.ingest_limit)
            .unwrap_or(limits::DEFAULT_PER_SECOND),
        burst: args
            .ingest_burst
            .or(file.ingest_burst)
            .unwrap_or(limits::DEFAULT_BURST),
    };
    let ledger = Ledger::new(
        store.clone(),
        clock.clone(),
        max_group,
        Some(checkpointer.clone()),
    )
    .with_ingest_limiter(IngestLimiter::new(limit)?);
    let proofs = Proofs::new(store.clone(), checkpointer.clone(), ledger.clone());
    let session_limits = SessionLimits {
        idle: time_delta(
            args.session_idle
                .as_deref()
                .or(file.session_idle.as_deref()),
            SessionLimits::default().idle,
        )?,
        lifetime: time_delta(
            args.session_lifetime
                .as_deref()
                .or(file.session_lifetime.as_deref()),
            SessionLimits::default().lifetime,
        )?,
    };
    let login_limit = LoginLimit {
        per_account: args
            .login_limit_account
            .or(file.login_limit_account)
            .unwrap_or(limits::DEFAULT_LOGINS_PER_ACCOUNT),
        per_ip: args
            .login_limit_ip
            .or(file.login_limit_ip)
            .unwrap_or(limits::DEFAULT_LOGINS_PER_IP),
    };
    let accounts = Accounts::new(
        store.clone(),
        &settings.pepper()?,
        clock.clone(),
        ledger.clone(),
        session_limits,
        LoginLimiter::new(login_limit),
    );
    let mfa = annal::service::mfa::Mfa::new(
        store.clone(),
        &settings.pepper()?,
        clock.clone(),
        accounts.clone(),
    );
    let relying_party = annal::service::passkeys::RelyingParty {
        id: args.webauthn_rp_id.clone(),
        origin: args
            .webauthn_origin
            .parse()
            .with_context(|| format!("ANNAL_WEBAUTHN_ORIGIN {:?}", args.webauthn_origin))?,
    };
    let passkeys = annal::service::passkeys::Passkeys::new(
        store.clone(),
        &relying_party,
        clock.clone(),
        accounts.clone(),
    )
    .context("the WebAuthn relying party (ANNAL_WEBAUTHN_RP_ID, ANNAL_WEBAUTHN_ORIGIN)")?;
    let retention = Retention::new(
        store.clone(),
        purger(deployment).await?,
        ledger.clone(),
        checkpointer.clone(),
    );
    let mut retention = match args.retention_batch.or(file.retention_batch) {
        Some(batch) => retention.with_batch(batch).map_err(explain)?,
        None => retention,
    };
    if let Some(pause) = args
        .retention_pause
        .as_deref()
        .or(file.retention_pause.as_deref())
    {
        retention = retention.with_pause(annal::config::parse_duration(pause)?);
    }
    schedule_retention(
        retention.clone(),
        args.retention_interval
            .as_deref()
            .or(file.retention_interval.as_deref()),
        deployment.retention_url.is_some(),
    )
    .await?;
    let exporter = Exporter::new(store.clone(), checkpointer, ledger.clone());
    let listener = TcpListener::bind(&bind).with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    if let Some(embedded) = &deployment.embedded {
        let marker = embedded.data_dir.join(annal::config::DEMO_PENDING);
        if marker.exists() {
            let vkey = keyring.signer().verifier_key().to_vkey();
            let demo = Demo {
                data_dir: &embedded.data_dir,
                addr: &addr.to_string(),
                vkey: &vkey,
            };
            create_demo(&store, &keys, &accounts, &clock, &demo).await?;
            std::fs::remove_file(&marker)?;
        }
    }
    let workers = args
        .workers
        .or(file.workers)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    tracing::info!(
        checkpoint.origin = %keyring.origin(),
        checkpoint.vkey = %keyring.signer().verifier_key().to_vkey(),
        checkpoint.interval_ms = interval.as_millis() as u64,
        "signing checkpoints"
    );
    let state = AppState {
        members: annal::service::members::Members::new(
            store.clone(),
            clock.clone(),
            keys.clone(),
            accounts.clone(),
            LoginLimiter::new(login_limit),
        ),
        retention,
        ledger,
        keys,
        accounts,
        mfa,
        passkeys,
        proofs,
        exporter,
        store,
        body_limit,
    };
    let server = http::serve(listener, state, workers)?;
    tracing::info!(http.addr = %addr, embedded = deployment.embedded.is_some(), "listening");
    server.await?;
    tracing::info!("stopped serving");
    Ok(())
}

/// A duration setting as a `TimeDelta`, or its default.
fn time_delta(text: Option<&str>, default: chrono::TimeDelta) -> anyhow::Result<chrono::TimeDelta> {
    match text {
        Some(text) => Ok(chrono::TimeDelta::from_std(annal::config::parse_interval(
            text,
        )?)?),
        None => Ok(default),
    }
}

/// Starts the scheduled purge inside `serve`, or says why it is off.
async fn schedule_retention(
    retention: Retention,
    interval: Option<&str>,
    can_purge: bool,
) -> anyhow::Result<()> {
    let interval = match interval.map(str::trim) {
        Some("off") => None,
        Some(text) => Some(annal::config::parse_interval(text)?),
        None => Some(retention::DEFAULT_RUN_INTERVAL),
    };
    let settings = retention.deployment().await.map_err(explain)?;
    if settings.clock_offset {
        tracing::warn!(
            retention.now = %settings.now,
            "annal.deployment_settings.clock_offset is not zero: retention decisions use a shifted clock (tests only)"
        );
    }
    match interval {
        Some(_) if !can_purge => tracing::warn!(
            "not purging expired records: set ANNAL_RETENTION_DATABASE_URL to the annal_retention role"
        ),
        Some(interval) => {
            tracing::info!(
                retention.interval_s = interval.as_secs(),
                retention.floor_months = settings.floor_months,
                "purging expired records on a schedule"
            );
            actix_web::rt::spawn(retention.schedule(interval));
        }
        None => tracing::info!("not purging expired records: retention_interval is off"),
    }
    Ok(())
}

const DEMO_CREDENTIALS: &str = "demo-credentials.json";
/// The demo organisation's owner.
const DEMO_OWNER: &str = "owner@demo.annal.localhost";
/// The largest `body_limit` accepted.
const MAX_BODY_LIMIT: usize = 32 << 20;

/// First start of the embedded default: a `demo` tenant and a key with
/// every scope, shown once on the terminal (never in the log stream) and
/// kept 0600 in the data directory.
struct Demo<'a> {
    data_dir: &'a Path,
    addr: &'a str,
    /// The public key auditors verify with.
    vkey: &'a str,
}

async fn create_demo(
    store: &Store,
    keys: &Keys,
    accounts: &Accounts,
    clock: &SharedClock,
    demo: &Demo<'_>,
) -> anyhow::Result<()> {
    let Demo {
        data_dir,
        addr,
        vkey,
    } = *demo;
    let path = data_dir.join(DEMO_CREDENTIALS);
    if path.exists() {
        bail!(
            "{} exists but the demo was not finished; remove it to start over",
            path.display()
        );
    }
    let tenant = tenants::create(store, clock, "demo")
        .await
        .map_err(explain)?;
    let key = keys
        .create(tenant.tenant_id, &Scope::ALL)
        .await
        .map_err(explain)?;
    let owner_email = DEMO_OWNER;
    let owner_password = Token::generate().expose().to_owned();
    accounts
        .create_member(
            "annal-demo",
            tenant.tenant_id,
            owner_email,
            &owner_password,
            Role::Owner,
        )
        .await
        .map_err(explain)?;
    let credentials = serde_json::json!({
        "tenant_id": tenant.tenant_id,
        "api_key": key.api_key,
        "vkey": vkey,
        "owner_email": owner_email,
        "owner_password": owner_password,
    });
    write_secret(
        &path,
        serde_json::to_string_pretty(&credentials)?.as_bytes(),
    )?;
    eprintln!(
        "\nAnnal is set up with a demo tenant. These credentials are shown once\n\
         (a copy is in {path}, readable only by you):\n\n\
         \x20 tenant_id: {tenant_id}\n\
         \x20 api_key:   {api_key}\n\
         \x20 owner:     {owner_email} / {owner_password}\n\n\
         Post a first event:\n\n\
         \x20 curl -s http://{addr}/v1/events -H \"Authorization: Bearer {api_key}\" \\\n\
         \x20   -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"action\":\"salary.update\",\"actor\":{{\"id\":\"u-1\",\"type\":\"user\"}},\"resource\":{{\"type\":\"employee\",\"id\":\"e-42\"}}}}'\n\n\
         Export the trail and verify it offline with this deployment's public key:\n\n\
         \x20 curl -s http://{addr}/v1/export -H \"Authorization: Bearer {api_key}\" > trail.jsonl\n\
         \x20 cargo run --release --bin annal-verify -- trail.jsonl --vkey '{vkey}'\n",
        path = path.display(),
        tenant_id = tenant.tenant_id,
        api_key = key.api_key,
    );
    eprintln!(
        "Log in as the demo organisation's owner (the session cookie is Secure: browsers\n\
         keep it on https:// and on localhost; with curl, keep it in a cookie jar):\n\n\
         \x20 curl -s -c jar http://{addr}/v1/auth/login -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"email\":\"{owner_email}\",\"password\":\"{owner_password}\"}}'\n"
    );
    Ok(())
}
