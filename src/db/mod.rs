//! Database connection: SQLite (the default) or PostgreSQL, chosen by the URL, migrated
//! on connect. Engine specifics (pragmas, pool shapes) stay in this file.

pub mod entities;
pub mod key_epoch;
pub mod pg_connections;
pub mod pg_decode;
pub mod pg_pipeline;
pub mod pg_reader;
mod pg_tls;
pub mod reads;
mod row_models;
pub mod sqlite_reader;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use key_epoch::KeyEpoch;
use migration::{Migrator, MigratorTrait};
use pg_connections::ReadConnections;
use pg_pipeline::Pipelines;
use pg_reader::PgReader;
pub use reads::{
    ColumnLists, Direct, Fetch, Reader, empty_object, fetch_all, fetch_at_most, fetch_count, fetch_one, fetch_two,
    find, find_where, narrow,
};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sqlite_reader::SqliteReader;

/// SQLite reads run on the process's own cores; past two connections per core, more
/// only hold more page cache (2 MB each) and threads.
fn sqlite_max_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    (2 * cores).clamp(2, 8)
}

/// A pooled PostgreSQL connection idle this long is pinged before its next use. Under
/// load connections are reused within milliseconds and skip the ping; after a quiet
/// second, a database restart is caught before a request meets it.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Counts SQL statements sent, so tests and benchmarks can prove a query shape is
/// constant (no N+1).
#[derive(Clone, Default, Debug)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The two handles the app uses. On SQLite, `write` is a one-connection pool, so that
/// writers queue in the process instead of failing with SQLITE_BUSY; readers use `read`
/// concurrently (WAL), entity reads in place (`reads`). On PostgreSQL both are the same
/// pool, and entity reads and counts take connections of their own (`pg_connections`).
#[derive(Clone, Debug)]
pub struct Db {
    pub read: Reader,
    pub write: DatabaseConnection,
    pub statements: StatementCounter,
    /// Tells whether API keys changed, without a statement through the pools.
    pub key_epoch: KeyEpoch,
}

impl Db {
    pub fn backend(&self) -> DbBackend {
        self.read.get_database_backend()
    }

    /// Ends every pooled connection cleanly, waiting for lent ones to come back: at
    /// shutdown, so that PostgreSQL logs no lost connections and SQLite, as its last
    /// connection closes, folds its write-ahead log into the database file.
    pub async fn close(&self) {
        if let Some(reader) = self.read.pg_reader() {
            reader.connections().close_idle().await;
            reader.close_pipelines().await;
        }
        // On PostgreSQL both handles are one pool; closing it again does nothing.
        for pool in [self.read.pool(), &self.write] {
            if let Err(e) = pool.close_by_ref().await {
                tracing::debug!(error = %e, "closing the database pool");
            }
        }
    }

    /// Starts a write transaction; on SQLite it takes the write lock at once (IMMEDIATE),
    /// so a transaction that reads first can never fail to upgrade.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.write
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }

    /// Refreshes the planner's statistics, e.g. after a large import: without them SQLite
    /// guesses between indexes.
    pub async fn analyze(&self) -> Result<(), DbErr> {
        self.write.execute_unprepared("ANALYZE").await.map(|_| ())
    }

    pub async fn ping(&self) -> bool {
        self.read.ping().await.is_ok()
    }
}

/// How to size and wait on the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite: how much of the file each in-place read connection maps (`mmap_size`).
    pub sqlite_mmap_bytes: u64,
}

impl PoolOptions {
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: Duration::from_millis(crate::config::DEFAULT_DB_ACQUIRE_TIMEOUT_MS),
            sqlite_mmap_bytes: 0,
        }
    }
}

/// Connects to `url` with default pool waits and brings the schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbErr> {
    connect_with(url, PoolOptions::new(max_connections)).await
}

