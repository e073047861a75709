//! The text of a batch INSERT, written by sea_query once per entity, engine and chunk
//! size, then cut to each batch's row count. Written anew for every chunk, the text of a
//! 500-span INSERT (11,500 placeholders, each through `fmt`) and the copies of every
//! value into the statement and out again were about a tenth of a span batch's server
//! instructions (callgrind), and each row was cloned into an active model first. Here a
//! batch's values are read from its rows once, in the column order the text names.

use std::any::TypeId;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sea_orm::sea_query::{Query, ReturningClause};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbBackend, EntityTrait, Iterable, ModelTrait, PrimaryKeyToColumn, QueryTrait,
    Statement,
};

/// An INSERT of up to `rows` rows that skips stored keys and returns the inserted ones.
#[derive(Debug)]
pub struct InsertText {
    /// Everything up to the end of the last row's `(…)`.
    head: String,
    /// Where each row's `(…)` ends in `head`.
    row_ends: Vec<usize>,
    /// ` ON CONFLICT … DO NOTHING RETURNING …`
    tail: String,
}

impl InsertText {
    /// The INSERT of `rows` rows of `A` as sea_query writes it, `model` standing in for
    /// each (the text holds placeholders only). `None` if its shape is not the expected
    /// one, for the caller to let sea_query write each statement.
    fn write<A>(backend: DbBackend, rows: usize, model: &<A::Entity as EntityTrait>::Model) -> Option<Self>
    where
        A: ActiveModelTrait + From<<A::Entity as EntityTrait>::Model>,
        <A::Entity as EntityTrait>::Model: Clone,
    {
        let statement = backend.build(&returning_keys::<A>(std::iter::repeat_n(model.clone(), rows), backend));
        let (head, row_ends, tail) = split_rows(&statement.sql, rows)?;
        Some(Self {
            head: head.to_owned(),
            row_ends,
            tail: tail.to_owned(),
        })
    }

    /// The statement for `rows` (at most as many as the text was written for), its values
    /// bound row by row in column order.
    pub fn statement<A>(&self, backend: DbBackend, rows: &[impl Borrow<<A::Entity as EntityTrait>::Model>]) -> Statement
    where
        A: ActiveModelTrait,
    {
        let end = self.row_ends[rows.len() - 1];
        let mut sql = String::with_capacity(end + self.tail.len());
        sql.push_str(&self.head[..end]);
        sql.push_str(&self.tail);
        let columns = <A::Entity as EntityTrait>::Column::iter().count();
        let mut values = Vec::with_capacity(rows.len() * columns);
        for row in rows {
            let row = row.borrow();
            values.extend(<A::Entity as EntityTrait>::Column::iter().map(|column| row.get(column)));
        }
        Statement::from_sql_and_values(backend, sql, values)
    }
}

/// The statement sea_orm's `insert_many(…).on_conflict_do_nothing()` sends when asked for
/// the inserted keys.
pub fn returning_keys<A>(
    models: impl IntoIterator<Item = <A::Entity as EntityTrait>::Model>,
    backend: DbBackend,
) -> sea_orm::sea_query::InsertStatement
where
    A: ActiveModelTrait + From<<A::Entity as EntityTrait>::Model>,
{
    let mut query = <A::Entity as EntityTrait>::insert_many(models.into_iter().map(A::from))
        .on_conflict_do_nothing()
        .into_query();
    query.returning(returning_primary_key::<A::Entity>(backend));
    query
}

fn returning_primary_key<E: EntityTrait>(backend: DbBackend) -> ReturningClause {
    Query::returning().exprs(E::PrimaryKey::iter().map(|key| {
        let column = key.into_column();
        column.select_as(column.into_returning_expr(backend))
    }))
}

/// `sql` cut after its VALUES list's `rows` tuples: (the text up to the last one's end,
/// where each ends, the rest). `None` unless there are exactly `rows`.
fn split_rows(sql: &str, rows: usize) -> Option<(&str, Vec<usize>, &str)> {
    let values = sql.find(" VALUES ")? + " VALUES ".len();
    let mut ends = Vec::with_capacity(rows);
    let mut depth = 0usize;
    for (at, byte) in sql.bytes().enumerate().skip(values) {
        match byte {
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    ends.push(at + 1);
                    if ends.len() == rows {
                        return Some((&sql[..at + 1], ends, &sql[at + 1..]));
                    }
                }
            }
            // Only placeholders may stand in the list: a quoted literal could hold a paren.
            b'\'' | b'"' => return None,
            _ => {}
        }
    }
    None
}

type Key = (TypeId, bool, usize);

static TEXTS: LazyLock<Mutex<HashMap<Key, Option<Arc<InsertText>>>>> = LazyLock::new(Mutex::default);

