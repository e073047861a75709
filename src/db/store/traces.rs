//! The `trace` table: create, end, running totals, lists.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, Select, Statement,
};
use uuid::Uuid;

use super::spans::Texts;
use super::{Changed, Rows, agent_usage, insert_new, order, page};
use crate::db::entities::trace::{self, Column};
use crate::db::{ColumnLists, Fetch, empty_object, fetch_all, fetch_count, fetch_one, find, find_where};
use crate::error::{AppError, AppResult};
use crate::filters::{Page, TraceFilter, TraceSort};
use crate::ingest::{self, NewTrace, TraceEnd};
use crate::model::TraceStatus;

/// Rows per INSERT: well under both engines' bound-parameter limits (17 columns).
const INSERT_CHUNK: usize = 500;

/// Inserts traces in the caller's transaction and returns them in input order. A trace
/// stored already (a retry, or an id repeated in the batch) is returned as stored when
/// the input says the same, and is a conflict otherwise. Traces written already ended
/// get their usage records at once.
pub async fn create_all(conn: &impl Fetch, news: Vec<NewTrace>) -> AppResult<Vec<trace::Model>> {
    let rows: Vec<trace::Model> = news.iter().map(|n| n.row.clone()).collect();
    let inserted = insert_new::<trace::ActiveModel>(conn, &rows, INSERT_CHUNK).await?;
    let skipped = news.iter().map(|n| n.row.id).filter(|id| !inserted.contains(id));
    let mut known: HashMap<Uuid, trace::Model> = by_ids(conn, skipped).await?.into_iter().map(|t| (t.id, t)).collect();
    let mut rows = Vec::with_capacity(news.len());
    let mut ended_now = Vec::new();
    for new in news {
        let id = new.row.id;
        if let Some(stored) = known.get(&id) {
            if !ingest::same_trace(stored, &new) {
                return Err(AppError::Conflict(format!(
                    "trace {id} already exists with other content"
                )));
            }
            rows.push(stored.clone());
        } else if inserted.contains(&id) {
            // Its first occurrence: later ones in the batch compare with it.
            if new.row.ended_at.is_some() {
                ended_now.push(new.row.clone());
            }
            known.insert(id, new.row.clone());
            rows.push(new.row);
        } else {
            return Err(AppError::NotFound { what: "trace", id });
        }
    }
    agent_usage::record_all(conn, &ended_now).await?;
    Ok(rows)
}

pub async fn get(conn: &impl Fetch, id: Uuid) -> AppResult<trace::Model> {
    fetch_one(conn, find::<trace::Entity>().filter(Column::Id.eq(id)))
        .await?
        .ok_or(AppError::NotFound { what: "trace", id })
}

/// The traces with these ids; no statement for none.
pub async fn by_ids(conn: &impl Fetch, ids: impl IntoIterator<Item = Uuid>) -> AppResult<Vec<trace::Model>> {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(fetch_all(conn, find::<trace::Entity>().filter(Column::Id.is_in(ids))).await?)
}

/// Ends traces in the caller's transaction and returns each end's outcome in input
/// order: `changed` for an end that happened now, unchanged for a repeat of a stored
/// end (or of an earlier one in the batch). A different end of an ended trace is a
/// conflict. Every end is judged before anything is written; the ends are then one
/// UPDATE, and the usage records one INSERT.
pub async fn end_all(conn: &impl Fetch, ends: Vec<TraceEnd>) -> AppResult<Vec<Changed<trace::Model>>> {
    let mut current: HashMap<Uuid, trace::Model> = by_ids(conn, ends.iter().map(|e| e.id))
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let mut to_end: Vec<trace::Model> = Vec::new();
    let mut ends_now: Vec<bool> = Vec::with_capacity(ends.len());
    for end in &ends {
        let trace = current.get_mut(&end.id).ok_or(AppError::NotFound {
            what: "trace",
            id: end.id,
        })?;
        if let Some(previous) = trace.ended_at {
            let same_time = end.ended_at.is_none_or(|t| t == previous);
            let same_error = end.error.is_none() || end.error == trace.error;
            if !(same_time && same_error) {
                return Err(AppError::Conflict(format!(
                    "trace {} already ended at {previous}",
                    end.id
                )));
            }
            ends_now.push(false);
            continue;
        }
        let ended_at = end.ended_at.unwrap_or_else(ingest::now);
        trace.duration_us = Some(ingest::duration_us(trace.started_at, ended_at)?);
        trace.ended_at = Some(ended_at);
        if let Some(error) = &end.error {
            trace.error = Some(error.clone());
            trace.has_error = true;
        }
        to_end.push(trace.clone());
        ends_now.push(true);
    }
    let ended = set_ends(conn, &to_end).await?;
    // Ended by a concurrent call between the read and the update: that call made the
    // change, and its end is what this one returns.
    let raced = to_end.iter().map(|t| t.id).filter(|id| !ended.contains_key(id));
    current.extend(by_ids(conn, raced).await?.into_iter().map(|t| (t.id, t)));
    let records: Vec<trace::Model> = ended.values().cloned().collect();
    agent_usage::record_all(conn, &records).await?;
    let mut reported: HashSet<Uuid> = HashSet::new();
    Ok(ends
        .iter()
        .zip(ends_now)
        .map(|(end, now)| match ended.get(&end.id) {
            Some(row) if now && reported.insert(end.id) => Changed::new(row.clone()),
            Some(row) => Changed::unchanged(row.clone()),
            None => Changed::unchanged(current[&end.id].clone()),
        })
        .collect())
}

