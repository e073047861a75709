//! Where reads go. Entity reads in `store` go through `fetch_all`, `fetch_one` and
//! `fetch_count`: on the server's `Reader` they bypass SeaORM's row decoding (a SQLite
//! file's rows are read in place by `sqlite_reader`; PostgreSQL's are decoded by position
//! by `pg_reader`). In a transaction, or on in-memory SQLite, they go through SeaORM as
//! usual. Everything else (aggregates, tuples) uses the connection itself.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, ExecResult, IdenStatic,
    Iterable, PaginatorTrait, QueryResult, QuerySelect, QueryTrait, Select, Statement, TryIntoModel,
};

use super::pg_connections::ReadConnections;
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
    pub fn read_connections(&self) -> Option<&ReadConnections> {
        match &self.direct {
            Some(Direct::Postgres(reader)) => Some(reader.connections()),
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

pub async fn fetch_all<E>(conn: &impl Fetch, select: Select<E>) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Sync + super::pg_decode::ByPosition,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    // The awaited reads are boxed: inline, their state (about 5 KB) made every future
    // above them as large, and a request's futures are moved several times as the
    // engine builds and polls them.
    match conn.direct() {
        Some(Direct::Sqlite(reader)) => reader.models::<E>(&select.build(DbBackend::Sqlite)),
        Some(Direct::Postgres(reader)) => Box::pin(reader.models::<E>(select.build(DbBackend::Postgres))).await,
        None => Box::pin(select.all(conn)).await,
    }
}

pub async fn fetch_one<E>(conn: &impl Fetch, select: Select<E>) -> Result<Option<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Sync + super::pg_decode::ByPosition,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    Ok(fetch_all(conn, select.limit(1)).await?.into_iter().next())
}

/// Two entity reads that need the same bound values. PostgreSQL's reader runs them as
/// one statement, `together()` (rows of `A` marked `_part` 0, then rows of `B`: see
/// `PgReader::models_of_two`), and so waits for one round trip instead of two; elsewhere
/// the two selects of `apart()` run one after the other. Only the one used is built.
pub async fn fetch_two<A, B>(
    conn: &impl Fetch,
    apart: impl FnOnce() -> (Select<A>, Select<B>),
    together: impl FnOnce() -> Statement,
) -> Result<(Vec<A::Model>, Vec<B::Model>), DbErr>
where
    A: EntityTrait,
    A::Model: Sync + super::pg_decode::ByPosition,
    A::ActiveModel: TryIntoModel<A::Model>,
    B: EntityTrait,
    B::Model: Sync + super::pg_decode::ByPosition,
    B::ActiveModel: TryIntoModel<B::Model>,
{
    match conn.direct() {
        // Boxed for the reason given in `fetch_all`.
        Some(Direct::Postgres(reader)) => Box::pin(reader.models_of_two::<A, B>(together())).await,
        _ => {
            let (first, second) = apart();
            Ok((fetch_all(conn, first).await?, fetch_all(conn, second).await?))
        }
    }
}

/// How many rows `select` (a filtered read of `E`: no grouping, no limit) returns.
pub async fn fetch_count<E>(conn: &impl Fetch, select: Select<E>) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: Sync,
{
    // Boxed for the reason given in `fetch_all`.
    match conn.direct() {
        Some(Direct::Sqlite(reader)) => Ok(reader.integer(&counting(select).build(DbBackend::Sqlite))? as u64),
        Some(Direct::Postgres(reader)) => {
            Ok(Box::pin(reader.integer(counting(select).build(DbBackend::Postgres))).await? as u64)
        }
        None => Box::pin(select.count(conn)).await,
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

    /// Every read's future holds these; unboxed, the PostgreSQL branch made each about
    /// 5 KB, copied whenever a future above it moved.
    #[tokio::test]
    async fn entity_read_futures_stay_small() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sizes.db").display());
        let db = crate::db::connect(&url, 2).await.unwrap();
        let select = find::<trace::Entity>();
        let rows = fetch_all(&db.read, select.clone());
        let count = fetch_count(&db.read, select.clone());
        assert!(size_of_val(&rows) < 2048, "fetch_all: {} bytes", size_of_val(&rows));
        assert!(size_of_val(&count) < 2048, "fetch_count: {} bytes", size_of_val(&count));
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
