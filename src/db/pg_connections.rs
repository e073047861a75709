//! PostgreSQL connections for entity reads, lent out without sqlx's pool. sqlx's pool
//! pings every connection as it comes back, whatever the statement was (a second round
//! trip per read: perf put it at an eighth of the server's CPU on small reads, and the
//! database serves each ping too). It does so to catch a connection left mid-protocol
//! by a cancelled statement. Here a connection goes back only when its statement ran
//! to the end without error; one given up earlier (a cancelled request, an error) is
//! closed instead. As in the shared pool, a connection idle for `PING_AFTER_IDLE` is
//! pinged before its next use, so a restarted database is noticed before a request.
//! One idle for `CLOSE_AFTER_IDLE` is closed, as the shared pool closes its own, so a
//! burst of reads does not keep its database processes for good.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{ConnectOptions, Connection};
use sea_orm::{ConnAcquireErr, DbErr};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::PING_AFTER_IDLE;

/// sqlx's pool closes a connection idle this long; leased ones go the same way. Checked
/// whenever a connection is lent or comes back: a server with no reads at all keeps
/// what it had.
pub const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct ReadConnections {
    options: PgConnectOptions,
    /// Connections back from a finished statement, with when they came back; the most
    /// recent is lent first, so a quiet spell leaves the rest idle long enough to ping
    /// (and the longest idle are first).
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    close_after_idle: Duration,
    /// One per connection that may be open at once.
    permits: Semaphore,
    acquire_timeout: Duration,
    opened: AtomicU64,
}

/// A connection lent for one statement. Dropped without `finish`, it is closed.
pub struct Lease<'p> {
    from: &'p ReadConnections,
    connection: Option<PgConnection>,
    _permit: SemaphorePermit<'p>,
    finished: bool,
}

impl ReadConnections {
    /// At most `max` connections to `url`; a lease waits at most `acquire_timeout`.
    pub fn new(url: &str, max: u32, acquire_timeout: Duration) -> Result<Self, DbErr> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| DbErr::Custom(format!("{url}: {e}")))?
            .disable_statement_logging();
        Ok(Self {
            options,
            idle: Mutex::default(),
            permits: Semaphore::new(max.max(1) as usize),
            acquire_timeout,
            opened: AtomicU64::new(0),
            close_after_idle: CLOSE_AFTER_IDLE,
        })
    }

    /// Closes connections idle for `after` instead of `CLOSE_AFTER_IDLE`.
    pub fn closing_after_idle(mut self, after: Duration) -> Self {
        self.close_after_idle = after;
        self
    }

    /// Ends the idle connections as a client should, with a Terminate message: dropped,
    /// a connection's socket just closes, and PostgreSQL logs each as a connection lost.
    /// Lent ones still end as their leases drop.
    pub async fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for (connection, _) in idle {
            if let Err(e) = connection.close().await {
                tracing::debug!(error = %e, "closing a read connection");
            }
        }
    }

    /// Connections open and not lent out now.
    pub fn idle(&self) -> usize {
        self.idle_connections().len()
    }

    /// The idle connections, the ones idle past `close_after_idle` closed first.
    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stale = idle.partition_point(|(_, since)| since.elapsed() >= self.close_after_idle);
        // Dropping a connection closes its socket; its database process then ends.
        idle.drain(..stale);
        idle
    }

    /// Connections opened so far (a connection is reused until it fails or is dropped).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// A connection, waiting for a free one (or connecting) at most `acquire_timeout`:
    /// past it, or when the database cannot be reached, an acquire error (OVERLOADED).
    pub async fn lease(&self) -> Result<Lease<'_>, DbErr> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))?;
        let connection = loop {
            let idle = self.idle_connections().pop();
            match idle {
                Some((connection, since)) if since.elapsed() < PING_AFTER_IDLE => break connection,
                Some((mut connection, _)) => {
                    // A connection that fails its ping is dropped; the next one is tried.
                    if tokio::time::timeout_at(deadline, connection.ping())
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        break connection;
                    }
                }
                None => break self.connect(deadline).await?,
            }
        };
        Ok(Lease {
            from: self,
            connection: Some(connection),
            _permit: permit,
            finished: false,
        })
    }

    async fn connect(&self, deadline: tokio::time::Instant) -> Result<PgConnection, DbErr> {
        let connection = tokio::time::timeout_at(deadline, PgConnection::connect_with(&self.options))
            .await
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot connect to PostgreSQL for a read");
                DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
            })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(connection)
    }
}

impl Lease<'_> {
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// The statement ran to its end: the connection may serve the next one.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.finished
        {
            self.from.idle_connections().push((connection, Instant::now()));
        }
        // Unfinished: the connection is dropped here, which closes its socket.
    }
}