/// Writes the ends of running traces, one statement for all; returns the rows it
/// changed (a trace ended meanwhile by another transaction is left as that one left it).
async fn set_ends(conn: &impl ConnectionTrait, ends: &[trace::Model]) -> AppResult<HashMap<Uuid, trace::Model>> {
    if ends.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = ends.iter().map(|t| {
        vec![
            t.id.into(),
            t.ended_at.into(),
            t.duration_us.into(),
            t.error.clone().into(),
            t.has_error.into(),
        ]
    });
    let returned: Vec<String> = Column::iter()
        .map(|c| format!("trace.{}", IdenStatic::as_str(&c)))
        .collect();
    let sql = format!(
        "UPDATE trace SET ended_at = v.column2, duration_us = v.column3, \
         error = COALESCE(v.column4, trace.error), has_error = (trace.has_error OR v.column5) \
         FROM (VALUES {{values}}) AS v WHERE trace.id = v.column1 AND trace.ended_at IS NULL \
         RETURNING {}",
        returned.join(", ")
    );
    let statement = with_values(conn.get_database_backend(), &sql, rows);
    let mut changed = HashMap::with_capacity(ends.len());
    for row in conn.query_all_raw(statement).await? {
        let trace = trace::Model::from_query_result(&row, "")?;
        changed.insert(trace.id, trace);
    }
    Ok(changed)
}

/// What a batch of new spans adds to its trace.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub spans: i64,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub has_error: bool,
}

/// Adds each trace's span totals, in one statement for the whole batch, and returns
/// those of the traces that had already ended: their usage records need the same
/// additions (read in the same statement, so atomic with them). A trace that does not
/// exist is an error.
pub async fn add_totals(conn: &impl ConnectionTrait, batch: &[(Uuid, Totals)]) -> AppResult<HashSet<Uuid>> {
    if batch.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = batch.iter().map(|(id, t)| {
        vec![
            (*id).into(),
            t.spans.into(),
            t.llm_calls.into(),
            t.input_tokens.into(),
            t.output_tokens.into(),
            t.total_tokens.into(),
            t.cost_usd.into(),
            t.has_error.into(),
        ]
    });
    let statement = with_values(
        conn.get_database_backend(),
        "UPDATE trace SET span_count = trace.span_count + v.column2, \
         llm_calls = trace.llm_calls + v.column3, input_tokens = trace.input_tokens + v.column4, \
         output_tokens = trace.output_tokens + v.column5, total_tokens = trace.total_tokens + v.column6, \
         cost_usd = trace.cost_usd + v.column7, has_error = (trace.has_error OR v.column8) \
         FROM (VALUES {values}) AS v WHERE trace.id = v.column1 RETURNING trace.id, trace.ended_at",
        rows,
    );
    let updated = conn.query_all_raw(statement).await?;
    let mut seen = HashSet::with_capacity(updated.len());
    let mut ended = HashSet::new();
    for row in updated {
        let id: Uuid = row.try_get("", "id")?;
        let ended_at: Option<DateTime<Utc>> = row.try_get("", "ended_at")?;
        if ended_at.is_some() {
            ended.insert(id);
        }
        seen.insert(id);
    }
    if let Some((id, _)) = batch.iter().find(|(id, _)| !seen.contains(id)) {
        return Err(AppError::NotFound { what: "trace", id: *id });
    }
    Ok(ended)
}

