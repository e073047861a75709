use async_graphql::{ComplexObject, Context, Result, SimpleObject};

use super::{AgentUsage, SpanList, TokenUsage, TraceList};
use crate::db::store;
use crate::db::store::agent_usage::UsageTotals;
use crate::error::AppResult;
use crate::filters::{AgentUsageFilter, SpanFilter, TraceFilter};
use crate::graphql::{db, gql};

/// A page's `totalCount` or `totals`: as read beside its rows, or, where the look-ahead
/// did not show it asked for, read now. The read is boxed: inline, its state (2–4 KB)
/// would size the page's `resolve_field` future, which the engine moves for every field.
async fn read_or<T, F>(known: Option<T>, read: impl FnOnce() -> F) -> Result<T>
where
    F: Future<Output = AppResult<T>> + Send,
{
    match known {
        Some(known) => Ok(known),
        None => gql(Box::pin(read()).await),
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
        let read = &db(ctx)?.read;
        read_or(self.counted, || store::traces::count(read, &self.filter)).await
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
        let read = &db(ctx)?.read;
        read_or(self.counted, || store::spans::count(read, &self.filter)).await
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
        let read = &db(ctx)?.read;
        read_or(self.counted, || store::agent_usage::count(read, &self.filter)).await
    }
    /// Usage summed over every matching record, not only this page.
    async fn totals(&self, ctx: &Context<'_>) -> Result<TokenUsage> {
        let read = &db(ctx)?.read;
        let totals = read_or(self.summed.clone(), || store::agent_usage::totals(read, &self.filter)).await?;
        Ok(TokenUsage::of_totals(&totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `resolver` returns, without calling it.
    fn future_size<P: 'static, Fut>(_resolver: impl Fn(&'static P, &'static Context<'static>) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn page_resolvers_keep_their_futures_small() {
        let sizes = [
            ("traces.totalCount", future_size(|p: &TracePage, c| p.total_count(c))),
            ("spans.totalCount", future_size(|p: &SpanPage, c| p.total_count(c))),
            (
                "agentUsage.totalCount",
                future_size(|p: &AgentUsagePage, c| p.total_count(c)),
            ),
            ("agentUsage.totals", future_size(|p: &AgentUsagePage, c| p.totals(c))),
        ];
        for (field, size) in sizes {
            assert!(size < 1024, "{field}: {size} bytes");
        }
    }
}
