//! A PostgreSQL cluster of Annal's own, started from the locally installed
//! server binaries: the embedded default of `annal serve` and the throwaway
//! clusters of the tests.
//!
//! The cluster listens on a Unix socket only, in a directory no one else can
//! enter, with `trust` authentication: reaching the socket is the credential.
//! `initdb` and `postgres` refuse to run as root, so when we are root every
//! server binary runs as the `postgres` system user through `runuser`.
//!
//! This module owns the cluster's files and processes; it never touches a
//! cluster it did not create (`DATABASE_URL` deployments never come here).
//! The processes it starts never inherit Annal's secrets.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Superuser of a cluster we create.
pub const SUPERUSER: &str = "postgres";
/// The database `serve` uses in an embedded cluster.
pub const DATABASE: &str = "annal";
/// Role that owns the schema and runs migrations.
pub const MIGRATOR_ROLE: &str = "annal_migrator";
/// Role the server runs as.
pub const APP_ROLE: &str = "annal_app";
/// Role that may only purge expired records.
pub const RETENTION_ROLE: &str = "annal_retention";

/// The role-creation script shipped for DBAs; also run on every cluster we create.
pub const CREATE_ROLES_SQL: &str = include_str!("../sql/roles/create_roles.sql");

/// Environment variables that hold Annal's secrets. No server binary needs
/// them, and a process's environment is readable by its user (through
/// `/proc`): the `postgres` system user when we are root, for as long as the
/// postmaster runs.
const SECRET_ENV: [&str; 4] = [
    "ANNAL_SIGNING_KEY",
    "ANNAL_API_KEY_PEPPER",
    "DATABASE_URL",
    "ANNAL_MIGRATOR_DATABASE_URL",
];

/// A command running `program` with our environment minus the secrets:
/// the only way this module starts a process.
fn child(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in SECRET_ENV {
        command.env_remove(name);
    }
    command
}

/// What went wrong managing a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No server binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install them \
         (Debian/Ubuntu: `apt-get install postgresql`), put them on PATH, or set ANNAL_PG_BIN \
         to their directory — or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound,
    /// We are root but there is no `postgres` system user to run the server as.
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as \
         (initdb refuses root): install the postgresql package, which creates it"
    )]
    NoPostgresUser,
    /// The `postgres` user cannot reach the data directory.
    #[error(
        "the postgres system user cannot enter {0}: choose a data directory it can reach \
         (for example under /var/lib or /tmp) with --data-dir"
    )]
    Unreachable(PathBuf),
    /// A server binary failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The binary that failed.
        program: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        stderr: String,
    },
    /// File system trouble.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// A cluster directory: `<root>/data` (PGDATA), `<root>/socket`, `<root>/server.log`.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    run_as_postgres: bool,
}

