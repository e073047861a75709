//! The `trace` table: create, end, running totals, lists.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Select, Statement,
    TryInsertResult,
};
use uuid::Uuid;

use super::{Changed, Rows, agent_usage, order, page};
use crate::db::entities::trace::{self, Column};
use crate::error::{AppError, AppResult};
use crate::filters::{Page, TraceFilter, TraceSort};
use crate::ingest::{self, NewTrace};
use crate::model::TraceStatus;

/// Inserts a trace, or returns the stored one when a retry repeats it. A trace written
/// already ended gets its usage record at once.
pub async fn create(conn: &impl ConnectionTrait, new: NewTrace) -> AppResult<trace::Model> {
    let id = new.row.id;
    let inserted = trace::Entity::insert(trace::ActiveModel::from(new.row.clone()))
        .on_conflict_do_nothing()
        .exec_without_returning(conn)
        .await?;
    if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        let stored = get(conn, id).await?;
        if ingest::same_trace(&stored, &new) {
            return Ok(stored);
        }
        return Err(AppError::Conflict(format!(
            "trace {id} already exists with other content"
        )));
    }
    if new.row.ended_at.is_some() {
        agent_usage::record(conn, id).await?;
    }
    Ok(new.row)
}

pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> AppResult<trace::Model> {
    trace::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(AppError::NotFound { what: "trace", id })
}

pub async fn by_ids(conn: &impl ConnectionTrait, ids: impl IntoIterator<Item = Uuid>) -> AppResult<Vec<trace::Model>> {
    Ok(trace::Entity::find().filter(Column::Id.is_in(ids)).all(conn).await?)
}

/// Ends a trace and records its usage once. Repeating the same end is a no-op; ending
/// it again at another time is a conflict.
pub async fn end(
    conn: &impl ConnectionTrait,
    id: Uuid,
    ended_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> AppResult<Changed<trace::Model>> {
    end_stored(conn, get(conn, id).await?, ended_at, error).await
}

/// As [`end`], for a trace already read in this transaction.
pub async fn end_stored(
    conn: &impl ConnectionTrait,
    stored: trace::Model,
    ended_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> AppResult<Changed<trace::Model>> {
    let id = stored.id;
    if let Some(previous) = stored.ended_at {
        let same_time = ended_at.is_none_or(|t| t == previous);
        let same_error = error.is_none() || error == stored.error;
        if same_time && same_error {
            return Ok(Changed::unchanged(stored));
        }
        return Err(AppError::Conflict(format!("trace {id} already ended at {previous}")));
    }
    let ended_at = ended_at.unwrap_or_else(ingest::now);
    let duration = ingest::duration_us(stored.started_at, ended_at)?;
    let mut update = trace::Entity::update_many()
        .col_expr(Column::EndedAt, Expr::value(ended_at))
        .col_expr(Column::DurationUs, Expr::value(duration))
        // Guards against a concurrent end: only one of them finds the trace running.
        .filter(Column::Id.eq(id))
        .filter(Column::EndedAt.is_null());
    if let Some(error) = error {
        update = update
            .col_expr(Column::Error, Expr::value(error))
            .col_expr(Column::HasError, Expr::value(true));
    }
    let ended = update.exec_with_returning(conn).await?.into_iter().next();
    agent_usage::record(conn, id).await?;
    match ended {
        Some(row) => Ok(Changed::new(row)),
        // Ended concurrently by another call, which made the change.
        None => Ok(Changed::unchanged(get(conn, id).await?)),
    }
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
    let backend = conn.get_database_backend();
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(batch.len() * 8);
    let mut rows = Vec::with_capacity(batch.len());
    for (id, t) in batch {
        let first = values.len();
        values.extend([
            (*id).into(),
            t.spans.into(),
            t.llm_calls.into(),
            t.input_tokens.into(),
            t.output_tokens.into(),
            t.total_tokens.into(),
            t.cost_usd.into(),
            t.has_error.into(),
        ]);
        let marks: Vec<String> = (first + 1..=values.len())
            .map(|n| match backend {
                DbBackend::Postgres => format!("${n}"),
                _ => "?".to_owned(),
            })
            .collect();
        rows.push(format!("({})", marks.join(", ")));
    }
    // VALUES columns are named column1… on both engines; each parameter is bound with
    // its type, so PostgreSQL needs no casts.
    let sql = format!(
        "UPDATE trace SET span_count = trace.span_count + v.column2, \
         llm_calls = trace.llm_calls + v.column3, input_tokens = trace.input_tokens + v.column4, \
         output_tokens = trace.output_tokens + v.column5, total_tokens = trace.total_tokens + v.column6, \
         cost_usd = trace.cost_usd + v.column7, has_error = (trace.has_error OR v.column8) \
         FROM (VALUES {}) AS v WHERE trace.id = v.column1 RETURNING trace.id, trace.ended_at",
        rows.join(", ")
    );
    let updated = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
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

pub async fn list(
    conn: &impl ConnectionTrait,
    f: &TraceFilter,
    sort: TraceSort,
    window: Page,
) -> AppResult<Rows<trace::Model>> {
    page(conn, select(f, sort), window).await
}

/// The statement behind [`list`], apart so that its plan can be checked.
pub fn select(f: &TraceFilter, sort: TraceSort) -> Select<trace::Entity> {
    let select = trace::Entity::find().filter(condition(f));
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

pub async fn count(conn: &impl ConnectionTrait, f: &TraceFilter) -> AppResult<u64> {
    Ok(trace::Entity::find().filter(condition(f)).count(conn).await?)
}
