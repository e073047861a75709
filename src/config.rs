//! Server settings: one struct gives the command-line flags and the `TRACEGRAPH_*`
//! environment variables, with named defaults.

use std::net::SocketAddr;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tracegraph.db?mode=rwc";
/// Large prompts and RAG contexts are normal in agent traces.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_BATCH_SPANS: usize = 1000;
/// A trace's tree of ten thousand spans is about 10 MB to hold while it is answered
/// (texts left out); a dashboard's page of fifty ordinary traces, a megabyte.
pub const DEFAULT_MAX_TREE_SPANS: i64 = 10_000;
/// Five trees of the largest size: about 50 MB for one request, however many traces its
/// page holds.
pub const DEFAULT_MAX_REQUEST_SPANS: i64 = 50_000;
/// Room for a full `addSpans` batch of large spans.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a database connection before it is told to retry.
pub const DEFAULT_DB_ACQUIRE_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_QUERY_DEPTH: usize = 24;
/// A page of 50 traces with three levels of spans costs about 50,000.
pub const DEFAULT_QUERY_COMPLEXITY: usize = 500_000;
pub const DEFAULT_QUERY_TOKENS: usize = 20_000;
pub const DEFAULT_QUERY_ALIASES: usize = 50;
pub const DEFAULT_QUERY_ROOT_FIELDS: usize = 20;
pub const DEFAULT_QUERY_DIRECTIVES: usize = 50;
pub const DEFAULT_LIVE_BUFFER: usize = crate::live::SUBSCRIBER_BUFFER;
pub const DEFAULT_WS_INIT_TIMEOUT_MS: u64 = 3000;
pub const DEFAULT_WS_KEEPALIVE_SECS: u64 = 15;
pub const DEFAULT_WS_MAX_SUBSCRIPTIONS: usize = 100;
/// One WebSocket message; a GraphQL subscribe frame is small.
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_WS_MAX_PER_KEY: usize = 50;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// GraphQL requests executing at once: past a few per core, more only hold more
/// memory (a dashboard page holds about a megabyte while it resolves).
pub fn default_concurrent_requests() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}
pub const MAX_PAGE_LIMIT: i64 = 500;
pub const MAX_NAME_BYTES: usize = 1024;

