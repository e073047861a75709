//! SQLite reads run in place, on the calling thread, through rusqlite connections of
//! their own. sqlx runs each SQLite connection on a thread of its own: every statement
//! is handed to that thread and its rows handed back one by one. For the small reads
//! that make up most requests, perf showed those hand-offs (futex waits and wake-ups,
//! scheduling) costing more CPU than the statements themselves.
//!
//! SeaORM still builds every statement, and each row becomes the entity's model through
//! its active model, typed by the entity's own column definitions. Only entity reads
//! come here (see `reads::Fetch`); aggregates and writes keep sqlx. The connections are
//! `query_only`.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
use sea_orm::sea_query::Value;
use sea_orm::{ConnAcquireErr, DbErr, EntityTrait, RuntimeErr, Statement, TryIntoModel};

use super::StatementCounter;
use super::row_models::{Columns, Kind};

/// Prepared statements kept per connection: every distinct read the API makes, with room.
const STATEMENT_CACHE: usize = 128;
/// Column mappings kept (see `SqliteReader::columns`), for as many statements.
const COLUMN_MAPS: usize = 4 * STATEMENT_CACHE;
/// The longest a read waits on another process's lock (rare in WAL: a recovery, a
/// truncating checkpoint). It waits on a request thread, so it answers OVERLOADED
/// (retryable) soon rather than hold the thread for the whole acquire timeout.
const MAX_BUSY_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    /// How long a read waits for another process's lock before it is OVERLOADED.
    busy_wait: Duration,
    /// Connections not in use. A read holds one only while it runs, without awaiting,
    /// so there are never more in use than threads running reads.
    idle: Mutex<Vec<rusqlite::Connection>>,
    max_idle: usize,
    /// How much of the file each connection maps into memory (`mmap_size`; 0: none).
    mmap_bytes: u64,
    statements: StatementCounter,
    /// Each entity read's result columns matched to its entity's, by statement: matching
    /// them by name (SQLite's names, then a search of the entity's) cost a read of a few
    /// trace rows about as much as decoding them.
    columns: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl SqliteReader {
    /// Reads the migrated SQLite file at `path`; fails at once if it cannot be opened.
    pub fn open(
        path: &Path,
        busy_wait: Duration,
        max_idle: usize,
        mmap_bytes: u64,
        statements: StatementCounter,
    ) -> Result<Self, DbErr> {
        let reader = Self {
            path: path.to_owned(),
            busy_wait: busy_wait.min(MAX_BUSY_WAIT),
            idle: Mutex::default(),
            max_idle: max_idle.max(1),
            mmap_bytes,
            statements,
            columns: Mutex::default(),
        };
        let first = reader.connect().map_err(|e| query_error(&e))?;
        reader.give_back(first);
        Ok(reader)
    }

    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        use rusqlite::config::DbConfig;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_wait)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if self.mmap_bytes > 0 {
            // SQLite caps it at its compiled maximum (2 GB here) by itself.
            conn.pragma_update(None, "mmap_size", i64::try_from(self.mmap_bytes).unwrap_or(i64::MAX))?;
        }
        // As on the sqlx connections: a plan that does not depend on bound values, so the
        // statement cache holds (see `db::stable_plans`).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn take(&self) -> rusqlite::Result<rusqlite::Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    fn with_connection<T>(&self, run: impl FnOnce(&rusqlite::Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        self.statements.add_one();
        let conn = self.take().map_err(|e| query_error(&e))?;
        let result = run(&conn);
        self.give_back(conn);
        result
    }

    /// Runs `statement` (built by SeaORM for SQLite) and reads each of its first `at_most`
    /// rows as a model of `E`. Result columns are matched to the entity's by name; every
    /// column of the model must be among them.
    pub fn models<E>(&self, statement: &Statement, at_most: usize) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        self.with_connection(|conn| {
            let mut prepared = prepare(conn, statement)?;
            let columns = self.columns_of::<E>(&statement.sql, &prepared);
            let mut rows = prepared.raw_query();
            let mut models = Vec::new();
            while models.len() < at_most
                && let Some(row) = rows.next().map_err(|e| query_error(&e))?
            {
                models.push(
                    columns
                        .model(|index, kind| Ok(cell_value(kind, row.get_ref(index).map_err(|e| query_error(&e))?)))?,
                );
            }
            Ok(models)
        })
    }

    /// How the result columns of `sql` (prepared as `prepared`) map onto `E`'s.
    fn columns_of<E: EntityTrait>(&self, sql: &str, prepared: &rusqlite::Statement<'_>) -> Arc<Columns<E>> {
        let known = self.columns.lock().unwrap_or_else(|e| e.into_inner()).get(sql).cloned();
        // A statement names its table, so it reads one entity; another is matched anew,
        // as is a statement whose columns changed (a column added by another process).
        if let Some(columns) = known.and_then(|c| c.downcast::<Columns<E>>().ok())
            && columns.len() == prepared.column_count()
        {
            return columns;
        }
        let columns = Arc::new(Columns::<E>::by_name(prepared.column_names()));
        let mut known = self.columns.lock().unwrap_or_else(|e| e.into_inner());
        // Statements differ by their filters and `IN` lists, a bounded but large set:
        // the cache starts again rather than grow past what the statement caches hold.
        if known.len() >= COLUMN_MAPS {
            known.clear();
        }
        known.insert(sql.to_owned(), columns.clone());
        columns
    }

    /// Runs any read and returns its rows as SQLite holds them: for a raw-SQL comparison
    /// on the very connections the server reads through.
    pub fn raw_rows(&self, statement: &Statement) -> Result<Vec<Vec<Sql>>, DbErr> {
        self.with_connection(|conn| {
            let mut prepared = prepare(conn, statement)?;
            let width = prepared.column_count();
            let mut rows = prepared.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| query_error(&e))? {
                let cells = (0..width)
                    .map(|i| row.get::<_, Sql>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| query_error(&e))?;
                out.push(cells);
            }
            Ok(out)
        })
    }

    /// The integer a one-value read (a `COUNT(*)`, a counter) returns in its first row.
    pub fn integer(&self, statement: &Statement) -> Result<i64, DbErr> {
        self.with_connection(|conn| {
            let mut prepared = prepare(conn, statement)?;
            let mut rows = prepared.raw_query();
            let row = rows
                .next()
                .map_err(|e| query_error(&e))?
                .ok_or_else(|| DbErr::RecordNotFound(format!("no row from {}", statement.sql)))?;
            row.get(0).map_err(|e| query_error(&e))
        })
    }
}

