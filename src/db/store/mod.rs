//! Query functions over any connection or transaction, one file per table. They take
//! validated input (see `ingest`) and return rows or an `AppError`.

pub mod agent_usage;
pub mod detail;
pub mod flags;
mod insert_text;
pub mod keys;
pub mod spans;
pub mod stats;
pub mod traces;

use std::borrow::Borrow;
use std::collections::HashSet;

use sea_orm::sea_query::{NullOrdering, Order};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, IntoSimpleExpr, PrimaryKeyTrait,
    QueryOrder, QuerySelect, Select, TryIntoModel,
};

use uuid::Uuid;

use crate::db::{Fetch, fetch_all};
use crate::error::AppResult;
use crate::filters::Page;

/// A row after a write that may have been a no-op (a repeated end, a second unflag):
/// `changed` says whether anything happened, so that only real changes are published.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub row: T,
    pub changed: bool,
}

impl<T> Changed<T> {
    pub fn new(row: T) -> Self {
        Self { row, changed: true }
    }

    pub fn unchanged(row: T) -> Self {
        Self { row, changed: false }
    }
}

/// A page of rows and whether more follow.
#[derive(Debug, Clone)]
pub struct Rows<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Rows<T> {
    /// A page not read: nothing in it, nothing after it.
    pub fn unread() -> Self {
        Self {
            items: Vec::new(),
            has_next_page: false,
        }
    }
}

/// Runs `select` for one page, fetching one row more than asked to learn whether a next
/// page exists without a second statement. A plain function for the reason `fetch_all`
/// is one: its future holds the built statement, not the `select`.
pub fn page<'a, E>(
    conn: &'a impl Fetch,
    select: Select<E>,
    page: Page,
) -> impl Future<Output = AppResult<Rows<E::Model>>> + 'a
where
    E: EntityTrait,
    E::Model: Sync + crate::db::pg_decode::FromPlainRow,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    let rows = fetch_all(conn, select.offset(page.offset).limit(page.limit + 1));
    async move {
        let mut items = rows.await?;
        let has_next_page = items.len() as u64 > page.limit;
        items.truncate(page.limit as usize);
        Ok(Rows { items, has_next_page })
    }
}

/// From this many rows, a PostgreSQL batch insert reuses its statement's generic plan.
const GENERIC_PLAN_ROWS: usize = 100;

/// Inserts rows, `chunk` per statement, skipping any whose key is stored already (a
/// retry, a concurrent writer), and returns the ids of the rows inserted now.
pub async fn insert_new<A>(
    conn: &impl ConnectionTrait,
    rows: &[impl Borrow<<A::Entity as EntityTrait>::Model>],
    chunk: usize,
) -> AppResult<HashSet<Uuid>>
where
    A: ActiveModelTrait + From<<A::Entity as EntityTrait>::Model> + Send + 'static,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A> + Clone,
    <A::Entity as EntityTrait>::PrimaryKey: PrimaryKeyTrait<ValueType = Uuid>,
{
    let mut inserted = HashSet::with_capacity(rows.len());
    let Some(first) = rows.first() else {
        return Ok(inserted);
    };
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres && rows.len() >= GENERIC_PLAN_ROWS {
        // A multi-row INSERT has one plan whatever its values; planning it again at each
        // execution, as PostgreSQL does for a prepared statement's first five runs, took
        // 7–8 ms of every 500-row span INSERT (about a fifth of its time). `LOCAL`: the
        // setting ends with the caller's transaction.
        conn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
    }
    let text = insert_text::for_chunks::<A>(backend, chunk, first.borrow());
    for part in rows.chunks(chunk) {
        let statement = match &text {
            Some(text) => text.statement::<A>(backend, part),
            None => backend.build(&insert_text::returning_keys::<A>(
                part.iter().map(|row| row.borrow().clone()),
                backend,
            )),
        };
        for row in conn.query_all_raw(statement).await? {
            inserted.insert(row.try_get_by_index::<Uuid>(0)?);
        }
    }
    Ok(inserted)
}

/// Orders by `column`, then by `id` for stable pages. A nullable column puts NULLs
/// last on both engines (they disagree by default); a non-null one keeps the plain
/// form, which PostgreSQL matches to its index.
pub fn order<E: EntityTrait>(
    select: Select<E>,
    column: impl IntoSimpleExpr,
    nullable: bool,
    id: impl IntoSimpleExpr,
    desc: bool,
) -> Select<E> {
    let dir = if desc { Order::Desc } else { Order::Asc };
    let select = if nullable {
        select.order_by_with_nulls(column, dir.clone(), NullOrdering::Last)
    } else {
        select.order_by(column, dir.clone())
    };
    select.order_by(id, dir)
}

/// Items in the order their agents' kept totals (`agent_usage_total`) are locked: by
/// agent, so that concurrent transactions take those row locks in one order and cannot
/// deadlock each other. Each item keeps its input position.
pub fn in_agent_order<T>(items: Vec<T>, agent_of: impl Fn(&T) -> Option<Uuid>) -> Vec<(usize, T)> {
    let mut ordered: Vec<(usize, T)> = items.into_iter().enumerate().collect();
    ordered.sort_by_key(|(position, item)| (agent_of(item), *position));
    ordered
}
