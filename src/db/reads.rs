//! Where reads go. Entity reads in `store` go through `fetch_all`, `fetch_one` and
//! `fetch_count`: on the server's `Reader` they bypass SeaORM's row decoding (a SQLite
//! file's rows are read in place by `sqlite_reader`; PostgreSQL's are decoded by position
//! by `pg_reader`). In a transaction, or on in-memory SQLite, they go through SeaORM as
//! usual. Everything else (aggregates, tuples) uses the connection itself.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use futures::future::BoxFuture;
use sea_orm::sea_query::{Expr, SelectStatement};
use sea_orm::{
    Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, ExecResult,
    IdenStatic, Iterable, PaginatorTrait, QueryResult, QuerySelect, QueryTrait, Select, Statement, TryIntoModel,
};

use super::pg_reader::PgReader;
use super::sqlite_reader::SqliteReader;

/// The read handle: a pool, and beside it the reader that decodes its entity rows.
#[derive(Clone, Debug)]
pub struct Reader {
    pool: DatabaseConnection,
    direct: Option<Direct>,
}

/// Entity reads that bypass SeaORM's row decoding.
#[derive(Clone, Debug)]
pub enum Direct {
    /// A SQLite file's rows, read in place on the calling thread.
    Sqlite(Arc<SqliteReader>),
    /// PostgreSQL rows, on leased connections (`pg_connections`), decoded by position (`pg_decode`).
    Postgres(PgReader),
}

impl Reader {
    pub fn pooled(pool: DatabaseConnection) -> Self {
        Self { pool, direct: None }
    }

    /// The connections PostgreSQL entity reads lease; `None` on SQLite.
    pub fn pg_reader(&self) -> Option<&PgReader> {
        match &self.direct {
            Some(Direct::Postgres(reader)) => Some(reader),
            _ => None,
        }
    }

    pub fn with_direct(pool: DatabaseConnection, direct: Direct) -> Self {
        Self {
            pool,
            direct: Some(direct),
        }
    }

    /// The pool, for what is not an entity read (and for comparing against it).
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.pool.ping().await
    }
}

/// A connection that store reads can run on.
pub trait Fetch: ConnectionTrait {
    /// The direct reader, where there is one.
    fn direct(&self) -> Option<&Direct> {
        None
    }
}

impl Fetch for DatabaseConnection {}
impl Fetch for DatabaseTransaction {}
impl Fetch for Reader {
    fn direct(&self) -> Option<&Direct> {
        self.direct.as_ref()
    }
}

/// `find::<E>()` narrowed by `condition`, as [`narrow`] narrows it.
pub fn find_where<E: EntityTrait>(condition: Condition) -> Select<E> {
    let mut select = find::<E>();
    narrow(QueryTrait::query(&mut select), condition);
    select
}

/// Adds `condition` to `select`'s `WHERE`, and no `WHERE` at all when it is empty:
/// sea_query writes an empty condition as `WHERE TRUE`, and SQLite then counts a table by
/// stepping through an index's every entry instead of from its b-tree pages (the
/// dashboard's `totalCount` over 50,000 traces: 0.7 ms against 0.1 ms).
pub fn narrow(select: &mut SelectStatement, condition: Condition) {
    if !condition.is_empty() {
        select.cond_where(condition);
    }
}

/// `E::find()` selecting `"table".*`, cloned from one built at first use. SeaORM's
/// `find()` builds an expression per column, and every statement then writes each one
/// out: on a read of a few traces, perf put that at a twelfth of the server's time.
/// Every path reads an entity's cells by column name, so `*` reads the same models.
pub fn find<E: EntityTrait>() -> Select<E> {
    static BUILT: LazyLock<RwLock<HashMap<TypeId, Box<dyn Any + Send + Sync>>>> = LazyLock::new(Default::default);
    let key = TypeId::of::<E>();
    let built = BUILT.read().unwrap_or_else(|e| e.into_inner());
    if let Some(select) = built.get(&key).and_then(|s| s.downcast_ref::<Select<E>>()) {
        return select.clone();
    }
    drop(built);
    let mut select = E::find();
    QueryTrait::query(&mut select)
        .clear_selects()
        .expr(Expr::cust(format!("\"{}\".*", E::default().table_name())));
    BUILT
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Box::new(select.clone()));
    select
}

