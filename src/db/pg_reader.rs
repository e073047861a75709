//! PostgreSQL entity reads, decoded by position. SeaORM reads each cell of a row by
//! column name: it formats the name, looks it up in the row's column map, and formats
//! an error message for every NULL it meets before turning it into `None`. On the
//! dashboard's thousand span rows, perf put that at a third of the server's CPU.
//!
//! Here SeaORM still builds the statement and sqlx runs it on a connection lent by
//! `pg_connections` (not pinged as it comes back); the rows are read by position into
//! the entity's active model, as `sqlite_reader` does, typed by the entity's own
//! columns. Counts go the same way.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt;
use sea_orm::sea_query::{Value, Values};
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Column, Row, TypeInfo};
use sea_orm::{ConnAcquireErr, DbErr, EntityTrait, RuntimeErr, Statement, TryIntoModel};
use sea_query_sqlx::SqlxValues;

use super::StatementCounter;
use super::pg_connections::ReadConnections;
use super::row_models::{Columns, Kind};

#[derive(Clone, Debug)]
pub struct PgReader {
    connections: Arc<ReadConnections>,
    statements: StatementCounter,
}

impl PgReader {
    pub fn new(connections: Arc<ReadConnections>, statements: StatementCounter) -> Self {
        Self {
            connections,
            statements,
        }
    }

    /// The single integer `statement` answers (a count).
    pub async fn integer(&self, statement: Statement) -> Result<i64, DbErr> {
        self.statements.add_one();
        let (sql, values) = parts(statement);
        let mut lease = self.connections.lease().await?;
        let value = sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values))
            .fetch_one(lease.connection())
            .await
            .map_err(query_error)?;
        lease.finish();
        Ok(value)
    }

    /// Runs `statement` (built by SeaORM for PostgreSQL) and reads each row as a model of
    /// `E`. Result columns are matched to the entity's by name; every column of the
    /// model must be among them.
    pub async fn models<E>(&self, statement: Statement) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        self.statements.add_one();
        let (sql, values) = parts(statement);
        let mut lease = self.connections.lease().await?;
        let mut models = Vec::new();
        {
            // Each row becomes a model as it arrives, so a request never holds all its
            // rows twice (as received and as models).
            let mut rows =
                sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values)).fetch(lease.connection());
            let mut columns = None;
            while let Some(row) = rows.try_next().await.map_err(query_error)? {
                let columns =
                    columns.get_or_insert_with(|| Columns::<E>::by_name(row.columns().iter().map(|c| c.name())));
                models.push(columns.model(|index, kind| cell_value(&row, index, kind))?);
            }
        }
        // Only now: an early return above leaves the statement unfinished, and the
        // connection is closed rather than lent again.
        lease.finish();
        Ok(models)
    }
}

fn parts(statement: Statement) -> (String, Values) {
    let Statement { sql, values, .. } = statement;
    (sql, values.unwrap_or(Values(Vec::new())))
}

/// The cell at `index` as a value of `kind`; `None` when its PostgreSQL type does not
/// hold that kind.
fn cell_value(row: &PgRow, index: usize, kind: Kind) -> Result<Option<Value>, DbErr> {
    let ty = row.columns()[index].type_info().name();
    let value = match (kind, ty) {
        (Kind::Uuid, "UUID") => Value::Uuid(get(row, index)?),
        (Kind::Time, "TIMESTAMPTZ") => Value::ChronoDateTimeUtc(get::<DateTime<Utc>>(row, index)?),
        (Kind::Time, "TIMESTAMP") => Value::ChronoDateTimeUtc(get::<NaiveDateTime>(row, index)?.map(|t| t.and_utc())),
        (Kind::Json, "JSON" | "JSONB") => Value::Json(get::<serde_json::Value>(row, index)?.map(Box::new)),
        (Kind::Bool, "BOOL") => Value::Bool(get(row, index)?),
        (Kind::Integer, "INT8") => Value::BigInt(get(row, index)?),
        (Kind::Integer, "INT4") => Value::BigInt(get::<i32>(row, index)?.map(i64::from)),
        (Kind::Integer, "INT2") => Value::BigInt(get::<i16>(row, index)?.map(i64::from)),
        (Kind::Real, "FLOAT8") => Value::Double(get(row, index)?),
        (Kind::Real, "FLOAT4") => Value::Double(get::<f32>(row, index)?.map(f64::from)),
        (Kind::Text, "TEXT" | "VARCHAR" | "BPCHAR" | "NAME") => Value::String(get(row, index)?),
        (Kind::Blob, "BYTEA") => Value::Bytes(get(row, index)?),
        _ => return Ok(None),
    };
    Ok(Some(value))
}

fn get<'r, T>(row: &'r PgRow, index: usize) -> Result<Option<T>, DbErr>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get::<Option<T>, _>(index)
        .map_err(|e| DbErr::Type(e.to_string()))
}

/// As SeaORM maps sqlx's errors: a pool wait past its bound is an acquire timeout
/// (OVERLOADED, retryable), anything else a query error.
fn query_error(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Query(RuntimeErr::SqlxError(Arc::new(other))),
    }
}