fn prepare<'c>(conn: &'c rusqlite::Connection, statement: &Statement) -> Result<rusqlite::CachedStatement<'c>, DbErr> {
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(|e| query_error(&e))?;
    if let Some(values) = &statement.values {
        for (index, value) in values.0.iter().enumerate() {
            let sql = to_sql(value).ok_or_else(|| DbErr::Type(format!("cannot bind {value:?} for SQLite")))?;
            prepared
                .raw_bind_parameter(index + 1, ToSqlOutput::Owned(sql))
                .map_err(|e| query_error(&e))?;
        }
    }
    Ok(prepared)
}

/// A bound value, stored as sqlx stores it (so comparisons with written rows hold):
/// UUIDs as 16-byte blobs, times as RFC 3339 text, JSON as text, booleans as 0 or 1.
fn to_sql(value: &Value) -> Option<Sql> {
    let sql = match value {
        Value::Bool(v) => v.map(|b| Sql::Integer(b.into())),
        Value::TinyInt(v) => v.map(|i| Sql::Integer(i.into())),
        Value::SmallInt(v) => v.map(|i| Sql::Integer(i.into())),
        Value::Int(v) => v.map(|i| Sql::Integer(i.into())),
        Value::BigInt(v) => v.map(Sql::Integer),
        Value::TinyUnsigned(v) => v.map(|i| Sql::Integer(i.into())),
        Value::SmallUnsigned(v) => v.map(|i| Sql::Integer(i.into())),
        Value::Unsigned(v) => v.map(|i| Sql::Integer(i.into())),
        Value::BigUnsigned(v) => match v {
            Some(i) => Some(Sql::Integer(i64::try_from(*i).ok()?)),
            None => None,
        },
        Value::Float(v) => v.map(|f| Sql::Real(f.into())),
        Value::Double(v) => v.map(Sql::Real),
        Value::String(v) => v.clone().map(Sql::Text),
        Value::Char(v) => v.map(|c| Sql::Text(c.to_string())),
        Value::Bytes(v) => v.clone().map(Sql::Blob),
        Value::Uuid(v) => v.map(|u| Sql::Blob(u.as_bytes().to_vec())),
        Value::ChronoDateTimeUtc(v) => v.map(|t| Sql::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))),
        Value::ChronoDateTimeWithTimeZone(v) => v.map(|t| Sql::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))),
        Value::Json(v) => match v {
            Some(json) => Some(Sql::Text(serde_json::to_string(json).ok()?)),
            None => None,
        },
        _ => return None,
    };
    Some(sql.unwrap_or(Sql::Null))
}

