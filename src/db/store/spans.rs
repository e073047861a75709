//! The `span` table: batched idempotent inserts, ends, and the reads behind the loaders.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use uuid::Uuid;

use super::{Changed, Rows, agent_usage, in_agent_order, insert_new, order, page, traces};
use crate::db::entities::span::{self, Column};
use crate::db::entities::trace;
use crate::db::{ColumnLists, Fetch, empty_object, fetch_all, fetch_at_most, fetch_count, fetch_one, find, find_where};
use crate::error::{AppError, AppResult};
use crate::filters::{Page, SpanFilter, SpanSort};
use crate::ingest::{self, NewSpan};
use crate::model::SpanType;

/// Rows per INSERT: well under SQLite's and PostgreSQL's bound-parameter limits
/// (22 columns each).
const INSERT_CHUNK: usize = 500;

/// Writes a batch of spans in the caller's transaction, all or nothing, and returns
/// them in input order. Spans already stored with the same content are returned as
/// they are (a retried batch never duplicates a span); the same id with other content
/// is a conflict. A parent may be stored already or come anywhere in the batch.
pub async fn insert_batch(conn: &impl Fetch, batch: Vec<NewSpan>) -> AppResult<Written> {
    let input_order: Vec<Uuid> = batch.iter().map(|s| s.row.id).collect();
    let mut batch = dedupe(batch)?;
    let traces = load_traces(conn, &batch).await?;
    let in_batch: HashMap<Uuid, Uuid> = batch.iter().map(|(_, s)| (s.row.id, s.row.trace_id)).collect();
    // Only parents outside the batch are read first. A span already stored (a retry)
    // is found by the insert, which skips it, and compared after.
    let outside: HashSet<Uuid> = batch
        .iter()
        .filter_map(|(_, s)| s.row.parent_id)
        .filter(|p| !in_batch.contains_key(p))
        .collect();
    let outside_parents: HashMap<Uuid, Uuid> = by_ids(conn, outside)
        .await?
        .into_iter()
        .map(|s| (s.id, s.trace_id))
        .collect();

    for (index, new) in &mut batch {
        if let Some(parent) = new.row.parent_id {
            let parent_trace = outside_parents
                .get(&parent)
                .or_else(|| in_batch.get(&parent))
                .copied()
                .ok_or(AppError::NotFound {
                    what: "parent span",
                    id: parent,
                })?;
            if parent_trace != new.row.trace_id {
                return Err(AppError::bad_input(
                    format!("inputs[{index}].parentId"),
                    format!("parent span {parent} belongs to another trace"),
                ));
            }
        }
        let trace = &traces[&new.row.trace_id];
        new.row.agent_id = trace.agent_id;
        new.row.product_id = trace.product_id;
    }
    let write_order = parents_first(&batch)?;

    let to_insert: Vec<&span::Model> = write_order.iter().map(|&i| &batch[i].1.row).collect();
    let inserted = insert_new::<span::ActiveModel>(conn, &to_insert, INSERT_CHUNK).await?;
    // A span not inserted was stored before (by an earlier try, or a concurrent one).
    let skipped: Vec<Uuid> = to_insert
        .iter()
        .map(|s| s.id)
        .filter(|id| !inserted.contains(id))
        .collect();
    let stored: HashMap<Uuid, span::Model> = by_ids(conn, skipped).await?.into_iter().map(|s| (s.id, s)).collect();
    for (index, new) in &batch {
        if let Some(existing) = stored.get(&new.row.id)
            && !ingest::same_span(existing, new)
        {
            return Err(AppError::Conflict(format!(
                "inputs[{index}]: span {} already exists with other content",
                new.row.id
            )));
        }
    }

    // The rows move out of the batch once, shared by both lists: a span's texts and
    // metadata are most of a batch's bytes.
    let mut rows: Vec<Option<span::Model>> = batch.into_iter().map(|(_, new)| Some(new.row)).collect();
    let fresh: Vec<Arc<span::Model>> = write_order
        .iter()
        .filter_map(|&i| rows[i].take())
        .filter(|s| inserted.contains(&s.id))
        .map(Arc::new)
        .collect();
    apply_totals(conn, &fresh).await?;

    let mut by_id: HashMap<Uuid, Arc<span::Model>> = stored.into_iter().map(|(id, s)| (id, Arc::new(s))).collect();
    by_id.extend(fresh.iter().map(|s| (s.id, s.clone())));
    Ok(Written {
        rows: input_order.iter().map(|id| by_id[id].clone()).collect(),
        fresh,
    })
}

