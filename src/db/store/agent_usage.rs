//! The `agent_usage` table: one usage record per ended trace, and each agent's running
//! totals over its records (`agent_usage_total`), written in the same transaction.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QuerySelect,
    Select,
};
use uuid::Uuid;

use super::traces::Totals;
use super::{Rows, order, page};
use crate::db::entities::agent_usage::{self, Column};
use crate::db::entities::{agent_usage_total, trace};
use crate::error::AppResult;
use crate::filters::{AgentUsageFilter, Page};
use crate::ingest;

/// Writes the trace's usage record from its running totals, unless it exists: a single
/// INSERT ... SELECT ... ON CONFLICT, so concurrent ends write it exactly once.
pub async fn record(conn: &impl ConnectionTrait, trace_id: Uuid) -> AppResult<()> {
    let select = Query::select()
        .expr(Expr::value(Uuid::now_v7()))
        .columns([
            trace::Column::Id,
            trace::Column::AgentId,
            trace::Column::ProductId,
            trace::Column::LlmCalls,
            trace::Column::InputTokens,
            trace::Column::OutputTokens,
            trace::Column::TotalTokens,
            trace::Column::CostUsd,
        ])
        .expr(Expr::value(ingest::now()))
        .from(trace::Entity)
        .and_where(trace::Column::Id.eq(trace_id))
        .to_owned();
    let insert = Query::insert()
        .into_table(agent_usage::Entity)
        .columns([
            Column::Id,
            Column::TraceId,
            Column::AgentId,
            Column::ProductId,
            Column::LlmCalls,
            Column::InputTokens,
            Column::OutputTokens,
            Column::TotalTokens,
            Column::CostUsd,
            Column::CreatedAt,
        ])
        .select_from(select)
        .expect("column counts match")
        .on_conflict(OnConflict::column(Column::TraceId).do_nothing().to_owned())
        .to_owned();
    if conn.execute(&insert).await?.rows_affected() > 0 {
        add_to_agent_total(conn, trace_id, None).await?;
    }
    Ok(())
}

/// Adds a record to its agent's totals: the trace's own usage as a new record, or
/// `late` usage to a record already counted. An agent-less trace adds nothing.
async fn add_to_agent_total(conn: &impl ConnectionTrait, trace_id: Uuid, late: Option<&Totals>) -> AppResult<()> {
    use agent_usage_total::Column as Total;
    let mut usage = Query::select();
    usage.column(trace::Column::AgentId);
    match late {
        None => usage.expr(Expr::value(1i64)).columns([
            trace::Column::LlmCalls,
            trace::Column::InputTokens,
            trace::Column::OutputTokens,
            trace::Column::TotalTokens,
            trace::Column::CostUsd,
        ]),
        Some(t) => usage.exprs([
            Expr::value(0i64),
            Expr::value(t.llm_calls),
            Expr::value(t.input_tokens),
            Expr::value(t.output_tokens),
            Expr::value(t.total_tokens),
            Expr::value(t.cost_usd),
        ]),
    };
    let usage: SelectStatement = usage
        .from(trace::Entity)
        .and_where(trace::Column::Id.eq(trace_id))
        .and_where(trace::Column::AgentId.is_not_null())
        .to_owned();
    let summed = [
        Total::Records,
        Total::LlmCalls,
        Total::InputTokens,
        Total::OutputTokens,
        Total::TotalTokens,
        Total::CostUsd,
    ];
    let plus_new = summed.map(|c| {
        let sum = Expr::col((agent_usage_total::Entity, c)).add(Expr::col((Alias::new("excluded"), c)));
        (c, sum)
    });
    let upsert = Query::insert()
        .into_table(agent_usage_total::Entity)
        .columns(std::iter::once(Total::AgentId).chain(summed))
        .select_from(usage)
        .expect("column counts match")
        .on_conflict(OnConflict::column(Total::AgentId).values(plus_new).to_owned())
        .to_owned();
    conn.execute(&upsert).await?;
    Ok(())
}

