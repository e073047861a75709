//! PostgreSQL entity reads, pipelined. A statement sent alone wakes a database process,
//! and its answer wakes the server: on small reads that hop is most of the cost (perf:
//! half the server's time in the kernel, in socket wake-ups and context switches). Here
//! every request's reads share a few connections, and statements sent while others are
//! in flight go out together and are answered together (tokio-postgres pipelines
//! whatever is sent on one client). pgbench, W4a′'s statement prepared: PostgreSQL spent
//! 31–35 µs a read sent alone, 14–16 µs a read in pipelines of 8. wrk, W4a′ at 16
//! connections, TLS off on both: 18,189–19,119 requests/s on leased sqlx connections
//! against 30,096–33,017 on one pipelined client.
//!
//! A read goes to the connection with the fewest statements in flight, so a small read
//! waits behind a dashboard's tree read only when every connection is busy. A
//! connection found closed (the database restarted, the process was ended) is opened
//! again on its next read, and so is one on which a read just failed as lost; the
//! statements in flight on it failed as the connection ended, each once, retryably.
//!
//! The connections are opened with the settings sqlx settled for the URL: the URL's own,
//! then the environment's where it is silent (`PGHOST`, `PGDATABASE`, `PGSSLMODE`,
//! `PGPASSWORD`, `PGAPPNAME`, …) and a password from `~/.pgpass`, so both clients reach
//! the same server as the same user, with TLS and the certificate checked as sqlx does
//! it (`pg_tls`). Only what tokio-postgres cannot do as sqlx does keeps the leased
//! connections (`pg_connections`): `sslmode=allow`, a client certificate, or a first
//! connection that cannot be opened at start.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, pin_mut};
use sea_orm::sea_query::Values;
use sea_orm::sqlx::ConnectOptions;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
use sea_query_postgres::{PostgresValue, PostgresValues};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Row, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use url::Url;

use super::pg_tls::{self, Check};

/// Prepared statements kept per connection; past this, all are forgotten at once (the
/// reads' statements are a few dozen shapes, times the lengths of their `IN` lists).
const MAX_PREPARED: usize = 512;

pub struct Pipelines {
    config: Config,
    /// `None` in the clear.
    tls: Option<MakeRustlsConnect>,
    lanes: Vec<Lane>,
    connect_timeout: Duration,
    opened: AtomicU64,
}

#[derive(Default)]
struct Lane {
    open: tokio::sync::Mutex<Option<Arc<Open>>>,
    in_flight: AtomicUsize,
}

struct Open {
    client: Client,
    prepared: std::sync::Mutex<HashMap<String, Statement>>,
}

/// Counts a read as in flight on its lane while it lives.
struct InFlight<'l>(&'l Lane);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipelines {
    /// Pipelined reads for `url` on `lanes` connections, or `None` when tokio-postgres
    /// would not connect as sqlx does (the module's doc says when).
    pub fn for_url(url: &str, lanes: usize, connect_timeout: Duration) -> Option<Self> {
        let sqlx = PgConnectOptions::from_str(url).ok()?;
        // sqlx keeps the password and the certificates private; its lossy URL shows them.
        let settled = sqlx.to_url_lossy();
        let (config, check) = as_sqlx_settled(&sqlx, &settled)?;
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(
                tls_connector(&settled, check)
                    .inspect_err(|e| tracing::warn!(error = %e, "no TLS for pipelined reads"))
                    .ok()?,
            ),
        };
        Some(Self {
            config,
            tls,
            lanes: (0..lanes.max(1)).map(|_| Lane::default()).collect(),
            connect_timeout,
            opened: AtomicU64::new(0),
        })
    }

    /// The connections reads are spread over.
    pub fn connections(&self) -> usize {
        self.lanes.len()
    }

    /// Opens the first connection, so that a server these connections cannot reach as
    /// sqlx does (a TLS handshake one client's TLS takes and the other's refuses) is
    /// found at start rather than by every read.
    pub async fn open_first(&self) -> Result<(), DbErr> {
        self.open(&self.lanes[0]).await.map(drop)
    }

    /// Connections open with no statement in flight.
    pub fn idle(&self) -> usize {
        self.lanes
            .iter()
            .filter(|lane| lane.in_flight.load(Ordering::Relaxed) == 0)
            .filter(|lane| {
                lane.open
                    .try_lock()
                    .is_ok_and(|open| open.as_ref().is_some_and(|o| !o.client.is_closed()))
            })
            .count()
    }

    /// Connections opened since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Ends every connection: a dropped client tells the database it is leaving.
    pub async fn close(&self) {
        for lane in &self.lanes {
            lane.open.lock().await.take();
        }
    }

    /// Runs `sql` and hands each row to `read` until it says to stop (`false`). Rows left
    /// unread are drained by the connection, which stays open for the next read.
    pub async fn each_row(
        &self,
        sql: &str,
        values: Values,
        read: impl FnMut(&Row) -> Result<bool, DbErr>,
    ) -> Result<(), DbErr> {
        let lane = self.least_busy();
        let _in_flight = InFlight(lane);
        let open = self.open(lane).await?;
        let result = open.each_row(sql, values, read).await;
        if let Err(DbErr::ConnectionAcquire(_)) = &result {
            // Lost: the next read opens another at once, rather than after the
            // connection's task has noticed the end (reads sent before then fail too).
            let mut slot = lane.open.lock().await;
            if slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, &open)) {
                *slot = None;
            }
        }
        result
    }

    fn least_busy(&self) -> &Lane {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.in_flight.load(Ordering::Relaxed))
            .unwrap_or(&self.lanes[0]);
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        lane
    }

    async fn open(&self, lane: &Lane) -> Result<Arc<Open>, DbErr> {
        let mut slot = lane.open.lock().await;
        if let Some(open) = slot.as_ref().filter(|open| !open.client.is_closed()) {
            return Ok(open.clone());
        }
        let client = match &self.tls {
            Some(tls) => connect(&self.config, tls.clone(), self.connect_timeout).await?,
            None => connect(&self.config, NoTls, self.connect_timeout).await?,
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        let open = Arc::new(Open {
            client,
            prepared: std::sync::Mutex::default(),
        });
        *slot = Some(open.clone());
        Ok(open)
    }
}