impl Cluster {
    /// Describes the cluster under `root` (absolute or relative), finding the
    /// server binaries. Creates nothing.
    pub fn at(root: &Path) -> Result<Cluster, ClusterError> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(io("reading the current directory"))?
                .join(root)
        };
        let bin = find_binaries()?;
        let run_as_postgres = nix::unistd::geteuid().is_root();
        if run_as_postgres
            && nix::unistd::User::from_name(SUPERUSER)
                .ok()
                .flatten()
                .is_none()
        {
            return Err(ClusterError::NoPostgresUser);
        }
        Ok(Cluster {
            root,
            bin,
            run_as_postgres,
        })
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A libpq-style connection string for `user` on `database` over the socket.
    pub fn connection_string(&self, user: &str, database: &str) -> String {
        format!(
            "host={} port=5432 user={user} dbname={database}",
            self.socket_dir().display()
        )
    }

    /// Whether `initdb` has already run here.
    pub fn is_initialised(&self) -> bool {
        self.data_dir().join("PG_VERSION").exists()
    }

    /// Runs `initdb` and creates Annal's roles and database. The cluster must
    /// not be initialised yet.
    pub fn init(&self) -> Result<(), ClusterError> {
        fs::create_dir_all(&self.root).map_err(io(format!("creating {}", self.root.display())))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", self.root.display())))?;
        fs::create_dir_all(self.socket_dir()).map_err(io("creating the socket directory"))?;
        if self.run_as_postgres {
            self.hand_to_postgres()?;
        }
        self.run(
            "initdb",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth-local=trust".as_ref(),
                "--auth-host=reject".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Starts the server and waits until it accepts connections. A server
    /// already running on this data directory (say, left by a process that
    /// was killed) is adopted as it is.
    pub fn start(&self) -> Result<(), ClusterError> {
        if self.is_running() {
            return Ok(());
        }
        let options = format!(
            "-c listen_addresses='' -k {} -c unix_socket_permissions=0700 -c fsync=on",
            self.socket_dir().display()
        );
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-l".as_ref(),
                self.log_file().as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Whether a server is running on this data directory.
    pub fn is_running(&self) -> bool {
        self.is_initialised()
            && self
                .output(
                    "pg_ctl",
                    &[
                        "status".as_ref(),
                        "-D".as_ref(),
                        self.data_dir().as_os_str(),
                    ],
                )
                .map(|out| out.status.success())
                .unwrap_or(false)
    }

    /// Stops the server (fast shutdown: open transactions roll back, nothing
    /// committed is lost) and waits for it to exit.
    pub fn stop(&self) -> Result<(), ClusterError> {
        if !self.is_running() {
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                self.data_dir().as_os_str(),
            ],
        )?;
        Ok(())
    }

    /// Runs SQL as the superuser on `database` through `psql`, stopping at the
    /// first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        let socket = self.socket_dir();
        let out = self.run(
            "psql",
            &[
                "-X".as_ref(),
                "-q".as_ref(),
                "-A".as_ref(),
                "-t".as_ref(),
                "-v".as_ref(),
                "ON_ERROR_STOP=1".as_ref(),
                "-h".as_ref(),
                socket.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "-d".as_ref(),
                database.as_ref(),
                "-c".as_ref(),
                sql.as_ref(),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates Annal's roles (once per cluster; fails if they exist).
    pub fn create_roles(&self) -> Result<(), ClusterError> {
        self.psql("postgres", CREATE_ROLES_SQL).map(|_| ())
    }

    /// Creates Annal's roles unless they exist, so a cluster whose first
    /// start was interrupted after `initdb` recovers on the next.
    pub fn ensure_roles(&self) -> Result<(), ClusterError> {
        let existing = self.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ('{MIGRATOR_ROLE}', '{APP_ROLE}', '{RETENTION_ROLE}')"
            ),
        )?;
        match existing.trim() {
            "3" => Ok(()),
            "0" => self.create_roles(),
            other => Err(ClusterError::Command {
                program: "psql".into(),
                status: "inconsistent roles".into(),
                stderr: format!("{other} of Annal's 3 roles exist; create the rest by hand"),
            }),
        }
    }

    /// Creates an empty database owned by the migrator role.
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{name}\" OWNER {MIGRATOR_ROLE}"),
        )
        .map(|_| ())
    }

    /// Creates the database unless it exists.
    pub fn ensure_database(&self, name: &str) -> Result<(), ClusterError> {
        let exists = self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        )?;
        if exists.trim() == "1" {
            return Ok(());
        }
        self.create_database(name)
    }

    fn hand_to_postgres(&self) -> Result<(), ClusterError> {
        let user = nix::unistd::User::from_name(SUPERUSER)
            .ok()
            .flatten()
            .ok_or(ClusterError::NoPostgresUser)?;
        for dir in [self.root.clone(), self.socket_dir()] {
            nix::unistd::chown(&dir, Some(user.uid), Some(user.gid))
                .map_err(|e| io(format!("handing {} to postgres", dir.display()))(e.into()))?;
        }
        // The postgres user must be able to walk down to the root.
        let probe = child("runuser")
            .args(["-u", SUPERUSER, "--", "test", "-w"])
            .arg(&self.root)
            .status()
            .map_err(io("running runuser"))?;
        if !probe.success() {
            return Err(ClusterError::Unreachable(self.root.clone()));
        }
        Ok(())
    }

    fn output(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, ClusterError> {
        let path = self.bin.join(program);
        let path = if path.exists() {
            path
        } else {
            PathBuf::from(program)
        };
        let mut command = if self.run_as_postgres {
            let mut c = child("runuser");
            c.args(["-u", SUPERUSER, "--"]).arg(&path);
            c
        } else {
            child(&path)
        };
        // Server output goes to the log file, not to our stdout: a daemonised
        // postmaster must not hold our pipes open.
        command
            .args(args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .current_dir("/")
            .output()
            .map_err(io(format!("running {}", path.display())))
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, ClusterError> {
        let out = self.output(program, args)?;
        if out.status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(ClusterError::Command {
            program: program.to_owned(),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        })
    }
}

/// Finds the directory of `initdb`/`pg_ctl`/`postgres`: `ANNAL_PG_BIN`, then
/// `PATH`, then Debian's `/usr/lib/postgresql/<version>/bin` (newest first).
pub fn find_binaries() -> Result<PathBuf, ClusterError> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("ANNAL_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_all(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BinariesNotFound)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(ClusterError::BinariesNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_processes_do_not_inherit_secrets() {
        let command = child("initdb");
        let mut removed: Vec<&OsStr> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "ANNAL_API_KEY_PEPPER",
                "ANNAL_MIGRATOR_DATABASE_URL",
                "ANNAL_SIGNING_KEY",
                "DATABASE_URL",
            ]
            .map(OsStr::new)
        );
    }
}
