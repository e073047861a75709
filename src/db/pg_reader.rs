//! PostgreSQL entity reads, decoded straight into the models. SeaORM reads each cell
//! of a row by column name: it formats the name, looks it up in the row's column map,
//! and formats an error message for every NULL it meets before turning it into `None`.
//! On the dashboard's thousand span rows, perf put that at a third of the server's CPU.
//!
//! Here SeaORM still builds the statement and sqlx runs it on a connection lent by
//! `pg_connections` (not pinged as it comes back); each row becomes its entity's model
//! by `pg_decode`, one typed decode per field by position, with no `Value` or active
//! model between. Counts go the same way. Where the URL allows (`pg_pipeline` says
//! when; the default `sslmode` does) the same statements go through `pg_pipeline`
//! instead, pipelined on shared connections, and its rows are decoded by the same
//! positions.

use std::sync::Arc;

use futures::TryStreamExt;
use sea_orm::sea_query::Values;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnAcquireErr, DbErr, EntityTrait, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;

use super::StatementCounter;
use super::pg_connections::ReadConnections;
use super::pg_decode::{FromPlainRow, plain_positions, positions};
use super::pg_pipeline::{Pipelines, decode_error as plain_decode_error};

#[derive(Clone)]
pub struct PgReader {
    connections: Arc<ReadConnections>,
    /// When set, reads go there, pipelined, and not to `connections`.
    pipelines: Option<Arc<Pipelines>>,
    statements: StatementCounter,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("pipelined", &self.pipelines.is_some())
            .finish_non_exhaustive()
    }
}

impl PgReader {
    pub fn new(connections: Arc<ReadConnections>, pipelines: Option<Pipelines>, statements: StatementCounter) -> Self {
        Self {
            connections,
            pipelines: pipelines.map(Arc::new),
            statements,
        }
    }

    pub fn connections(&self) -> &ReadConnections {
        &self.connections
    }

    /// Ends the pipelined connections; leased ones are closed with `connections`.
    pub async fn close_pipelines(&self) {
        if let Some(pipelines) = &self.pipelines {
            pipelines.close().await;
        }
    }

    /// Connections kept for reads that are open and not in use.
    pub fn idle(&self) -> usize {
        match &self.pipelines {
            Some(pipelines) => pipelines.idle(),
            None => self.connections.idle(),
        }
    }

    /// Connections opened for reads since start.
    pub fn opened(&self) -> u64 {
        match &self.pipelines {
            Some(pipelines) => pipelines.opened(),
            None => self.connections.opened(),
        }
    }

    /// Connections reads are pipelined on; 0 when each read leases one.
    pub fn pipelined_connections(&self) -> usize {
        self.pipelines.as_ref().map_or(0, |pipelines| pipelines.connections())
    }

    /// The single integer `statement` answers (a count).
    pub async fn integer(&self, statement: Statement) -> Result<i64, DbErr> {
        self.statements.add_one();
        let (sql, values) = parts(statement);
        if let Some(pipelines) = &self.pipelines {
            let mut value = None;
            pipelines
                .each_row(&sql, values, |row| {
                    value = Some(row.try_get::<_, i64>(0).map_err(plain_decode_error)?);
                    Ok(false)
                })
                .await?;
            return value.ok_or_else(|| DbErr::RecordNotFound("the count returned no row".into()));
        }
        let mut lease = self.connections.lease().await?;
        let value = sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values))
            .fetch_one(lease.connection())
            .await
            .map_err(query_error)?;
        lease.finish();
        Ok(value)
    }

    /// Runs `statement` (built by SeaORM for PostgreSQL) and reads each of its first
    /// `at_most` rows as a model of `E`. Result columns are found by name, once; every
    /// field of the model must be among them, and others are ignored.
    pub async fn models<E>(&self, statement: Statement, at_most: usize) -> Result<Vec<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: FromPlainRow,
    {
        let mut models = Models::default();
        match &self.pipelines {
            Some(pipelines) => {
                self.plain_rows(pipelines, statement, collect(&mut models, at_most))
                    .await?
            }
            None => self.each_row(statement, collect(&mut models, at_most)).await?,
        }
        Ok(models.read)
    }

    /// Runs `statement`, a UNION whose first column `_part` is 0 on rows of `A` and 1 on
    /// rows of `B`, and reads each row as a model of its entity: two reads that need the
    /// same bound values cost one round trip. Columns are found as in `models`, once per
    /// entity. Reading stops at `rows_of_b` rows of `B`.
    pub async fn models_of_two<A, B>(
        &self,
        statement: Statement,
        rows_of_b: usize,
    ) -> Result<(Vec<A::Model>, Vec<B::Model>), DbErr>
    where
        A: EntityTrait,
        A::Model: FromPlainRow,
        B: EntityTrait,
        B::Model: FromPlainRow,
    {
        let (mut first, mut second) = (Models::default(), Models::default());
        let (a, b) = (&mut first, &mut second);
        match &self.pipelines {
            Some(pipelines) => {
                self.plain_rows(pipelines, statement, collect_two(a, b, rows_of_b))
                    .await?
            }
            None => self.each_row(statement, collect_two(a, b, rows_of_b)).await?,
        }
        Ok((first.read, second.read))
    }

    /// As `each_row`, on the pipelined connections.
    async fn plain_rows(
        &self,
        pipelines: &Pipelines,
        statement: Statement,
        read: impl FnMut(&tokio_postgres::Row) -> Result<bool, DbErr>,
    ) -> Result<(), DbErr> {
        self.statements.add_one();
        let (sql, values) = parts(statement);
        pipelines.each_row(&sql, values, read).await
    }

    /// Hands each row to `read` until it says to stop (`false`).
    async fn each_row(
        &self,
        statement: Statement,
        mut read: impl FnMut(&PgRow) -> Result<bool, DbErr>,
    ) -> Result<(), DbErr> {
        self.statements.add_one();
        let (sql, values) = parts(statement);
        let mut lease = self.connections.lease().await?;
        {
            // Each row is read as it arrives, so a request never holds all its rows twice
            // (as received and as models).
            let mut rows =
                sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values)).fetch(lease.connection());
            while let Some(row) = rows.try_next().await.map_err(query_error)? {
                if !read(&row)? {
                    return Ok(());
                }
            }
        }
        // Only now: an early return above leaves the statement unfinished, and the
        // connection is closed rather than lent again.
        lease.finish();
        Ok(())
    }
}