/// A client whose connection runs on a task of its own until the client is dropped or
/// the database ends it.
async fn connect<T>(config: &Config, tls: T, wait: Duration) -> Result<Client, DbErr>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = tokio::time::timeout(wait, config.connect(tls))
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
        .map_err(read_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a pipelined read connection ended");
        }
    });
    Ok(client)
}

impl Open {
    async fn each_row(
        &self,
        sql: &str,
        values: Values,
        mut read: impl FnMut(&Row) -> Result<bool, DbErr>,
    ) -> Result<(), DbErr> {
        let statement = self.prepare(sql).await?;
        let values = PostgresValues(values.0.into_iter().map(PostgresValue).collect());
        let rows = self
            .client
            .query_raw(&statement, values.as_params())
            .await
            .map_err(read_error)?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            if !read(&row.map_err(read_error)?)? {
                break;
            }
        }
        Ok(())
    }

    async fn prepare(&self, sql: &str) -> Result<Statement, DbErr> {
        let known = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await.map_err(read_error)?;
        let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if prepared.len() >= MAX_PREPARED {
            prepared.clear();
        }
        prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// The connector for `check`. Only a check reads the root certificates, as only then
/// does sqlx: under `require` an unreadable `sslrootcert` is ignored.
fn tls_connector(settled: &Url, check: Check) -> Result<MakeRustlsConnect, String> {
    let roots = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => root_certificates(settled)?,
    };
    pg_tls::connector(check, roots.as_deref()).map_err(|e| e.to_string())
}

/// The PEM of the root certificates sqlx trusts beside the webpki roots: `sslrootcert`
/// from the URL or `PGSSLROOTCERT` from the environment, a file's name or the PEM itself,
/// as sqlx settled it (its lossy URL, `settled`, shows them). Were that form
/// to change, the text would be taken as PEM holding no certificate: fewer roots, and
/// the startup probe falls back to leased reads rather than trusting more.
fn root_certificates(settled: &Url) -> Result<Option<Vec<u8>>, String> {
    let Some((_, root)) = settled.query_pairs().find(|(key, _)| key == "sslrootcert") else {
        return Ok(None);
    };
    match root.strip_prefix("file: ") {
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("sslrootcert {path}: {e}")),
        None => Ok(Some(root.as_bytes().to_vec())),
    }
}

