//! Where the database is and how to reach it, for `serve` and the operator
//! commands alike, so they always reach the same database.
//!
//! Without `DATABASE_URL`, Annal runs its own PostgreSQL cluster under the
//! data directory (`<data dir>/postgres`), creates its roles and database,
//! migrates it, and keeps the API key pepper in `<data dir>/api-key-pepper`.
//! With `DATABASE_URL`, it uses that server and creates nothing by itself.
//!
//! Every setting can come from a TOML file (`--config` / `ANNAL_CONFIG`),
//! an environment variable or a flag; a flag beats the environment, which
//! beats the file, which beats the default.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;

use crate::crypto::Pepper;
use crate::crypto::signing::NoteSigner;
use crate::pg::{self, Cluster};

/// The configuration file: every key optional, unknown keys refused.
///
/// ```toml
/// bind = "0.0.0.0:8080"
/// database_url = "postgres://annal_app@db/annal"
/// migrator_database_url = "postgres://annal_migrator@db/annal"
/// retention_database_url = "postgres://annal_retention@db/annal"
/// api_key_pepper_file = "/run/secrets/annal-pepper"
/// data_dir = "/var/lib/annal"
/// pool_size = 16
/// body_limit = 1048576
/// workers = 4
/// max_group = 2000
/// # Checkpoint signing keys, newest first (the first signs).
/// signing_key_files = ["/run/secrets/annal-signing-key"]
/// checkpoint_interval = "1s"
/// # Per API key: sustained events/s (0 = no limit) and burst.
/// ingest_limit = 10000
/// ingest_burst = 20000
/// # Purge expired records once per interval ("off": never) in batches.
/// retention_interval = "24h"
/// retention_batch = 10000
/// retention_pause = "20ms"
/// # People's sessions and login attempts.
/// session_idle = "30m"
/// session_lifetime = "12h"
/// login_limit_account = 10
/// login_limit_ip = 60
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address `serve` listens on.
    pub bind: Option<String>,
    /// Data directory of the embedded default.
    pub data_dir: Option<PathBuf>,
    /// App role's connection string.
    pub database_url: Option<String>,
    /// Migrator role's connection string.
    pub migrator_database_url: Option<String>,
    /// Retention role's connection string (the purge).
    pub retention_database_url: Option<String>,
    /// File holding the API key pepper (64 hex characters); must not be
    /// readable by group or others.
    pub api_key_pepper_file: Option<PathBuf>,
    /// Database connections per process.
    pub pool_size: Option<usize>,
    /// Largest request body in bytes.
    pub body_limit: Option<usize>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
    /// Most events per group-commit transaction.
    pub max_group: Option<usize>,
    /// Checkpoint signing key files, newest first; each must not be
    /// readable by group or others.
    pub signing_key_files: Option<Vec<PathBuf>>,
    /// Time between two checkpoints of a tenant, e.g. `"1s"` or `"250ms"`.
    pub checkpoint_interval: Option<String>,
    /// Sustained events per second one API key may append (0: no limit).
    pub ingest_limit: Option<u32>,
    /// Most events one API key may append at once after a pause.
    pub ingest_burst: Option<u32>,
    /// Time between two scheduled purges, e.g. `"24h"`; `"off"` never.
    pub retention_interval: Option<String>,
    /// Records deleted per purge transaction.
    pub retention_batch: Option<u32>,
    /// Rest between two purge batches, e.g. `"20ms"`.
    pub retention_pause: Option<String>,
    /// A session ends after this long without a request, e.g. `"30m"`.
    pub session_idle: Option<String>,
    /// A session ends this long after login, e.g. `"12h"`.
    pub session_lifetime: Option<String>,
    /// Login attempts per minute for one account (0: no limit).
    pub login_limit_account: Option<u32>,
    /// Login attempts per minute from one IP address (0: no limit).
    pub login_limit_ip: Option<u32>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let config: FileConfig = toml::from_str(&text)
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        let shared = fs::metadata(path).map(|m| m.permissions().mode() & 0o077 != 0)?;
        let has_credentials = [
            &config.database_url,
            &config.migrator_database_url,
            &config.retention_database_url,
        ]
        .into_iter()
        .flatten()
        .any(|url| url.contains("password") || url.contains(':') && url.contains('@'));
        if shared && has_credentials {
            tracing::warn!(
                config.path = %path.display(),
                "the configuration file holds database credentials and is readable by others; chmod 600 it"
            );
        }
        Ok(config)
    }
}

