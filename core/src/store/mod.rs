//! Persistence: the only module that speaks sea-orm.
//!
//! [`Store`] wraps one connection pool (PostgreSQL in production, an embedded
//! SQLite file by default) and exposes what the rest of the gateway needs as
//! plain async functions over our own types. Submodules group them by table.

pub mod audit;
pub mod clients;
pub mod connections;
pub mod credentials;
pub mod housekeeping;
pub mod keys;
pub mod notify;
pub mod outbox;
pub mod providers;
pub mod reencrypt;
pub mod seed;
pub mod sessions;
pub mod stats;
pub mod webhooks;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr, RuntimeErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::{Backend, DatabaseSettings};

/// How long a health probe waits for the database.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request waits for a pooled connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite waits this long for a writer's lock before reporting busy.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (connection refused, pool
    /// exhausted, connection dropped). Callers may retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// The message carries the database's own (it may name a row's email,
    /// never a secret: secrets are stored sealed).
    #[error("database error: {0}")]
    Db(DbErr),
    #[error("could not prepare the SQLite directory {path}")]
    SqliteDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A blocking task the store handed work to (re-encryption's crypto)
    /// panicked or was cancelled.
    #[error("a store task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) { Self::Unavailable(err) } else { Self::Db(err) }
    }
}

fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                e.as_ref(),
                Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
            ) || is_transient(e)
        }
        _ => false,
    }
}

/// Database errors that say "not now" rather than "never": PostgreSQL
/// shutting down or dropping the connection (SQLSTATE 57P.., 08006, 08003)
/// or out of resources (53..., e.g. too many connections), and SQLite still
/// locked by another writer after the busy timeout (SQLITE_BUSY, SQLITE_LOCKED
/// and their extended codes).
fn is_transient(err: &sea_orm::sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else { return false };
    let Some(code) = db.code() else { return false };
    if db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in the low byte.
        return code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
    }
    code.starts_with("57P") || code.starts_with("53") || code == "08006" || code == "08003"
}

/// First pause of [`retry_unavailable`]; it doubles up to [`RETRY_MAX_WAIT`].
const RETRY_FIRST_WAIT: Duration = Duration::from_millis(100);
const RETRY_MAX_WAIT: Duration = Duration::from_secs(2);

/// Runs `op` again while it fails with [`StoreError::Unavailable`], pausing
/// with exponential backoff and jitter, until `budget` is spent; any other
/// error, and the last unavailable one, is returned as is.
///
/// For writes of things that cannot be had again: tokens a provider has
/// just issued for a single-use code or a rotated refresh token. Each retry
/// is logged with `what`; nothing secret is.
pub async fn retry_unavailable<T, F, Fut>(what: &'static str, budget: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut wait = RETRY_FIRST_WAIT;
    let mut attempt = 1u32;
    loop {
        match op().await {
            Err(StoreError::Unavailable(err)) => {
                let pause = wait + Duration::from_millis(rand::random::<u64>() % (wait.as_millis() as u64 / 2 + 1));
                if tokio::time::Instant::now() + pause >= deadline {
                    tracing::error!(what, attempt, error = %err, "database still unavailable: giving up");
                    return Err(StoreError::Unavailable(err));
                }
                tracing::warn!(what, attempt, error = %err, retry_in_ms = pause.as_millis() as u64, "database unavailable: retrying");
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(RETRY_MAX_WAIT);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The connection pool and which backend it talks to.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
}

impl Store {
    /// Opens the pool. On SQLite, creates the file's directory first and uses
    /// WAL so readers never wait for the writer.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let url = settings.url.expose_secret();
        if settings.backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        match settings.backend {
            Backend::Postgres => opts.max_connections(16).min_connections(1),
            Backend::Sqlite => opts.max_connections(8).min_connections(1),
        };
        let db = Database::connect(opts).await?;
        Ok(Self { db, backend: settings.backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Opens a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`:
    /// the write lock is taken before the first read, so contention waits in
    /// the busy handler (bounded by [`SQLITE_BUSY_TIMEOUT`]). A deferred
    /// transaction that reads and then writes fails at once with
    /// `SQLITE_BUSY_SNAPSHOT` whenever another connection committed since its
    /// read, which no wait can cure. Every multi-statement write goes through
    /// here; single statements take the lock by themselves.
    #[allow(clippy::disallowed_methods)]
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.backend == Backend::Sqlite).then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> Result<(), StoreError> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Rolls back the last `steps` migrations (all of them when `None`).
    pub async fn migrate_down(&self, steps: Option<u32>) -> Result<(), StoreError> {
        Migrator::down(&self.db, steps).await?;
        Ok(())
    }

    /// (name, applied) for every migration this build knows.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let pending: Vec<String> =
            Migrator::get_pending_migrations(&self.db).await?.iter().map(|m| m.name().to_owned()).collect();
        Ok(Migrator::migrations()
            .iter()
            .map(|m| (m.name().to_owned(), !pending.iter().any(|p| p == m.name())))
            .collect())
    }

    /// One round trip, bounded by [`PING_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(PING_TIMEOUT, self.db.execute_unprepared("SELECT 1")).await {
            Ok(result) => result.map(|_| ()).map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout))),
        }
    }

    pub async fn close(self) {
        // Errors on close only mean the pool was already gone.
        let _ = self.db.close().await;
    }
}

/// `sqlite://./data/gateway.db?mode=rwc` → creates `./data`.
fn ensure_sqlite_dir(url: &str) -> Result<(), StoreError> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::SqliteDir { path: dir.display().to_string(), source }),
        _ => Ok(()),
    }
}

/// Numbered placeholders: `$1` on PostgreSQL, `?1` on SQLite.
pub(super) fn placeholders(backend: Backend, sql: &str) -> String {
    match backend {
        Backend::Postgres => sql.to_owned(),
        Backend::Sqlite => sql.replace('$', "?"),
    }
}

pub(super) fn db_backend(backend: Backend) -> sea_orm::DbBackend {
    match backend {
        Backend::Postgres => sea_orm::DbBackend::Postgres,
        Backend::Sqlite => sea_orm::DbBackend::Sqlite,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sea_orm::{ConnectionTrait, SqlxSqliteConnector};

    use super::*;

    #[tokio::test]
    async fn a_sqlite_file_locked_by_another_writer_is_unavailable_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new().filename(dir.path().join("locked.db")).create_if_missing(true);
        let holder = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
        sea_orm::sqlx::query("CREATE TABLE t (x INTEGER)").execute(&holder).await.unwrap();
        let mut lock = holder.acquire().await.unwrap();
        sea_orm::sqlx::query("BEGIN EXCLUSIVE").execute(&mut *lock).await.unwrap();

        // No busy timeout: the writer is told at once that the file is locked.
        let writer = SqlitePoolOptions::new().connect_with(options.busy_timeout(Duration::ZERO)).await.unwrap();
        let db = SqlxSqliteConnector::from_sqlx_sqlite_pool(writer);
        let err = db.execute_unprepared("INSERT INTO t VALUES (1)").await.unwrap_err();
        assert!(matches!(StoreError::from(err), StoreError::Unavailable(_)));

        // Any other database error stays an error of ours.
        sea_orm::sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
        let err = db.execute_unprepared("INSERT INTO missing VALUES (1)").await.unwrap_err();
        assert!(matches!(StoreError::from(err), StoreError::Db(_)));
    }
}
