//! The `agent_usage` table: one usage record per ended trace, and each agent's running
//! totals over its records (`agent_usage_total`), written in the same transaction.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect, Select,
};
use uuid::Uuid;

use super::traces::Totals;
use super::{Rows, insert_new, order, page};
use crate::db::entities::agent_usage::{self, Column};
use crate::db::entities::{agent_usage_total, trace};
use crate::db::{Fetch, fetch_all, fetch_count, fetch_one, find, find_where};
use crate::error::AppResult;
use crate::filters::{AgentUsageFilter, Page};
use crate::ingest;

/// Records per INSERT: well under both engines' bound-parameter limits (10 columns).
const INSERT_CHUNK: usize = 1000;

/// Writes the usage records of traces that have ended, from their rows (which carry the
/// running totals), unless a trace has one: the unique key makes concurrent ends write
/// each record once. The new records are added to their agents' kept totals.
pub async fn record_all(conn: &impl ConnectionTrait, ended: &[trace::Model]) -> AppResult<()> {
    let now = ingest::now();
    let records: Vec<agent_usage::Model> = ended
        .iter()
        .map(|t| agent_usage::Model {
            id: Uuid::now_v7(),
            trace_id: t.id,
            agent_id: t.agent_id,
            product_id: t.product_id,
            llm_calls: t.llm_calls,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            total_tokens: t.total_tokens,
            cost_usd: t.cost_usd,
            created_at: now,
        })
        .collect();
    let inserted = insert_new::<agent_usage::ActiveModel>(conn, &records, INSERT_CHUNK).await?;
    let new_records = records.iter().filter(|r| inserted.contains(&r.id)).map(|r| {
        let usage = Totals {
            llm_calls: r.llm_calls,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            cost_usd: r.cost_usd,
            ..Totals::default()
        };
        (r.agent_id, 1, usage)
    });
    add_to_agent_totals(conn, new_records).await
}

/// Adds (agent, records, usage) to the agents' kept totals in one statement, one row
/// per agent in agent order: the lock order of `store::in_agent_order`. Usage without
/// an agent adds nothing.
async fn add_to_agent_totals(
    conn: &impl ConnectionTrait,
    additions: impl IntoIterator<Item = (Option<Uuid>, i64, Totals)>,
) -> AppResult<()> {
    use agent_usage_total::Column as Total;
    let mut by_agent: BTreeMap<Uuid, agent_usage_total::Model> = BTreeMap::new();
    for (agent, records, usage) in additions {
        let Some(agent) = agent else { continue };
        let total = by_agent.entry(agent).or_insert_with(|| agent_usage_total::Model {
            agent_id: agent,
            records: 0,
            llm_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            cost_usd: 0.0,
        });
        total.records += records;
        total.llm_calls += usage.llm_calls;
        total.input_tokens += usage.input_tokens;
        total.output_tokens += usage.output_tokens;
        total.total_tokens += usage.total_tokens;
        total.cost_usd += usage.cost_usd;
    }
    if by_agent.is_empty() {
        return Ok(());
    }
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
    agent_usage_total::Entity::insert_many(by_agent.into_values().map(agent_usage_total::ActiveModel::from))
        .on_conflict(OnConflict::column(Total::AgentId).values(plus_new).to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Adds late spans' usage to an ended trace's record and to its agent's totals.
pub async fn add(conn: &impl ConnectionTrait, trace_id: Uuid, agent: Option<Uuid>, t: &Totals) -> AppResult<()> {
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
    add_to_agent_totals(conn, [(agent, 0, t.clone())]).await
}

pub async fn of_traces(conn: &impl Fetch, trace_ids: Vec<Uuid>) -> AppResult<Vec<agent_usage::Model>> {
    Ok(fetch_all(
        conn,
        find::<agent_usage::Entity>().filter(Column::TraceId.is_in(trace_ids)),
    )
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
pub async fn list(conn: &impl Fetch, f: &AgentUsageFilter, window: Page) -> AppResult<Rows<agent_usage::Model>> {
    let select = matching(f);
    page(conn, order(select, Column::CreatedAt, false, Column::Id, true), window).await
}

/// What a page of them and its count read, before any order.
pub fn matching(f: &AgentUsageFilter) -> Select<agent_usage::Entity> {
    find_where::<agent_usage::Entity>(condition(f))
}

pub async fn count(conn: &impl Fetch, f: &AgentUsageFilter) -> AppResult<u64> {
    if let Some(agent) = whole_history_of(f) {
        let kept = kept_totals(conn, agent).await?;
        return Ok(kept.map_or(0, |t| UsageTotals::from(t).record_count()));
    }
    Ok(fetch_count(conn, matching(f)).await?)
}

/// The agent's totals as kept by the writes: one row, however long its history.
async fn kept_totals(conn: &impl Fetch, agent: Uuid) -> AppResult<Option<agent_usage_total::Model>> {
    let select = find::<agent_usage_total::Entity>().filter(agent_usage_total::Column::AgentId.eq(agent));
    Ok(fetch_one(conn, select).await?)
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

impl From<agent_usage_total::Model> for UsageTotals {
    fn from(kept: agent_usage_total::Model) -> Self {
        Self {
            records: kept.records,
            llm_calls: Some(kept.llm_calls),
            input_tokens: Some(kept.input_tokens),
            output_tokens: Some(kept.output_tokens),
            total_tokens: Some(kept.total_tokens),
            cost_usd: Some(kept.cost_usd),
        }
    }
}

impl UsageTotals {
    /// How many records were summed: the filter's `totalCount`.
    pub fn record_count(&self) -> u64 {
        u64::try_from(self.records).unwrap_or(0)
    }
}

pub async fn totals(conn: &impl Fetch, f: &AgentUsageFilter) -> AppResult<UsageTotals> {
    let row = match whole_history_of(f) {
        Some(agent) => kept_totals(conn, agent).await?.map(UsageTotals::from),
        // Boxed: SeaORM's read holds a kilobyte that every future above it would.
        None => Box::pin(totals_select(f).into_model::<UsageTotals>().one(conn)).await?,
    };
    Ok(row.unwrap_or_default())
}

/// The statement `totals` runs: for an agent (and a time window), it reads only the
/// `ix_agent_usage_agent_totals` index.
pub fn totals_select(f: &AgentUsageFilter) -> Select<agent_usage::Entity> {
    // SUM of integers is numeric on PostgreSQL: cast back so both engines return i64.
    let sum = |c: Column| Expr::col(c).sum().cast_as("BIGINT");
    matching(f)
        .select_only()
        // COUNT(*), not of a column the totals index lacks, keeps the scan in the index.
        .expr_as(Expr::cust("COUNT(*)"), "records")
        .expr_as(sum(Column::LlmCalls), "llm_calls")
        .expr_as(sum(Column::InputTokens), "input_tokens")
        .expr_as(sum(Column::OutputTokens), "output_tokens")
        .expr_as(sum(Column::TotalTokens), "total_tokens")
        .expr_as(Expr::col(Column::CostUsd).sum(), "cost_usd")
}