/// Settings shared by every subcommand. `Debug` shows whether each secret
/// is set, never its value: connection strings may hold passwords.
#[derive(Clone)]
pub struct Settings {
    /// Data directory of the embedded default.
    pub data_dir: PathBuf,
    /// The app role's connection string; `None` selects the embedded default.
    pub database_url: Option<String>,
    /// The migrator role's connection string (for `annal migrate`).
    pub migrator_database_url: Option<String>,
    /// The retention role's connection string (for purging).
    pub retention_database_url: Option<String>,
    /// Hex API key pepper (required with `DATABASE_URL`, here or as a file).
    pub api_key_pepper: Option<String>,
    /// File holding the hex API key pepper.
    pub api_key_pepper_file: Option<PathBuf>,
    /// A checkpoint signing key itself (`PRIVATE+KEY+...`), from the
    /// environment; it is the newest, ahead of the files.
    pub signing_key: Option<String>,
    /// Checkpoint signing key files, newest first.
    pub signing_key_files: Vec<PathBuf>,
}

/// A secret in `Debug` output: whether it is set, never what it is.
struct Redacted<'a, T>(&'a Option<T>);

impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &Redacted(&self.database_url))
            .field(
                "migrator_database_url",
                &Redacted(&self.migrator_database_url),
            )
            .field(
                "retention_database_url",
                &Redacted(&self.retention_database_url),
            )
            .field("api_key_pepper_file", &self.api_key_pepper_file)
            .field("pool_size", &self.pool_size)
            .field("body_limit", &self.body_limit)
            .field("workers", &self.workers)
            .field("max_group", &self.max_group)
            .field("signing_key_files", &self.signing_key_files)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("ingest_limit", &self.ingest_limit)
            .field("ingest_burst", &self.ingest_burst)
            .field("retention_interval", &self.retention_interval)
            .field("retention_batch", &self.retention_batch)
            .field("retention_pause", &self.retention_pause)
            .field("session_idle", &self.session_idle)
            .field("session_lifetime", &self.session_lifetime)
            .field("login_limit_account", &self.login_limit_account)
            .field("login_limit_ip", &self.login_limit_ip)
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &Redacted(&self.database_url))
            .field(
                "migrator_database_url",
                &Redacted(&self.migrator_database_url),
            )
            .field(
                "retention_database_url",
                &Redacted(&self.retention_database_url),
            )
            .field("api_key_pepper", &Redacted(&self.api_key_pepper))
            .field("api_key_pepper_file", &self.api_key_pepper_file)
            .field("signing_key", &Redacted(&self.signing_key))
            .field("signing_key_files", &self.signing_key_files)
            .finish()
    }
}

/// A database ready to be used, and how it was reached.
pub struct Deployment {
    /// Connection string of the app role.
    pub app_url: String,
    /// Connection string of the migrator role, if known.
    pub migrator_url: Option<String>,
    /// Connection string of the retention role, if known.
    pub retention_url: Option<String>,
    /// The embedded cluster, when we run one.
    pub embedded: Option<Embedded>,
}

/// The embedded cluster and what this process did to it.
pub struct Embedded {
    /// The cluster.
    pub cluster: Cluster,
    /// Whether this process started the server (and so should stop it).
    pub started_here: bool,
    /// Whether this process created the cluster just now.
    pub created_here: bool,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Embedded {
    /// Stops the server if this process started it and no `serve` has
    /// adopted it meanwhile: what an operator command does, so it never
    /// stops the PostgreSQL of a running `serve`.
    pub fn release(&self) -> anyhow::Result<()> {
        if self.started_here && !serve_holds(&self.data_dir) {
            self.stop()?;
        }
        Ok(())
    }

    /// Stops the server whoever started it: what `serve` does on exit, so a
    /// cluster it adopted (left running by a killed `serve`) stops too.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.cluster
            .stop()
            .context("stopping the embedded PostgreSQL")
    }
}