/// Every column of `E` in order as a select list, one list per engine, with a literal
/// standing in for some columns (`NULL AS "input_text"`). Built once and kept, then put
/// on a select whole: one expression to write, where SeaORM's own `column_as` would build
/// and write one per column at every read.
pub struct ColumnLists {
    sqlite: String,
    postgres: String,
}

impl ColumnLists {
    /// `literal(column, engine)` is the SQL that replaces `column`, or `None` to read it.
    pub fn new<E: EntityTrait>(literal: impl Fn(&E::Column, DbBackend) -> Option<&'static str>) -> Self {
        let list = |backend| {
            let table = E::default().table_name();
            E::Column::iter()
                .map(|column| match literal(&column, backend) {
                    Some(sql) => format!("{sql} AS \"{}\"", column.as_str()),
                    None => format!("\"{table}\".\"{}\"", column.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self {
            sqlite: list(DbBackend::Sqlite),
            postgres: list(DbBackend::Postgres),
        }
    }

    /// `select` reading this list, as `backend` writes it, instead of what it selected.
    pub fn select<E: EntityTrait>(&self, mut select: Select<E>, backend: DbBackend) -> Select<E> {
        let columns = match backend {
            DbBackend::Postgres => &self.postgres,
            _ => &self.sqlite,
        };
        QueryTrait::query(&mut select)
            .clear_selects()
            .expr(Expr::cust(columns.clone()));
        select
    }
}

/// `{}` as the value of a JSON column on `backend`.
pub fn empty_object(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST('{}' AS JSONB)",
        _ => "'{}'",
    }
}

/// A read whose statement is built: the SQLite file's, run in place when awaited, or
/// any other, boxed.
enum Pending<'a, T> {
    InPlace(&'a SqliteReader, Statement),
    Boxed(BoxFuture<'a, Result<T, DbErr>>),
}

// The entity reads are plain functions that build their statement at once and return
// a future holding only that statement (or a box): an `async fn` keeps its arguments
// for its whole life, and a `Select` taken by value (over 500 bytes) was then held at
// every level of the reads above it. The futures of a list page grew to 11 KB, copied
// whole into a box at every request (callgrind: a tenth of a small query's
// instructions).

pub fn fetch_all<'a, E>(
    conn: &'a impl Fetch,
    select: Select<E>,
) -> impl Future<Output = Result<Vec<E::Model>, DbErr>> + 'a
where
    E: EntityTrait,
    E::Model: Sync + super::pg_decode::FromPlainRow,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    fetch_at_most(conn, select, usize::MAX)
}

/// The first `rows` rows of `select`. The readers stop reading there rather than send a
/// `LIMIT`: a limit given as a parameter changes PostgreSQL's generic plan for a sorted
/// read (it assumes a tenth of the rows are wanted), and a dashboard's tree read, planned
/// so, ran at a sixth of its throughput.
pub fn fetch_at_most<'a, E>(
    conn: &'a impl Fetch,
    select: Select<E>,
    rows: usize,
) -> impl Future<Output = Result<Vec<E::Model>, DbErr>> + 'a
where
    E: EntityTrait,
    E::Model: Sync + super::pg_decode::FromPlainRow,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    let pending = match conn.direct() {
        Some(Direct::Sqlite(reader)) => Pending::InPlace(reader, select.build(DbBackend::Sqlite)),
        Some(Direct::Postgres(reader)) => {
            Pending::Boxed(Box::pin(reader.models::<E>(select.build(DbBackend::Postgres), rows)))
        }
        None if rows == usize::MAX => Pending::Boxed(Box::pin(select.all(conn))),
        None => Pending::Boxed(Box::pin(select.limit(rows as u64).all(conn))),
    };
    async move {
        match pending {
            Pending::InPlace(reader, statement) => reader.models::<E>(&statement, rows),
            Pending::Boxed(read) => read.await,
        }
    }
}

