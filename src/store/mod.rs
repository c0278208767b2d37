//! PostgreSQL: the pool, migrations, the tenant-scoped transaction and the
//! queries, one module per table family.
//!
//! Every query on a tenant table runs on a [`TenantTx`], which sets the tenant
//! transaction-locally before anything else; row-level security in the
//! database enforces the same rule a second time. This module never decides
//! who may do what (that is the service layer) and never builds SQL from
//! strings: each query is a `const` beside the function that runs it.

pub mod api_keys;
pub mod checkpoints;
pub mod events;
pub mod identity;
pub mod retention;
pub mod tenants;
pub mod tree;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::ledger::TenantId;

mod embedded {
    refinery::embed_migrations!("sql");
}

/// The schema version this build expects (the highest migration in `sql/`).
pub fn expected_schema_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .map_or(0, |v| i32::try_from(v).unwrap_or(i32::MAX))
}

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool.
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database refused or failed a statement. Displayed without the
    /// server's message and DETAIL, which can quote row values, and
    /// deliberately not a `source`: printing an error's chain (`{:#}`) must
    /// not reach them either.
    #[error("database error: {}", describe(.0))]
    Postgres(tokio_postgres::Error),
    /// A connection string did not parse.
    #[error("invalid database connection string: {0}")]
    Config(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A stored row does not have the shape the code expects.
    #[error("stored row is malformed: {0}")]
    Corrupt(String),
    /// The server role could bypass the ledger's protections.
    #[error("refusing to run as database role {role}: {reason}")]
    UnsafeRole {
        /// The role the server connected as.
        role: String,
        /// Which protection it could bypass.
        reason: String,
    },
    /// The server does not flush commits to disk, so an acknowledged event
    /// could be lost in a crash.
    #[error(
        "the PostgreSQL server runs with fsync off: acknowledged events would not survive a crash; turn fsync on"
    )]
    NotDurable,
    /// The database schema is not the one this build expects.
    #[error(
        "database schema is at version {found}, this build needs {expected}: run `annal migrate`"
    )]
    SchemaVersion {
        /// Version found in the database (0 when not migrated).
        found: i32,
        /// Version this build expects.
        expected: i32,
    },
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

/// A database error as it may be logged: SQLSTATE and the names of the
/// objects involved, never values.
fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // Connection and protocol errors carry no row data.
        return error.to_string();
    };
    let mut text = format!("SQLSTATE {}", db.code().code());
    for (label, name) in [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ] {
        if let Some(name) = name {
            text.push_str(&format!(", {label} {name}"));
        }
    }
    text
}

impl StoreError {
    /// The SQLSTATE of a database error, if this is one.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            StoreError::Postgres(e) => e.code(),
            _ => None,
        }
    }
}