/// Connects to `url` and brings the schema up to date.
pub async fn connect_with(url: &str, pool: PoolOptions) -> Result<Db, DbErr> {
    let max_connections = pool.max_connections;
    let statements = StatementCounter::default();
    let sqlite = url.starts_with("sqlite:");
    let in_memory = sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
    let mut db = if sqlite {
        let write = match open(url, 1, pool.acquire_timeout, &statements).await {
            Ok(write) => write,
            Err(e) if in_memory => return Err(e),
            Err(e) => return Err(why_no_file(url, e)),
        };
        // Every connection to an in-memory database is a database of its own.
        let read = if in_memory {
            Reader::pooled(write.clone())
        } else {
            let readers = max_connections.clamp(1, sqlite_max_readers());
            let pooled = open(url, readers, pool.acquire_timeout, &statements).await?;
            let in_place = SqliteReader::open(
                &sqlite_path(url)?,
                pool.acquire_timeout,
                readers as usize,
                pool.sqlite_mmap_bytes,
                statements.clone(),
            )?;
            Reader::with_direct(pooled, Direct::Sqlite(Arc::new(in_place)))
        };
        Db {
            read,
            write,
            statements,
            key_epoch: KeyEpoch::default(),
        }
    } else {
        let conn = match open(url, max_connections.max(1), pool.acquire_timeout, &statements).await {
            Ok(conn) => conn,
            Err(e) => return Err(why_unreachable(url, pool.acquire_timeout, e).await),
        };
        let entity_reads = ReadConnections::new(url, max_connections, pool.acquire_timeout)?;
        let pipelined = pipelines(url, max_connections, pool.acquire_timeout).await;
        Db {
            read: Reader::with_direct(
                conn.clone(),
                Direct::Postgres(PgReader::new(Arc::new(entity_reads), pipelined, statements.clone())),
            ),
            write: conn,
            statements,
            // Told by the live relay's listener, in a server; unknown elsewhere.
            key_epoch: KeyEpoch::heard(),
        }
    };
    Migrator::up(&db.write, None).await?;
    if sqlite && !in_memory {
        db.key_epoch = sqlite_key_epoch(url)?;
    }
    Ok(db)
}

/// Pipelined read connections: one per eight of `--db-max-connections` (two by default).
/// Fewer, fuller pipelines share more wake-ups (wrk, W4a′ at 16 clients: one connection
/// 30,096–33,017 requests/s, four 21,590–26,506), and a second keeps small reads from
/// waiting behind a long one.
pub fn pipelined_connections(max_connections: u32) -> usize {
    (max_connections as usize / 8).max(1)
}

/// The pipelined reads, or `None` to leave them on leased connections.
async fn pipelines(url: &str, max_connections: u32, wait: Duration) -> Option<Pipelines> {
    let pipelines = Pipelines::for_url(url, pipelined_connections(max_connections), wait)?;
    match pipelines.open_first().await {
        Ok(()) => Some(pipelines),
        Err(e) => {
            tracing::warn!(error = %e, "entity reads stay on leased connections: a pipelined one could not be opened");
            None
        }
    }
}

/// A pool that could not open its first connection says only that it waited in vain;
/// one connection attempt of its own says why (refused, no such host or database,
/// authentication).
async fn why_unreachable(url: &str, wait: Duration, err: DbErr) -> DbErr {
    use sea_orm::sqlx::Connection;
    let timed_out = matches!(&err, DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)) if matches!(**e, sea_orm::sqlx::Error::PoolTimedOut));
    if !timed_out {
        return err;
    }
    match tokio::time::timeout(wait, sea_orm::sqlx::PgConnection::connect(url)).await {
        Ok(Err(cause)) => DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(cause))),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            err
        }
        Err(_) => DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
            "no answer from the database within {wait:?}"
        ))),
    }
}