pub fn fetch_one<'a, E>(
    conn: &'a impl Fetch,
    select: Select<E>,
) -> impl Future<Output = Result<Option<E::Model>, DbErr>> + 'a
where
    E: EntityTrait,
    E::Model: Sync + super::pg_decode::FromPlainRow,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    let rows = fetch_all(conn, select.limit(1));
    async move { Ok(rows.await?.into_iter().next()) }
}

/// Two entity reads that need the same bound values. PostgreSQL's reader runs them as
/// one statement, `together()` (rows of `A` marked `_part` 0, then rows of `B`: see
/// `PgReader::models_of_two`), and so waits for one round trip instead of two; elsewhere
/// the two selects of `apart()` run one after the other. Only the one used is built.
/// Either way at most `rows_of_b` rows of `B` are read.
pub async fn fetch_two<A, B>(
    conn: &impl Fetch,
    apart: impl FnOnce() -> (Select<A>, Select<B>),
    together: impl FnOnce() -> Statement,
    rows_of_b: usize,
) -> Result<(Vec<A::Model>, Vec<B::Model>), DbErr>
where
    A: EntityTrait,
    A::Model: Sync + super::pg_decode::FromPlainRow,
    A::ActiveModel: TryIntoModel<A::Model>,
    B: EntityTrait,
    B::Model: Sync + super::pg_decode::FromPlainRow,
    B::ActiveModel: TryIntoModel<B::Model>,
{
    match conn.direct() {
        // Boxed: its state is 5 KB, which every future above it would hold.
        Some(Direct::Postgres(reader)) => Box::pin(reader.models_of_two::<A, B>(together(), rows_of_b)).await,
        _ => {
            let (first, second) = apart();
            Ok((
                fetch_all(conn, first).await?,
                fetch_at_most(conn, second, rows_of_b).await?,
            ))
        }
    }
}

/// How many rows `select` (a filtered read of `E`: no grouping, no limit) returns.
pub fn fetch_count<'a, E>(conn: &'a impl Fetch, select: Select<E>) -> impl Future<Output = Result<u64, DbErr>> + 'a
where
    E: EntityTrait,
    E::Model: Sync,
{
    let pending = match conn.direct() {
        Some(Direct::Sqlite(reader)) => Pending::InPlace(reader, counting(select).build(DbBackend::Sqlite)),
        Some(Direct::Postgres(reader)) => {
            let statement = counting(select).build(DbBackend::Postgres);
            Pending::Boxed(Box::pin(async move { Ok(reader.integer(statement).await? as u64) }))
        }
        None => Pending::Boxed(Box::pin(select.count(conn))),
    };
    async move {
        match pending {
            Pending::InPlace(reader, statement) => Ok(reader.integer(&statement)? as u64),
            Pending::Boxed(read) => read.await,
        }
    }
}

/// `SELECT COUNT(*) FROM … WHERE …` itself, not a count over a subquery: unfiltered,
/// SQLite then counts the table from its b-tree pages instead of stepping through every
/// row (all 20,000 spans: 127 µs that way, 7.5 µs this way).
fn counting<E: EntityTrait>(mut select: Select<E>) -> Select<E> {
    QueryTrait::query(&mut select)
        .clear_selects()
        .clear_order_by()
        .expr(Expr::cust("COUNT(*)"));
    select
}