/// A pool of connections as the app role.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Builds a pool for `connection_string` (URL or `key=value` form). Does
    /// not connect yet.
    pub fn connect(connection_string: &str, max_size: usize) -> Result<Store, StoreError> {
        let config = tokio_postgres::Config::from_str(connection_string)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Store { pool })
    }

    /// Takes a connection from the pool.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(Conn(self.pool.get().await?))
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.pool.get().await?;
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Refuses roles that could get around the ledger's protections:
    /// superuser or BYPASSRLS (directly or through a role it can become),
    /// owning any table or function of the `annal` schema (directly or
    /// through membership), or holding UPDATE, DELETE or TRUNCATE on a
    /// ledger table; and schemas of another version.
    pub async fn check_server_role(&self) -> Result<(), StoreError> {
        const ROLE: &str = "SELECT current_user::text, rolsuper, rolbypassrls \
                            FROM pg_roles WHERE rolname = current_user";
        const PRIVILEGED_MEMBERSHIP: &str = "SELECT string_agg(rolname, ', ' ORDER BY rolname) FROM pg_roles \
            WHERE (rolsuper OR rolbypassrls) AND rolname <> current_user \
            AND pg_has_role(current_user, oid, 'MEMBER')";
        const OWNED: &str = "SELECT (SELECT count(*) FROM pg_class c \
                JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = 'annal' AND pg_has_role(current_user, c.relowner, 'MEMBER')) \
            + (SELECT count(*) FROM pg_proc p \
                JOIN pg_namespace n ON n.oid = p.pronamespace \
                WHERE n.nspname = 'annal' AND pg_has_role(current_user, p.proowner, 'MEMBER')) \
            + (SELECT count(*) FROM pg_namespace \
                WHERE nspname = 'annal' AND pg_has_role(current_user, nspowner, 'MEMBER'))";
        // UPDATE counts on any column (a column grant is enough to change
        // data), except the one the app needs: revoking an API key. The
        // identity tables (schema V4) are not ledger tables: passwords and
        // sessions change, and every change is recorded in the ledger.
        const MUTATING: &str = "SELECT string_agg(what, ', ') FROM ( \
            SELECT t || ' ' || p AS what \
            FROM unnest(ARRAY['annal.events', 'annal.tenants', 'annal.api_keys', 'annal.checkpoints', \
                'annal.tree_nodes', 'annal.retention_policies', 'annal.purge_boundaries', \
                'annal.purge_announcements', 'annal.deployment_settings']) AS t, \
                 unnest(ARRAY['DELETE', 'TRUNCATE']) AS p \
            WHERE to_regclass(t) IS NOT NULL AND has_table_privilege(current_user, t, p) \
            UNION ALL \
            SELECT format('%s UPDATE (%s)', c.attrelid::regclass, c.attname) \
            FROM pg_attribute c JOIN pg_class r ON r.oid = c.attrelid \
            WHERE r.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'annal') AND r.relkind = 'r' \
            AND c.attnum > 0 AND NOT c.attisdropped \
            AND has_column_privilege(current_user, c.attrelid, c.attnum, 'UPDATE') \
            AND NOT (r.relname = 'api_keys' AND c.attname = 'revoked_at') \
            AND r.relname NOT IN ('users', 'recovery_codes', 'memberships', 'sessions', 'org_settings', \
                'passkeys', 'passkey_ceremonies', \
                'export_leases')) AS grants";
        const FSYNC: &str = "SELECT current_setting('fsync')";
        const MIGRATED: &str = "SELECT to_regprocedure('annal.schema_version()') IS NOT NULL";
        const VERSION: &str = "SELECT annal.schema_version()";

        let conn = self.pool.get().await?;
        let row = conn.query_one(ROLE, &[]).await?;
        let role: String = row.get(0);
        let unsafe_role = |reason: String| StoreError::UnsafeRole {
            role: role.clone(),
            reason,
        };
        if row.get::<_, bool>(1) {
            return Err(unsafe_role("it is a superuser".into()));
        }
        if row.get::<_, bool>(2) {
            return Err(unsafe_role("it has BYPASSRLS".into()));
        }
        let privileged: Option<String> = conn.query_one(PRIVILEGED_MEMBERSHIP, &[]).await?.get(0);
        if let Some(roles) = privileged {
            return Err(unsafe_role(format!(
                "it is a member of {roles}, which is superuser or has BYPASSRLS"
            )));
        }
        let owned: i64 = conn.query_one(OWNED, &[]).await?.get(0);
        if owned > 0 {
            return Err(unsafe_role(
                "it owns ledger tables or functions (connect as annal_app, not the migrator)"
                    .into(),
            ));
        }
        let mutating: Option<String> = conn.query_one(MUTATING, &[]).await?.get(0);
        if let Some(grants) = mutating {
            return Err(unsafe_role(format!("it holds {grants}")));
        }
        // Only the retention role may purge: a server role that could
        // execute the purge function (itself or through membership) is
        // refused, except the retention role's own pool.
        const PURGER: &str = "SELECT current_user <> 'annal_retention' \
            AND to_regprocedure('annal.purge_expired(uuid, integer, boolean)') IS NOT NULL \
            AND has_function_privilege(current_user, 'annal.purge_expired(uuid, integer, boolean)', 'EXECUTE')";
        let purger: bool = conn.query_one(PURGER, &[]).await?.get(0);
        if purger {
            return Err(unsafe_role(
                "it can execute annal.purge_expired (only annal_retention may purge)".into(),
            ));
        }
        let fsync: String = conn.query_one(FSYNC, &[]).await?.get(0);
        if fsync != "on" {
            return Err(StoreError::NotDurable);
        }
        let expected = expected_schema_version();
        let migrated: bool = conn.query_one(MIGRATED, &[]).await?.get(0);
        let found = if migrated {
            conn.query_one(VERSION, &[]).await?.get(0)
        } else {
            0
        };
        if found != expected {
            return Err(StoreError::SchemaVersion { found, expected });
        }
        Ok(())
    }
}

/// Runs the forward-only migrations in `sql/` as the migrator role.
pub async fn migrate(migrator_connection_string: &str) -> Result<usize, StoreError> {
    let config = tokio_postgres::Config::from_str(migrator_connection_string)
        .map_err(|e| StoreError::Config(e.to_string()))?;
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(report.applied_migrations().len())
}

/// A pooled connection. It offers no queries of its own: open a
/// [`TenantTx`] (or, to authenticate, a key lookup) to reach any table.
pub struct Conn(deadpool_postgres::Object);