/// SQLite says only "unable to open database file"; the file's path and its folder say
/// which of the usual reasons it is.
fn why_no_file(url: &str, err: DbErr) -> DbErr {
    let cannot_open = matches!(&err, DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
        if e.as_database_error().and_then(|e| e.code()).as_deref() == Some("14"));
    let path = match sqlite_path(url) {
        Ok(path) if cannot_open => std::path::absolute(&path).unwrap_or(path),
        _ => return err,
    };
    let folder = path.parent().filter(|folder| !folder.as_os_str().is_empty());
    let why = match folder {
        Some(folder) if !folder.is_dir() => format!("its folder {} does not exist", folder.display()),
        _ if path.is_dir() => "that is a folder; name a file in it".to_owned(),
        _ if !path.exists() => "the file does not exist, and the URL's `mode` does not let it be created \
             (leave `mode` out, or give `mode=rwc`)"
            .to_owned(),
        _ => "it cannot be read and written here (check its and its folder's permissions)".to_owned(),
    };
    DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
        "cannot open the SQLite database {}: {why}",
        path.display()
    )))
}

/// Opened after migrating: the counter's table must exist.
fn sqlite_key_epoch(url: &str) -> Result<KeyEpoch, DbErr> {
    KeyEpoch::sqlite(&sqlite_path(url)?)
        .map_err(|e| DbErr::Custom(format!("cannot read the API-key change counter: {e}")))
}

/// The file a `sqlite:` URL names.
pub fn sqlite_path(url: &str) -> Result<std::path::PathBuf, DbErr> {
    let options: SqliteConnectOptions = url.parse().map_err(|e| DbErr::Custom(format!("{url}: {e}")))?;
    Ok(options.get_filename().to_owned())
}

async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    counter: &StatementCounter,
) -> Result<DatabaseConnection, DbErr> {
    let url_sets_mode = url.contains("mode=");
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(acquire_timeout)
        .sqlx_logging(false)
        // Waiting for another process's lock is waiting for the database, like waiting
        // for a pooled connection: the same bound applies.
        .map_sqlx_sqlite_opts(move |o| {
            // A file named without a `mode` is created when missing, as the default URL's
            // is (`mode=rwc`); a `mode` given is kept (`rw`: the file must exist).
            let o = if url_sets_mode { o } else { o.create_if_missing(true) };
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(acquire_timeout)
        });
    if url.starts_with("sqlite:") {
        // A recycled connection would take an in-memory database with it. A file's
        // connection cannot be dropped by a peer, so it is not pinged before each use
        // (a round trip to its thread, as costly as the statement).
        options
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .test_before_acquire(false);
        options.map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|conn, _| Box::pin(async move { stable_plans(conn).await }))
        });
    } else {
        // Only a connection idle for a while is pinged before use; a busy one is not (the
        // ping is a network round trip per statement: 17–23% of small reads' throughput).
        // A busy connection that died fails its next statement, retryably, and is
        // replaced.
        options.test_before_acquire_if_idle_for(PING_AFTER_IDLE);
    }
    let mut conn = Database::connect(options).await?;
    let counter = counter.0.clone();
    conn.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee: a statement's plan no longer
/// depends on the values bound to it. Without it, a statement comparing a parameter with
/// a column that a partial index's condition involves is compiled again at every
/// execution (measured: 16% of a small read's CPU), which defeats the statement cache.
async fn stable_plans(conn: &mut SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: the handle is locked and open for the call; this option takes an int and
    // an optional out-pointer, passed as null.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db.as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sea_orm::sqlx::Error::Protocol(format!(
            "SQLite refused the query planner stability option (code {rc})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A server the pipelined connections cannot reach at start (here, none listens)
    /// leaves the entity reads on leased connections, instead of failing every read.
    #[tokio::test]
    async fn pipelines_that_cannot_open_at_start_are_not_used() {
        let unreachable = "postgres://postgres@127.0.0.1:1/tracegraph?sslmode=disable";
        let taken = super::Pipelines::for_url(unreachable, 1, Duration::from_secs(2));
        assert!(taken.is_some(), "the URL itself is one the pipelines take");
        assert!(
            super::pipelines(unreachable, 16, Duration::from_secs(2))
                .await
                .is_none()
        );
    }
}