#[async_trait::async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.pool.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.pool.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.pool.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.pool.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.pool.support_returning()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entities::trace;

    /// Unfiltered, a list's count is `COUNT(*)` of the table alone and the statistics read
    /// the table with no `WHERE`: an empty condition written as `WHERE TRUE` made SQLite
    /// step through a whole index to count it. The statements are the stores' own.
    #[test]
    fn unfiltered_reads_carry_no_where() {
        use sea_orm::StatementBuilder;

        use crate::db::store::{self, stats};
        use crate::filters::{AgentUsageFilter, SpanFilter, TraceFilter};
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let counts = [
                counting(store::traces::matching(&TraceFilter::default()))
                    .build(backend)
                    .sql,
                counting(store::spans::matching(&SpanFilter::default()))
                    .build(backend)
                    .sql,
                counting(store::agent_usage::matching(&AgentUsageFilter::default()))
                    .build(backend)
                    .sql,
            ];
            for sql in counts {
                assert!(
                    sql.starts_with("SELECT COUNT(*) FROM") && !sql.contains("WHERE"),
                    "{sql}"
                );
            }
            let aggregated = [
                StatementBuilder::build(&stats::trace_rows(backend, &TraceFilter::default(), None), &backend).sql,
                StatementBuilder::build(&stats::span_rows(backend, &SpanFilter::default(), &[]), &backend).sql,
                store::agent_usage::totals_select(&AgentUsageFilter::default())
                    .build(backend)
                    .sql,
            ];
            for sql in aggregated {
                assert!(sql.starts_with("SELECT") && !sql.contains("WHERE"), "{sql}");
            }
            let of_agent = TraceFilter {
                agent: Some(uuid::Uuid::nil()),
                ..Default::default()
            };
            let filtered = [
                counting(store::traces::matching(&of_agent)).build(backend).sql,
                StatementBuilder::build(&stats::trace_rows(backend, &of_agent, None), &backend).sql,
            ];
            for sql in filtered {
                assert!(sql.contains(r#"WHERE "trace"."agent_id" = "#), "{sql}");
            }
        }
    }

    /// Every read's future holds these, and the futures of the resolvers above them are
    /// copied whole into a box at every request: a list page's grew to 11 KB when each
    /// level kept the `Select` it was given.
    #[tokio::test]
    async fn entity_read_futures_stay_small() {
        use crate::db::store;
        use crate::filters::{AgentUsageFilter, Page, TraceFilter, TraceSort};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sizes.db").display());
        let db = crate::db::connect(&url, 2).await.unwrap();
        let select = find::<trace::Entity>();
        let window = Page::from_args(Some(10), Some(0)).unwrap();
        let (traces, usage) = (TraceFilter::default(), AgentUsageFilter::default());
        let texts = store::spans::Texts::Skip;
        let sizes = [
            ("fetch_all", size_of_val(&fetch_all(&db.read, select.clone()))),
            ("fetch_count", size_of_val(&fetch_count(&db.read, select.clone()))),
            ("page", size_of_val(&store::page(&db.read, select, window))),
            (
                "traces::list",
                size_of_val(&store::traces::list(
                    &db.read,
                    &traces,
                    TraceSort::StartedAtDesc,
                    window,
                    texts,
                )),
            ),
            ("traces::count", size_of_val(&store::traces::count(&db.read, &traces))),
            (
                "agent_usage::list",
                size_of_val(&store::agent_usage::list(&db.read, &usage, window)),
            ),
            (
                "agent_usage::totals",
                size_of_val(&store::agent_usage::totals(&db.read, &usage)),
            ),
        ];
        for (read, size) in sizes {
            assert!(size < 512, "{read}: {size} bytes");
        }
    }

    /// SQLite reads keep each statement's column mapping: the same statement reads the
    /// same models again, and still does once another process adds a column.
    #[tokio::test]
    async fn a_statement_read_again_gives_the_same_models() {
        use sea_orm::ActiveModelTrait;

        use crate::db::entities::agent_usage_total;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("again.db").display());
        let db = crate::db::connect(&url, 2).await.unwrap();
        let row = agent_usage_total::Model {
            agent_id: uuid::Uuid::now_v7(),
            records: 2,
            llm_calls: 3,
            input_tokens: 5,
            output_tokens: 7,
            total_tokens: 12,
            cost_usd: 0.25,
        };
        agent_usage_total::ActiveModel::from(row.clone())
            .insert(&db.write)
            .await
            .unwrap();
        let read = || fetch_all(&db.read, find::<agent_usage_total::Entity>());
        assert_eq!(read().await.unwrap(), vec![row.clone()]);
        assert_eq!(read().await.unwrap(), vec![row.clone()]);
        db.write
            .execute_unprepared("ALTER TABLE agent_usage_total ADD COLUMN note TEXT")
            .await
            .unwrap();
        assert_eq!(read().await.unwrap(), vec![row]);
    }
}