/// What a batch stored: every span in input order, and the newly written ones in
/// write order (parents first).
#[derive(Debug)]
pub struct Written {
    pub rows: Vec<Arc<span::Model>>,
    pub fresh: Vec<Arc<span::Model>>,
}

/// Drops exact repeats of an id inside one batch and refuses differing ones, keeping
/// each span's position in the input for error messages.
fn dedupe(batch: Vec<NewSpan>) -> AppResult<Vec<(usize, NewSpan)>> {
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut out: Vec<(usize, NewSpan)> = Vec::with_capacity(batch.len());
    for (index, new) in batch.into_iter().enumerate() {
        match seen.get(&new.row.id) {
            Some(&first) => {
                if !ingest::same_span(&out[first].1.row, &new) {
                    return Err(AppError::Conflict(format!(
                        "inputs[{index}]: span {} appears twice in the batch with other content",
                        new.row.id
                    )));
                }
            }
            None => {
                seen.insert(new.row.id, out.len());
                out.push((index, new));
            }
        }
    }
    Ok(out)
}

async fn load_traces(
    conn: &impl Fetch,
    batch: &[(usize, NewSpan)],
) -> AppResult<HashMap<Uuid, crate::db::entities::trace::Model>> {
    let ids: HashSet<Uuid> = batch.iter().map(|(_, s)| s.row.trace_id).collect();
    let found: HashMap<_, _> = traces::by_ids(conn, ids.iter().copied())
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    if let Some((_, missing)) = batch.iter().find(|(_, s)| !found.contains_key(&s.row.trace_id)) {
        return Err(AppError::NotFound {
            what: "trace",
            id: missing.row.trace_id,
        });
    }
    Ok(found)
}

/// The batch's positions in an order where a parent is inserted before its children;
/// a batch whose parent links form a cycle is refused.
fn parents_first(batch: &[(usize, NewSpan)]) -> AppResult<Vec<usize>> {
    let row = |i: usize| &batch[i].1.row;
    let ids: HashSet<Uuid> = batch.iter().map(|(_, s)| s.row.id).collect();
    let mut placed: HashSet<Uuid> = HashSet::with_capacity(batch.len());
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut ordered = Vec::with_capacity(batch.len());
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|&i| {
            row(i)
                .parent_id
                .is_none_or(|p| !ids.contains(&p) || placed.contains(&p))
        });
        placed.extend(ready.iter().map(|&i| row(i).id));
        ordered.extend(ready);
        pending = rest;
        if pending.len() == before {
            return Err(AppError::bad_input(
                "parentId",
                format!("parent links form a cycle through span {}", row(pending[0]).id),
            ));
        }
    }
    Ok(ordered)
}

async fn apply_totals(conn: &impl ConnectionTrait, written: &[Arc<span::Model>]) -> AppResult<()> {
    let mut per_trace: HashMap<Uuid, (Option<Uuid>, traces::Totals)> = HashMap::new();
    for s in written {
        let (_, t) = per_trace
            .entry(s.trace_id)
            .or_insert_with(|| (s.agent_id, traces::Totals::default()));
        t.spans += 1;
        t.has_error |= s.error.is_some();
        if s.span_type == SpanType::Llm.as_str() {
            t.llm_calls += 1;
            t.input_tokens += s.input_tokens.unwrap_or(0);
            t.output_tokens += s.output_tokens.unwrap_or(0);
            t.total_tokens += s.total_tokens.unwrap_or(0);
            t.cost_usd += s.cost_usd.unwrap_or(0.0);
        }
    }
    let ordered = in_agent_order(per_trace.into_iter().collect(), |(_, (agent, _))| *agent);
    let batch: Vec<(Uuid, traces::Totals)> = ordered.iter().map(|(_, (id, (_, t)))| (*id, t.clone())).collect();
    let ended = traces::add_totals(conn, &batch).await?;
    for (_, (trace_id, (agent, totals))) in &ordered {
        // A late span of an ended trace keeps its usage record equal to its spans.
        if ended.contains(trace_id) && totals.llm_calls > 0 {
            agent_usage::add(conn, *trace_id, *agent, totals).await?;
        }
    }
    Ok(())
}