/// `sql` with `{values}` replaced by one parenthesized row of placeholders per row, for
/// `FROM (VALUES …)`, which sea-query does not build. VALUES columns are named
/// column1… on both engines, and each parameter is bound with its type, so PostgreSQL
/// needs no casts.
fn with_values(backend: DbBackend, sql: &str, rows: impl IntoIterator<Item = Vec<sea_orm::Value>>) -> Statement {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut tuples = Vec::new();
    for row in rows {
        let marks: Vec<String> = (values.len() + 1..=values.len() + row.len())
            .map(|n| match backend {
                DbBackend::Postgres => format!("${n}"),
                _ => "?".to_owned(),
            })
            .collect();
        values.extend(row);
        tuples.push(format!("({})", marks.join(", ")));
    }
    Statement::from_sql_and_values(backend, sql.replace("{values}", &tuples.join(", ")), values)
}

pub async fn add_flagged(conn: &impl ConnectionTrait, id: Uuid, delta: i64) -> AppResult<()> {
    trace::Entity::update_many()
        .col_expr(Column::FlaggedSpanCount, Expr::col(Column::FlaggedSpanCount).add(delta))
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

const HAS_ERROR: &str = r#""trace"."has_error""#;
const NO_ERROR: &str = r#"NOT "trace"."has_error""#;
const HAS_FLAGGED: &str = r#""trace"."flagged_span_count" > 0"#;
const NO_FLAGGED: &str = r#""trace"."flagged_span_count" = 0"#;

fn literal(sql: &'static str) -> Expr {
    Expr::cust(sql)
}

pub fn condition(f: &TraceFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(agent) = f.agent {
        c = c.add(Column::AgentId.eq(agent));
    }
    if let Some(product) = f.product_id {
        c = c.add(Column::ProductId.eq(product));
    }
    if let Some(products) = &f.products {
        c = c.add(Column::ProductId.is_in(products.iter().copied()));
    }
    if let Some(name) = &f.name {
        c = c.add(Column::Name.eq(name.as_str()));
    }
    if let Some(t) = f.started_after {
        c = c.add(Column::StartedAt.gte(t));
    }
    if let Some(t) = f.started_before {
        c = c.add(Column::StartedAt.lt(t));
    }
    // Literal predicates, not bound values: only these match the partial indexes'
    // `WHERE` clauses in PostgreSQL's plans.
    if let Some(has_error) = f.has_error {
        c = c.add(literal(if has_error { HAS_ERROR } else { NO_ERROR }));
    }
    if let Some(flagged) = f.has_flagged_spans {
        c = c.add(literal(if flagged { HAS_FLAGGED } else { NO_FLAGGED }));
    }
    match f.status {
        Some(TraceStatus::Error) => c.add(literal(HAS_ERROR)),
        Some(TraceStatus::Running) => c.add(literal(NO_ERROR)).add(Column::EndedAt.is_null()),
        Some(TraceStatus::Ok) => c.add(literal(NO_ERROR)).add(Column::EndedAt.is_not_null()),
        None => c,
    }
}

/// A page of traces; with `Texts::Skip`, `{}` in place of their metadata, which a page
/// that does not show it would parse for nothing.
pub async fn list(
    conn: &impl Fetch,
    f: &TraceFilter,
    sort: TraceSort,
    window: Page,
    texts: Texts,
) -> AppResult<Rows<trace::Model>> {
    static LIGHT: LazyLock<ColumnLists> = LazyLock::new(|| {
        ColumnLists::new::<trace::Entity>(|column, backend| {
            matches!(column, Column::Metadata).then(|| empty_object(backend))
        })
    });
    let select = match texts {
        Texts::Read => select(f, sort),
        Texts::Skip => LIGHT.select(select(f, sort), conn.get_database_backend()),
    };
    page(conn, select, window).await
}

/// The statement behind [`list`], apart so that its plan can be checked.
pub fn select(f: &TraceFilter, sort: TraceSort) -> Select<trace::Entity> {
    let select = matching(f);
    let (column, nullable, desc) = match sort {
        TraceSort::StartedAtAsc => (Column::StartedAt, false, false),
        TraceSort::StartedAtDesc => (Column::StartedAt, false, true),
        TraceSort::EndedAtAsc => (Column::EndedAt, true, false),
        TraceSort::EndedAtDesc => (Column::EndedAt, true, true),
        TraceSort::DurationAsc => (Column::DurationUs, true, false),
        TraceSort::DurationDesc => (Column::DurationUs, true, true),
        TraceSort::CostAsc => (Column::CostUsd, false, false),
        TraceSort::CostDesc => (Column::CostUsd, false, true),
    };
    order(select, column, nullable, Column::Id, desc)
}

/// What a page of them and its count read, before any order.
pub fn matching(f: &TraceFilter) -> Select<trace::Entity> {
    find_where::<trace::Entity>(condition(f))
}

pub async fn count(conn: &impl Fetch, f: &TraceFilter) -> AppResult<u64> {
    Ok(fetch_count(conn, matching(f)).await?)
}
