//! Traces with all their spans, as `trace(id)` shows them (its loader batches the ids of
//! one request): both reads need only the ids, so on PostgreSQL they are one statement,
//! a UNION of the trace rows and the span rows over one list of columns (each entity's,
//! null where the other has no such column).
//! One round trip instead of two: pgbench, 16 clients on two cores, ran the pair of
//! statements 15,300–16,400 times a second and the UNION 19,300–19,400 times, and the
//! server waits for one answer and decodes it in one pass.

use std::sync::LazyLock;

use sea_orm::{ColumnTrait, DbBackend, IdenStatic, Iterable, QueryFilter, Statement};
use uuid::Uuid;

use super::spans::{self, Texts};
use crate::db::entities::{span, trace};
use crate::db::{Fetch, fetch_two, find};
use crate::error::AppResult;

/// What a read of traces with their spans may return.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A trace with more spans has none of them read.
    pub max_tree_spans: i64,
    /// Span rows read at most: past them the read stops (its caller refuses it).
    pub span_rows: usize,
}

/// The traces `ids` that exist and all their spans in start order, within `bounds`;
/// `texts` as for a tree.
pub async fn traces_with_spans(
    conn: &impl Fetch,
    ids: &[Uuid],
    texts: Texts,
    bounds: Bounds,
) -> AppResult<(Vec<trace::Model>, Vec<span::Model>)> {
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // The same statements as the loaders' where the two reads stay apart (SQLite, where
    // they cost no round trip), so each engine's statement cache serves both.
    let apart = || {
        let trace = find::<trace::Entity>().filter(trace::Column::Id.is_in(ids.iter().copied()));
        let spans = spans::with_texts(
            spans::select_in_start_order(spans::of_trees(ids, bounds.max_tree_spans)),
            texts,
            conn.get_database_backend(),
        );
        (trace, spans)
    };
    let together = || union_statement(ids, texts, bounds.max_tree_spans);
    let (traces, mut spans) = fetch_two(conn, apart, together, bounds.span_rows).await?;
    // The UNION leaves its rows unordered: sorting them there cost PostgreSQL a tenth of
    // its throughput (pgbench), against a sort of a trace's few spans here, in the order
    // PostgreSQL gives both (timestamps, then uuids byte by byte).
    spans.sort_by_key(|s| (s.started_at, s.id));
    Ok((traces, spans))
}

/// The UNION for PostgreSQL: the rows of the traces `ids` (at least one: `IN ()` is not
/// SQL) and of their spans (`_part` 0 and 1; none of a trace of more than `max_spans`),
/// in no order. The text for one trace, the usual case, is written once per `texts`;
/// public so that its plan can be checked.
pub fn union_statement(ids: &[Uuid], texts: Texts, max_spans: i64) -> Statement {
    static READ: LazyLock<String> = LazyLock::new(|| union_text(Texts::Read, 1));
    static SKIP: LazyLock<String> = LazyLock::new(|| union_text(Texts::Skip, 1));
    let sql = match (ids.len(), texts) {
        (1, Texts::Read) => READ.clone(),
        (1, Texts::Skip) => SKIP.clone(),
        (n, texts) => union_text(texts, n),
    };
    let values = ids.iter().map(|&id| id.into()).chain([max_spans.into()]);
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn union_text(texts: Texts, ids: usize) -> String {
    let trace_columns: Vec<&str> = trace::Column::iter().map(|c| c.as_str()).collect();
    let span_columns: Vec<span::Column> = span::Column::iter().collect();
    let names: Vec<&str> = trace_columns
        .iter()
        .copied()
        .chain(
            span_columns
                .iter()
                .map(|c| c.as_str())
                .filter(|name| !trace_columns.contains(name)),
        )
        .collect();
    // A bare NULL takes its column's type from the other side of the UNION.
    let trace_list = names
        .iter()
        .map(|name| match trace_columns.contains(name) {
            true => format!("\"trace\".\"{name}\""),
            false => format!("NULL AS \"{name}\""),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let span_list = names
        .iter()
        .map(|name| match span_columns.iter().find(|c| c.as_str() == *name) {
            None => "NULL".to_owned(),
            Some(column) => match (texts, spans::skipped_text(column, DbBackend::Postgres)) {
                (Texts::Skip, Some(literal)) => literal.to_owned(),
                _ => format!("\"span\".\"{name}\""),
            },
        })
        .collect::<Vec<_>>()
        .join(", ");
    let max = format!("${}", ids + 1);
    let ids = (1..=ids).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    // The spans of a trace too large to read whole are left out, as `spans::of_trees`
    // leaves them out.
    format!(
        "SELECT 0 AS \"_part\", {trace_list} FROM \"trace\" WHERE \"trace\".\"id\" IN ({ids}) \
         UNION ALL SELECT 1, {span_list} FROM \"span\" WHERE \"span\".\"trace_id\" IN ({ids}) \
         AND \"span\".\"trace_id\" IN (SELECT \"id\" FROM \"trace\" WHERE \"id\" IN ({ids}) \
         AND \"span_count\" <= {max})"
    )
}