const PEPPER_FILE: &str = "api-key-pepper";
/// The embedded default's checkpoint signing key, created on first use.
pub const SIGNING_KEY_FILE: &str = "checkpoint-signing-key";
/// The origin of the embedded default's checkpoints.
pub const EMBEDDED_ORIGIN: &str = "annal.localhost";
const SERVE_LOCK_FILE: &str = "serve.lock";

/// Held by `serve` for its whole life on an embedded data directory: one
/// `serve` per data directory, and operator commands can tell that the
/// cluster is in use. Released when dropped (or when the process dies).
pub struct ServeLock {
    _lock: Flock<fs::File>,
}

fn open_serve_lock(data_dir: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(data_dir.join(SERVE_LOCK_FILE))
}

/// Whether a `serve` holds the data directory's lock.
fn serve_holds(data_dir: &Path) -> bool {
    let Ok(file) = open_serve_lock(data_dir) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_probe) => false,
        Err((_, errno)) => errno == Errno::EWOULDBLOCK,
    }
}

/// Present in the data directory from the creation of the embedded cluster
/// until `serve` has created the demo tenant, so a first start interrupted
/// half-way (or a first command other than `serve`) still gets its demo.
pub const DEMO_PENDING: &str = ".demo-pending";

impl Settings {
    /// Reaches the database: the configured server, or the embedded cluster
    /// (created, started and migrated as needed).
    pub async fn open(&self) -> anyhow::Result<Deployment> {
        let Some(url) = &self.database_url else {
            return self.open_embedded().await;
        };
        Ok(Deployment {
            app_url: url.clone(),
            migrator_url: self.migrator_database_url.clone(),
            retention_url: self.retention_database_url.clone(),
            embedded: None,
        })
    }

    /// Takes the embedded data directory for `serve` (nothing to take with
    /// `DATABASE_URL`); refuses when another `serve` has it.
    pub fn lock_for_serve(&self) -> anyhow::Result<Option<ServeLock>> {
        if self.database_url.is_some() {
            return Ok(None);
        }
        // Without server binaries there is nothing to lock: say so first.
        crate::pg::find_binaries()?;
        fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
        let file = open_serve_lock(&self.data_dir).with_context(|| {
            format!("opening {}", self.data_dir.join(SERVE_LOCK_FILE).display())
        })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(ServeLock { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => bail!(
                "another annal serve is using the data directory {}; stop it first or choose \
                 another --data-dir",
                self.data_dir.display()
            ),
            Err((_, errno)) => Err(std::io::Error::from(errno))
                .with_context(|| format!("locking {}", self.data_dir.display())),
        }
    }

    /// The API key pepper: from the environment with `DATABASE_URL`, from
    /// the data directory otherwise.
    pub fn pepper(&self) -> anyhow::Result<Pepper> {
        if let Some(hex) = &self.api_key_pepper {
            return Ok(Pepper::from_hex(hex)?);
        }
        let path = match (&self.api_key_pepper_file, &self.database_url) {
            (Some(path), _) => path.clone(),
            (None, None) => self.data_dir.join(PEPPER_FILE),
            (None, Some(_)) => bail!(
                "ANNAL_API_KEY_PEPPER is not set: with DATABASE_URL, every annal process needs the \
                 same pepper (64 hex characters, e.g. `openssl rand -hex 32`), kept secret, in \
                 ANNAL_API_KEY_PEPPER or a file named by api_key_pepper_file"
            ),
        };
        let mode = fs::metadata(&path)
            .with_context(|| format!("reading the API key pepper {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the API key pepper {} is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the API key pepper {}", path.display()))?;
        Ok(Pepper::from_hex(&text)?)
    }

    /// The checkpoint signing keys, newest first: the environment's, then
    /// the files. The embedded default without any creates and uses
    /// `<data dir>/checkpoint-signing-key` (origin `annal.localhost`).
    pub fn signers(&self) -> anyhow::Result<Vec<NoteSigner>> {
        let mut signers = Vec::new();
        if let Some(text) = &self.signing_key {
            signers.push(
                NoteSigner::from_skey(text.trim())
                    .context("ANNAL_SIGNING_KEY is not a signing key (PRIVATE+KEY+...)")?,
            );
        }
        for path in &self.signing_key_files {
            signers.push(NoteSigner::load(path)?);
        }
        if signers.is_empty() && self.database_url.is_none() {
            let path = self.data_dir.join(SIGNING_KEY_FILE);
            if !path.exists() {
                NoteSigner::generate(EMBEDDED_ORIGIN)?.save_new(&path)?;
            }
            signers.push(NoteSigner::load(&path)?);
        }
        Ok(signers)
    }

    async fn open_embedded(&self) -> anyhow::Result<Deployment> {
        // Find the server binaries before writing anything.
        let cluster = Cluster::at(&self.data_dir.join("postgres"))?;
        fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
        // Others may pass through (the postgres user must reach its
        // cluster) but not list or read anything.
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o711))?;
        let pepper_path = self.data_dir.join(PEPPER_FILE);
        if !pepper_path.exists() {
            write_secret(&pepper_path, Pepper::generate().to_hex().as_bytes())?;
        }
        let created_here = !cluster.is_initialised();
        if created_here {
            fs::write(self.data_dir.join(DEMO_PENDING), b"")?;
            cluster.init()?;
        }
        let started_here = !cluster.is_running();
        cluster.start()?;
        // Idempotent, so an interrupted first start recovers.
        cluster.ensure_roles()?;
        cluster.ensure_database(pg::DATABASE)?;
        let migrator_url = cluster.connection_string(pg::MIGRATOR_ROLE, pg::DATABASE);
        crate::store::migrate(&migrator_url)
            .await
            .context("migrating the embedded database")?;
        Ok(Deployment {
            app_url: cluster.connection_string(pg::APP_ROLE, pg::DATABASE),
            migrator_url: Some(migrator_url),
            retention_url: Some(cluster.connection_string(pg::RETENTION_ROLE, pg::DATABASE)),
            embedded: Some(Embedded {
                cluster,
                started_here,
                created_here,
                data_dir: self.data_dir.clone(),
            }),
        })
    }
}