/// A limit, size, period or batch where 0 would refuse every request (or spin): refused
/// when the command starts, naming its flag, rather than serving or loading nothing.
pub fn at_least_one<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let n: u64 = text.trim().parse().map_err(|e| format!("not a whole number ({e})"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    T::try_from(n).map_err(|_| "is too large".into())
}

/// A database URL of an engine tracegraph speaks; any other is refused when the command
/// starts, naming the two, rather than by the driver's "no supporting driver".
pub fn database_url(text: &str) -> Result<String, String> {
    const ENGINES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];
    if ENGINES.iter().any(|scheme| text.starts_with(scheme)) {
        Ok(text.to_owned())
    } else {
        Err(
            "tracegraph stores its data in SQLite (`sqlite://FILE`, `sqlite::memory:`) \
             or PostgreSQL (`postgres://user@host/db`)"
                .into(),
        )
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TRACEGRAPH_LISTEN", default_value = DEFAULT_LISTEN, global = true)]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://FILE` (created if missing, unless the URL gives a `mode`
    /// such as `mode=rw`), `sqlite::memory:`, or `postgres://user@host/db`.
    #[arg(long, env = "TRACEGRAPH_DATABASE_URL", value_parser = database_url, default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Model prices (TOML, or JSON by extension) over the built-in table, for LLM spans
    /// that report tokens but no cost.
    #[arg(long, env = "TRACEGRAPH_PRICES", global = true)]
    pub prices: Option<std::path::PathBuf>,

    /// Largest accepted text field (input, output, error, metadata), in bytes.
    #[arg(long, env = "TRACEGRAPH_MAX_TEXT_BYTES", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_MAX_TEXT_BYTES, global = true)]
    pub max_text_bytes: usize,

    /// Most items in one batch: spans in `addSpans`, traces in `createTraces` and `endTraces`.
    #[arg(long, env = "TRACEGRAPH_MAX_BATCH_SPANS", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_MAX_BATCH_SPANS, global = true)]
    pub max_batch_spans: usize,

    /// Most spans of one trace an answer reads whole (`Trace.spans`, `rootSpans`,
    /// `children`): a larger trace is refused there, and read a page at a time through
    /// `spans(filter: {traceId})`.
    #[arg(long, env = "TRACEGRAPH_MAX_TREE_SPANS", value_parser = at_least_one::<i64>, default_value_t = DEFAULT_MAX_TREE_SPANS, global = true)]
    pub max_tree_spans: i64,

    /// Most spans of whole traces one request reads, over all its `spans`, `rootSpans`
    /// and `children` fields: a dashboard page of many large traces is refused past it.
    #[arg(long, env = "TRACEGRAPH_MAX_REQUEST_SPANS", value_parser = at_least_one::<i64>, default_value_t = DEFAULT_MAX_REQUEST_SPANS, global = true)]
    pub max_request_spans: i64,

    /// Largest accepted HTTP request body, in bytes.
    #[arg(long, env = "TRACEGRAPH_MAX_BODY_BYTES", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_MAX_BODY_BYTES, global = true)]
    pub max_body_bytes: usize,

    /// Size of the database connection pool (SQLite writes always use one connection).
    #[arg(long, env = "TRACEGRAPH_DB_MAX_CONNECTIONS", value_parser = at_least_one::<u32>, default_value_t = DEFAULT_DB_MAX_CONNECTIONS, global = true)]
    pub db_max_connections: u32,

    /// SQLite: bytes of the database file, in MiB, that each read connection maps into
    /// memory instead of reading page by page (0: none). Reads get faster (no system call
    /// and copy per page missing from SQLite's cache), but every page a connection
    /// touches then counts in the process's resident set, once per connection.
    #[arg(long, env = "TRACEGRAPH_SQLITE_MMAP_MB", default_value_t = 0, global = true)]
    pub sqlite_mmap_mb: u64,

    /// How long a request waits for a free database connection, in milliseconds, before
    /// it gets `OVERLOADED` (HTTP 503 with `Retry-After`).
    #[arg(long, env = "TRACEGRAPH_DB_ACQUIRE_TIMEOUT_MS", value_parser = at_least_one::<u64>, default_value_t = DEFAULT_DB_ACQUIRE_TIMEOUT_MS, global = true)]
    pub db_acquire_timeout_ms: u64,

    /// Deepest accepted query nesting.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_DEPTH", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_QUERY_DEPTH, global = true)]
    pub max_query_depth: usize,

    /// Highest accepted query complexity.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_COMPLEXITY", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_QUERY_COMPLEXITY, global = true)]
    pub max_query_complexity: usize,

    /// Most lexical tokens in one query document.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_TOKENS", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_QUERY_TOKENS, global = true)]
    pub max_query_tokens: usize,

    /// Most aliases in one query document.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_ALIASES", default_value_t = DEFAULT_QUERY_ALIASES, global = true)]
    pub max_query_aliases: usize,

    /// Most fields at the top of one operation.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_ROOT_FIELDS", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_QUERY_ROOT_FIELDS, global = true)]
    pub max_query_root_fields: usize,

    /// Most directives in one query document.
    #[arg(long, env = "TRACEGRAPH_MAX_QUERY_DIRECTIVES", default_value_t = DEFAULT_QUERY_DIRECTIVES, global = true)]
    pub max_query_directives: usize,

    /// Live events a subscriber may fall behind by before its subscription ends with an error.
    #[arg(long, env = "TRACEGRAPH_LIVE_BUFFER", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_LIVE_BUFFER, global = true)]
    pub live_buffer: usize,

    /// How long a WebSocket client has to send `connection_init`, in milliseconds.
    #[arg(long, env = "TRACEGRAPH_WS_INIT_TIMEOUT_MS", value_parser = at_least_one::<u64>, default_value_t = DEFAULT_WS_INIT_TIMEOUT_MS, global = true)]
    pub ws_init_timeout_ms: u64,

    /// Seconds between keep-alive pings on an idle WebSocket.
    #[arg(long, env = "TRACEGRAPH_WS_KEEPALIVE_SECS", value_parser = at_least_one::<u64>, default_value_t = DEFAULT_WS_KEEPALIVE_SECS, global = true)]
    pub ws_keepalive_secs: u64,

    /// Most subscriptions open at once on one WebSocket connection.
    #[arg(long, env = "TRACEGRAPH_WS_MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_WS_MAX_SUBSCRIPTIONS, global = true)]
    pub ws_max_subscriptions: usize,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "TRACEGRAPH_WS_MAX_MESSAGE_BYTES", value_parser = at_least_one::<usize>, default_value_t = DEFAULT_WS_MAX_MESSAGE_BYTES, global = true)]
    pub ws_max_message_bytes: usize,

    /// Most WebSocket connections open at once with one API key.
    #[arg(long, env = "TRACEGRAPH_WS_MAX_PER_KEY", default_value_t = DEFAULT_WS_MAX_PER_KEY, global = true)]
    pub ws_max_per_key: usize,

    /// Serve without API keys on a non-loopback address (refused otherwise).
    #[arg(long, env = "TRACEGRAPH_INSECURE", global = true)]
    pub insecure: bool,

    /// Longest a GraphQL request may run, in milliseconds; past it the request is
    /// refused with `LIMIT_EXCEEDED` and its writes are rolled back.
    #[arg(long, env = "TRACEGRAPH_REQUEST_TIMEOUT_MS", value_parser = at_least_one::<u64>, default_value_t = DEFAULT_REQUEST_TIMEOUT_MS, global = true)]
    pub request_timeout_ms: u64,

    /// Most GraphQL requests executing at once; more wait their turn (within the request
    /// timeout). Subscriptions are not counted.
    #[arg(long, env = "TRACEGRAPH_MAX_CONCURRENT_REQUESTS", value_parser = at_least_one::<usize>, default_value_t = default_concurrent_requests(), global = true)]
    pub max_concurrent_requests: usize,

    /// Do not serve GraphiQL (production deployments).
    #[arg(long, env = "TRACEGRAPH_DISABLE_GRAPHIQL", global = true)]
    pub disable_graphiql: bool,

    /// Refuse introspection queries (production deployments).
    #[arg(long, env = "TRACEGRAPH_DISABLE_INTROSPECTION", global = true)]
    pub disable_introspection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            database_url: DEFAULT_DATABASE_URL.into(),
            prices: None,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            max_batch_spans: DEFAULT_MAX_BATCH_SPANS,
            max_tree_spans: DEFAULT_MAX_TREE_SPANS,
            max_request_spans: DEFAULT_MAX_REQUEST_SPANS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            db_acquire_timeout_ms: DEFAULT_DB_ACQUIRE_TIMEOUT_MS,
            sqlite_mmap_mb: 0,
            max_query_depth: DEFAULT_QUERY_DEPTH,
            max_query_complexity: DEFAULT_QUERY_COMPLEXITY,
            max_query_tokens: DEFAULT_QUERY_TOKENS,
            max_query_aliases: DEFAULT_QUERY_ALIASES,
            max_query_root_fields: DEFAULT_QUERY_ROOT_FIELDS,
            max_query_directives: DEFAULT_QUERY_DIRECTIVES,
            live_buffer: DEFAULT_LIVE_BUFFER,
            ws_init_timeout_ms: DEFAULT_WS_INIT_TIMEOUT_MS,
            ws_keepalive_secs: DEFAULT_WS_KEEPALIVE_SECS,
            ws_max_subscriptions: DEFAULT_WS_MAX_SUBSCRIPTIONS,
            ws_max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
            ws_max_per_key: DEFAULT_WS_MAX_PER_KEY,
            insecure: false,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_concurrent_requests: default_concurrent_requests(),
            disable_graphiql: false,
            disable_introspection: false,
        }
    }
}