impl Conn {
    /// Opens a transaction scoped to `tenant`.
    pub async fn tenant(&mut self, tenant: TenantId) -> Result<TenantTx<'_>, StoreError> {
        const SET_TENANT: &str = "SELECT set_config('annal.tenant_id', $1, true)";
        let tx = self.begin().await?;
        let stmt = tx.prepare_cached(SET_TENANT).await?;
        tx.execute(&stmt, &[&tenant.to_string()]).await?;
        Ok(TenantTx {
            tx,
            tenant,
            chain_locked: false,
        })
    }

    /// Opens a transaction scoped to `tenant` that already holds its chain
    /// lock: setting the tenant and taking the lock cost one round trip
    /// instead of two. Nothing is read in that statement, so every read
    /// after it sees whatever the previous holder of the lock committed.
    pub async fn tenant_for_append(
        &mut self,
        tenant: TenantId,
    ) -> Result<TenantTx<'_>, StoreError> {
        // synchronous_commit is pinned on: a 2xx means the commit is on disk,
        // whatever the role's or database's default says.
        const SET_TENANT_AND_LOCK: &str = "SELECT set_config('annal.tenant_id', $1, true), \
             set_config('synchronous_commit', 'on', true), pg_advisory_xact_lock($2)";
        let tx = self.begin().await?;
        let stmt = tx.prepare_cached(SET_TENANT_AND_LOCK).await?;
        tx.execute(&stmt, &[&tenant.to_string(), &chain_lock_key(tenant)])
            .await?;
        Ok(TenantTx {
            tx,
            tenant,
            chain_locked: true,
        })
    }

    /// Every transaction is READ COMMITTED whatever the role's default: the
    /// chain's reasoning (lock, then read the head in a new statement that
    /// sees the previous holder's commit) depends on a snapshot per statement.
    async fn begin(&mut self) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
        Ok(self
            .0
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await?)
    }

    pub(in crate::store) fn client(&self) -> &deadpool_postgres::Object {
        &self.0
    }

    /// Opens a transaction scoped to no tenant, for the identity lookups
    /// that run before a tenant is known (a login by email, a session by
    /// its token, an invitation by its token): each sets the one
    /// transaction-local key that makes its row visible.
    pub async fn lookup(&mut self) -> Result<LookupTx<'_>, StoreError> {
        Ok(LookupTx {
            tx: self.begin().await?,
        })
    }
}

/// A transaction with no tenant set: see [`Conn::lookup`].
pub struct LookupTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
}

impl LookupTx<'_> {
    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    pub(in crate::store) fn inner(&self) -> &deadpool_postgres::Transaction<'_> {
        &self.tx
    }
}

/// A transaction in which `annal.tenant_id` is set: the only handle on
/// which tenant tables can be queried.
pub struct TenantTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    tenant: TenantId,
    chain_locked: bool,
}

impl<'a> TenantTx<'a> {
    /// The tenant this transaction is scoped to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    /// Serialises appenders of this tenant's chain across every process on
    /// the database until the transaction ends. Reading the head to append
    /// after it, and appending, take the returned token.
    /// Free when the transaction was opened with [`Conn::tenant_for_append`].
    pub async fn lock_chain(&self) -> Result<ChainLock<'_, 'a>, StoreError> {
        const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
        if !self.chain_locked {
            let stmt = self.tx.prepare_cached(LOCK).await?;
            self.tx
                .execute(&stmt, &[&chain_lock_key(self.tenant)])
                .await?;
        }
        Ok(ChainLock { tx: self })
    }

    /// Serialises checkpoint signers of this tenant across every process on
    /// the database until the transaction ends, so that each signs only
    /// after reading the latest checkpoint the others stored. Appenders are
    /// not blocked: this is a different lock from the chain's.
    pub async fn lock_checkpoints(&self) -> Result<(), StoreError> {
        const LOCK: &str = "SELECT pg_advisory_xact_lock($1, $2)";
        let (class, object) = checkpoint_lock_key(self.tenant);
        let stmt = self.tx.prepare_cached(LOCK).await?;
        self.tx.execute(&stmt, &[&class, &object]).await?;
        Ok(())
    }

    /// Acts for `user` in this transaction too: their own rows (their user
    /// row, their recovery codes) become visible.
    pub async fn act_as(&self, user: uuid::Uuid) -> Result<(), StoreError> {
        const SET_USER: &str = "SELECT set_config('annal.user_id', $1, true)";
        let stmt = self.tx.prepare_cached(SET_USER).await?;
        self.tx.execute(&stmt, &[&user.to_string()]).await?;
        Ok(())
    }

    pub(in crate::store) fn inner(&self) -> &deadpool_postgres::Transaction<'_> {
        &self.tx
    }
}

/// Proof that a transaction holds its tenant's chain lock, and the only way
/// to read the head for appending and to append: the queries run on the
/// transaction the lock was taken in.
pub struct ChainLock<'t, 'a> {
    tx: &'t TenantTx<'a>,
}

impl<'a> ChainLock<'_, 'a> {
    /// The locked transaction.
    pub(in crate::store) fn tx(&self) -> &TenantTx<'a> {
        self.tx
    }
}

/// The advisory lock id of a tenant's chain: the first 8 bytes of its id.
/// Collisions between tenants only serialise them, they never break a chain.
fn chain_lock_key(tenant: TenantId) -> i64 {
    let bytes = tenant.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}

/// The advisory lock of a tenant's checkpoint signer: the two-key form, a
/// lock space apart from the chain's one-key locks. The first key spells
/// "ckpt"; the second is the first 4 bytes of the tenant id.
fn checkpoint_lock_key(tenant: TenantId) -> (i32, i32) {
    let bytes = tenant.as_bytes();
    let mut first = [0u8; 4];
    first.copy_from_slice(&bytes[..4]);
    (i32::from_be_bytes(*b"ckpt"), i32::from_be_bytes(first))
}