/// A stored cell as a value of `kind`, whatever SQLite stored; `None` when it cannot be
/// read as that kind.
fn cell_value(kind: Kind, cell: ValueRef<'_>) -> Option<Value> {
    use ValueRef as C;
    let utf8 = |t: &[u8]| std::str::from_utf8(t).ok().map(str::to_owned);
    let value = match (kind, cell) {
        (Kind::Uuid, C::Null) => Value::Uuid(None),
        (Kind::Uuid, C::Blob(b)) => Value::Uuid(Some(uuid::Uuid::from_slice(b).ok()?)),
        (Kind::Uuid, C::Text(t)) => Value::Uuid(Some(utf8(t)?.parse().ok()?)),
        (Kind::Time, C::Null) => Value::ChronoDateTimeUtc(None),
        (Kind::Time, C::Text(t)) => Value::ChronoDateTimeUtc(Some(parse_time(&utf8(t)?)?)),
        (Kind::Json, C::Null) => Value::Json(None),
        (Kind::Json, C::Text(t) | C::Blob(t)) => Value::Json(Some(Box::new(serde_json::from_slice(t).ok()?))),
        (Kind::Bool, C::Null) => Value::Bool(None),
        (Kind::Bool, C::Integer(i)) => Value::Bool(Some(i != 0)),
        (Kind::Integer, C::Null) => Value::BigInt(None),
        (Kind::Integer, C::Integer(i)) => Value::BigInt(Some(i)),
        (Kind::Real, C::Null) => Value::Double(None),
        (Kind::Real, C::Integer(i)) => Value::Double(Some(i as f64)),
        (Kind::Real, C::Real(f)) => Value::Double(Some(f)),
        (Kind::Text, C::Null) => Value::String(None),
        (Kind::Text, C::Text(t)) => Value::String(Some(utf8(t)?)),
        (Kind::Blob, C::Null) => Value::Bytes(None),
        (Kind::Blob, C::Blob(b)) => Value::Bytes(Some(b.to_vec())),
        _ => return None,
    };
    Some(value)
}

/// Times as sqlx writes them (RFC 3339), or as SQLite's own functions do (`%F %T`).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%F %T%.f", "%FT%T%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc())
}

fn query_error(e: &rusqlite::Error) -> DbErr {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        // Another process held the file past the wait: retryable, like a full pool.
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        _ => DbErr::Query(RuntimeErr::Internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_values_are_stored_as_sqlx_stores_them() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(to_sql(&Value::Uuid(Some(id))), Some(Sql::Blob(id.as_bytes().to_vec())));
        let t: DateTime<Utc> = "2026-11-03T12:02:03.609851Z".parse().unwrap();
        assert_eq!(
            to_sql(&Value::ChronoDateTimeUtc(Some(t))),
            Some(Sql::Text("2026-11-03T12:02:03.609851+00:00".into()))
        );
        assert_eq!(to_sql(&Value::Bool(Some(true))), Some(Sql::Integer(1)));
        assert_eq!(to_sql(&Value::String(None)), Some(Sql::Null));
    }

    #[test]
    fn cells_read_back_as_their_column_kind() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            cell_value(Kind::Uuid, ValueRef::Blob(id.as_bytes())),
            Some(Value::Uuid(Some(id)))
        );
        let t: DateTime<Utc> = "2026-11-03T12:02:03.609851Z".parse().unwrap();
        let text = "2026-11-03T12:02:03.609851+00:00";
        assert_eq!(
            cell_value(Kind::Time, ValueRef::Text(text.as_bytes())),
            Some(Value::ChronoDateTimeUtc(Some(t)))
        );
        assert_eq!(
            cell_value(Kind::Bool, ValueRef::Integer(0)),
            Some(Value::Bool(Some(false)))
        );
        assert_eq!(
            cell_value(Kind::Real, ValueRef::Integer(2)),
            Some(Value::Double(Some(2.0)))
        );
        assert_eq!(cell_value(Kind::Uuid, ValueRef::Integer(7)), None);
    }

    #[test]
    fn connections_map_as_much_of_the_file_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped.db");
        rusqlite::Connection::open(&path).unwrap();
        let mapped = |bytes| {
            let reader =
                SqliteReader::open(&path, Duration::from_millis(10), 1, bytes, StatementCounter::default()).unwrap();
            let conn = reader.take().unwrap();
            conn.query_row("PRAGMA mmap_size", [], |row| row.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(mapped(0), 0);
        assert_eq!(mapped(8 << 20), 8 << 20);
        // Past what SQLite was built to map, it maps its most, and the connection opens.
        assert!(mapped(u64::MAX) >= 8 << 20);
    }
}