/// Rows of one statement read as models of `M`: where each field is, settled on the first.
struct Models<M> {
    at: Option<Option<Vec<usize>>>,
    read: Vec<M>,
}

impl<M> Default for Models<M> {
    fn default() -> Self {
        Self {
            at: None,
            read: Vec::new(),
        }
    }
}

impl<M: FromPlainRow> Models<M> {
    fn push<R: ModelRow>(&mut self, row: &R) -> Result<(), DbErr> {
        let at = match &self.at {
            Some(at) => at,
            None => self.at.insert(row.positions::<M>()?),
        };
        self.read.push(row.model(at.as_deref())?);
        Ok(())
    }
}

/// A row of either reader: sqlx's on leased connections, tokio-postgres's pipelined.
trait ModelRow {
    /// Where each field of `M` is (`None`: read by name).
    fn positions<M: FromPlainRow>(&self) -> Result<Option<Vec<usize>>, DbErr>;
    fn model<M: FromPlainRow>(&self, at: Option<&[usize]>) -> Result<M, DbErr>;
    /// The `_part` column of a UNION of two entities' rows.
    fn part(&self) -> Result<i32, DbErr>;
}

impl ModelRow for PgRow {
    fn positions<M: FromPlainRow>(&self) -> Result<Option<Vec<usize>>, DbErr> {
        Ok(positions::<M>(self))
    }

    fn model<M: FromPlainRow>(&self, at: Option<&[usize]>) -> Result<M, DbErr> {
        M::decode(self, at).map_err(decode_error)
    }

    fn part(&self) -> Result<i32, DbErr> {
        self.try_get::<i32, _>(0).map_err(decode_error)
    }
}

impl ModelRow for tokio_postgres::Row {
    fn positions<M: FromPlainRow>(&self) -> Result<Option<Vec<usize>>, DbErr> {
        plain_positions::<M>(self).map(Some).map_err(DbErr::Type)
    }

    fn model<M: FromPlainRow>(&self, at: Option<&[usize]>) -> Result<M, DbErr> {
        M::decode_plain(self, at.unwrap_or_default()).map_err(DbErr::Type)
    }

    fn part(&self) -> Result<i32, DbErr> {
        self.try_get::<_, i32>(0).map_err(plain_decode_error)
    }
}

/// Reads each row into `models` until `at_most` are read.
fn collect<R: ModelRow, M: FromPlainRow>(
    models: &mut Models<M>,
    at_most: usize,
) -> impl FnMut(&R) -> Result<bool, DbErr> + '_ {
    move |row| {
        models.push(row)?;
        Ok(models.read.len() < at_most)
    }
}

/// Reads each row of a UNION into `first` or `second` by its `_part`, until `rows_of_b`
/// rows of the second are read.
fn collect_two<'m, R: ModelRow, A: FromPlainRow, B: FromPlainRow>(
    first: &'m mut Models<A>,
    second: &'m mut Models<B>,
    rows_of_b: usize,
) -> impl FnMut(&R) -> Result<bool, DbErr> + 'm {
    move |row| {
        match row.part()? {
            0 => first.push(row)?,
            _ => second.push(row)?,
        }
        Ok(second.read.len() < rows_of_b)
    }
}

fn parts(statement: Statement) -> (String, Values) {
    let Statement { sql, values, .. } = statement;
    (sql, values.unwrap_or(Values(Vec::new())))
}

/// A stored value the model cannot hold (or a column it needs that the statement lacks)
/// is a type error naming the column, as SeaORM's own decoding reports it.
fn decode_error(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => DbErr::Type(e.to_string()),
        other => query_error(other),
    }
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