/// Writes `contents` to a new file readable by its owner only.
pub fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Parses a duration such as `1s`, `250ms` or `2m` (at least 1 ms).
pub fn parse_interval(text: &str) -> anyhow::Result<std::time::Duration> {
    let interval = parse_duration(text)?;
    if interval.is_zero() {
        bail!("an interval must be at least 1ms");
    }
    Ok(interval)
}

/// Parses a duration like [`parse_interval`], zero allowed.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    let (digits, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, 86_400_000)
    } else {
        bail!("{text:?} is not a duration: write e.g. 1s, 250ms, 2m, 24h or 1d")
    };
    let value: u64 = digits.trim().parse().with_context(|| {
        format!("{text:?} is not a duration: write e.g. 1s, 250ms, 2m, 24h or 1d")
    })?;
    Ok(std::time::Duration::from_millis(
        value.saturating_mul(unit_ms),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 5] = [
        "postgres://annal_app:app-password@db/annal",
        "postgres://annal_migrator:migrator-password@db/annal",
        "postgres://annal_retention:retention-password@db/annal",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "PRIVATE+KEY+audit.example.com+01234567+AQ",
    ];

    #[test]
    fn debug_never_shows_a_secret() {
        let settings = Settings {
            data_dir: PathBuf::from("/var/lib/annal"),
            database_url: Some(SECRETS[0].into()),
            migrator_database_url: Some(SECRETS[1].into()),
            retention_database_url: Some(SECRETS[2].into()),
            api_key_pepper: Some(SECRETS[3].into()),
            api_key_pepper_file: None,
            signing_key: Some(SECRETS[4].into()),
            signing_key_files: vec![PathBuf::from("/run/secrets/key")],
        };
        let file = FileConfig {
            database_url: Some(SECRETS[0].into()),
            migrator_database_url: Some(SECRETS[1].into()),
            retention_database_url: Some(SECRETS[2].into()),
            ..FileConfig::default()
        };
        for shown in [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{file:?}"),
        ] {
            for secret in SECRETS {
                assert!(!shown.contains(secret), "{shown}");
            }
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        // What is not secret still helps debugging.
        let shown = format!("{settings:?}");
        assert!(shown.contains("/var/lib/annal") && shown.contains("/run/secrets/key"));
        assert!(shown.contains("api_key_pepper_file: None"), "{shown}");
    }
}