/// Adds late spans' usage to an ended trace's record.
pub async fn add(conn: &impl ConnectionTrait, trace_id: Uuid, t: &Totals) -> AppResult<()> {
    let plus = |c: Column, v: i64| Expr::col(c).add(v);
    agent_usage::Entity::update_many()
        .col_expr(Column::LlmCalls, plus(Column::LlmCalls, t.llm_calls))
        .col_expr(Column::InputTokens, plus(Column::InputTokens, t.input_tokens))
        .col_expr(Column::OutputTokens, plus(Column::OutputTokens, t.output_tokens))
        .col_expr(Column::TotalTokens, plus(Column::TotalTokens, t.total_tokens))
        .col_expr(Column::CostUsd, Expr::col(Column::CostUsd).add(t.cost_usd))
        .filter(Column::TraceId.eq(trace_id))
        .exec(conn)
        .await?;
    add_to_agent_total(conn, trace_id, Some(t)).await
}

pub async fn of_traces(conn: &impl ConnectionTrait, trace_ids: Vec<Uuid>) -> AppResult<Vec<agent_usage::Model>> {
    Ok(agent_usage::Entity::find()
        .filter(Column::TraceId.is_in(trace_ids))
        .all(conn)
        .await?)
}

pub fn condition(f: &AgentUsageFilter) -> Condition {
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
    if let Some(t) = f.created_after {
        c = c.add(Column::CreatedAt.gte(t));
    }
    if let Some(t) = f.created_before {
        c = c.add(Column::CreatedAt.lt(t));
    }
    c
}

/// Newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    f: &AgentUsageFilter,
    window: Page,
) -> AppResult<Rows<agent_usage::Model>> {
    let select = agent_usage::Entity::find().filter(condition(f));
    page(conn, order(select, Column::CreatedAt, false, Column::Id, true), window).await
}

pub async fn count(conn: &impl ConnectionTrait, f: &AgentUsageFilter) -> AppResult<u64> {
    if let Some(agent) = whole_history_of(f) {
        let kept = agent_usage_total::Entity::find_by_id(agent).one(conn).await?;
        return Ok(kept.map_or(0, |t| u64::try_from(t.records).unwrap_or(0)));
    }
    Ok(agent_usage::Entity::find().filter(condition(f)).count(conn).await?)
}

/// The agent whose whole history the filter asks for: its kept totals answer at once.
fn whole_history_of(f: &AgentUsageFilter) -> Option<Uuid> {
    match f {
        AgentUsageFilter {
            agent: Some(agent),
            product_id: None,
            created_after: None,
            created_before: None,
            products: None,
        } => Some(*agent),
        _ => None,
    }
}

/// Sums over every record matching the filter, not only one page.
#[derive(Debug, Clone, Default, FromQueryResult)]
pub struct UsageTotals {
    pub records: i64,
    pub llm_calls: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

pub async fn totals(conn: &impl ConnectionTrait, f: &AgentUsageFilter) -> AppResult<UsageTotals> {
    let row = match whole_history_of(f) {
        // One row, however long the agent's history.
        Some(agent) => {
            agent_usage_total::Entity::find_by_id(agent)
                .into_model::<UsageTotals>()
                .one(conn)
                .await?
        }
        None => totals_select(f).into_model::<UsageTotals>().one(conn).await?,
    };
    Ok(row.unwrap_or_default())
}

/// The statement `totals` runs: for an agent (and a time window), it reads only the
/// `ix_agent_usage_agent_totals` index.
pub fn totals_select(f: &AgentUsageFilter) -> Select<agent_usage::Entity> {
    // SUM of integers is numeric on PostgreSQL: cast back so both engines return i64.
    let sum = |c: Column| Expr::col(c).sum().cast_as("BIGINT");
    agent_usage::Entity::find()
        .select_only()
        // COUNT(*), not of a column the totals index lacks, keeps the scan in the index.
        .expr_as(Expr::cust("COUNT(*)"), "records")
        .expr_as(sum(Column::LlmCalls), "llm_calls")
        .expr_as(sum(Column::InputTokens), "input_tokens")
        .expr_as(sum(Column::OutputTokens), "output_tokens")
        .expr_as(sum(Column::TotalTokens), "total_tokens")
        .expr_as(Expr::col(Column::CostUsd).sum(), "cost_usd")
        .filter(condition(f))
}
