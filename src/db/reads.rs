//! Where reads go. Entity reads in `store` go through `fetch_all`, `fetch_one` and
//! `fetch_count`: on a SQLite file's `Reader` they run in place (`sqlite_reader`); on
//! any other connection, a transaction or PostgreSQL, through SeaORM as usual.
//! Everything else (aggregates, tuples) uses the connection itself.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, ExecResult,
    PaginatorTrait, QueryResult, QuerySelect, QueryTrait, Select, Statement, TryIntoModel,
};

use super::sqlite_reader::SqliteReader;

/// The read handle: a pool, and on a SQLite file the in-place reader beside it.
#[derive(Clone, Debug)]
pub struct Reader {
    pool: DatabaseConnection,
    in_place: Option<Arc<SqliteReader>>,
}

impl Reader {
    pub fn pooled(pool: DatabaseConnection) -> Self {
        Self { pool, in_place: None }
    }

    pub fn with_in_place(pool: DatabaseConnection, reader: SqliteReader) -> Self {
        Self {
            pool,
            in_place: Some(Arc::new(reader)),
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
    /// The in-place reader, where there is one.
    fn in_place(&self) -> Option<&SqliteReader> {
        None
    }
}

impl Fetch for DatabaseConnection {}
impl Fetch for DatabaseTransaction {}
impl Fetch for Reader {
    fn in_place(&self) -> Option<&SqliteReader> {
        self.in_place.as_deref()
    }
}

pub async fn fetch_all<E>(conn: &impl Fetch, select: Select<E>) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Sync,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    match conn.in_place() {
        Some(reader) => reader.models::<E>(&select.build(DbBackend::Sqlite)),
        None => select.all(conn).await,
    }
}

pub async fn fetch_one<E>(conn: &impl Fetch, select: Select<E>) -> Result<Option<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Sync,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    Ok(fetch_all(conn, select.limit(1)).await?.into_iter().next())
}

pub async fn fetch_count<E>(conn: &impl Fetch, select: Select<E>) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: Sync,
{
    match conn.in_place() {
        Some(reader) => reader.count(&select.build(DbBackend::Sqlite)),
        None => select.count(conn).await,
    }
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