pub async fn get(conn: &impl Fetch, id: Uuid) -> AppResult<span::Model> {
    fetch_one(conn, find::<span::Entity>().filter(Column::Id.eq(id)))
        .await?
        .ok_or(AppError::NotFound { what: "span", id })
}

pub async fn by_ids(conn: &impl Fetch, ids: impl IntoIterator<Item = Uuid>) -> AppResult<Vec<span::Model>> {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(fetch_all(conn, find::<span::Entity>().filter(Column::Id.is_in(ids))).await?)
}

/// Ends a span. Repeating the same end is a no-op; a different one is a conflict.
pub async fn end(
    conn: &impl Fetch,
    id: Uuid,
    ended_at: Option<DateTime<Utc>>,
    output_text: Option<String>,
    error: Option<String>,
) -> AppResult<Changed<span::Model>> {
    let stored = get(conn, id).await?;
    if let Some(previous) = stored.ended_at {
        let same = ended_at.is_none_or(|t| t == previous)
            && (output_text.is_none() || output_text == stored.output_text)
            && (error.is_none() || error == stored.error);
        if same {
            return Ok(Changed::unchanged(stored));
        }
        return Err(AppError::Conflict(format!("span {id} already ended at {previous}")));
    }
    let ended_at = ended_at.unwrap_or_else(ingest::now);
    let duration = ingest::duration_us(stored.started_at, ended_at)?;
    let mut update = span::Entity::update_many()
        .col_expr(Column::EndedAt, Expr::value(ended_at))
        .col_expr(Column::DurationUs, Expr::value(duration))
        .filter(Column::Id.eq(id))
        .filter(Column::EndedAt.is_null());
    if let Some(text) = output_text {
        update = update.col_expr(Column::OutputText, Expr::value(text));
    }
    let failed = error.is_some();
    if let Some(error) = error {
        update = update.col_expr(Column::Error, Expr::value(error));
    }
    let Some(row) = update.exec_with_returning(conn).await?.into_iter().next() else {
        // Ended concurrently: judge this call against that end.
        return Box::pin(end(conn, id, Some(ended_at), None, None)).await;
    };
    if failed && stored.error.is_none() {
        let totals = traces::Totals {
            has_error: true,
            ..Default::default()
        };
        traces::add_totals(conn, &[(row.trace_id, totals)]).await?;
    }
    Ok(Changed::new(row))
}

pub fn condition(f: &SpanFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(trace_id) = f.trace_id {
        c = c.add(Column::TraceId.eq(trace_id));
    }
    if let Some(agent) = f.agent {
        c = c.add(Column::AgentId.eq(agent));
    }
    if let Some(product) = f.product_id {
        c = c.add(Column::ProductId.eq(product));
    }
    if let Some(products) = &f.products {
        c = c.add(Column::ProductId.is_in(products.iter().copied()));
    }
    if let Some(kind) = f.span_type {
        c = c.add(Column::SpanType.eq(kind.as_str()));
    }
    if let Some(name) = &f.name {
        c = c.add(Column::Name.eq(name.as_str()));
    }
    if let Some(model) = &f.model {
        c = c.add(Column::Model.eq(model.as_str()));
    }
    if let Some(has_error) = f.has_error {
        c = c.add(if has_error {
            Column::Error.is_not_null()
        } else {
            Column::Error.is_null()
        });
    }
    if let Some(flagged) = f.flagged {
        // A literal, not a bound value, so PostgreSQL can use the partial index.
        c = c.add(Expr::cust(if flagged {
            r#""span"."flagged""#
        } else {
            r#"NOT "span"."flagged""#
        }));
    }
    if let Some(t) = f.started_after {
        c = c.add(Column::StartedAt.gte(t));
    }
    if let Some(t) = f.started_before {
        c = c.add(Column::StartedAt.lt(t));
    }
    c
}

/// Whether a read carries each span's input, output and metadata, or leaves them out
/// (null and `{}` instead): they are most of a span's bytes, and most views never show
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Texts {
    Read,
    Skip,
}

pub async fn list(
    conn: &impl Fetch,
    f: &SpanFilter,
    sort: SpanSort,
    window: Page,
    texts: Texts,
) -> AppResult<Rows<span::Model>> {
    let select = select(f, sort);
    page(conn, with_texts(select, texts, conn.get_database_backend()), window).await
}