impl Config {
    /// The price table: built in, with the `--prices` file over it.
    pub fn load_prices(&self) -> Result<crate::prices::Prices, crate::prices::PriceFileError> {
        match &self.prices {
            Some(path) => crate::prices::Prices::with_file(path),
            None => Ok(crate::prices::Prices::default()),
        }
    }

    /// The database pool these settings ask for, of `max_connections` (a command of the
    /// CLI needs one; the server, `db_max_connections`).
    pub fn pool(&self, max_connections: u32) -> crate::db::PoolOptions {
        crate::db::PoolOptions {
            max_connections,
            acquire_timeout: std::time::Duration::from_millis(self.db_acquire_timeout_ms.max(1)),
            sqlite_mmap_bytes: self.sqlite_mmap_mb.saturating_mul(1 << 20),
        }
    }

    pub fn ws_settings(&self) -> crate::ws::WsSettings {
        crate::ws::WsSettings {
            init_timeout: std::time::Duration::from_millis(self.ws_init_timeout_ms),
            keepalive: std::time::Duration::from_secs(self.ws_keepalive_secs.max(1)),
            max_subscriptions: self.ws_max_subscriptions,
            max_message_bytes: self.ws_max_message_bytes,
        }
    }
}

/// The input limits the write path checks, split off so that store code does not see the rest.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_batch_spans: usize,
    pub max_tree_spans: i64,
    pub max_request_spans: i64,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Self {
            max_text_bytes: config.max_text_bytes,
            max_batch_spans: config.max_batch_spans,
            max_tree_spans: config.max_tree_spans,
            max_request_spans: config.max_request_spans,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{at_least_one, database_url};

    #[test]
    fn a_database_url_names_sqlite_or_postgresql() {
        for url in [
            "sqlite://a.db",
            "sqlite:a.db",
            "sqlite::memory:",
            "postgres://u@h/d",
            "postgresql://h/d",
        ] {
            assert_eq!(database_url(url).as_deref(), Ok(url));
        }
        for url in ["mysql://root@h/d", "", "a.db", "http://x", " sqlite://a.db"] {
            let refused = database_url(url).unwrap_err();
            assert!(
                refused.contains("SQLite") && refused.contains("PostgreSQL"),
                "{url}: {refused}"
            );
        }
    }

    #[test]
    fn a_setting_that_must_be_positive_takes_only_whole_numbers_that_fit() {
        assert_eq!(at_least_one::<u32>("7"), Ok(7));
        assert_eq!(at_least_one::<u32>(" 7 "), Ok(7));
        assert_eq!(at_least_one::<u32>("0"), Err("must be at least 1".to_owned()));
        assert_eq!(at_least_one::<u32>("99999999999"), Err("is too large".to_owned()));
        for bad in ["-1", "1.5", "x", ""] {
            let refused = at_least_one::<usize>(bad).unwrap_err();
            assert!(refused.starts_with("not a whole number"), "{bad}: {refused}");
        }
    }
}
