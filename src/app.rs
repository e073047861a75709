//! The application: connects and migrates the database, binds the listener, and
//! serves until shut down. Tests build it on port 0 and read the address back.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use sea_orm::{DbBackend, DbErr};
use tokio::net::TcpListener;

use crate::config::{Config, Limits};
use crate::db::{self, Db, StatementCounter, store};
use crate::graphql::{self, State};
use crate::http;
use crate::live::{self, LiveSpans};
use crate::ws::WsShutdown;

/// How long connections in use at shutdown get to come back before the pools close.
const DB_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long open WebSockets get to receive their `complete` messages at shutdown.
const WS_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(
        "refusing to serve {addr} without API keys: anyone who can reach it could read and write traces. \
         Create a key (`tracegraph keys create NAME --scope admin`), listen on a loopback address, \
         or pass --insecure"
    )]
    Insecure { addr: SocketAddr },
    #[error(
        "--max-request-spans ({request}) is below --max-tree-spans ({tree}): a trace of more than {request} \
         and at most {tree} spans could be read whole by no request. Raise --max-request-spans to at least \
         {tree}, or lower --max-tree-spans to at most {request}"
    )]
    SpanBounds { request: i64, tree: i64 },
    #[error("{0}")]
    Store(#[from] crate::error::AppError),
    #[error("{0}")]
    Prices(#[from] crate::prices::PriceFileError),
}

pub struct App {
    listener: TcpListener,
    router: axum::Router,
    db: Db,
    bridge: Option<live::postgres::Bridge>,
    ws_shutdown: WsShutdown,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        check_span_bounds(&config)?;
        let prices = std::sync::Arc::new(config.load_prices()?);
        let db = db::connect_with(&config.database_url, config.pool(config.db_max_connections)).await?;
        check_exposure(&config, &db).await?;
        let mut live = LiveSpans::with_buffer(config.live_buffer);
        let bridge = if db.backend() == DbBackend::Postgres {
            live = live.relayed();
            Some(live::postgres::spawn_bridge(config.database_url.clone(), db.clone(), live.clone()).await?)
        } else {
            None
        };
        let state = State {
            db: db.clone(),
            live,
            limits: Limits::from(&config),
            prices,
        };
        let api = graphql::build_api(state, &config);
        let ws_shutdown = WsShutdown::default();
        let router = http::router(api, db.clone(), &config, ws_shutdown.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            listener,
            router,
            db,
            bridge,
            ws_shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// SQL statements sent so far: what tests and benchmarks count.
    pub fn statements(&self) -> StatementCounter {
        self.db.statements.clone()
    }

    /// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr(), "tracegraph listening");
        let ws = self.ws_shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            // WebSockets are upgraded out of the server's reach: end them ourselves.
            ws.close_all(WS_SHUTDOWN_GRACE).await;
        };
        // Small writes (a live event, a short answer) go out at once, instead of waiting
        // for the previous one's acknowledgement, which a client may delay by 40 ms.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(bridge) = self.bridge {
            bridge.stop().await;
        }
        // Every request has ended; a connection still out (a stuck statement) is not
        // waited for past the grace.
        if tokio::time::timeout(DB_CLOSE_GRACE, self.db.close()).await.is_err() {
            tracing::warn!("database connections still in use at shutdown; closing them abruptly");
        }
        served
    }
}

/// A tree the request budget could never hold would pass one bound to be refused by the
/// other, with an error that does not say how to page it: refused at start instead.
fn check_span_bounds(config: &Config) -> Result<(), StartError> {
    if config.max_request_spans < config.max_tree_spans {
        return Err(StartError::SpanBounds {
            request: config.max_request_spans,
            tree: config.max_tree_spans,
        });
    }
    Ok(())
}

/// With no API key, only a loopback address is served, unless the operator insists.
async fn check_exposure(config: &Config, db: &Db) -> Result<(), StartError> {
    if config.listen.ip().is_loopback() || store::keys::any_active(&db.read).await? {
        return Ok(());
    }
    if !config.insecure {
        return Err(StartError::Insecure { addr: config.listen });
    }
    tracing::warn!(addr = %config.listen, "serving without API keys on a non-loopback address (--insecure)");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