/// The text of `rows`-row INSERTs of `A` on `backend`, written on first use (with `model`
/// standing in for the rows); `None` when sea_query's text could not be cut into rows.
pub fn for_chunks<A>(
    backend: DbBackend,
    rows: usize,
    model: &<A::Entity as EntityTrait>::Model,
) -> Option<Arc<InsertText>>
where
    A: ActiveModelTrait + From<<A::Entity as EntityTrait>::Model> + 'static,
    <A::Entity as EntityTrait>::Model: Clone,
{
    let key = (TypeId::of::<A>(), backend == DbBackend::Postgres, rows);
    let mut texts = TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    texts
        .entry(key)
        .or_insert_with(|| InsertText::write::<A>(backend, rows, model).map(Arc::new))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entities::{agent_usage, span, trace};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn span(i: u128) -> span::Model {
        let at = Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap();
        span::Model {
            id: Uuid::from_u128(i),
            trace_id: Uuid::from_u128(1000),
            parent_id: (i > 1).then(|| Uuid::from_u128(i - 1)),
            agent_id: Some(Uuid::from_u128(2000)),
            product_id: None,
            name: format!("step {i}"),
            span_type: "llm".to_owned(),
            started_at: at,
            ended_at: Some(at),
            duration_us: Some(i as i64),
            input_text: Some("in (with a paren)".to_owned()),
            output_text: None,
            error: None,
            metadata: serde_json::json!({"model": "m", "i": i as u64}),
            flagged: i.is_multiple_of(2),
            model: Some("m".to_owned()),
            provider: None,
            input_tokens: Some(3),
            output_tokens: Some(4),
            total_tokens: Some(7),
            cost_usd: Some(0.25),
            cost_source: Some("reported".to_owned()),
        }
    }

    fn trace(i: u128) -> trace::Model {
        trace::Model {
            id: Uuid::from_u128(i),
            name: format!("run {i}"),
            agent_id: None,
            product_id: Some(Uuid::from_u128(3000)),
            started_at: Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap(),
            ended_at: None,
            duration_us: None,
            error: Some("'quoted'".to_owned()),
            has_error: true,
            metadata: serde_json::json!({}),
            span_count: i as i64,
            flagged_span_count: 0,
            llm_calls: 1,
            input_tokens: 2,
            output_tokens: 3,
            total_tokens: 5,
            cost_usd: 0.5,
        }
    }

    fn usage(i: u128) -> agent_usage::Model {
        agent_usage::Model {
            id: Uuid::from_u128(i),
            trace_id: Uuid::from_u128(i + 100),
            agent_id: Some(Uuid::from_u128(2000)),
            product_id: None,
            llm_calls: 1,
            input_tokens: 2,
            output_tokens: 3,
            total_tokens: 5,
            cost_usd: 0.125,
            created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        }
    }

    /// The cut text with its values is the statement sea_query writes for those rows.
    fn same_as_sea_query<A>(model: fn(u128) -> <A::Entity as EntityTrait>::Model)
    where
        A: ActiveModelTrait + From<<A::Entity as EntityTrait>::Model> + 'static,
        <A::Entity as EntityTrait>::Model: Clone,
    {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let text = InsertText::write::<A>(backend, 10, &model(0)).expect("cut into rows");
            for rows in [1, 2, 7, 10] {
                let models: Vec<_> = (1..=rows).map(model).collect();
                let ours = text.statement::<A>(backend, &models);
                let theirs = backend.build(&returning_keys::<A>(models, backend));
                assert_eq!(ours.sql, theirs.sql, "{backend:?}, {rows} rows");
                assert_eq!(ours.values, theirs.values, "{backend:?}, {rows} rows");
            }
        }
    }

    #[test]
    fn cut_statements_are_sea_querys_for_every_entity_engine_and_count() {
        same_as_sea_query::<span::ActiveModel>(span);
        same_as_sea_query::<trace::ActiveModel>(trace);
        same_as_sea_query::<agent_usage::ActiveModel>(usage);
    }

    #[test]
    fn a_values_list_is_cut_after_each_row() {
        let sql = r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, CAST($4 AS x)) ON CONFLICT ("a") DO NOTHING RETURNING "a""#;
        let (head, ends, tail) = split_rows(sql, 2).unwrap();
        assert_eq!(&head[..ends[0]], r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2)"#);
        assert_eq!(head, &sql[..ends[1]]);
        assert_eq!(tail, r#" ON CONFLICT ("a") DO NOTHING RETURNING "a""#);
    }

    #[test]
    fn a_list_of_another_length_or_with_literals_is_not_cut() {
        let sql = r#"INSERT INTO "t" ("a") VALUES ($1), ($2)"#;
        assert!(split_rows(sql, 3).is_none());
        assert!(split_rows(r#"INSERT INTO "t" ("a") VALUES ('(')"#, 1).is_none());
        assert!(split_rows(r#"INSERT INTO "t" ("a") VALUES ($1))"#, 2).is_none());
    }
}