/// The statement behind [`list`], apart so that its plan can be checked.
pub fn select(f: &SpanFilter, sort: SpanSort) -> Select<span::Entity> {
    let select = matching(f);
    let (column, nullable, desc) = match sort {
        SpanSort::StartedAtAsc => (Column::StartedAt, false, false),
        SpanSort::StartedAtDesc => (Column::StartedAt, false, true),
        SpanSort::DurationAsc => (Column::DurationUs, true, false),
        SpanSort::DurationDesc => (Column::DurationUs, true, true),
        SpanSort::CostAsc => (Column::CostUsd, true, false),
        SpanSort::CostDesc => (Column::CostUsd, true, true),
    };
    order(select, column, nullable, Column::Id, desc)
}

/// What a page of them and its count read, before any order.
pub fn matching(f: &SpanFilter) -> Select<span::Entity> {
    find_where::<span::Entity>(condition(f))
}

pub async fn count(conn: &impl Fetch, f: &SpanFilter) -> AppResult<u64> {
    Ok(fetch_count(conn, matching(f)).await?)
}

/// Spans matching `cond`, in start order, at most `rows`: the shape of every tree loader.
pub async fn in_start_order(
    conn: &impl Fetch,
    cond: Condition,
    texts: Texts,
    rows: usize,
) -> AppResult<Vec<span::Model>> {
    let select = select_in_start_order(cond);
    Ok(fetch_at_most(conn, with_texts(select, texts, conn.get_database_backend()), rows).await?)
}

/// What stands in for `column` when the large fields are skipped: null for input and
/// output, `{}` for metadata; `None` for a column read as it is.
pub fn skipped_text(column: &Column, backend: sea_orm::DbBackend) -> Option<&'static str> {
    match column {
        Column::InputText | Column::OutputText => Some("NULL"),
        Column::Metadata => Some(empty_object(backend)),
        _ => None,
    }
}

/// `select` as it is, or with null and `{}` in place of input, output and metadata.
pub fn with_texts(select: Select<span::Entity>, texts: Texts, backend: sea_orm::DbBackend) -> Select<span::Entity> {
    static LIGHT: LazyLock<ColumnLists> = LazyLock::new(|| ColumnLists::new::<span::Entity>(skipped_text));
    match texts {
        Texts::Read => select,
        Texts::Skip => LIGHT.select(select, backend),
    }
}

/// The spans of the trees of the traces `ids`, leaving out each trace with more than
/// `max_spans` spans by its row's running count, in the same statement: a tree is read
/// whole or not at all (so that no answer reads a trace of any size), and a trace that
/// has spans but an empty tree is one too large (`graphql::tree`).
pub fn of_trees(ids: &[Uuid], max_spans: i64) -> Condition {
    let small_enough = sea_orm::sea_query::Query::select()
        .column(trace::Column::Id)
        .from(trace::Entity)
        .and_where(trace::Column::Id.is_in(ids.iter().copied()))
        .and_where(trace::Column::SpanCount.lte(max_spans))
        .to_owned();
    // The plain `IN` says nothing the subquery does not, but PostgreSQL needs it: with
    // the subquery alone it planned a hash join over a scan of every span (EXPLAIN, 20k
    // spans), with both a nested loop on the index by trace. SQLite plans both alike.
    Condition::all()
        .add(Column::TraceId.is_in(ids.iter().copied()))
        .add(Column::TraceId.in_subquery(small_enough))
}

pub fn select_in_start_order(cond: Condition) -> Select<span::Entity> {
    find::<span::Entity>()
        .filter(cond)
        .order_by_asc(Column::StartedAt)
        .order_by_asc(Column::Id)
}

pub async fn set_flagged(conn: &impl ConnectionTrait, id: Uuid, flagged: bool) -> AppResult<Option<span::Model>> {
    // The `flagged <> new` guard makes the change report whether it happened, so the
    // trace's count moves exactly once under concurrent calls.
    let row = span::Entity::update_many()
        .col_expr(Column::Flagged, Expr::value(flagged))
        .filter(Column::Id.eq(id))
        .filter(Column::Flagged.ne(flagged))
        .exec_with_returning(conn)
        .await?;
    Ok(row.into_iter().next())
}
