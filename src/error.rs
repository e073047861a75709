//! The one error type of the API and the mapping of each case to its `extensions.code`.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use sea_orm::sqlx::error::DatabaseError;
use sea_orm::sqlx::sqlite::SqliteError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};
use uuid::Uuid;

/// The codes a client may see in `extensions.code`; never spelled elsewhere.
pub mod code {
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const CONFLICT: &str = "CONFLICT";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
    pub const OVERLOADED: &str = "OVERLOADED";
    pub const INTERNAL: &str = "INTERNAL";
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{field}: {reason}")]
    BadUserInput { field: String, reason: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: Uuid },
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {limit} limit exceeded ({actual} > {max})")]
    LimitExceeded {
        field: String,
        limit: &'static str,
        actual: u64,
        max: u64,
    },
    #[error(
        "{field}: trace {trace_id} has more than {max} spans, more than one answer reads whole; \
         read its spans a page at a time: `spans(filter: {{traceId: \"{trace_id}\"}}, limit: 500, offset: 0)`"
    )]
    TraceTooLarge {
        field: &'static str,
        trace_id: Uuid,
        max: u64,
    },
    #[error(
        "this request reads more than {max} spans of whole traces (`spans`, `rootSpans`, `children`); \
         ask for fewer traces (`limit`), or read a trace's spans a page at a time: \
         `spans(filter: {{traceId: \"…\"}}, limit: 500, offset: 0)`"
    )]
    RequestSpansExceeded { max: u64 },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the database is busy or unreachable; retry later")]
    Overloaded,
    #[error("live feed lagged by {0} events; resubscribe")]
    SubscriberLagged(u64),
    #[error("internal error")]
    Internal(#[source] Arc<DbErr>),
}

pub type AppResult<T> = Result<T, AppError>;

/// `extensions.limit` of `TraceTooLarge`.
const TREE_SPANS_LIMIT: &str = "spans of one trace read whole";
/// `extensions.limit` of `RequestSpansExceeded`.
const REQUEST_SPANS_LIMIT: &str = "spans of whole traces read by one request";

impl AppError {
    pub fn bad_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// `LimitExceeded` when `actual` is over `max`.
    pub fn within(field: impl Into<String>, limit: &'static str, actual: usize, max: usize) -> AppResult<()> {
        if actual <= max {
            return Ok(());
        }
        Err(Self::LimitExceeded {
            field: field.into(),
            limit,
            actual: actual as u64,
            max: max as u64,
        })
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } => code::BAD_USER_INPUT,
            Self::NotFound { .. } => code::NOT_FOUND,
            Self::Conflict(_) => code::CONFLICT,
            Self::LimitExceeded { .. }
            | Self::TraceTooLarge { .. }
            | Self::RequestSpansExceeded { .. }
            | Self::SubscriberLagged(_) => code::LIMIT_EXCEEDED,
            Self::Unauthenticated(_) => code::UNAUTHENTICATED,
            Self::Forbidden(_) => code::FORBIDDEN,
            Self::Overloaded => code::OVERLOADED,
            Self::Internal(_) => code::INTERNAL,
        }
    }

    /// Prefixes the field path, so a batch error names the item: `inputs[3].parentId`.
    pub fn at(self, prefix: &str) -> Self {
        let join = |field: String| {
            if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match self {
            Self::BadUserInput { field, reason } => Self::BadUserInput {
                field: join(field),
                reason,
            },
            Self::LimitExceeded {
                field,
                limit,
                actual,
                max,
            } => Self::LimitExceeded {
                field: join(field),
                limit,
                actual,
                max,
            },
            other => other,
        }
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if is_pool_timeout(&err) {
            return Self::Overloaded;
        }
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Self::Conflict("a record with this id already exists with other content".into());
        }
        Self::Internal(Arc::new(err))
    }
}

/// Errors that mean "no database right now" rather than a fault in the request: a full
/// pool or a lost connection. The client may retry them.
fn is_pool_timeout(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::Io(_) | Sqlx::WorkerCrashed => true,
            Sqlx::Database(db) => is_unavailable(db.as_ref()),
            _ => false,
        },
        _ => false,
    }
}

/// SQLite's "busy"/"locked" (another process holds the file past the wait),
/// PostgreSQL's connection-exception and shutdown classes, and its deadlock and
/// serialization failures (the transaction was rolled back whole; a retry succeeds).
/// Each engine's codes are read as its own: a PostgreSQL SQLSTATE may be all digits, and
/// read as a SQLite code 22021 (text that is not UTF-8) would be "busy" (22021 & 0xff = 5).
fn is_unavailable(err: &dyn DatabaseError) -> bool {
    let Some(code) = err.code() else {
        return false;
    };
    if err.try_downcast_ref::<SqliteError>().is_some() {
        return code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
    }
    postgres_unavailable(&code)
}

/// PostgreSQL's connection-exception and shutdown classes, deadlock and serialization
/// failure: the SQLSTATEs a retry can get past.
pub fn postgres_unavailable(code: &str) -> bool {
    matches!(code, "40P01" | "40001") || code.starts_with("08") || code.starts_with("57P")
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if let Self::Internal(source) = self {
            tracing::error!(error = %source, "internal error");
        }
        let code = self.code();
        let mut err = async_graphql::Error::new(self.to_string());
        err = err.extend_with(|_, ext| ext.set("code", code));
        match self {
            Self::BadUserInput { field, .. } => err.extend_with(|_, ext| ext.set("field", field.as_str())),
            Self::LimitExceeded { field, limit, max, .. } => err.extend_with(|_, ext| {
                ext.set("field", field.as_str());
                ext.set("limit", *limit);
                ext.set("max", *max);
            }),
            Self::TraceTooLarge { field, max, .. } => err.extend_with(|_, ext| {
                ext.set("field", *field);
                ext.set("limit", TREE_SPANS_LIMIT);
                ext.set("max", *max);
            }),
            Self::RequestSpansExceeded { max } => err.extend_with(|_, ext| {
                ext.set("limit", REQUEST_SPANS_LIMIT);
                ext.set("max", *max);
            }),
            _ => err,
        }
    }
}
