use async_graphql::{ComplexObject, Context, Result, SimpleObject};

use super::{AgentUsage, SpanList, TokenUsage, TraceList};
use crate::db::store;
use crate::db::store::agent_usage::UsageTotals;
use crate::error::AppResult;
use crate::filters::{AgentUsageFilter, SpanFilter, TraceFilter};
use crate::graphql::{db, gql};

/// A page's `totalCount` or `totals`: as read beside its rows, or, where the look-ahead
/// did not show it asked for, read now.
async fn read_or<T>(known: Option<T>, read: impl Future<Output = AppResult<T>>) -> Result<T> {
    match known {
        Some(known) => Ok(known),
        None => gql(read.await),
    }
}

/// One page of traces. `totalCount` costs a count query: ask for it only when shown.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TracePage {
    pub items: TraceList,
    /// Whether a page follows this one.
    pub has_next_page: bool,
    /// `totalCount`, when it was counted beside the rows.
    #[graphql(skip)]
    pub counted: Option<u64>,
    #[graphql(skip)]
    pub filter: TraceFilter,
}

#[ComplexObject]
impl TracePage {
    /// How many traces match the filter, over all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        read_or(self.counted, store::traces::count(&db(ctx)?.read, &self.filter)).await
    }
}

/// One page of spans. `totalCount` costs a count query: ask for it only when shown.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SpanPage {
    pub items: SpanList,
    /// Whether a page follows this one.
    pub has_next_page: bool,
    /// `totalCount`, when it was counted beside the rows.
    #[graphql(skip)]
    pub counted: Option<u64>,
    #[graphql(skip)]
    pub filter: SpanFilter,
}

#[ComplexObject]
impl SpanPage {
    /// How many spans match the filter, over all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        read_or(self.counted, store::spans::count(&db(ctx)?.read, &self.filter)).await
    }
}

/// One page of usage records, newest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AgentUsagePage {
    pub items: Vec<AgentUsage>,
    /// Whether a page follows this one.
    pub has_next_page: bool,
    /// `totalCount`, when it was counted beside the rows.
    #[graphql(skip)]
    pub counted: Option<u64>,
    /// `totals`, when they were summed beside the rows.
    #[graphql(skip)]
    pub summed: Option<UsageTotals>,
    #[graphql(skip)]
    pub filter: AgentUsageFilter,
}

#[ComplexObject]
impl AgentUsagePage {
    /// How many records match the filter, over all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        read_or(self.counted, store::agent_usage::count(&db(ctx)?.read, &self.filter)).await
    }
    /// Usage summed over every matching record, not only this page.
    async fn totals(&self, ctx: &Context<'_>) -> Result<TokenUsage> {
        let totals = read_or(
            self.summed.clone(),
            store::agent_usage::totals(&db(ctx)?.read, &self.filter),
        )
        .await?;
        Ok(TokenUsage::of_totals(&totals))
    }
}