/// The connection sqlx would open, for tokio-postgres, from every setting as sqlx
/// settled it (`settled`: its lossy URL), and how much of the server's certificate to
/// check; `None` where tokio-postgres cannot connect as sqlx would.
fn as_sqlx_settled(sqlx: &PgConnectOptions, settled: &Url) -> Option<(Config, Check)> {
    // tokio-postgres has no checking modes: under them TLS is required, and the
    // connector checks the certificate as sqlx would.
    let (mut ssl_mode, check) = match sqlx.get_ssl_mode() {
        // Tries in the clear first, then TLS: a mode tokio-postgres does not have.
        PgSslMode::Allow => return None,
        PgSslMode::Disable => (SslMode::Disable, Check::Nothing),
        PgSslMode::Prefer => (SslMode::Prefer, Check::Nothing),
        PgSslMode::Require => (SslMode::Require, Check::Nothing),
        PgSslMode::VerifyCa => (SslMode::Require, Check::Chain),
        PgSslMode::VerifyFull => (SslMode::Require, Check::ChainAndName),
    };
    if settled
        .query_pairs()
        .any(|(key, _)| key == "sslcert" || key == "sslkey")
    {
        return None;
    }
    let mut config = Config::new();
    config.port(sqlx.get_port()).user(sqlx.get_username());
    // sqlx takes a socket named apart over the host, and a host that is a directory
    // (its default, where a socket is found there) as a socket.
    match sqlx.get_socket() {
        Some(directory) => config.host_path(directory),
        None if sqlx.get_host().starts_with('/') => config.host_path(sqlx.get_host()),
        None => config.host(sqlx.get_host()),
    };
    // PostgreSQL has no TLS on its Unix sockets, and tokio-postgres would ask for a
    // certificate's name even so; sqlx under `prefer` goes on in the clear.
    if matches!(config.get_hosts(), [Host::Unix(_)]) && ssl_mode == SslMode::Prefer {
        ssl_mode = SslMode::Disable;
    }
    config.ssl_mode(ssl_mode);
    if let Some(password) = settled.password() {
        let password = percent_encoding::percent_decode_str(password).decode_utf8().ok()?;
        config.password(password.as_bytes());
    }
    if let Some(database) = sqlx.get_database() {
        config.dbname(database);
    }
    if let Some(name) = sqlx.get_application_name() {
        config.application_name(name);
    }
    if let Some(options) = sqlx.get_options() {
        config.options(options);
    }
    Some((config, check))
}

/// A lost connection, or the database refusing work for now, is retryable (the same
/// SQLSTATE classes as `error::is_unavailable`); anything else is the statement's fault.
fn read_error(e: tokio_postgres::Error) -> DbErr {
    let unavailable = match e.code() {
        Some(code) => crate::error::postgres_unavailable(code.code()),
        None => e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
    };
    if unavailable {
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
    } else {
        DbErr::Query(RuntimeErr::Internal(e.to_string()))
    }
}

/// A row that does not decode as its model: a type error naming the column, as the
/// other readers report it.
pub fn decode_error(e: tokio_postgres::Error) -> DbErr {
    DbErr::Type(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sea_orm::sqlx::ConnectOptions;
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use tokio_postgres::config::{Host, SslMode};

    fn settled(url: &str) -> Option<tokio_postgres::Config> {
        let sqlx = PgConnectOptions::from_str(url).expect("sqlx reads the URL");
        super::as_sqlx_settled(&sqlx, &sqlx.to_url_lossy()).map(|(config, _)| config)
    }

    /// Every setting reaches tokio-postgres as sqlx settled it: the password through
    /// sqlx's lossy URL with its escaped characters decoded, the checking modes as
    /// `require` (the connector checks), a socket named beside a host as the socket.
    #[test]
    fn the_settings_sqlx_settled_reach_the_pipelines_whole() {
        let config = settled(
            "postgres://reader:p%40ss%20w%3Ard%2F@db.example:6543/traces?sslmode=verify-full\
             &application_name=dash&options=-c%20statement_timeout%3D5s",
        )
        .unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss w:rd/"[..]));
        assert_eq!(config.get_user(), Some("reader"));
        assert_eq!(config.get_hosts(), [Host::Tcp("db.example".into())]);
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_dbname(), Some("traces"));
        assert_eq!(config.get_application_name(), Some("dash"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5s"));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        let socket = settled("postgres://reader@localhost/traces?host=/var/run/postgresql&port=5433").unwrap();
        assert_eq!(socket.get_hosts(), [Host::Unix("/var/run/postgresql".into())]);
        assert_eq!(socket.get_ports(), [5433]);
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
        ] {
            let config = settled(&format!("postgres://reader@db.example/traces?sslmode={mode}")).unwrap();
            assert_eq!(config.get_ssl_mode(), expected, "{mode}");
        }
    }

    /// What tokio-postgres cannot do as sqlx would stays with sqlx.
    #[test]
    fn allow_and_client_certificates_are_not_taken() {
        for option in ["sslmode=allow", "sslcert=/tmp/client.pem", "sslkey=/tmp/client.key"] {
            let url = format!("postgres://reader@db.example/traces?{option}");
            assert!(settled(&url).is_none(), "{url}");
        }
    }
}
